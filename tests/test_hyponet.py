"""The functional hyponet against ``oracles.hyponet``, a plain transcription of fidelity 1.4/1.5 in the reference's
layout.

The reference keeps each layer as one matrix ``P`` of shape ``(fi + 1, fo)`` (weight rows, then a bias row), appends a
ones column to the hidden state, divides each weight column by its own norm, and builds Fourier features one input
dimension at a time. The oracle does exactly that, from ginr's params (``P = [W; b]``), and the tests compare outputs
and gradients with ``torch.allclose``.
"""

from __future__ import annotations

import dataclasses
import math

import oracles
import pytest
import torch

from ginr.config import FourierConfig, HyponetConfig
from ginr.nn import hyponet
from ginr.pytree import leaves

# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------


def make_params(cfg: HyponetConfig, dtype=torch.float64, seed=0, weightless=()) -> dict:
    """ginr's init, with biases replaced by random values so that the bias path is exercised."""
    gen = torch.Generator().manual_seed(seed)
    params = oracles.cast(hyponet.init(cfg, gen, weightless_layers=weightless), dtype)
    for layer in params["layers"].values():
        if "bias" in layer:
            layer["bias"] = (0.3 * torch.randn(layer["bias"].shape, generator=gen, dtype=dtype)).requires_grad_()
    return params


def make_coords(cfg: HyponetConfig, shape=(32,), dtype=torch.float64, seed=1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, cfg.input_dim, generator=gen, dtype=dtype) * 2 - 1


def make_weights(cfg: HyponetConfig, layers, dtype=torch.float64, seed=2, batch=()) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = hyponet.layer_shapes(cfg)
    return {
        str(k): (torch.randn(*batch, *shapes[k], generator=gen, dtype=dtype) / math.sqrt(shapes[k][0])).requires_grad_()
        for k in layers
    }


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> None:
    """``torch.allclose`` with ``atol`` taken relative to the scale of ``b`` (siren gradients reach 1e6)."""
    scale = max(1.0, b.abs().max().item())
    assert torch.allclose(a, b, rtol=rtol, atol=atol * scale), ((a - b).abs().max() / scale).item()


def grads(out: torch.Tensor, cot: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * cot).sum(), inputs, allow_unused=True, materialize_grads=True))


def assert_matches(cfg, params, coords, weights, rtol, atol, grad_rtol=None, grad_atol=None):
    """Outputs and gradients (every trainable param leaf and every modulated weight) of ginr == reference."""
    grad_rtol = rtol if grad_rtol is None else grad_rtol
    grad_atol = atol if grad_atol is None else grad_atol
    out = hyponet.forward(params, cfg, coords, weights)
    ref = oracles.hyponet(params, cfg, coords, {int(k): w for k, w in weights.items()})
    assert out.shape == ref.shape == (*coords.shape[:-1], cfg.output_dim)
    assert out.dtype == coords.dtype
    assert torch.allclose(out, ref, rtol=rtol, atol=atol), (out - ref).abs().max()

    inputs = [t for t in leaves(params) if t.requires_grad] + list(weights.values())
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    g_out = grads(out, cot, inputs)
    g_ref = grads(ref, cot, inputs)
    dead = {id(params["layers"][k]["weight"]) for k in weights if "weight" in params["layers"][k]}
    for t, a, b in zip(inputs, g_out, g_ref):
        assert a.shape == b.shape == t.shape
        assert_close(a, b, grad_rtol, grad_atol)
        if id(t) in dead:  # a replaced base weight is never used
            assert not a.any()
        else:  # the comparison is not vacuous
            assert b.abs().max() > 0
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Option combinations (shrunk widths); the real preset shapes are tested below
# ----------------------------------------------------------------------------------------------------------------------

IMAGE = HyponetConfig(hidden_dim=(16,), fourier=FourierConfig(sigma=64, dim=8))
CONFIGS = {
    "image_sigma64": IMAGE,
    "image_sigma128": dataclasses.replace(IMAGE, fourier=FourierConfig(sigma=128, dim=8)),
    "audio": HyponetConfig(
        hidden_dim=(16,), input_dim=1, output_dim=1, output_bias=0.0, fourier=FourierConfig(sigma=1024, dim=7)
    ),
    "nerf": HyponetConfig(
        n_layer=6,
        hidden_dim=(16,),
        input_dim=3,
        output_dim=4,
        output_bias=0.0,
        fourier=FourierConfig(type="deterministic_transinr_nerf", sigma=8, dim=60),
    ),
    "random_gaussian": dataclasses.replace(IMAGE, fourier=FourierConfig(type="random_gaussian", sigma=2.0, dim=8)),
    "siren": dataclasses.replace(
        IMAGE, activation="siren", weight_init="siren", bias_init="siren", fourier=FourierConfig(enabled=False)
    ),
    "siren_unnormalised": dataclasses.replace(
        IMAGE,
        activation="siren",
        weight_init="siren",
        bias_init="siren",
        normalize_weight=False,
        fourier=FourierConfig(enabled=False),
    ),
    "silu": dataclasses.replace(IMAGE, activation="silu"),
    "no_bias": dataclasses.replace(IMAGE, use_bias=False),
    "no_normalize": dataclasses.replace(IMAGE, normalize_weight=False),
    "hidden_list": dataclasses.replace(IMAGE, hidden_dim=(16, 12, 8, 20)),
    "trainable_fourier": dataclasses.replace(IMAGE, fourier=FourierConfig(sigma=64, dim=8, trainable=True)),
    "random_gaussian_trainable": dataclasses.replace(
        IMAGE, fourier=FourierConfig(type="random_gaussian", sigma=2.0, dim=8, trainable=True)
    ),
    "nerf_trainable": dataclasses.replace(
        IMAGE, fourier=FourierConfig(type="deterministic_transinr_nerf", sigma=3.0, dim=8, trainable=True)
    ),
    "no_fourier_relu": dataclasses.replace(IMAGE, fourier=FourierConfig(enabled=False), output_bias=-0.25),
    "siren_w0_10": dataclasses.replace(
        IMAGE,
        activation="siren",
        siren_w0=10.0,
        weight_init="siren",
        bias_init="siren",
        fourier=FourierConfig(enabled=False),
    ),
    "nerf_silu_list_nobias": HyponetConfig(
        n_layer=3,
        hidden_dim=(10, 14),
        input_dim=3,
        output_dim=4,
        output_bias=0.0,
        activation="silu",
        use_bias=False,
        fourier=FourierConfig(type="deterministic_transinr_nerf", sigma=8, dim=12),
    ),
}
MODULATIONS = {"none": (), "layer1": (1,), "all": None}


@pytest.mark.parametrize("modulation", list(MODULATIONS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_and_grads_match_reference(name, modulation):
    cfg = CONFIGS[name]
    layers = MODULATIONS[modulation]
    layers = range(cfg.n_layer) if layers is None else layers
    params = make_params(cfg)
    coords = make_coords(cfg)
    weights = make_weights(cfg, layers)
    assert_matches(cfg, params, coords, weights, rtol=1e-10, atol=1e-10)


# siren with normalised weights multiplies round-off by ~w0 per layer (unit-norm columns, sin(30 x)), so its fp32
# check uses the siren init's own scale (normalize_weight False); the normalised siren is checked in fp64 above.
@pytest.mark.parametrize("name", ["image_sigma64", "nerf", "siren_unnormalised", "no_bias", "random_gaussian"])
def test_forward_and_grads_match_reference_fp32(name):
    cfg = CONFIGS[name]
    params = make_params(cfg, dtype=torch.float32)
    coords = make_coords(cfg, dtype=torch.float32)
    weights = make_weights(cfg, (1,), dtype=torch.float32)
    assert_matches(cfg, params, coords, weights, rtol=1e-5, atol=1e-6, grad_rtol=1e-4, grad_atol=1e-5)


def test_mapping_matches_reference_for_each_fourier_type():
    """The embedding alone: layout (d-major, cos first), pi factor except nerf."""
    for name in ["image_sigma64", "audio", "nerf", "random_gaussian"]:
        cfg = CONFIGS[name]
        params = make_params(cfg)
        coords = make_coords(cfg)
        feats = hyponet.embed(params, cfg, coords)
        ref = oracles.fourier_features(coords, params["fourier"]["frequencies"], cfg.fourier)
        assert feats.shape == (32, 2 * cfg.fourier.dim)
        assert torch.allclose(feats, ref, rtol=0, atol=1e-12), name


def test_fourier_layout_by_hand():
    """A 2-D coordinate with frequencies (1, 2): features are cos/sin of pi * (x0, 2 x0, x1, 2 x1)."""
    cfg = HyponetConfig(fourier=FourierConfig(sigma=2.0, dim=4))
    params = make_params(cfg)
    assert torch.allclose(params["fourier"]["frequencies"], torch.tensor([1.0, 2.0], dtype=torch.float64))
    x = torch.tensor([[0.1, -0.3]], dtype=torch.float64)
    z = math.pi * torch.tensor([0.1, 0.2, -0.3, -0.6], dtype=torch.float64)
    expected = torch.cat([torch.cos(z), torch.sin(z)])[None]
    assert torch.allclose(hyponet.embed(params, cfg, x), expected, rtol=0, atol=1e-14)
    nerf = dataclasses.replace(cfg, fourier=FourierConfig(type="deterministic_transinr_nerf", sigma=1.0, dim=4))
    params = make_params(nerf)
    z = torch.tensor([0.1, 0.2, -0.3, -0.6], dtype=torch.float64)  # 2 ** linspace(0, 1, 2) = (1, 2), no pi
    expected = torch.cat([torch.cos(z), torch.sin(z)])[None]
    assert torch.allclose(hyponet.embed(params, nerf, x), expected, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------------------
# Real preset shapes
# ----------------------------------------------------------------------------------------------------------------------

PRESET_SHAPES = {
    "image": HyponetConfig(fourier=FourierConfig(sigma=64, dim=128)),
    "audio": HyponetConfig(input_dim=1, output_dim=1, output_bias=0.0, fourier=FourierConfig(sigma=1024, dim=2048)),
    "nerf": HyponetConfig(
        n_layer=6,
        input_dim=3,
        output_dim=4,
        output_bias=0.0,
        fourier=FourierConfig(type="deterministic_transinr_nerf", sigma=8, dim=60),
    ),
}


def test_preset_layer_shapes():
    """Fidelity 1.2's table: the reference's P is (fi + 1, fo); ginr's weight is (fi, fo) and its bias (fo,)."""
    expected = {
        "image": [(257, 256)] * 4 + [(257, 3)],
        "audio": [(4097, 256)] + [(257, 256)] * 3 + [(257, 1)],
        "nerf": [(121, 256)] + [(257, 256)] * 4 + [(257, 4)],
    }
    for name, cfg in PRESET_SHAPES.items():
        params = hyponet.init(cfg, torch.Generator().manual_seed(0))
        assert [tuple(p.shape) for p in oracles.reference_matrices(params, cfg)] == expected[name]
        assert [(r - 1, c) for r, c in expected[name]] == hyponet.layer_shapes(cfg)


@pytest.mark.parametrize("name", list(PRESET_SHAPES))
def test_preset_shape_matches_reference_fp64(name):
    cfg = PRESET_SHAPES[name]
    params = make_params(cfg)
    coords = make_coords(cfg, shape=(2, 6))
    assert_matches(cfg, params, coords, make_weights(cfg, (1,)), rtol=1e-9, atol=1e-10)


def test_image_preset_matches_reference_fp32():
    cfg = PRESET_SHAPES["image"]
    params = make_params(cfg, dtype=torch.float32)
    coords = make_coords(cfg, shape=(16,), dtype=torch.float32)
    weights = make_weights(cfg, (1,), dtype=torch.float32)
    assert_matches(cfg, params, coords, weights, rtol=1e-5, atol=1e-6, grad_rtol=1e-4, grad_atol=1e-6)


def test_image_preset_init_without_perturbation_matches_reference():
    """ginr.init exactly as shipped (zero biases, float32), no modulation."""
    cfg = PRESET_SHAPES["image"]
    params = hyponet.init(cfg, torch.Generator().manual_seed(5))
    coords = make_coords(cfg, shape=(16,), dtype=torch.float32)
    assert_matches(cfg, params, coords, {}, rtol=1e-5, atol=1e-6, grad_rtol=1e-4, grad_atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Modulated weights
# ----------------------------------------------------------------------------------------------------------------------


def test_modulated_weight_replaces_base_weight():
    cfg = CONFIGS["image_sigma64"]
    params = make_params(cfg)
    coords = make_coords(cfg)
    weights = make_weights(cfg, (2,))
    out = hyponet.forward(params, cfg, coords, weights)
    swapped = {**params, "layers": {**params["layers"], "2": {**params["layers"]["2"], "weight": weights["2"]}}}
    assert torch.allclose(out, hyponet.forward(swapped, cfg, coords), rtol=0, atol=1e-14)
    assert not torch.allclose(out, hyponet.forward(params, cfg, coords), atol=1e-3)
    # the replaced base weight gets no gradient; its bias still does
    base_w, base_b = params["layers"]["2"]["weight"], params["layers"]["2"]["bias"]
    g_w, g_b = torch.autograd.grad(out.sum(), [base_w, base_b], allow_unused=True)
    assert g_w is None
    assert g_b is not None and g_b.abs().max() > 0


def test_weightless_layer_needs_a_weight():
    cfg = CONFIGS["image_sigma64"]
    params = make_params(cfg, weightless=(1, 3))
    for k, layer in params["layers"].items():
        assert ("weight" in layer) == (k not in ("1", "3")), k
        assert "bias" in layer
    coords = make_coords(cfg)
    with pytest.raises(KeyError):
        hyponet.forward(params, cfg, coords)
    with pytest.raises(KeyError):
        hyponet.forward(params, cfg, coords, make_weights(cfg, (1,)))
    weights = make_weights(cfg, (1, 3))
    assert_matches(cfg, params, coords, weights, rtol=1e-10, atol=1e-10)


def test_weightless_layer_without_bias():
    cfg = CONFIGS["no_bias"]
    params = make_params(cfg, weightless=(0,))
    assert params["layers"]["0"] == {}
    coords = make_coords(cfg)
    weights = make_weights(cfg, (0,))
    out = hyponet.forward(params, cfg, coords, weights)
    ref = oracles.hyponet({**params, "layers": {**params["layers"], "0": {"weight": weights["0"]}}}, cfg, coords, {})
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_normalised_weight_is_scale_invariant():
    """With normalize_weight every column is divided by its norm, so scaling a modulated weight changes nothing."""
    cfg = CONFIGS["image_sigma64"]
    params = make_params(cfg)
    coords = make_coords(cfg)
    w = make_weights(cfg, (1,))["1"].detach()
    col_scale = torch.rand(w.shape[1], dtype=w.dtype) * 5 + 0.1
    a = hyponet.forward(params, cfg, coords, {"1": w})
    b = hyponet.forward(params, cfg, coords, {"1": w * col_scale})
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    raw = dataclasses.replace(cfg, normalize_weight=False)
    a = hyponet.forward(params, raw, coords, {"1": w})
    b = hyponet.forward(params, raw, coords, {"1": w * col_scale})
    assert not torch.allclose(a, b, atol=1e-3)


def test_small_and_zero_weight_columns():
    """Columns are divided by max(||W'[:, j]||, 1e-12): a column of norm 1e-9 still becomes a unit column (an eps
    of 1e-6 would not), and a zero column stays zero (finite output)."""
    cfg = CONFIGS["image_sigma64"]
    params = make_params(cfg)
    coords = make_coords(cfg)
    w = make_weights(cfg, (1,))["1"].detach().clone()
    w[:, 3] = 0
    w[:, 5] = w[:, 5] / w[:, 5].norm() * 1e-9
    out = hyponet.forward(params, cfg, coords, {"1": w})
    ref = oracles.hyponet(params, cfg, coords, {1: w})
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)
    unit = w.clone()
    unit[:, 5] = unit[:, 5] * 1e9
    assert torch.allclose(out, hyponet.forward(params, cfg, coords, {"1": unit}), rtol=1e-8, atol=1e-8)
