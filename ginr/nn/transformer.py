"""The hypernetwork's pre-LN transformer as pure functions over a params pytree (fidelity 2.2).

Params (Linear weights in PyTorch's (out, in) layout, as the reference's ``nn.Linear`` state dicts)::

    {"blocks": {"0": {"ln1": {"weight", "bias"}, "attn": {"query", "key", "value", "proj": {"weight", "bias"}},
                      "ln2": {...}, "mlp": {"fc1": {...}, "fc2": {...}}}, ...}}

Block: ``x + Drop(Proj(MHA(LN1(x))))`` then ``x + Drop(FC2(GELU(FC1(LN2(x)))))``; no final LayerNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ginr import rules
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
    """Refuse a transformer config that breaks :func:`ginr.rules.transformer_problems`."""
    rules.refuse(rules.transformer_problems(config))


def init(config: TransformerConfig, generator: torch.Generator | None) -> dict:
    """Blocks in order; in each, the Linears key, query, value, proj, fc1, fc2 (fidelity 2.2, 10.1)."""
    validate(config)
    width, hidden = config.embed_dim, config.mlp_ratio * config.embed_dim
    blocks = {}
    for index in range(config.n_layer):
        attn = {name: linear_init(width, width, generator) for name in ("key", "query", "value", "proj")}
        mlp = {"fc1": linear_init(width, hidden, generator), "fc2": linear_init(hidden, width, generator)}
        blocks[str(index)] = {"ln1": layer_norm_init(width), "attn": attn, "ln2": layer_norm_init(width), "mlp": mlp}
    return {"blocks": blocks}


def attention(params: dict, config: TransformerConfig, x: torch.Tensor, training: bool, rows: slice) -> torch.Tensor:
    """Bidirectional multi-head attention (head h uses channels [h d, (h+1) d)), through SDPA, for the query tokens
    ``x[:, rows]`` (keys and values from every token): (B, len(rows), E)."""
    width = x.shape[-1]

    def split(t):
        return rearrange(t, "b l (h d) -> b h l d", h=config.n_head)

    # one matrix product for the three projections (the same function; one wide GEMM is faster on a GPU)
    names = ("query", "key", "value")
    weight = torch.cat([params[name]["weight"] for name in names])
    bias = torch.cat([params[name]["bias"] for name in names])
    q, k, v = F.linear(x, weight, bias).split(width, dim=-1)
    q = split(q[:, rows])
    out = F.scaled_dot_product_attention(q, split(k), split(v), dropout_p=config.attn_dropout if training else 0.0)
    return linear(params["proj"], rearrange(out, "b h l d -> b l (h d)"))


def gelu(config: TransformerConfig, x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x) if config.gelu == "exact" else x * torch.sigmoid(1.702 * x)


def block(params: dict, config: TransformerConfig, x: torch.Tensor, training: bool, rows: slice) -> torch.Tensor:
    """The block's output for the tokens ``x[:, rows]``; every token is attended to. Each output row depends only on
    its own input row and the keys and values, so the rows not asked for need no query, projection or MLP."""
    drop = config.resid_dropout if training else 0.0
    attended = attention(params["attn"], config, layer_norm(params["ln1"], x), training, rows)
    x = x[:, rows] + F.dropout(attended, drop, training)
    hidden = gelu(config, linear(params["mlp"]["fc1"], layer_norm(params["ln2"], x)))
    return x + F.dropout(linear(params["mlp"]["fc2"], hidden), drop, training)


def forward(
    params: dict, config: TransformerConfig, x: torch.Tensor, training: bool, keep_last: int | None = None
) -> torch.Tensor:
    """(B, L, embed_dim) -> (B, L, embed_dim); dropout only when ``training``.

    ``keep_last=n`` returns only the last ``n`` tokens, ``forward(...)[:, -n:]``: the last block then computes the
    attention queries, projection and MLP of those rows alone (the hypernetworks read only their weight tokens; the
    saving is measured in the README's "Benchmarks" section). The values are the same; in training, the last block's
    dropout masks are drawn for the kept rows only, so a seeded run draws different (equally distributed) masks than
    the full pass would.
    """
    if keep_last is not None and not 0 < keep_last <= x.shape[1]:
        raise ValueError(f"keep_last={keep_last} must be in 1..{x.shape[1]} (the number of tokens)")
    everything = slice(None)
    for index in range(config.n_layer):
        last = index == config.n_layer - 1
        rows = slice(-keep_last, None) if last and keep_last is not None else everything
        x = block(params["blocks"][str(index)], config, x, training, rows)
    return x
