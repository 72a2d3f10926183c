"""ipc-transinr and transinr (fidelity 2.1-2.3, 3.1): forward pass, gradients, structure and signal checks.

The forward pass and the gradients are compared with ``oracles.hypernet``, an independent naive implementation in the
reference's terms: patches by explicit loops, ``Linear + position``, an explicit transformer (per-head softmax loop),
the last ``G_total`` outputs, per-layer ``LayerNorm + Linear`` to ``A`` (B, fi, G), then ipc-transinr's
``W = normalize_columns(A U)`` or transinr's ``W = normalize_columns(W_base * tile(A))`` (column j uses group j mod G),
and a hyponet loop over ``[h, 1] @ [W'; b]`` with d-major cos-then-sin Fourier features. The training options are in
test_hypernet_training.py, the paper presets in test_hypernet_presets.py.
"""

from __future__ import annotations

import dataclasses
import math

import oracles
import pytest
import torch

from ginr.config import FourierConfig, HypernetINRConfig, HyponetConfig, TokenizerConfig, TransformerConfig
from ginr.coords import grid
from ginr.models.hypernet import HypernetINR
from ginr.pytree import flatten, tree_map

# ----------------------------------------------------------------------------------------------------------------------
# Tiny configs
# ----------------------------------------------------------------------------------------------------------------------

TINY_TRANSFORMER = TransformerConfig(embed_dim=16, n_layer=2, n_head=2, mlp_ratio=4, resid_dropout=0.1)
IMAGE_HYPONET = HyponetConfig(n_layer=3, hidden_dim=(8,), fourier=FourierConfig(sigma=4.0, dim=8))
AUDIO_HYPONET = HyponetConfig(
    n_layer=3, hidden_dim=(8,), input_dim=1, output_dim=1, output_bias=0.0, fourier=FourierConfig(sigma=16.0, dim=8)
)


def image_config(size: int = 8, pad: int = 0, **model) -> HypernetINRConfig:
    n = (size + 2 * pad) // 4
    fields = dict(
        hyponet=IMAGE_HYPONET,
        tokenizer=TokenizerConfig(type="image_patches", patch_size=4, padding=pad, n_tokens=n * n),
        transformer=TINY_TRANSFORMER,
        n_weight_tokens=(4,),
        modulated_layers=(1,),
        factorized=True,
    )
    return HypernetINRConfig(**{**fields, **model})


def audio_config(samples: int, **model) -> HypernetINRConfig:
    fields = dict(
        hyponet=AUDIO_HYPONET,
        tokenizer=TokenizerConfig(type="audio_patches", patch_size=8, padding=0, n_tokens=-(-samples // 8)),
        transformer=dataclasses.replace(TINY_TRANSFORMER, n_layer=1, gelu="sigmoid"),
        n_weight_tokens=(2,),
        modulated_layers=(1,),
        factorized=True,
    )
    return HypernetINRConfig(**{**fields, **model})


CASES = {
    "ipc-image": (image_config(), (8, 8)),
    "ipc-image-pad-layers0and2": (image_config(size=6, pad=1, n_weight_tokens=(3, 4), modulated_layers=(2, 0)), (6, 6)),
    "transinr-image": (
        image_config(
            hyponet=dataclasses.replace(IMAGE_HYPONET, n_layer=4, hidden_dim=(8, 12, 4)),
            modulated_layers=None,
            factorized=False,
        ),
        (8, 8),
    ),
    "ipc-audio-reflect": (audio_config(36), (36,)),
    "transinr-audio": (audio_config(40, n_weight_tokens=(4,), modulated_layers=None, factorized=False), (40,)),
}


def make(case: str, seed: int = 0, dtype=torch.float64):
    config, shape = CASES[case]
    model = HypernetINR(config)
    params = model.init(torch.Generator().manual_seed(seed))
    if dtype == torch.float64:
        params = oracles.cast(params, torch.float64)
    g = torch.Generator().manual_seed(seed + 100)
    signal = torch.rand(3, *shape, config.hyponet.output_dim, generator=g).to(dtype)
    if config.hyponet.input_dim == 1:
        signal = signal * 2 - 1
    return model, config, params, signal


def library_forward(model, params, signal, coords):
    enc = model.encode(params, signal, coords, training=False)
    return model.decode(params, enc.modulation, coords.flatten(0, -2) if coords.dim() > 2 else coords)


# ----------------------------------------------------------------------------------------------------------------------
# Forward and gradients against the naive model
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_gradients_match_naive_model(case):
    model, config, params, signal = make(case)
    shape = tuple(signal.shape[1:-1])
    coords = grid(shape).double()
    out = library_forward(model, params, signal, coords)
    flat_coords = coords.flatten(0, -2)
    expected = oracles.hypernet(params, config, signal, flat_coords)
    assert out.shape == (3, flat_coords.shape[0], config.hyponet.output_dim)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)

    named = oracles.trainable(params)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), list(named.values()))
    expected_grads = torch.autograd.grad((expected * weights).sum(), list(named.values()))
    for name, a, b in zip(named, grads, expected_grads):
        assert a.abs().max() > 0, name  # every trainable leaf is used
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=name)
    frozen = [name for name, t in flatten(params).items() if not t.requires_grad]
    assert frozen == ["hyponet.fourier.frequencies"]


@pytest.mark.parametrize("case", ["ipc-image", "transinr-image"])
def test_decode_with_per_instance_coords_matches_naive_model(case):
    model, config, params, signal = make(case, seed=3)
    g = torch.Generator().manual_seed(5)
    coords = torch.rand(3, 17, 2, generator=g, dtype=torch.float64) * 2 - 1  # (B, N, D), off the grid
    enc = model.encode(params, signal, grid((8, 8)), training=False)
    out = model.decode(params, enc.modulation, coords)
    torch.testing.assert_close(out, oracles.hypernet(params, config, signal, coords), rtol=1e-10, atol=1e-10)


def test_fp32_forward_matches_naive_model():
    model, config, params, signal = make("transinr-image", seed=1, dtype=torch.float32)
    coords = grid((8, 8))
    out = library_forward(model, params, signal, coords)
    expected = oracles.hypernet(
        oracles.cast(params, torch.float64), config, signal.double(), coords.flatten(0, -2).double()
    )
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)


def test_fourier_frequencies_are_geometric():
    _, config, params, _ = make("ipc-image")
    expected = torch.exp(torch.linspace(0, math.log(4.0), 4))
    torch.testing.assert_close(params["hyponet"]["fourier"]["frequencies"].float(), expected)


# ----------------------------------------------------------------------------------------------------------------------
# Structure: the modulated layers, weight tokens, composer
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["ipc-image", "ipc-image-pad-layers0and2", "ipc-audio-reflect"])
def test_ipc_modulated_layers_have_bias_but_no_base_weight(case):
    model, config, params, signal = make(case)
    modulated = {str(k) for k, *_ in oracles.hypernet_layers(config)}
    for name, layer in params["hyponet"]["layers"].items():
        assert "bias" in layer
        assert ("weight" in layer) == (name not in modulated), name
    out = library_forward(model, params, signal, grid(tuple(signal.shape[1:-1])).double())
    biases = [params["hyponet"]["layers"][name]["bias"] for name in sorted(modulated)]
    for name, grad in zip(sorted(modulated), torch.autograd.grad(out.square().sum(), biases)):
        assert grad.abs().min() > 0, name  # every entry of the shared bias row is trained
    assert set(params["factors"]["shared"]) == modulated
    for k, fi, fo, g in oracles.hypernet_layers(config):
        assert params["factors"]["shared"][str(k)].shape == (g, fo)
        assert params["heads"][str(k)]["linear"]["weight"].shape == (fi, config.transformer.embed_dim)


def test_transinr_keeps_every_base_weight_and_has_no_shared_factor():
    _, config, params, _ = make("transinr-image")
    assert "factors" not in params
    for k, fi, fo, _ in oracles.hypernet_layers(config):
        assert params["hyponet"]["layers"][str(k)]["weight"].shape == (fi, fo)
        assert params["hyponet"]["layers"][str(k)]["weight"].requires_grad


def test_token_slices_contiguous_in_layer_order():
    model, config, params, _ = make("ipc-image-pad-layers0and2")
    assert model.layers == (0, 2)
    assert model.groups == {"0": 4, "2": 3}
    assert model.token_slices == {"0": (0, 4), "2": (4, 7)}
    assert model.n_weight_tokens == 7 == params["weight_tokens"].shape[0]
    model, config, params, _ = make("transinr-image")
    assert list(model.token_slices) == ["0", "1", "2", "3"]
    assert [model.groups[str(k)] for k in range(4)] == [4, 4, 4, 3]  # the output layer clips 4 -> 3
    stop = 0
    for name, (a, b) in model.token_slices.items():
        assert a == stop and b - a == model.groups[name]
        stop = b
    assert stop == model.n_weight_tokens == 15


@pytest.mark.parametrize(
    "fields",
    [
        dict(n_weight_tokens=(3,), modulated_layers=None, factorized=False),  # 8 % 3
        dict(n_weight_tokens=(3,), modulated_layers=(1,), factorized=True),
        dict(n_weight_tokens=(4, 4, 2), modulated_layers=None, factorized=False),  # output fan-out 3 % 2
        dict(n_weight_tokens=(5,), modulated_layers=(0,), factorized=True),
    ],
)
def test_fan_out_not_divisible_by_tokens_raises(fields):
    with pytest.raises(ValueError, match="--model.n-weight-tokens"):
        HypernetINR(image_config(**fields))


def test_bad_weight_token_lists_raise():
    with pytest.raises(ValueError, match="--model.n-weight-tokens"):
        HypernetINR(image_config(n_weight_tokens=(4, 4), modulated_layers=None, factorized=False))  # 3 layers
    with pytest.raises(ValueError, match="--model.n-weight-tokens"):
        HypernetINR(image_config(n_weight_tokens=(0,)))


def test_transinr_group_token_drives_columns_j_mod_G():
    model, config, params, _ = make("transinr-image")
    params = tree_map(lambda t: t.detach(), params)
    for k, fi, fo, g_count in oracles.hypernet_layers(config):
        name = str(k)
        for g in range(g_count):
            factor = torch.zeros(fi, g_count, dtype=torch.float64)
            factor[:, g] = torch.randn(fi, dtype=torch.float64).abs() + 0.1
            factors = {
                str(j): torch.zeros(f, gg, dtype=torch.float64) for j, f, _, gg in oracles.hypernet_layers(config)
            }
            factors[name] = factor
            weight = model.modulated.compose(params, factors)[name]
            assert weight.shape == (fi, fo)
            nonzero = {j for j in range(fo) if weight[:, j].abs().max() > 0}
            assert nonzero == {j for j in range(fo) if j % g_count == g}, (name, g)
            base = params["hyponet"]["layers"][name]["weight"]
            for j in nonzero:
                torch.testing.assert_close(weight[:, j], base[:, j] * factor[:, g])


def test_transinr_composer_jacobian_structure():
    model, config, params, _ = make("transinr-image")
    params = tree_map(lambda t: t.detach(), params)
    k, fi, fo, g_count = oracles.hypernet_layers(config)[1]  # (8 -> 12) with 4 groups: 3 columns per group
    name = str(k)
    base = params["hyponet"]["layers"][name]["weight"]
    others = {str(j): torch.randn(f, gg, dtype=torch.float64) for j, f, _, gg in oracles.hypernet_layers(config)}

    def weight_of(factor):
        return model.modulated.compose(params, {**others, name: factor})[name]

    factor = torch.randn(fi, g_count, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(weight_of, factor)  # (fi, fo, fi, G)
    expected = torch.zeros(fi, fo, fi, g_count, dtype=torch.float64)
    for r in range(fi):
        for j in range(fo):
            expected[r, j, r, j % g_count] = base[r, j]
    torch.testing.assert_close(jac, expected, rtol=0, atol=0)


def test_ipc_composer_is_a_product_with_the_shared_factor():
    model, config, params, _ = make("ipc-image")
    params = tree_map(lambda t: t.detach(), params)
    factor = torch.randn(8, 4, dtype=torch.float64)
    weight = model.modulated.compose(params, {"1": factor})["1"]
    torch.testing.assert_close(weight, factor @ params["factors"]["shared"]["1"], rtol=1e-12, atol=1e-12)


def test_transinr_end_to_end_group_jacobian():
    """Through encode -> decode, the modulation of group g of the output layer only moves output channels j % G == g:
    with the output layer's G = 3 = C, channel c depends on factor column c alone."""
    model, config, params, signal = make("transinr-image")
    params = tree_map(lambda t: t.detach(), params)
    enc = model.encode(params, signal[:1], grid((8, 8)), training=False)
    modulation = {name: t.detach() for name, t in enc.modulation.items()}
    coords = grid((8, 8)).double().flatten(0, -2)[:5]

    def out_of(factor):
        return model.decode(params, {**modulation, "3": factor}, coords)

    jac = torch.autograd.functional.jacobian(out_of, modulation["3"])  # (1, 5, 3, 1, 4, 3)
    for c in range(3):
        for g in range(3):
            block = jac[0, :, c, 0, :, g]
            assert (block.abs().max() > 0) == (c == g), (c, g)


# ----------------------------------------------------------------------------------------------------------------------
# Dropout, signal checks
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["ipc-image", "transinr-audio"])
def test_dropout_only_in_training(case):
    model, config, params, signal = make(case, dtype=torch.float32)
    assert config.transformer.resid_dropout == 0.1
    coords = grid(tuple(signal.shape[1:-1]))
    a = model.encode(params, signal, coords, training=True).modulation
    b = model.encode(params, signal, coords, training=True).modulation
    assert any(not torch.equal(a[n], b[n]) for n in a)
    torch.manual_seed(0)
    c = model.encode(params, signal, coords, training=False).modulation
    torch.manual_seed(1)
    d = model.encode(params, signal, coords, training=False).modulation
    assert all(torch.equal(c[n], d[n]) for n in c)
    torch.manual_seed(7)
    e = model.encode(params, signal, coords, training=True).modulation
    torch.manual_seed(7)
    f = model.encode(params, signal, coords, training=True).modulation
    assert all(torch.equal(e[n], f[n]) for n in e)


def test_check_signal_accepts_matching_data():
    HypernetINR(image_config()).check_signal((8, 8), 3)
    HypernetINR(image_config(size=6, pad=1)).check_signal((6, 6), 3)
    HypernetINR(audio_config(36)).check_signal((36,), 1)


def test_check_signal_wrong_channels():
    with pytest.raises(ValueError, match="--model.hyponet.output-dim") as info:
        HypernetINR(image_config()).check_signal((8, 8), 1)
    assert "1 channel" in str(info.value)
    with pytest.raises(ValueError, match="--model.hyponet.output-dim"):
        HypernetINR(audio_config(36)).check_signal((36,), 3)


def test_check_signal_wrong_input_dim():
    with pytest.raises(ValueError, match="--model.hyponet.input-dim") as info:
        HypernetINR(image_config()).check_signal((64,), 3)
    assert "1-D" in str(info.value)
    with pytest.raises(ValueError, match="--model.hyponet.input-dim"):
        HypernetINR(audio_config(36)).check_signal((6, 6), 1)


def test_check_signal_token_count_mismatch_names_the_fix():
    model = HypernetINR(image_config())  # 4 tokens for 8x8
    with pytest.raises(ValueError, match="--model.tokenizer.n-tokens") as info:
        model.check_signal((12, 12), 3)
    assert "set --model.tokenizer.n-tokens 9" in str(info.value)
    with pytest.raises(ValueError, match="--model.tokenizer.n-tokens 6"):
        HypernetINR(audio_config(36)).check_signal((48,), 1)
    with pytest.raises(ValueError, match="--model.tokenizer.patch-size"):
        model.check_signal((10, 10), 3)  # patches do not tile


def test_encode_refuses_mismatched_signals_and_inner_steps():
    model, config, params, signal = make("ipc-image", dtype=torch.float32)
    coords = grid((8, 8))
    with pytest.raises(ValueError, match="--model.tokenizer.n-tokens 9"):
        model.encode(params, torch.rand(1, 12, 12, 3), grid((12, 12)), training=False)
    with pytest.raises(ValueError, match="n_steps"):
        model.encode(params, signal, coords, training=False, n_steps=1)
    # n_steps None or 0 is one pass
    a = model.encode(params, signal, coords, training=False, n_steps=0).modulation["1"]
    b = model.encode(params, signal, coords, training=False).modulation["1"]
    assert torch.equal(a, b)
    assert a.shape == (3, 8, 4)
