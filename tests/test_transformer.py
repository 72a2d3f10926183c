"""The hypernetwork's functional pre-LN transformer (fidelity 2.2, quirks 2 and 10).

Checked against the explicit math of ``oracles.transformer`` (a per-head loop with an explicit softmax, residuals,
LayerNorm eps 1e-5, erf or sigmoid GELU, no final LayerNorm), against ``torch.nn.TransformerEncoderLayer`` with
``norm_first=True`` and the weights copied in, for its dropout placement, and for PyTorch's default Linear / LayerNorm
initialisation.
"""

from __future__ import annotations

import dataclasses
import math

import oracles
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ginr.config import TransformerConfig
from ginr.nn import transformer
from ginr.pytree import flatten, tree_map

# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------

SMALL = TransformerConfig(embed_dim=16, n_layer=2, n_head=4, mlp_ratio=4, resid_dropout=0.1)


def randomize(params: dict, seed: int, dtype=torch.float64) -> dict:
    """Non-default LayerNorm weights/biases too (so they are exercised), as leaves requiring grad."""
    g = torch.Generator().manual_seed(seed)
    return tree_map(lambda t: (t + 0.3 * torch.randn(t.shape, generator=g)).to(dtype).requires_grad_(), params)


def assert_same_gradients(out: torch.Tensor, expected: torch.Tensor, x: torch.Tensor, params: dict) -> None:
    """The gradients of a random projection of ``out`` and of ``expected`` agree, to the input and every weight."""
    weights = torch.randn_like(out)
    leaves = [x, *oracles.trainable(params).values()]
    grads = torch.autograd.grad((out * weights).sum(), leaves)
    expected_grads = torch.autograd.grad((expected * weights).sum(), leaves)
    for name, a, b in zip(["x", *oracles.trainable(params)], grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# Forward against explicit math
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gelu", ["exact", "sigmoid"])
@pytest.mark.parametrize("n_layer, n_head", [(1, 1), (2, 4), (3, 2)])
def test_forward_matches_explicit_math_and_gradients(gelu, n_layer, n_head):
    config = dataclasses.replace(SMALL, n_layer=n_layer, n_head=n_head, gelu=gelu)
    params = randomize(transformer.init(config, torch.Generator().manual_seed(0)), seed=1)
    x = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    out = transformer.forward(params, config, x, training=False)
    expected = oracles.transformer(params, config, x)
    assert out.shape == (3, 7, 16)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert_same_gradients(out, expected, x, params)


@pytest.mark.parametrize("n_layer, keep", [(1, 1), (2, 3), (3, 7)])
def test_keep_last_equals_the_slice_of_the_full_pass_with_gradients(n_layer, keep):
    """The hypernetworks' fast path: only the last ``keep`` tokens leave the stack, the last block computing queries,
    projection and MLP for those rows alone. Values and gradients (to the input and every weight) are the explicit
    math's, sliced."""
    config = dataclasses.replace(SMALL, n_layer=n_layer, resid_dropout=0.0)
    params = randomize(transformer.init(config, torch.Generator().manual_seed(0)), seed=1)
    x = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    for training in (False, True):
        out = transformer.forward(params, config, x, training=training, keep_last=keep)
        expected = oracles.transformer(params, config, x)[:, -keep:]
        assert out.shape == (3, keep, 16)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert_same_gradients(out, expected, x, params)


def test_keep_last_skips_the_work_of_the_dropped_rows():
    """Fewer FLOPs than the full pass: the last block's query rows, projection and MLP scale with the kept rows."""
    config = TransformerConfig(embed_dim=32, n_layer=2, n_head=4, mlp_ratio=4)
    params = tree_map(lambda t: t.detach(), transformer.init(config, torch.Generator().manual_seed(0)))
    x = torch.randn(2, 40, 32)

    def flops(keep):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # attention as counted matmuls
            transformer.forward(params, config, x, training=False, keep_last=keep)
        return counter.get_total_flops()

    full, kept = flops(None), flops(8)
    # multiply-adds per query row: proj E^2, MLP 8E^2, attention scores and mix 2 L E (the QKV GEMM runs on every row)
    batch, width, length, saved_rows = 2, 32, 40, 32
    saved = 2 * batch * saved_rows * (9 * width * width + 2 * length * width)
    assert full - kept == saved


@pytest.mark.parametrize("keep", [0, -1, 8])
def test_keep_last_out_of_range_is_refused(keep):
    params = transformer.init(SMALL, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=f"keep_last={keep} must be in 1..7"):
        transformer.forward(params, SMALL, torch.randn(2, 7, 16), training=False, keep_last=keep)


def test_gelu_variants_differ_and_match_formulas():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    exact = transformer.gelu(dataclasses.replace(SMALL, gelu="exact"), x)
    sigmoid = transformer.gelu(dataclasses.replace(SMALL, gelu="sigmoid"), x)
    torch.testing.assert_close(exact, oracles.gelu("exact", x), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(sigmoid, x * torch.sigmoid(1.702 * x), rtol=1e-14, atol=1e-14)
    assert (exact - sigmoid).abs().max() > 1e-3  # the tanh approximation is neither


def test_no_final_layer_norm():
    """With every sublayer branch zeroed (proj and fc2 weights/biases 0), the stack is the identity: no LayerNorm at
    the end rescales the residual stream."""
    config = dataclasses.replace(SMALL, n_layer=2)
    params = transformer.init(config, torch.Generator().manual_seed(0))
    for block in params["blocks"].values():
        for name in ("weight", "bias"):
            block["attn"]["proj"][name].zero_()
            block["mlp"]["fc2"][name].zero_()
    x = 5.0 + 3.0 * torch.randn(2, 4, 16)
    assert torch.equal(transformer.forward(params, config, x, training=False), x)


def test_heads_are_contiguous_channel_blocks():
    """Permuting heads (their q/k/v output channels together and the proj input channels) leaves the output unchanged,
    while permuting channels inside q only does not: each head owns a contiguous block [h d, (h+1) d)."""
    config = dataclasses.replace(SMALL, n_layer=1, n_head=4)
    params = randomize(transformer.init(config, torch.Generator().manual_seed(0)), seed=2)
    params = tree_map(lambda t: t.detach(), params)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    out = transformer.forward(params, config, x, training=False)
    d = 4
    head_perm = torch.cat([torch.arange(h * d, (h + 1) * d) for h in (2, 0, 3, 1)])
    attn = params["blocks"]["0"]["attn"]
    permuted = {
        name: {"weight": attn[name]["weight"][head_perm], "bias": attn[name]["bias"][head_perm]}
        for name in ("query", "key", "value")
    }
    permuted["proj"] = {"weight": attn["proj"]["weight"][:, head_perm], "bias": attn["proj"]["bias"]}
    swapped = {**params, "blocks": {"0": {**params["blocks"]["0"], "attn": permuted}}}
    torch.testing.assert_close(transformer.forward(swapped, config, x, training=False), out, rtol=1e-12, atol=1e-12)
    # mixing channels across heads (a shift by 2 within q and k) changes the output
    mix = torch.roll(torch.arange(16), 2)
    mixed_attn = {**attn, "query": {k: v[mix] for k, v in attn["query"].items()}}
    mixed_attn["key"] = {k: v[mix] for k, v in attn["key"].items()}
    mixed = {**params, "blocks": {"0": {**params["blocks"]["0"], "attn": mixed_attn}}}
    assert not torch.allclose(transformer.forward(mixed, config, x, training=False), out, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Against torch.nn.TransformerEncoderLayer (norm_first=True)
# ----------------------------------------------------------------------------------------------------------------------


def torch_layer(block: dict, width: int, n_head: int, ff: int) -> torch.nn.TransformerEncoderLayer:
    layer = torch.nn.TransformerEncoderLayer(
        width, n_head, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    ).double()
    attn = block["attn"]
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(
            torch.cat([attn["query"]["weight"], attn["key"]["weight"], attn["value"]["weight"]])
        )
        layer.self_attn.in_proj_bias.copy_(
            torch.cat([attn["query"]["bias"], attn["key"]["bias"], attn["value"]["bias"]])
        )
        layer.self_attn.out_proj.weight.copy_(attn["proj"]["weight"])
        layer.self_attn.out_proj.bias.copy_(attn["proj"]["bias"])
        layer.linear1.weight.copy_(block["mlp"]["fc1"]["weight"])
        layer.linear1.bias.copy_(block["mlp"]["fc1"]["bias"])
        layer.linear2.weight.copy_(block["mlp"]["fc2"]["weight"])
        layer.linear2.bias.copy_(block["mlp"]["fc2"]["bias"])
        for ours, theirs in (("ln1", layer.norm1), ("ln2", layer.norm2)):
            theirs.weight.copy_(block[ours]["weight"])
            theirs.bias.copy_(block[ours]["bias"])
    assert layer.norm1.eps == 1e-5
    return layer.eval()


@pytest.mark.parametrize("n_layer, n_head", [(1, 4), (3, 2)])
def test_matches_torch_transformer_encoder_layer(n_layer, n_head):
    config = TransformerConfig(embed_dim=24, n_layer=n_layer, n_head=n_head, mlp_ratio=4, gelu="exact")
    params = randomize(transformer.init(config, torch.Generator().manual_seed(3)), seed=4)
    params = tree_map(lambda t: t.detach(), params)
    layers = [torch_layer(params["blocks"][str(i)], 24, n_head, 96) for i in range(n_layer)]
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    expected = x
    with torch.no_grad():
        for layer in layers:
            expected = layer(expected)
    out = transformer.forward(params, config, x, training=False)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_matches_torch_layer_in_fp32_with_default_init():
    config = TransformerConfig(embed_dim=32, n_layer=1, n_head=4, mlp_ratio=4)
    params = transformer.init(config, torch.Generator().manual_seed(5))
    layer = torch_layer(tree_map(lambda t: t.double(), params["blocks"]["0"]), 32, 4, 128).float()
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        expected = layer(x)
    torch.testing.assert_close(transformer.forward(params, config, x, training=False), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Dropout (quirk 10)
# ----------------------------------------------------------------------------------------------------------------------


def test_eval_is_deterministic_and_equals_math_even_with_dropout_set():
    config = dataclasses.replace(SMALL, resid_dropout=0.5, attn_dropout=0.5)
    params = randomize(transformer.init(config, torch.Generator().manual_seed(0)), seed=1)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.manual_seed(0)
    a = transformer.forward(params, config, x, training=False)
    torch.manual_seed(1)
    b = transformer.forward(params, config, x, training=False)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, oracles.transformer(params, config, x), rtol=1e-12, atol=1e-12)


def test_training_dropout_is_random_and_seeded():
    config = dataclasses.replace(SMALL, resid_dropout=0.1)
    params = transformer.init(config, torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 16)
    first = transformer.forward(params, config, x, training=True)
    second = transformer.forward(params, config, x, training=True)
    assert not torch.equal(first, second)
    assert not torch.allclose(first, transformer.forward(params, config, x, training=False))
    torch.manual_seed(123)
    a = transformer.forward(params, config, x, training=True)
    torch.manual_seed(123)
    b = transformer.forward(params, config, x, training=True)
    torch.manual_seed(124)
    c = transformer.forward(params, config, x, training=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_training_without_dropout_equals_eval():
    config = dataclasses.replace(SMALL, resid_dropout=0.0, attn_dropout=0.0)
    params = randomize(transformer.init(config, torch.Generator().manual_seed(0)), seed=1)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(
        transformer.forward(params, config, x, training=True),
        oracles.transformer(params, config, x),
        rtol=1e-12,
        atol=1e-12,
    )


def test_default_dropouts():
    config = TransformerConfig()
    assert config.resid_dropout == 0.1
    assert config.attn_dropout == 0.0
    assert (config.embed_dim, config.n_layer, config.n_head, config.mlp_ratio, config.gelu) == (768, 6, 12, 4, "exact")


def _branch_only(config: TransformerConfig, keep: str, seed: int):
    """One block whose other branch is zeroed, so out - x is exactly the dropped-out kept branch."""
    params = randomize(transformer.init(config, torch.Generator().manual_seed(seed)), seed=seed + 1)
    params = tree_map(lambda t: t.detach(), params)
    block = params["blocks"]["0"]
    other = block["mlp"]["fc2"] if keep == "attn" else block["attn"]["proj"]
    for name in ("weight", "bias"):
        other[name].zero_()
    return params


@pytest.mark.parametrize("keep", ["attn", "mlp"])
def test_resid_dropout_sits_on_each_branch_before_the_residual_add(keep):
    """out - x is either 0 or branch / (1 - p), elementwise (inverted dropout on the branch output)."""
    p = 0.3
    config = TransformerConfig(embed_dim=16, n_layer=1, n_head=2, resid_dropout=p)
    params = _branch_only(config, keep, seed=7)
    x = torch.randn(4, 6, 16, dtype=torch.float64)
    branch = transformer.forward(params, config, x, training=False) - x
    assert (branch.abs() > 1e-8).all()
    torch.manual_seed(0)
    delta = transformer.forward(params, config, x, training=True) - x
    dropped = delta.abs() < 1e-12
    kept = ~dropped
    torch.testing.assert_close(delta[kept], branch[kept] / (1 - p), rtol=1e-10, atol=1e-12)
    fraction = dropped.double().mean().item()
    assert 0.2 < fraction < 0.4  # 384 draws of p = 0.3


def test_attn_dropout_only_acts_when_set():
    params = transformer.init(SMALL, torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 16)
    config = dataclasses.replace(SMALL, resid_dropout=0.0, attn_dropout=0.0)
    assert torch.equal(
        transformer.forward(params, config, x, training=True), transformer.forward(params, config, x, training=False)
    )
    config = dataclasses.replace(SMALL, resid_dropout=0.0, attn_dropout=0.5)
    torch.manual_seed(0)
    a = transformer.forward(params, config, x, training=True)
    assert not torch.allclose(a, transformer.forward(params, config, x, training=False))
    torch.manual_seed(0)
    assert torch.equal(a, transformer.forward(params, config, x, training=True))


# ----------------------------------------------------------------------------------------------------------------------
# Initialisation (quirk 2: PyTorch defaults) and validation
# ----------------------------------------------------------------------------------------------------------------------

INIT_CONFIG = TransformerConfig(embed_dim=96, n_layer=3, n_head=4, mlp_ratio=4)


@pytest.fixture(scope="module")
def init_params():
    return transformer.init(INIT_CONFIG, torch.Generator().manual_seed(0))


def test_init_structure_and_layout(init_params):
    width, hidden = 96, 384
    assert set(init_params) == {"blocks"}
    assert list(init_params["blocks"]) == ["0", "1", "2"]
    for block in init_params["blocks"].values():
        assert set(block) == {"ln1", "attn", "ln2", "mlp"}
        assert set(block["attn"]) == {"query", "key", "value", "proj"}
        for name in ("query", "key", "value", "proj"):
            assert block["attn"][name]["weight"].shape == (width, width)
            assert block["attn"][name]["bias"].shape == (width,)
        assert block["mlp"]["fc1"]["weight"].shape == (hidden, width)  # (out, in)
        assert block["mlp"]["fc1"]["bias"].shape == (hidden,)
        assert block["mlp"]["fc2"]["weight"].shape == (width, hidden)
        assert block["mlp"]["fc2"]["bias"].shape == (width,)
        for ln in ("ln1", "ln2"):
            assert torch.equal(block[ln]["weight"], torch.ones(width))
            assert torch.equal(block[ln]["bias"], torch.zeros(width))
    for t in flatten(init_params).values():
        assert t.dtype == torch.float32


def _check_uniform(values: torch.Tensor, bound: float):
    v = values.double().flatten()
    n = v.numel()
    assert v.abs().max() <= bound
    assert v.abs().max() > bound * (1 - 20.0 / n)  # reaches the bound
    assert abs(v.mean().item()) < 5 * bound / math.sqrt(3 * n)
    var = v.var().item()
    assert abs(var / (bound**2 / 3) - 1) < 5 * math.sqrt(0.8 / n)  # relative sd of the variance: sqrt(4/5 / n)


@pytest.mark.parametrize(
    "path, fan_in",
    [
        (("attn", "query"), 96),
        (("attn", "key"), 96),
        (("attn", "value"), 96),
        (("attn", "proj"), 96),
        (("mlp", "fc1"), 96),
        (("mlp", "fc2"), 384),
    ],
)
def test_init_linear_is_uniform_over_fan_in(init_params, path, fan_in):
    """nn.Linear's default: weight and bias U(+-1/sqrt(fan_in)); fc1's bias must use fan_in 96, not its 384 outputs."""
    bound = 1.0 / math.sqrt(fan_in)
    blocks = init_params["blocks"].values()
    weights = torch.cat([b[path[0]][path[1]]["weight"].flatten() for b in blocks])
    biases = torch.cat([b[path[0]][path[1]]["bias"].flatten() for b in blocks])
    _check_uniform(weights, bound)
    _check_uniform(biases, bound)


def test_init_draws_differ_between_linears_and_follow_the_generator(init_params):
    blocks = init_params["blocks"]
    q0, k0 = blocks["0"]["attn"]["query"]["weight"], blocks["0"]["attn"]["key"]["weight"]
    assert not torch.equal(q0, k0)
    assert not torch.equal(q0, blocks["1"]["attn"]["query"]["weight"])
    again = transformer.init(INIT_CONFIG, torch.Generator().manual_seed(0))
    other = transformer.init(INIT_CONFIG, torch.Generator().manual_seed(1))
    for name, t in flatten(init_params).items():
        assert torch.equal(t, flatten(again)[name])
    assert not torch.equal(q0, other["blocks"]["0"]["attn"]["query"]["weight"])


def test_linear_init_helper_bounds():
    params = transformer.linear_init(10, 2000, torch.Generator().manual_seed(0))
    assert params["weight"].shape == (2000, 10)
    _check_uniform(params["weight"], 1 / math.sqrt(10))
    _check_uniform(params["bias"], 1 / math.sqrt(10))


@pytest.mark.parametrize("embed_dim, n_head", [(16, 3), (768, 10), (10, 4)])
def test_validate_refuses_indivisible_heads(embed_dim, n_head):
    config = TransformerConfig(embed_dim=embed_dim, n_head=n_head, n_layer=1)
    with pytest.raises(ValueError, match="--model.transformer.n-head") as info:
        transformer.validate(config)
    assert "--model.transformer.embed-dim" in str(info.value)
    with pytest.raises(ValueError, match="--model.transformer.embed-dim"):
        transformer.init(config, None)


def test_validate_accepts_divisible_heads_and_refuses_bad_dropout():
    transformer.validate(TransformerConfig())
    transformer.validate(TransformerConfig(embed_dim=16, n_head=16))
    with pytest.raises(ValueError, match="--model.transformer.resid-dropout"):
        transformer.validate(TransformerConfig(resid_dropout=1.0))
    with pytest.raises(ValueError, match="--model.transformer.attn-dropout"):
        transformer.validate(TransformerConfig(attn_dropout=-0.1))
