"""ipc-transinr and transinr (SPEC 2.1-2.3, 3.1), their training options (SPEC 4.2, 4.3) and their presets (SPEC 9).

The forward pass and the gradients are compared with an independent naive implementation written here in the
reference's terms: patches by explicit loops, ``Linear + position``, an explicit transformer (per-head softmax loop),
the last ``G_total`` outputs, per-layer ``LayerNorm + Linear`` to ``A`` (B, fi, G), then ipc-transinr's
``W = normalize_cols(A U)`` or transinr's ``W = normalize_cols(W_base * tile(A))`` (column j uses group j mod G),
and a hyponet loop over ``[h, 1] @ [W'; b]`` with d-major cos-then-sin Fourier features.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ginr import presets
from ginr.config import FourierConfig, HypernetINRConfig, HyponetConfig, TokenizerConfig, TransformerConfig
from ginr.coords import grid
from ginr.data import signal_shape
from ginr.models import build
from ginr.models.hypernet import HypernetINR
from ginr.nn import tokenizers
from ginr.pytree import flatten, leaves, tree_map
from ginr.train import objective

# ----------------------------------------------------------------------------------------------------------------------
# Naive reference model
# ----------------------------------------------------------------------------------------------------------------------


def naive_image_tokens(signal: torch.Tensor, p: int, pad: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, L, C p p): zero padding; channel-major, kernel row, kernel column; row-major patches."""
    batch, height, width, channels = signal.shape
    data = signal.tolist()
    out = []
    for b in range(batch):
        tokens = []
        for pr in range((height + 2 * pad) // p):
            for pc in range((width + 2 * pad) // p):
                feature = []
                for c in range(channels):
                    for kr in range(p):
                        for kc in range(p):
                            r, s = pr * p + kr - pad, pc * p + kc - pad
                            feature.append(data[b][r][s][c] if 0 <= r < height and 0 <= s < width else 0.0)
                tokens.append(feature)
        out.append(tokens)
    return torch.tensor(out, dtype=signal.dtype)


def naive_audio_tokens(signal: torch.Tensor, p: int) -> torch.Tensor:
    """(B, T, 1) -> (B, ceil(T / p), p), right reflect padding (x[T-2], x[T-3], ...)."""
    out = []
    for clip in signal[..., 0].tolist():
        t = len(clip)
        padded = clip + [clip[t - 2 - i] for i in range((-t) % p)]
        out.append([padded[i : i + p] for i in range(0, len(padded), p)])
    return torch.tensor(out, dtype=signal.dtype)


def naive_linear(p: dict, x: torch.Tensor) -> torch.Tensor:
    return x @ p["weight"].T + p["bias"]


def naive_layer_norm(p: dict, x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * p["weight"] + p["bias"]


def naive_gelu(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "exact":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return x / (1.0 + torch.exp(-1.702 * x))


def naive_transformer(params: dict, config: TransformerConfig, x: torch.Tensor) -> torch.Tensor:
    d = config.embed_dim // config.n_head
    for index in range(config.n_layer):
        blk = params["blocks"][str(index)]
        h = naive_layer_norm(blk["ln1"], x)
        q, k, v = (naive_linear(blk["attn"][name], h) for name in ("query", "key", "value"))
        heads = []
        for head in range(config.n_head):
            cols = slice(head * d, (head + 1) * d)
            scores = q[..., cols] @ k[..., cols].transpose(-1, -2) / math.sqrt(d)
            e = torch.exp(scores - scores.max(-1, keepdim=True).values)
            heads.append((e / e.sum(-1, keepdim=True)) @ v[..., cols])
        x = x + naive_linear(blk["attn"]["proj"], torch.cat(heads, -1))
        h = naive_gelu(config.gelu, naive_linear(blk["mlp"]["fc1"], naive_layer_norm(blk["ln2"], x)))
        x = x + naive_linear(blk["mlp"]["fc2"], h)
    return x


def layer_table(config: HypernetINRConfig) -> list[tuple[int, int, int, int]]:
    """(layer, fi, fo, G) of each modulated layer, in layer order."""
    hcfg = config.hyponet
    hidden = list(hcfg.hidden_dim) * (hcfg.n_layer - 1) if len(hcfg.hidden_dim) == 1 else list(hcfg.hidden_dim)
    widths = [2 * hcfg.fourier.dim, *hidden, hcfg.output_dim]
    named = range(hcfg.n_layer) if config.modulated_layers is None else config.modulated_layers
    given = config.n_weight_tokens
    wanted = {k: given[0] if len(given) == 1 else given[i] for i, k in enumerate(named)}  # in the order named
    return [(k, widths[k], widths[k + 1], min(wanted[k], widths[k + 1])) for k in sorted(named)]


def naive_fourier(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """x (N, D) -> [cos z, sin z], z[:, d F + k] = pi x[:, d] f[k]."""
    cols = []
    for d in range(x.shape[1]):
        for k in range(freqs.shape[0]):
            cols.append(x[:, d] * freqs[k] * math.pi)
    z = torch.stack(cols, 1)
    return torch.cat([torch.cos(z), torch.sin(z)], 1)


def naive_normalize_cols(w: torch.Tensor) -> torch.Tensor:
    cols = [w[:, j] / torch.clamp(torch.sqrt((w[:, j] ** 2).sum()), min=1e-12) for j in range(w.shape[1])]
    return torch.stack(cols, 1)


def naive_hyponet(hp: dict, hcfg: HyponetConfig, coords: torch.Tensor, weights: dict[int, torch.Tensor]):
    """One instance: coords (N, D) -> (N, C); ``weights[k]`` is layer k's (un-normalised) instance weight."""
    h = naive_fourier(coords, hp["fourier"]["frequencies"])
    for k in range(hcfg.n_layer):
        layer = hp["layers"][str(k)]
        w = naive_normalize_cols(weights[k] if k in weights else layer["weight"])
        matrix = torch.cat([w, layer["bias"][None, :]], 0)  # (fi + 1, fo): weight rows, then the bias row
        h = torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype)], 1) @ matrix
        if k < hcfg.n_layer - 1:
            h = torch.where(h > 0, h, torch.zeros_like(h))
    return h + hcfg.output_bias


def naive_factors(params: dict, config: HypernetINRConfig, signal: torch.Tensor) -> dict[int, torch.Tensor]:
    """A (B, fi, G) per modulated layer."""
    tok = config.tokenizer
    if tok.type == "image_patches":
        tokens = naive_image_tokens(signal, tok.patch_size, tok.padding)
    else:
        tokens = naive_audio_tokens(signal, tok.patch_size)
    x = naive_linear(params["tokens"]["linear"], tokens) + params["tokens"]["position"]
    table = layer_table(config)
    total = sum(g for *_, g in table)
    weight_tokens = params["weight_tokens"]
    assert weight_tokens.shape[0] == total
    seq = torch.cat([x, weight_tokens.unsqueeze(0).expand(x.shape[0], -1, -1)], 1)  # data tokens first
    out = naive_transformer(params["transformer"], config.transformer, seq)[:, -total:]
    factors, start = {}, 0
    for k, _fi, _fo, g in table:
        head = params["heads"][str(k)]
        factors[k] = naive_linear(head["linear"], naive_layer_norm(head["norm"], out[:, start : start + g]))
        factors[k] = factors[k].transpose(1, 2)
        start += g
    return factors


def naive_weights(params: dict, config: HypernetINRConfig, factors: dict, b: int) -> dict[int, torch.Tensor]:
    weights = {}
    for k, _fi, fo, g in layer_table(config):
        a = factors[k][b]  # (fi, G)
        if config.factorized:
            weights[k] = a @ params["factors"]["shared"][str(k)]
        else:
            tiled = a[:, [j % g for j in range(fo)]]  # column j uses group j mod G (a repeat)
            weights[k] = params["hyponet"]["layers"][str(k)]["weight"] * tiled
    return weights


def naive_model(params: dict, config: HypernetINRConfig, signal: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """(B, *S, C) signal and coords (N, D) or (B, N, D) -> (B, N, C)."""
    factors = naive_factors(params, config, signal)
    outs = []
    for b in range(signal.shape[0]):
        c = coords if coords.dim() == 2 else coords[b]
        outs.append(naive_hyponet(params["hyponet"], config.hyponet, c, naive_weights(params, config, factors, b)))
    return torch.stack(outs, 0)


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


def to_double(params: dict) -> dict:
    return tree_map(lambda t: t.detach().double().requires_grad_(t.requires_grad), params)


def make(case: str, seed: int = 0, dtype=torch.float64):
    config, shape = CASES[case]
    model = HypernetINR(config)
    params = model.init(torch.Generator().manual_seed(seed))
    if dtype == torch.float64:
        params = to_double(params)
    g = torch.Generator().manual_seed(seed + 100)
    signal = torch.rand(3, *shape, config.hyponet.output_dim, generator=g).to(dtype)
    if config.hyponet.input_dim == 1:
        signal = signal * 2 - 1
    return model, config, params, signal


def trainable(params: dict) -> dict[str, torch.Tensor]:
    return {name: t for name, t in flatten(params).items() if t.requires_grad}


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
    expected = naive_model(params, config, signal, flat_coords)
    assert out.shape == (3, flat_coords.shape[0], config.hyponet.output_dim)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)

    named = trainable(params)
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
    torch.testing.assert_close(out, naive_model(params, config, signal, coords), rtol=1e-10, atol=1e-10)


def test_fp32_forward_matches_naive_model():
    model, config, params, signal = make("transinr-image", seed=1, dtype=torch.float32)
    coords = grid((8, 8))
    out = library_forward(model, params, signal, coords)
    expected = naive_model(to_double(params), config, signal.double(), coords.flatten(0, -2).double())
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
    modulated = {str(k) for k, *_ in layer_table(config)}
    for name, layer in params["hyponet"]["layers"].items():
        assert "bias" in layer
        assert ("weight" in layer) == (name not in modulated), name
    out = library_forward(model, params, signal, grid(tuple(signal.shape[1:-1])).double())
    biases = [params["hyponet"]["layers"][name]["bias"] for name in sorted(modulated)]
    for name, grad in zip(sorted(modulated), torch.autograd.grad(out.square().sum(), biases)):
        assert grad.abs().min() > 0, name  # every entry of the shared bias row is trained
    assert set(params["factors"]["shared"]) == modulated
    for k, fi, fo, g in layer_table(config):
        assert params["factors"]["shared"][str(k)].shape == (g, fo)
        assert params["heads"][str(k)]["linear"]["weight"].shape == (fi, config.transformer.embed_dim)


def test_transinr_keeps_every_base_weight_and_has_no_shared_factor():
    _, config, params, _ = make("transinr-image")
    assert "factors" not in params
    for k, fi, fo, _ in layer_table(config):
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


def _preset_model(model_name: str, data: str) -> HypernetINR:
    return build(model_name, presets.resolve(model_name, data).model)


@pytest.mark.parametrize(
    "model_name, data, count, groups",
    [
        ("transinr", "ffhq178", 259, [64, 64, 64, 64, 3]),
        ("transinr", "ffhq512", 259, [64, 64, 64, 64, 3]),
        ("transinr", "librispeech1s", 257, [64, 64, 64, 64, 1]),
        ("transinr", "librispeech3s", 257, [64, 64, 64, 64, 1]),
        ("ipc-transinr", "ffhq178", 256, [256]),
        ("ipc-transinr", "librispeech1s", 256, [256]),
    ],
)
def test_paper_weight_token_counts(model_name, data, count, groups):
    model = _preset_model(model_name, data)
    assert model.n_weight_tokens == count
    assert list(model.groups.values()) == groups
    stop = 0
    for name in model.token_slices:
        assert int(name) == model.layers[list(model.token_slices).index(name)]
        a, b = model.token_slices[name]
        assert a == stop
        stop = b
    assert stop == count


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
    for k, fi, fo, g_count in layer_table(config):
        name = str(k)
        for g in range(g_count):
            factor = torch.zeros(fi, g_count, dtype=torch.float64)
            factor[:, g] = torch.randn(fi, dtype=torch.float64).abs() + 0.1
            factors = {str(j): torch.zeros(f, gg, dtype=torch.float64) for j, f, _, gg in layer_table(config)}
            factors[name] = factor
            weight = model.composer.compose(params, factors)[name]
            assert weight.shape == (fi, fo)
            nonzero = {j for j in range(fo) if weight[:, j].abs().max() > 0}
            assert nonzero == {j for j in range(fo) if j % g_count == g}, (name, g)
            base = params["hyponet"]["layers"][name]["weight"]
            for j in nonzero:
                torch.testing.assert_close(weight[:, j], base[:, j] * factor[:, g])


def test_transinr_composer_jacobian_structure():
    model, config, params, _ = make("transinr-image")
    params = tree_map(lambda t: t.detach(), params)
    k, fi, fo, g_count = layer_table(config)[1]  # (8 -> 12) with 4 groups: 3 columns per group
    name = str(k)
    base = params["hyponet"]["layers"][name]["weight"]
    others = {str(j): torch.randn(f, gg, dtype=torch.float64) for j, f, _, gg in layer_table(config)}

    def weight_of(factor):
        return model.composer.compose(params, {**others, name: factor})[name]

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
    weight = model.composer.compose(params, {"1": factor})["1"]
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


# ----------------------------------------------------------------------------------------------------------------------
# Paper-size parameter counts (SPEC 2.1 [verified]), one init per model
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_params():
    out = {}
    for model_name, data in (("ipc-transinr", "ffhq178"), ("transinr", "ffhq178"), ("ipc-transinr", "librispeech1s")):
        model = _preset_model(model_name, data)
        out[(model_name, data)] = (model, model.init(torch.Generator().manual_seed(0)))
    return out


def _counts(params: dict) -> tuple[int, int]:
    tensors = leaves(params)
    return sum(t.numel() for t in tensors), sum(t.numel() for t in tensors if not t.requires_grad)


@pytest.mark.parametrize(
    "model_name, data, millions, dead, frozen",
    [
        ("ipc-transinr", "ffhq178", 43.746, 256 * 256, 64),
        ("transinr", "ffhq178", 44.477, 0, 64),
        ("ipc-transinr", "librispeech1s", 44.452, 256 * 256, 2048),
    ],
)
def test_paper_parameter_counts(paper_params, model_name, data, millions, dead, frozen):
    """ginr's count plus the reference's dead base-weight rows of the modulated layer 1 (256 x 256) rounds to the
    reference's count; the frozen Fourier frequencies are included."""
    _, params = paper_params[(model_name, data)]
    total, n_frozen = _counts(params)
    assert round((total + dead) / 1e6, 3) == millions
    assert n_frozen == frozen
    has_weight = "weight" in params["hyponet"]["layers"]["1"]
    assert has_weight == (dead == 0)


def test_paper_ipc_transinr_ffhq178_shapes_and_init(paper_params):
    model, params = paper_params[("ipc-transinr", "ffhq178")]
    assert params["tokens"]["position"].shape == (400, 768)
    assert params["tokens"]["linear"]["weight"].shape == (768, 243)
    assert params["weight_tokens"].shape == (256, 768)
    assert set(params["heads"]) == {"1"}
    assert params["heads"]["1"]["linear"]["weight"].shape == (256, 768)
    assert params["factors"]["shared"]["1"].shape == (256, 256)
    assert [tuple(layer["weight"].shape) for n, layer in params["hyponet"]["layers"].items() if n != "1"] == [
        (256, 256),
        (256, 256),
        (256, 256),
        (256, 3),
    ]
    # N(0, 1) embeddings and tokens; shared factor randn / sqrt(G fi) = N(0, 1/256^2); PyTorch-default Linear
    for t in (params["tokens"]["position"], params["weight_tokens"]):
        assert abs(t.std().item() - 1) < 0.02 and abs(t.mean().item()) < 0.02
    shared = params["factors"]["shared"]["1"]
    assert abs(shared.std().item() * 256 - 1) < 0.02
    w = params["tokens"]["linear"]["weight"]
    assert w.abs().max() <= 1 / math.sqrt(243) and w.abs().max() > 0.99 / math.sqrt(243)
    head = params["heads"]["1"]
    assert torch.equal(head["norm"]["weight"], torch.ones(768)) and torch.equal(head["norm"]["bias"], torch.zeros(768))
    assert head["linear"]["weight"].abs().max() <= 1 / math.sqrt(768)
    assert head["linear"]["bias"].abs().max() > 0.9 / math.sqrt(768)


def test_paper_audio_position_and_token_width(paper_params):
    model, params = paper_params[("ipc-transinr", "librispeech1s")]
    assert params["tokens"]["position"].shape == (80, 768)
    assert params["tokens"]["linear"]["weight"].shape == (768, 200)
    assert params["hyponet"]["fourier"]["frequencies"].shape == (2048,)
    assert params["hyponet"]["layers"]["0"]["weight"].shape == (4096, 256)


# ----------------------------------------------------------------------------------------------------------------------
# Training options (SPEC 4.2, 4.3; quirk 22)
# ----------------------------------------------------------------------------------------------------------------------


def test_jitter_bound_uses_the_first_axis_for_every_axis():
    shape, coord_range = (6, 10), (-1.0, 1.0)
    coords = grid(shape, coord_range).flatten(0, -2)  # (60, 2)
    torch.manual_seed(0)
    noisy = objective.jitter(coords, 8, shape, coord_range)
    assert noisy.shape == (8, 60, 2)
    delta = noisy - coords
    bound = (coord_range[1] - coord_range[0]) / (2 * shape[0])  # 1/6 on both axes
    assert delta.abs().max() <= bound + 1e-6
    for axis in (0, 1):
        assert delta[..., axis].abs().max() > 0.95 * bound
    # the column axis (10 samples) moves by more than its own half pitch 1/10: S0 = 6 is used for it too
    assert delta[..., 1].abs().max() > 2 / (2 * shape[1]) * 1.5
    # independent per component, per point, per instance; centred
    assert not torch.equal(delta[0], delta[1])
    assert not torch.equal(delta[..., 0], delta[..., 1])
    assert abs(delta.mean().item()) < 0.01
    assert abs(delta.var().item() / (bound**2 / 3) - 1) < 0.15


def test_jitter_audio_range_and_seeding():
    shape, coord_range = (48,), (-3.0, 3.0)
    coords = grid(shape, coord_range).flatten(0, -2)
    torch.manual_seed(3)
    a = objective.jitter(coords, 4, shape, coord_range)
    torch.manual_seed(3)
    b = objective.jitter(coords, 4, shape, coord_range)
    c = objective.jitter(coords, 4, shape, coord_range)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    bound = 6.0 / (2 * 48)
    assert (a - coords).abs().max() <= bound + 1e-6
    assert (a - coords).abs().max() > 0.9 * bound


@pytest.mark.parametrize("n, ratio, keep", [(60, 0.25, 15), (60, 0.33, 19), (70, 0.1, 7), (60, 1.0, 60)])
def test_subsample_counts_and_gathers_consistently(n, ratio, keep):
    shape = (n // 10, 10)
    coords = grid(shape).flatten(0, -2)
    batch = 4
    signal = torch.rand(batch, *shape, 3)
    torch.manual_seed(0)
    kept_coords, kept_target = objective.subsample(coords, signal.flatten(1, -2), ratio)
    assert kept_coords.shape == (batch, keep, 2)
    assert kept_target.shape == (batch, keep, 3)
    rows = torch.round((kept_coords[..., 0] + 1) / 2 * shape[0] - 0.5).long()
    cols = torch.round((kept_coords[..., 1] + 1) / 2 * shape[1] - 0.5).long()
    index_sets = []
    for b in range(batch):
        flat = (rows[b] * shape[1] + cols[b]).tolist()
        assert len(set(flat)) == keep  # distinct within an instance
        index_sets.append(frozenset(flat))
        # the targets are the signal at the kept coordinates
        assert torch.equal(kept_target[b], signal[b, rows[b], cols[b]])
        torch.testing.assert_close(kept_coords[b], coords[flat])
    if keep < n:
        assert len(set(index_sets)) == batch  # different between instances


def test_subsample_with_per_instance_coords_and_seeding():
    batch, n = 3, 50
    coords = torch.rand(batch, n, 2)
    target = (
        torch.arange(n, dtype=torch.float32).repeat(batch, 1).unsqueeze(-1) + 100 * torch.arange(batch)[:, None, None]
    )
    torch.manual_seed(1)
    kc, kt = objective.subsample(coords, target, 0.2)
    assert kc.shape == (batch, 10, 2) and kt.shape == (batch, 10, 1)
    for b in range(batch):
        index = (kt[b, :, 0] - 100 * b).long()
        assert torch.equal(kc[b], coords[b, index])
    torch.manual_seed(1)
    kc2, kt2 = objective.subsample(coords, target, 0.2)
    assert torch.equal(kc, kc2) and torch.equal(kt, kt2)
    kc3, _ = objective.subsample(coords, target, 0.2)
    assert not torch.equal(kc, kc3)


def test_reconstruction_objective_with_noise_and_subsample_for_a_hypernet():
    config = image_config(transformer=dataclasses.replace(TINY_TRANSFORMER, resid_dropout=0.0))
    model = HypernetINR(config)
    params = model.init(torch.Generator().manual_seed(0))
    signal = torch.rand(3, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(42)
    out = objective.reconstruction_objective(
        model, params, signal, coord_range=(-1.0, 1.0), coord_noise=True, coord_subsample=0.25
    )
    assert out["mse"].shape == (3,)
    # recompute: the same seed, noise (on the full grid) then the subset, then the naive model's per-sample MSE
    torch.manual_seed(42)
    points = objective.jitter(grid((8, 8)).flatten(0, -2), 3, (8, 8), (-1.0, 1.0))
    points, target = objective.subsample(points, signal.flatten(1, -2), 0.25)
    assert points.shape == (3, 16, 2)
    pred = naive_model(to_double(params), config, signal.double(), points.double())
    mse = ((pred - target.double()) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(out["mse"].double(), mse, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["loss"].double(), mse.mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["psnr"].double(), -10 * torch.log10(mse), rtol=1e-5, atol=1e-5)
    # the options took effect: the full-grid loss differs
    full = objective.reconstruction_objective(model, params, signal, coord_range=(-1.0, 1.0))
    full_pred = naive_model(to_double(params), config, signal.double(), grid((8, 8)).double().flatten(0, -2))
    full_mse = ((full_pred - signal.double().flatten(1, -2)) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(full["loss"].double(), full_mse.mean(), rtol=1e-5, atol=1e-7)
    assert abs(full["loss"].item() - out["loss"].item()) > 1e-6
    # it trains: finite gradients reach the transformer and the shared factor
    out["loss"].backward()
    for name in ("weight_tokens", "factors.shared.1", "transformer.blocks.0.attn.query.weight"):
        grad = flatten(params)[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0, name


def test_reconstruction_objective_is_seeded():
    config = audio_config(40)
    model = HypernetINR(config)
    params = model.init(torch.Generator().manual_seed(0))
    signal = torch.rand(2, 40, 1, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kwargs = dict(coord_range=(-3.0, 3.0), coord_noise=True, coord_subsample=0.25)
    torch.manual_seed(5)
    a = objective.reconstruction_objective(model, params, signal, **kwargs)["loss"]
    torch.manual_seed(5)
    b = objective.reconstruction_objective(model, params, signal, **kwargs)["loss"]
    c = objective.reconstruction_objective(model, params, signal, **kwargs)["loss"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ----------------------------------------------------------------------------------------------------------------------
# Paper presets
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", list(presets.HYPERNET_ROWS))
@pytest.mark.parametrize("model_name", ["ipc-transinr", "transinr"])
def test_every_paper_hypernet_preset_builds_and_its_tokens_match_its_data(model_name, data):
    config = presets.resolve(model_name, data)
    model = build(model_name, config.model)
    assert isinstance(model, HypernetINR)
    shape, channels = signal_shape(config.data)
    model.check_signal(shape, channels)
    tok = config.model.tokenizer
    assert tokenizers.n_tokens(tok, shape) == tok.n_tokens
    tokens = tokenizers.tokenize(tok, torch.zeros(1, *shape, channels))
    assert tokens.shape == (1, tok.n_tokens, tokenizers.token_dim(tok, channels))
    expected_tokens = {
        "celeba178": 400,
        "ffhq178": 400,
        "imagenette178": 400,
        "ffhq512": 256,
        "ffhq1024": 1024,
        "librispeech1s": 80,
        "librispeech3s": 240,
    }[data]
    assert tok.n_tokens == expected_tokens
    audio = data.startswith("librispeech")
    assert tok.type == ("audio_patches" if audio else "image_patches")
    assert config.model.hyponet.input_dim == len(shape) and config.model.hyponet.output_dim == channels
    assert config.model.factorized == (model_name == "ipc-transinr")
    assert model.n_weight_tokens == (256 if model_name == "ipc-transinr" else (257 if audio else 259))
