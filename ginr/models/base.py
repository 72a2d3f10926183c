"""The interface every generalizable INR in ginr speaks (DESIGN.md).

A model object holds only its static config; all of its methods are pure functions of a params pytree:

- ``init(generator) -> params``
- ``encode(params, signal, coords, training=...) -> Encoding``: what is specific to each instance of a batch.
- ``decode(params, modulation, coords) -> values``: the shared coordinate MLP, modulated per instance.

Shapes: ``signal`` is channels-last ``(B, *S, C)`` and ``coords`` its pixel-centre grid ``(*S, D)``. ``decode``
works on flat points: ``coords`` ``(N, D)`` shared by the batch, or ``(B, N, D)`` per instance; it returns
``(B, N, C)``. A modulation is a pytree whose leaves carry the batch dimension first.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch


@dataclasses.dataclass
class Encoding:
    """The result of ``encode``: the per-instance modulation and what the encoder measured on the way."""

    modulation: dict
    """Per-instance pytree, leaves (B, ...)."""
    inner_mse: torch.Tensor | None = None
    """(B, T): each instance's MSE before each of the T inner steps (meta-learned models only)."""
    trajectory: list[dict] | None = None
    """Modulations before each inner step and after the last one (T + 1 pytrees), when asked for."""


class Model(Protocol):
    config: object

    def init(self, generator: torch.Generator | None) -> dict: ...

    def check_signal(self, shape: tuple[int, ...], channels: int) -> None:
        """Raise ValueError (naming the flag) if signals of spatial ``shape`` and ``channels`` cannot be modelled."""

    def encode(
        self,
        params: dict,
        signal: torch.Tensor,
        coords: torch.Tensor,
        *,
        training: bool,
        n_steps: int | None = None,
        keep_trajectory: bool = False,
    ) -> Encoding:
        """``n_steps``: gradient steps on the modulation (the inner loop of meta models; None: the config's).
        ``keep_trajectory``: also return the modulation before each step."""

    def decode(self, params: dict, modulation: dict, coords: torch.Tensor) -> torch.Tensor: ...
