"""How a per-instance factor becomes the weights of the modulated hyponet layers, and the batched decode every model
shares (SPEC 1.5, 2.1, 2.4, 3.1, 3.3).

Three modes, one per model family:

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


def layer_values(
    values: tuple[int, ...], given: tuple[int, ...] | None, fan_outs: list[int], flag: str
) -> dict[int, int]:
    """``flag``'s value (a rank or a token count) for each modulated layer, in layer order: one value for every layer,
    clipped to each layer's fan-out (SPEC 2.1, 2.4), or one per layer, paired with the layers in the order
    ``--model.modulated-layers`` names them (``given``; None: every layer, in order) and each within 1..its fan-out.
    The reference lists one value per hyponet layer instead; with its one modulated layer (the paper's presets) the
    two agree."""
    layers = tuple(range(len(fan_outs))) if given is None else tuple(given)
    if len(values) not in (1, len(layers)):
        raise ValueError(f"{flag}={values}: give 1 value or one per modulated layer ({len(layers)})")
    chosen = {}
    for i, k in enumerate(layers):
        value = values[0] if len(values) == 1 else values[i]
        if value < 1 or (len(values) > 1 and value > fan_outs[k]):
            raise ValueError(f"{flag}: {value} for layer {k} must be in 1..{fan_outs[k]} (its fan-out)")
        chosen[k] = min(value, fan_outs[k])
    return dict(sorted(chosen.items()))


@dataclasses.dataclass(frozen=True)
class Composer:
    hyponet: HyponetConfig
    layers: tuple[int, ...]
    mode: Mode
    chunk_size: int | None = None

    def __post_init__(self):
        if self.mode not in get_args(Mode):
            raise ValueError(f"Composer mode {self.mode!r}: choose one of {get_args(Mode)}")
        n_layer = self.hyponet.n_layer
        if (
            not self.layers
            or any(not 0 <= k < n_layer for k in self.layers)
            or len(set(self.layers)) != len(self.layers)
        ):
            raise ValueError(f"--model.modulated-layers={self.layers} must name distinct layers in 0..{n_layer - 1}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"--model.vmap-chunk-size={self.chunk_size} must be >= 1 or None")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self.layers)

    @property
    def weightless_layers(self) -> tuple[int, ...]:
        """Layers whose base weight the composer ignores (the hyponet allocates none for them)."""
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
