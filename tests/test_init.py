"""Initial-weight distributions (fidelity 1.3, quirk 1), Fourier frequencies (fidelity 1.4, quirk 3) and config
validation.

Every draw uses a fixed ``torch.Generator`` seed, so the statistics are deterministic; the tolerances are several
standard errors wide, and far narrower than the gap between the right rule and a plausible wrong one
(e.g. 1/sqrt(fan_in) instead of 1/sqrt(fan_out)).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_hyponet import PRESET_SHAPES

from ginr.config import FourierConfig, HyponetConfig
from ginr.nn import fourier, hyponet, init


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_uniform(x: torch.Tensor, bound: float, *, var_tol: float = 0.03, edge: float = 0.99) -> None:
    """x looks like U(-bound, bound): within the bound, reaching close to it, mean ~ 0, variance ~ bound^2 / 3."""
    x = x.detach().double().flatten()
    n = x.numel()
    assert x.abs().max() <= bound * (1 + 1e-6)
    assert x.abs().max() >= edge * bound
    assert x.min() < 0 < x.max()
    # standard error of the mean of U(-b, b) is b / sqrt(3 n)
    assert abs(x.mean().item()) <= 5 * bound / math.sqrt(3 * n)
    assert x.var().item() == pytest.approx(bound**2 / 3, rel=var_tol)


# ----------------------------------------------------------------------------------------------------------------------
# init_block rules
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols"), [(512, 64), (64, 512), (4096, 16), (100, 300)])
def test_kaiming_uniform_bound_uses_columns(rows, cols):
    """Quirk 1: kaiming_uniform on a (fi, fo) weight is U(+-1/sqrt(fo)), whatever fi is."""
    x = init.init_block("kaiming_uniform", rows, cols, gen(1))
    assert x.shape == (rows, cols)
    assert x.dtype == torch.float32
    assert_uniform(x, 1 / math.sqrt(cols))


def test_kaiming_uniform_matches_torch_kaiming_uniform_on_the_same_tensor():
    """The reference calls nn.init.kaiming_uniform_(a=sqrt(5)) on the (rows, cols) tensor itself."""
    for rows, cols in [(256, 3), (4096, 256), (1, 256), (120, 4)]:
        ours = init.init_block("kaiming_uniform", rows, cols, gen(7))
        theirs = torch.nn.init.kaiming_uniform_(torch.empty(rows, cols), a=math.sqrt(5), generator=gen(7))
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_kaiming_uniform_bias_block():
    """A (1, fo) bias block under kaiming_uniform is U(+-1/sqrt(fo))."""
    x = init.init_block("kaiming_uniform", 1, 40000, gen(2))
    assert x.shape == (1, 40000)
    assert_uniform(x, 1 / math.sqrt(40000))


@pytest.mark.parametrize(("rows", "cols"), [(100, 300), (400, 50), (16, 2048)])
def test_uniform_fan_in_uses_rows(rows, cols):
    x = init.init_block("uniform_fan_in", rows, cols, gen(3))
    assert x.shape == (rows, cols)
    assert_uniform(x, 1 / math.sqrt(rows))


def test_uniform_fan_in_bias_block_is_unit_uniform():
    assert_uniform(init.init_block("uniform_fan_in", 1, 40000, gen(4)), 1.0)


@pytest.mark.parametrize("rows", [2, 50, 300])
def test_siren_first_layer(rows):
    x = init.init_block("siren", rows, 30000 // rows, gen(5), first_layer=True, siren_w0=30.0)
    assert_uniform(x, 1 / rows)


@pytest.mark.parametrize(("rows", "w0"), [(256, 30.0), (64, 10.0), (1, 30.0)])
def test_siren_other_layers(rows, w0):
    x = init.init_block("siren", rows, 40000 // rows, gen(6), first_layer=False, siren_w0=w0)
    assert_uniform(x, math.sqrt(6 / rows) / w0)


def test_siren_first_layer_ignores_w0():
    a = init.init_block("siren", 8, 4000, gen(8), first_layer=True, siren_w0=30.0)
    b = init.init_block("siren", 8, 4000, gen(8), first_layer=True, siren_w0=5.0)
    assert torch.equal(a, b)
    assert_uniform(a, 1 / 8)


def test_normal():
    x = init.init_block("normal", 200, 200, gen(9)).double()
    assert x.shape == (200, 200)
    assert abs(x.mean().item()) < 5 / 200
    assert x.var().item() == pytest.approx(1.0, rel=0.03)
    assert x.abs().max() > 3.5  # unbounded, unlike a uniform rule
    # kurtosis of a normal is 3 (a uniform's is 1.8)
    assert (x**4).mean().item() / x.var().item() ** 2 == pytest.approx(3.0, rel=0.05)


def test_zero_draws_nothing():
    g = gen(10)
    state = g.get_state()
    x = init.init_block("zero", 7, 5, g)
    assert x.shape == (7, 5)
    assert not x.any()
    assert torch.equal(g.get_state(), state)


def test_unknown_scheme_raises():
    with pytest.raises(ValueError):
        init.init_block("xavier", 4, 4, gen())


def test_init_block_is_deterministic_given_the_generator():
    a = init.init_block("kaiming_uniform", 64, 32, gen(11))
    b = init.init_block("kaiming_uniform", 64, 32, gen(11))
    c = init.init_block("kaiming_uniform", 64, 32, gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ----------------------------------------------------------------------------------------------------------------------
# hyponet.init per layer
# ----------------------------------------------------------------------------------------------------------------------

IMAGE, AUDIO, NERF = PRESET_SHAPES["image"], PRESET_SHAPES["audio"], PRESET_SHAPES["nerf"]


def test_shipped_defaults():
    cfg = HyponetConfig()
    assert (cfg.weight_init, cfg.bias_init) == ("kaiming_uniform", "zero")
    assert cfg.normalize_weight and cfg.use_bias
    assert cfg.output_bias == 0.5
    assert (cfg.n_layer, cfg.hidden_dims()) == (5, (256,) * 4)
    assert (cfg.fourier.type, cfg.fourier.sigma, cfg.fourier.dim) == ("deterministic_transinr", 1024, 128)
    assert cfg.fourier.enabled and not cfg.fourier.trainable


def test_image_init_per_layer():
    """wb0 of the image config is U(+-1/16) although its fan-in is 256; the output layer U(+-1/sqrt 3); biases 0."""
    params = hyponet.init(IMAGE, gen(0))
    layers = params["layers"]
    assert list(layers) == ["0", "1", "2", "3", "4"]
    for k in range(4):
        w = layers[str(k)]["weight"]
        assert w.shape == (256, 256)
        assert_uniform(w, 1 / 16)
    out = layers["4"]["weight"]
    assert out.shape == (256, 3)
    assert_uniform(out, 1 / math.sqrt(3), var_tol=0.15, edge=0.95)
    for k in range(5):
        b = layers[str(k)]["bias"]
        assert b.shape == (3 if k == 4 else 256,)
        assert not b.any()


def test_audio_init_per_layer():
    """wb0 of the audio config has 4096 inputs and is still U(+-1/16); the output layer (256, 1) is U(+-1)."""
    layers = hyponet.init(AUDIO, gen(1))["layers"]
    assert layers["0"]["weight"].shape == (4096, 256)
    assert_uniform(layers["0"]["weight"], 1 / 16)
    assert layers["4"]["weight"].shape == (256, 1)
    assert_uniform(layers["4"]["weight"], 1.0, var_tol=0.3, edge=0.95)
    assert all(not layer["bias"].any() for layer in layers.values())


def test_nerf_init_per_layer():
    layers = hyponet.init(NERF, gen(2))["layers"]
    assert [tuple(layer["weight"].shape) for layer in layers.values()] == [(120, 256)] + [(256, 256)] * 4 + [(256, 4)]
    assert_uniform(layers["0"]["weight"], 1 / 16)
    assert_uniform(layers["5"]["weight"], 1 / 2, var_tol=0.15, edge=0.95)


def test_init_draw_order_weight_then_bias_layer_by_layer():
    """Fidelity 1.3: frequencies first (random_gaussian), then per layer the weight block, then the (1, fo) bias
    block."""
    cfg = HyponetConfig(
        n_layer=3,
        hidden_dim=(6, 5),
        bias_init="uniform_fan_in",
        fourier=FourierConfig(type="random_gaussian", sigma=3.0, dim=4),
    )
    params = hyponet.init(cfg, gen(13))
    g = gen(13)
    assert torch.equal(params["fourier"]["frequencies"], torch.randn(2, 4, generator=g) * 3.0)
    for k, (fi, fo) in enumerate([(8, 6), (6, 5), (5, 3)]):
        bound = 1 / math.sqrt(fo)
        w = torch.empty(fi, fo).uniform_(-bound, bound, generator=g)
        b = torch.empty(1, fo).uniform_(-1.0, 1.0, generator=g)  # uniform_fan_in on a (1, fo) block: U(+-1)
        assert torch.equal(params["layers"][str(k)]["weight"], w), k
        assert torch.equal(params["layers"][str(k)]["bias"], b.squeeze(0)), k


def test_init_bias_scheme_applies_to_bias_blocks():
    """bias_init kaiming_uniform: each bias is U(+-1/sqrt(fo)); uniform_fan_in: U(+-1)."""
    cfg = HyponetConfig(n_layer=2, hidden_dim=(20000,), bias_init="kaiming_uniform", fourier=FourierConfig(dim=2))
    assert_uniform(hyponet.init(cfg, gen(14))["layers"]["0"]["bias"], 1 / math.sqrt(20000))
    cfg = dataclasses.replace(cfg, bias_init="uniform_fan_in")
    assert_uniform(hyponet.init(cfg, gen(15))["layers"]["0"]["bias"], 1.0)


def test_siren_init_per_layer():
    cfg = HyponetConfig(
        n_layer=3,
        hidden_dim=(1024,),
        input_dim=2,
        output_dim=8,
        activation="siren",
        siren_w0=30.0,
        weight_init="siren",
        bias_init="siren",
        fourier=FourierConfig(enabled=False),
    )
    params = hyponet.init(cfg, gen(16))
    assert "fourier" not in params
    layers = params["layers"]
    assert layers["0"]["weight"].shape == (2, 1024)
    assert_uniform(layers["0"]["weight"], 1 / 2, var_tol=0.1)  # first layer: 1 / rows
    assert_uniform(layers["0"]["bias"], 1.0, var_tol=0.15, edge=0.98)  # the first-layer bias block has 1 row
    assert_uniform(layers["1"]["weight"], math.sqrt(6 / 1024) / 30)
    assert_uniform(layers["1"]["bias"], math.sqrt(6) / 30, var_tol=0.15, edge=0.98)
    assert_uniform(layers["2"]["weight"], math.sqrt(6 / 1024) / 30, var_tol=0.1)


def test_normal_weight_init():
    cfg = HyponetConfig(n_layer=2, hidden_dim=(128,), weight_init="normal", fourier=FourierConfig(dim=128))
    w = hyponet.init(cfg, gen(17))["layers"]["0"]["weight"].double()
    assert w.var().item() == pytest.approx(1.0, rel=0.03)
    assert abs(w.mean().item()) < 0.03


def test_trainable_leaves_require_grad():
    params = hyponet.init(IMAGE, gen(18))
    for layer in params["layers"].values():
        assert layer["weight"].requires_grad and layer["weight"].is_leaf
        assert layer["bias"].requires_grad and layer["bias"].is_leaf
    assert not params["fourier"]["frequencies"].requires_grad
    trainable = dataclasses.replace(IMAGE, fourier=dataclasses.replace(IMAGE.fourier, trainable=True))
    freq = hyponet.init(trainable, gen(18))["fourier"]["frequencies"]
    assert freq.requires_grad and freq.is_leaf


def test_no_bias_and_no_fourier_layout():
    cfg = HyponetConfig(n_layer=3, hidden_dim=(7,), use_bias=False, fourier=FourierConfig(enabled=False))
    params = hyponet.init(cfg, gen(19))
    assert "fourier" not in params
    assert [set(layer) for layer in params["layers"].values()] == [{"weight"}] * 3
    assert params["layers"]["0"]["weight"].shape == (2, 7)
    assert fourier.feature_dim(cfg.fourier, 2) == 2
    assert fourier.feature_dim(IMAGE.fourier, 2) == 256


# ----------------------------------------------------------------------------------------------------------------------
# Fourier frequencies
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sigma", "input_dim", "dim", "count"), [(64, 2, 128, 64), (128, 2, 128, 64), (256, 2, 128, 64)]
)
def test_image_frequencies(sigma, input_dim, dim, count):
    cfg = HyponetConfig(input_dim=input_dim, fourier=FourierConfig(sigma=sigma, dim=dim))
    freq = hyponet.init(cfg, gen())["fourier"]["frequencies"]
    assert freq.shape == (count,)
    assert freq.dtype == torch.float32
    assert torch.equal(freq, torch.exp(torch.linspace(0, math.log(sigma), count)))
    assert freq[0].item() == 1.0
    assert freq[-1].item() == pytest.approx(sigma, rel=1e-6)
    ratios = freq[1:].double() / freq[:-1].double()
    assert torch.allclose(ratios, torch.full_like(ratios, sigma ** (1 / (count - 1))), rtol=1e-5)


def test_audio_frequencies():
    freq = hyponet.init(AUDIO, gen())["fourier"]["frequencies"]
    assert freq.shape == (2048,)
    assert torch.equal(freq, torch.exp(torch.linspace(0, math.log(1024), 2048)))
    assert freq[0].item() == 1.0
    assert freq[-1].item() == pytest.approx(1024, rel=1e-6)
    assert (freq[1:] > freq[:-1]).all()


def test_nerf_frequencies():
    freq = hyponet.init(NERF, gen())["fourier"]["frequencies"]
    assert freq.shape == (20,)
    assert torch.equal(freq, 2 ** torch.linspace(0, 8, 20))
    assert freq[0].item() == 1.0 and freq[-1].item() == 256.0


def test_random_gaussian_frequencies():
    cfg = HyponetConfig(input_dim=2, fourier=FourierConfig(type="random_gaussian", sigma=10.0, dim=4096))
    freq = hyponet.init(cfg, gen(20))["fourier"]["frequencies"]
    assert freq.shape == (2, 4096)
    assert torch.equal(freq, torch.randn(2, 4096, generator=gen(20)) * 10.0)
    assert freq.double().std().item() == pytest.approx(10.0, rel=0.03)
    assert not freq.requires_grad


def test_frequencies_follow_the_config_not_the_generator():
    """Deterministic mappings draw nothing: two seeds give the same frequencies and the same weights as if absent."""
    a = hyponet.init(IMAGE, gen(21))
    b = hyponet.init(IMAGE, gen(22))
    assert torch.equal(a["fourier"]["frequencies"], b["fourier"]["frequencies"])
    g = gen(21)
    w0 = torch.empty(256, 256).uniform_(-1 / 16, 1 / 16, generator=g)
    assert torch.equal(a["layers"]["0"]["weight"], w0)


# ----------------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(HyponetConfig(input_dim=3, fourier=FourierConfig(dim=128)), id="ff_dim_not_divisible"),
        pytest.param(HyponetConfig(input_dim=2, fourier=FourierConfig(dim=7)), id="ff_dim_odd_for_2d"),
        pytest.param(HyponetConfig(n_layer=5, hidden_dim=(16, 16)), id="hidden_list_too_short"),
        pytest.param(HyponetConfig(n_layer=3, hidden_dim=(16, 16, 16)), id="hidden_list_too_long"),
        pytest.param(HyponetConfig(n_layer=3, hidden_dim=(16, 0)), id="hidden_zero_width"),
        pytest.param(
            HyponetConfig(activation="siren", weight_init="siren", bias_init="siren"), id="siren_with_fourier"
        ),
        pytest.param(
            HyponetConfig(
                activation="siren",
                weight_init="kaiming_uniform",
                bias_init="siren",
                fourier=FourierConfig(enabled=False),
            ),
            id="siren_wrong_weight_init",
        ),
        pytest.param(
            HyponetConfig(
                activation="siren", weight_init="siren", bias_init="zero", fourier=FourierConfig(enabled=False)
            ),
            id="siren_wrong_bias_init",
        ),
        pytest.param(HyponetConfig(n_layer=0), id="no_layers"),
    ],
)
def test_invalid_configs_raise(cfg):
    with pytest.raises(ValueError):
        hyponet.init(cfg, gen())
    with pytest.raises(ValueError):
        hyponet.layer_shapes(cfg)


def test_valid_edge_configs():
    """Audio's ff_dim 2048 with D=1, NeRF's 60 with D=3, a full hidden list and a single layer are accepted."""
    assert hyponet.layer_shapes(AUDIO)[0] == (4096, 256)
    assert hyponet.layer_shapes(NERF)[0] == (120, 256)
    listed = HyponetConfig(n_layer=4, hidden_dim=(8, 16, 32), fourier=FourierConfig(dim=8))
    assert hyponet.layer_shapes(listed) == [(16, 8), (8, 16), (16, 32), (32, 3)]
    single = HyponetConfig(n_layer=1, hidden_dim=(8,), fourier=FourierConfig(dim=8))
    assert hyponet.layer_shapes(single) == [(16, 3)]
