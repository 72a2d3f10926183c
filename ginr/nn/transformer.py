"""The hypernetwork's pre-LN transformer as pure functions over a params pytree (SPEC 2.2).

Params (Linear weights in PyTorch's (out, in) layout, as the reference's ``nn.Linear`` state dicts)::

    {"blocks": {"0": {"ln1": {"weight", "bias"}, "attn": {"query", "key", "value", "proj": {"weight", "bias"}},
                      "ln2": {...}, "mlp": {"fc1": {...}, "fc2": {...}}}, ...}}

Block: ``x + Drop(Proj(MHA(LN1(x))))`` then ``x + Drop(FC2(GELU(FC1(LN2(x)))))``; no final LayerNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ginr.config import TransformerConfig
from ginr.nn.init import uniform


def linear_init(fan_in: int, fan_out: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """PyTorch's ``nn.Linear`` default: weight and bias U(+-1/sqrt(fan_in)), weight drawn first (quirk 2)."""
    bound = 1.0 / math.sqrt(fan_in)
    return {"weight": uniform((fan_out, fan_in), bound, generator), "bias": uniform((fan_out,), bound, generator)}


def layer_norm_init(width: int) -> dict[str, torch.Tensor]:
    """PyTorch's ``nn.LayerNorm`` default: weight 1, bias 0 (draws nothing)."""
    return {"weight": torch.ones(width), "bias": torch.zeros(width)}


def linear(params: dict, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, params["weight"], params["bias"])


def layer_norm(params: dict, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, params["weight"].shape, params["weight"], params["bias"], eps=1e-5)


def validate(config: TransformerConfig) -> None:
    if config.embed_dim % config.n_head:
        raise ValueError(
            f"--model.transformer.embed-dim={config.embed_dim} must be a multiple of "
            f"--model.transformer.n-head={config.n_head}"
        )
    for name in ("resid_dropout", "attn_dropout"):
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"--model.transformer.{name.replace('_', '-')} must be in [0, 1)")


def init(config: TransformerConfig, generator: torch.Generator | None) -> dict:
    """Blocks in order; in each, the Linears key, query, value, proj, fc1, fc2 (SPEC 2.2, 10.1)."""
    validate(config)
    width, hidden = config.embed_dim, config.mlp_ratio * config.embed_dim
    blocks = {}
    for index in range(config.n_layer):
        attn = {name: linear_init(width, width, generator) for name in ("key", "query", "value", "proj")}
        mlp = {"fc1": linear_init(width, hidden, generator), "fc2": linear_init(hidden, width, generator)}
        blocks[str(index)] = {"ln1": layer_norm_init(width), "attn": attn, "ln2": layer_norm_init(width), "mlp": mlp}
    return {"blocks": blocks}


def attention(params: dict, config: TransformerConfig, x: torch.Tensor, training: bool) -> torch.Tensor:
    """Bidirectional multi-head attention (head h uses channels [h d, (h+1) d)), through SDPA."""
    batch, length, width = x.shape
    heads = config.n_head

    def split(t):
        return t.view(batch, length, heads, width // heads).transpose(1, 2)

    # one matrix product for the three projections (the same function; one wide GEMM is faster on a GPU)
    names = ("query", "key", "value")
    weight = torch.cat([params[name]["weight"] for name in names])
    bias = torch.cat([params[name]["bias"] for name in names])
    q, k, v = (split(t) for t in F.linear(x, weight, bias).split(width, dim=-1))
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=config.attn_dropout if training else 0.0)
    return linear(params["proj"], out.transpose(1, 2).reshape(batch, length, width))


def gelu(config: TransformerConfig, x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x) if config.gelu == "exact" else x * torch.sigmoid(1.702 * x)


def block(params: dict, config: TransformerConfig, x: torch.Tensor, training: bool) -> torch.Tensor:
    drop = config.resid_dropout if training else 0.0
    x = x + F.dropout(attention(params["attn"], config, layer_norm(params["ln1"], x), training), drop, training)
    hidden = gelu(config, linear(params["mlp"]["fc1"], layer_norm(params["ln2"], x)))
    return x + F.dropout(linear(params["mlp"]["fc2"], hidden), drop, training)


def forward(params: dict, config: TransformerConfig, x: torch.Tensor, training: bool) -> torch.Tensor:
    """(B, L, embed_dim) -> (B, L, embed_dim); dropout only when ``training``."""
    for index in range(config.n_layer):
        x = block(params["blocks"][str(index)], config, x, training)
    return x
