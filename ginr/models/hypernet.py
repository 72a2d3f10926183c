"""ipc-transinr and transinr: a transformer hypernetwork predicts the instance factors in one forward pass
(fidelity 2.1-2.3, 3.1), for images, audio and, with the ``nerf_views`` tokenizer, NeRFs from support views
(fidelity 2.5).

Params::

    {"tokens": {"linear": {"weight", "bias"}, "position": (L, E)},   # latent mapping: Linear(tokens) + pos_emb
     "transformer": {...},                                             # ginr.nn.transformer
     "hyponet": {...},                                                 # ipc-transinr: modulated layers have no base weight
     "weight_tokens": (G_total, E),                                    # appended after the data tokens
     "heads": {"1": {"norm": {...}, "linear": {...}}},                 # LayerNorm + Linear(E, fi) per modulated layer
     "factors": {"shared": {"1": U (G, fo)}}}                          # ipc-transinr only

The transformer reads ``[data tokens ; weight tokens]``; the last ``G_total`` outputs, split per modulated layer in
layer order, go through that layer's head to give ``A`` (B, fi, G). ipc-transinr composes ``W = A U``;
transinr ``W = W_base * tile(A)`` (see :mod:`ginr.models.modulated`).
"""

from __future__ import annotations

import math

import torch

from ginr import rules
from ginr.config import HypernetINRConfig
from ginr.models.base import Encoding
from ginr.models.modulated import ModulatedHyponet
from ginr.nn import hyponet, tokenizers, transformer
from ginr.pytree import tree_map


class HypernetINR:
    """ipc-transinr (``factorized=True``) and transinr (``factorized=False``, every layer modulated)."""

    def __init__(self, config: HypernetINRConfig):
        rules.check_model(config)
        self.config = config
        n_layer = config.hyponet.n_layer
        layers = tuple(range(n_layer)) if config.modulated_layers is None else tuple(sorted(config.modulated_layers))
        self.modulated = ModulatedHyponet(
            config.hyponet, layers, "factorized" if config.factorized else "tiled", config.vmap_chunk_size
        )
        fan_outs = [fan_out for _, fan_out in hyponet.layer_shapes(config.hyponet)]
        tokens = rules.layer_values(config.n_weight_tokens, config.modulated_layers, fan_outs)
        self.groups: dict[str, int] = {}
        self.token_slices: dict[str, tuple[int, int]] = {}
        start = 0
        for k, groups in tokens.items():  # token ranges are contiguous in layer order (fidelity 2.1)
            self.groups[str(k)] = groups
            self.token_slices[str(k)] = (start, start + groups)
            start += groups
        self.n_weight_tokens = start

    @property
    def layers(self) -> tuple[int, ...]:
        return self.modulated.layers

    def check_signal(self, shape: tuple[int, ...], channels: int) -> None:
        """Refuse data the model cannot read: wrong rank or channels, patches that do not tile, a token count that
        differs from the positional embedding's (:func:`ginr.rules.check_signal`)."""
        rules.check_signal(self.config, shape, channels)

    # ---- params -------------------------------------------------------------------------------------------------

    def init(self, generator: torch.Generator | None) -> dict:
        """Fidelity 10.1 order: positional embedding N(0, 1), latent Linear, transformer, hyponet, weight tokens
        N(0, 1), then per modulated layer the shared factor randn / sqrt(G fi) (ipc-transinr), LayerNorm and
        Linear(E, fi)."""
        config = self.config
        width = config.transformer.embed_dim
        channels = config.hyponet.output_dim
        params = {
            "tokens": {
                "position": torch.randn(config.tokenizer.n_tokens, width, generator=generator),
                "linear": transformer.linear_init(tokenizers.token_dim(config.tokenizer, channels), width, generator),
            },
            "transformer": transformer.init(config.transformer, generator),
        }
        hyponet_params = hyponet.init(config.hyponet, generator, weightless_layers=self.modulated.weightless_layers)
        params["weight_tokens"] = torch.randn(self.n_weight_tokens, width, generator=generator)
        shapes = hyponet.layer_shapes(config.hyponet)
        heads, shared = {}, {}
        for k in self.layers:
            name = str(k)
            fan_in, fan_out = shapes[k]
            if config.factorized:
                groups = self.groups[name]
                shared[name] = torch.randn(groups, fan_out, generator=generator) / math.sqrt(groups * fan_in)
            heads[name] = {
                "norm": transformer.layer_norm_init(width),
                "linear": transformer.linear_init(width, fan_in, generator),
            }
        params["heads"] = heads
        if config.factorized:
            params["factors"] = {"shared": shared}
        params = tree_map(torch.Tensor.requires_grad_, params)
        return {**params, "hyponet": hyponet_params}  # the hyponet marks its own frozen frequencies

    # ---- the batch ----------------------------------------------------------------------------------------------

    def encode(
        self,
        params: dict,
        signal: torch.Tensor | dict,
        coords: torch.Tensor | None,
        *,
        training: bool,
        n_steps: int | None = None,
        keep_trajectory: bool = False,
    ) -> Encoding:
        """One transformer pass over ``signal`` (B, *S, C), or over NeRF support views (a dict, see
        :mod:`ginr.nn.tokenizers`): the factors ``A`` (B, fi, G) of every modulated layer.

        Dropout is active only when ``training``. ``coords`` is unused (the tokens carry the positions).
        """
        if n_steps:
            raise ValueError("hypernetwork models predict their modulation in one pass; n_steps must be None or 0")
        config = self.config
        self.check_signal(*tokenizers.layout(signal))
        tokens = tokenizers.tokenize(config.tokenizer, signal)
        x = transformer.linear(params["tokens"]["linear"], tokens) + params["tokens"]["position"]
        weight_tokens = params["weight_tokens"].expand(x.shape[0], -1, -1)
        sequence = torch.cat([x, weight_tokens], 1)
        out = transformer.forward(params["transformer"], config.transformer, sequence, training, self.n_weight_tokens)
        factors = {}
        for name, (start, stop) in self.token_slices.items():
            head = params["heads"][name]
            factors[name] = transformer.linear(head["linear"], transformer.layer_norm(head["norm"], out[:, start:stop]))
            factors[name] = factors[name].transpose(1, 2)
        return Encoding(modulation=factors)

    def decode(self, params: dict, modulation: dict, coords: torch.Tensor) -> torch.Tensor:
        """Values (B, N, C) at ``coords`` (N, D) shared by the batch or (B, N, D) (see :class:`ModulatedHyponet`); a
        NeRF decodes its points along rays (B, N, 3) to raw (B, N, 4) for :func:`ginr.render.composite`."""
        return self.modulated.decode(params, modulation, coords)
