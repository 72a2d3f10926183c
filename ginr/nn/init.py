"""Initial-weight distributions of the reference hyponet (fidelity 1.3).

Every rule is stated for a 2-D block of ``rows x cols``; a layer's weight is the block ``(fan_in, fan_out)`` and its
bias the block ``(1, fan_out)``, initialised separately, weight first.
"""

from __future__ import annotations

import math

import torch


def uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None) -> torch.Tensor:
    """U(-bound, bound)."""
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def normal(shape: tuple[int, ...], generator: torch.Generator | None, std: float = 1.0) -> torch.Tensor:
    """N(0, std^2)."""
    return torch.randn(shape, generator=generator) * std


def init_block(
    scheme: str,
    rows: int,
    cols: int,
    generator: torch.Generator | None,
    *,
    first_layer: bool = False,
    siren_w0: float = 30.0,
) -> torch.Tensor:
    """One ``rows x cols`` block under the reference's rule for ``scheme``.

    - ``normal``: N(0, 1).
    - ``kaiming_uniform``: ``nn.init.kaiming_uniform_(a=sqrt(5))`` on the (rows, cols) tensor; PyTorch reads fan_in
      from dim 1, so the bound is 1/sqrt(cols) (quirk 1, kept: a (fi, fo) weight gets U(+-1/sqrt(fo))).
    - ``uniform_fan_in``: U(+-1/sqrt(rows)).
    - ``zero``: zeros (draws nothing).
    - ``siren``: U(+-1/rows) on the first layer, U(+-sqrt(6/rows)/w0) elsewhere.
    """
    shape = (rows, cols)
    if scheme == "normal":
        return normal(shape, generator)
    if scheme == "kaiming_uniform":
        return uniform(shape, 1.0 / math.sqrt(cols), generator)
    if scheme == "uniform_fan_in":
        return uniform(shape, 1.0 / math.sqrt(rows), generator)
    if scheme == "zero":
        return torch.zeros(shape)
    if scheme == "siren":
        bound = 1.0 / rows if first_layer else math.sqrt(6.0 / rows) / siren_w0
        return uniform(shape, bound, generator)
    raise ValueError(
        f"unknown init scheme {scheme!r}; choose one of normal, kaiming_uniform, uniform_fan_in, zero, siren"
    )
