"""The coordinate MLP (hyponet) as pure functions over a params pytree (fidelity 1).

One hyponet serves images, audio and NeRF. Params::

    {"fourier": {"frequencies": (F,) or (D, dim)},          # frozen unless fourier.trainable
     "layers": {"0": {"weight": (fi, fo), "bias": (fo,)}, ...}}

Weights are stored input-major, ``y = x @ W + b``. A layer named in ``weightless_layers`` at init has no base weight:
its weight always comes from the instance pattern composer (the reference's ``ignore_base_param``), so the rows the
reference keeps but never uses (fidelity 1.5, quirk 21) are not allocated.

Functions take coordinates of any leading shape ``(..., D)``; per-instance weights are handled by ``torch.func.vmap``
in the models. The forward pass splits in two so that a batch whose instances share coordinates computes the
unmodulated prefix (Fourier features and the layers before the first modulated one) once:
``forward(p, c, x, w) == forward_suffix(p, c, forward_prefix(p, c, x, k), w, k)`` for any ``k`` up to the first
modulated layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F

from ginr import rules
from ginr.config import HyponetConfig
from ginr.nn import fourier
from ginr.nn.init import init_block

Weights = Mapping[str, torch.Tensor]  # layer name -> effective (fi, fo) weight for one instance


def layer_shapes(config: HyponetConfig) -> list[tuple[int, int]]:
    """``(fan_in, fan_out)`` of each layer; the first fan_in is the Fourier feature width (2 * fourier.dim). Refuses
    a config that breaks :func:`ginr.rules.hyponet_problems`."""
    rules.check_hyponet(config)
    hidden = config.hidden_dims()
    widths = [fourier.feature_dim(config.fourier, config.input_dim), *hidden, config.output_dim]
    return list(zip(widths[:-1], widths[1:]))


def init(config: HyponetConfig, generator: torch.Generator | None, weightless_layers: Iterable[int] = ()) -> dict:
    """Initial params (fidelity 1.3): Fourier frequencies first, then per layer the weight, then the bias.

    Trainable leaves require grad; the frequencies only when ``fourier.trainable`` (quirk 3).
    """
    weightless = set(weightless_layers)
    params: dict = {}
    if config.fourier.enabled:
        frequencies = fourier.init_frequencies(config.fourier, config.input_dim, generator)
        params["fourier"] = {"frequencies": frequencies.requires_grad_(config.fourier.trainable)}
    layers = {}
    for index, (fan_in, fan_out) in enumerate(layer_shapes(config)):
        block = dict(first_layer=index == 0, siren_w0=config.siren_w0)
        layer = {}
        if index not in weightless:
            layer["weight"] = init_block(config.weight_init, fan_in, fan_out, generator, **block).requires_grad_()
        if config.use_bias:
            layer["bias"] = init_block(config.bias_init, 1, fan_out, generator, **block).squeeze(0).requires_grad_()
        layers[str(index)] = layer
    params["layers"] = layers
    return params


def activation(config: HyponetConfig, x: torch.Tensor) -> torch.Tensor:
    """The hidden activation: relu, siren's sin(w0 x), or silu."""
    if config.activation == "relu":
        return torch.relu(x)
    if config.activation == "siren":
        return torch.sin(config.siren_w0 * x)
    if config.activation == "silu":
        return F.silu(x)
    raise ValueError(f"unknown hyponet.activation {config.activation!r}; choose relu, siren or silu")


def linear(layer: Mapping[str, torch.Tensor], x: torch.Tensor, weight: torch.Tensor, normalize: bool) -> torch.Tensor:
    """``x @ W' + b`` with ``W' = W / max(||W[:, j]||, 1e-12)`` per output column j when ``normalize`` (fidelity 1.5).

    The bias is never normalised.
    """
    if normalize:
        weight = F.normalize(weight, dim=-2)
    out = x @ weight
    if "bias" in layer:
        out = out + layer["bias"]
    return out


def embed(params: Mapping, config: HyponetConfig, coords: torch.Tensor) -> torch.Tensor:
    """The first layer's input: Fourier features of ``coords`` (..., D), or the coordinates themselves."""
    if config.fourier.enabled:
        return fourier.fourier_features(coords, params["fourier"]["frequencies"], config.fourier)
    return coords


def run_layers(
    params: Mapping, config: HyponetConfig, hidden: torch.Tensor, weights: Weights, start: int, stop: int
) -> torch.Tensor:
    """Layers ``start .. stop-1``; ``weights[name]`` replaces a layer's base weight; every layer but the last is
    followed by the activation."""
    last = config.n_layer - 1
    for index in range(start, stop):
        name = str(index)
        layer = params["layers"][name]
        weight = weights[name] if name in weights else layer.get("weight")
        if weight is None:
            raise KeyError(f"hyponet layer {name} has no base weight, so it needs a modulated weight")
        hidden = linear(layer, hidden, weight, config.normalize_weight)
        if index != last:
            hidden = activation(config, hidden)
    return hidden


def forward_prefix(params: Mapping, config: HyponetConfig, coords: torch.Tensor, stop: int) -> torch.Tensor:
    """Fourier features and the unmodulated layers ``0 .. stop-1`` (shared by instances that share coordinates)."""
    return run_layers(params, config, embed(params, config, coords), {}, 0, stop)


def forward_suffix(
    params: Mapping, config: HyponetConfig, hidden: torch.Tensor, weights: Weights, start: int
) -> torch.Tensor:
    """Layers ``start ..`` to the output, plus ``output_bias``."""
    return run_layers(params, config, hidden, weights, start, config.n_layer) + config.output_bias


def forward(
    params: Mapping, config: HyponetConfig, coords: torch.Tensor, weights: Weights | None = None
) -> torch.Tensor:
    """Values at ``coords`` (..., D) -> (..., output_dim) with the given per-layer weights (fidelity 1.5)."""
    return forward_suffix(params, config, embed(params, config, coords), weights or {}, 0)
