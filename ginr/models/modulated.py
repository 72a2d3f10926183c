"""The modulated hyponet: the shared coordinate MLP whose modulated layers take per-instance weights, composed from
each instance's factor, and the batched decode every model shares (fidelity 1.5, 2.1, 2.4, 3.1, 3.3).

The paper's instance pattern composer is the per-instance factor ``V_i`` of an early layer's weight
``W_i = V_i U``; the shared factor ``U`` and the other layers are the composition rules common to every instance.
That is the ``factorized`` mode of :meth:`ModulatedHyponet.compose`; the model that makes ``V_i`` (a few inner
steps, or a transformer) lives in :mod:`ginr.models.meta` and :mod:`ginr.models.hypernet`. The other two modes are
the paper's baselines. Three modes, one per model family:

- ``factorized`` (ipc-meta, ipc-transinr): ``W_i = F_i U`` with the instance factor ``F_i`` (fi, r) and the shared
  factor ``U`` (r, fo) at ``params["factors"]["shared"][layer]``; the base weight is ignored (not even allocated).
- ``full`` (learned-init): ``W_i = F_i`` (fi, fo); the base weight is ignored.
- ``tiled`` (transinr): ``W_i = W * tile(F_i)``, the instance factor (fi, G) repeated ``fo / G`` times along the
  output axis (column j uses group ``j mod G``), modulating the shared base weight elementwise.

The hyponet then normalises every weight's columns as usual. Decoding is written for one instance and lifted over the
batch with ``torch.func.vmap``; when the batch shares its coordinates, the unmodulated prefix (Fourier features and
the layers before the first modulated one) is computed once, outside the vmap.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

import torch
from torch.func import vmap

from ginr.config import HyponetConfig
from ginr.nn import hyponet

Mode = Literal["factorized", "full", "tiled"]


@dataclasses.dataclass(frozen=True)
class ModulatedHyponet:
    """The hyponet of ``hyponet`` with per-instance weights on ``layers`` (distinct, sorted; the model configs'
    rules check them, :func:`ginr.rules.model_problems`), composed in ``mode`` from each instance's factors and
    decoded at most ``chunk_size`` instances at once (None: the whole batch)."""

    hyponet: HyponetConfig
    layers: tuple[int, ...]
    mode: Mode
    chunk_size: int | None = None

    def __post_init__(self):
        if self.mode not in get_args(Mode):
            raise ValueError(f"ModulatedHyponet mode {self.mode!r}: choose one of {get_args(Mode)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self.layers)

    @property
    def weightless_layers(self) -> tuple[int, ...]:
        """Layers whose base weight the composed weight replaces (the hyponet allocates none for them)."""
        return () if self.mode == "tiled" else self.layers

    @property
    def prefix_stop(self) -> int:
        return min(self.layers)

    def compose(self, params: dict, factors: dict) -> dict:
        """One instance's per-layer weights from its factors."""
        if self.mode == "full":
            return dict(factors)
        if self.mode == "factorized":
            shared = params["factors"]["shared"]
            return {name: factors[name] @ shared[name] for name in self.names}
        layers = params["hyponet"]["layers"]
        weights = {}
        for name in self.names:
            base = layers[name]["weight"]
            weights[name] = base * factors[name].repeat(1, base.shape[1] // factors[name].shape[1])
        return weights

    def prefix(self, params: dict, coords: torch.Tensor) -> torch.Tensor:
        """Fourier features and the unmodulated layers before the first modulated one."""
        return hyponet.forward_prefix(params["hyponet"], self.hyponet, coords, self.prefix_stop)

    def decode_hidden(self, params: dict, factors: dict, hidden: torch.Tensor) -> torch.Tensor:
        """One instance's output from the prefix output ``hidden`` (N, fi)."""
        weights = self.compose(params, factors)
        return hyponet.forward_suffix(params["hyponet"], self.hyponet, hidden, weights, self.prefix_stop)

    def decode(self, params: dict, modulation: dict, coords: torch.Tensor) -> torch.Tensor:
        """Values (B, N, C) at ``coords`` (N, D) shared by the batch (prefix computed once) or (B, N, D)."""
        if coords.dim() == 2:
            hidden = self.prefix(params, coords)
            return vmap(lambda f: self.decode_hidden(params, f, hidden), chunk_size=self.chunk_size)(modulation)
        return vmap(lambda f, c: self.decode_hidden(params, f, self.prefix(params, c)), chunk_size=self.chunk_size)(
            modulation, coords
        )
