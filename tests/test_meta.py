"""The meta-learned inner loop of ipc-meta and learned-init (fidelity 2.4, 3.3, quirks 20-21) against an autograd
reference.

The reference, ``oracles.meta_outer``, follows fidelity 2.4 the way the reference code does, independently of ginr's
functional machinery: batch-level tensors, ``V_b`` repeated per sample from ``V0``, a plain Python loop over the inner
steps, ``W_b = V_b @ U`` (or ``V_b``), the naive ``oracles.hyponet`` sample by sample (ones column, bias row,
per-column normalisation, Fourier features), ``L = sum_b MSE_b``, ``g = autograd.grad(L, V, create_graph=True)``, ``s_b = ||V_b||_F^2`` kept in the graph
and ``V <- V - inner_lr * s_b * g``. The outer loss is the mean over samples of each sample's MSE with the final ``V``.
"""

from __future__ import annotations

import oracles
import pytest
import torch

from ginr.config import FourierConfig, HyponetConfig, MetaINRConfig
from ginr.coords import grid
from ginr.models import build
from ginr.train.objective import reconstruction_objective

H, W, C, B = 8, 8, 3, 3
DTYPE = torch.float64


# ---- building blocks ---------------------------------------------------------------------------------------------


def small_hyponet(**overrides) -> HyponetConfig:
    fields = dict(
        n_layer=4,
        hidden_dim=(16,),
        input_dim=2,
        output_dim=C,
        fourier=FourierConfig(dim=8, sigma=8.0),
    )
    fields.update(overrides)
    return HyponetConfig(**fields)


def ipc_config(**overrides) -> MetaINRConfig:
    fields = dict(hyponet=small_hyponet(), rank=(4,), modulated_layers=(1,), n_inner_steps=2, inner_lr=0.01)
    fields.update(overrides)
    return MetaINRConfig(**fields)


def learned_init_config(**overrides) -> MetaINRConfig:
    fields = dict(
        hyponet=small_hyponet(), rank=(256,), modulated_layers=None, factorized=False, n_inner_steps=2, inner_lr=0.01
    )
    fields.update(overrides)
    return MetaINRConfig(**fields)


def make_params(model, seed: int = 0, dtype: torch.dtype = DTYPE) -> dict:
    """``model.init`` converted to ``dtype``; leaves keep whether they require grad. The biases (zero at init) get a
    small random value so that their role in the forward pass is visible in the tests."""
    params = model.init(torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1000)
    params = oracles.cast(params, dtype)
    with torch.no_grad():
        for layer in params["hyponet"]["layers"].values():
            layer["bias"].add_(0.1 * torch.randn(layer["bias"].shape, generator=gen, dtype=dtype))
    return params


def make_signal(seed: int = 1, batch: int = B, dtype: torch.dtype = DTYPE) -> torch.Tensor:
    return torch.rand(batch, H, W, C, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---- the library path --------------------------------------------------------------------------------------------


def lib_outer(model, params, signal, coords, **encode_kwargs):
    enc = model.encode(params, signal, coords, training=True, **encode_kwargs)
    pred = model.decode(params, enc.modulation, coords.flatten(0, -2))
    loss = (pred - signal.flatten(1, -2)).square().mean(dim=(1, 2)).mean()
    return loss, enc, pred


def grads_of(loss: torch.Tensor, params: dict) -> dict[str, torch.Tensor]:
    leaves = oracles.trainable(params)
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def assert_grads_close(got: dict, want: dict, tol: float) -> None:
    """Every gradient within ``tol`` of the reference, relative to the largest entry of that gradient."""
    assert got.keys() == want.keys()
    for name in want:
        atol = tol * want[name].abs().max().item()
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# fp64 throughout (the inner MSE stays fp64: metrics cast to *at least* fp32), so library and naive reference agree
# to fp64 rounding, ~1e-15 relative; the tolerances leave room for different reduction orders only.
RTOL, ATOL = 1e-10, 1e-12
GRAD_TOL = 1e-10


@pytest.fixture(scope="module")
def coords() -> torch.Tensor:
    return grid((H, W))


# ---- ipc-meta: values and second-order gradients -----------------------------------------------------------------


@pytest.mark.parametrize("n_inner_steps", [2, 3])
def test_ipc_meta_matches_reference(coords, n_inner_steps):
    model = build("ipc-meta", ipc_config(n_inner_steps=n_inner_steps))
    params = make_params(model)
    signal = make_signal()

    loss, enc, _ = lib_outer(model, params, signal, coords)
    ref_loss, ref_factors, ref_inner = oracles.meta_outer(params, model.config, signal, coords, n_inner_steps)

    assert set(enc.modulation) == {"1"}
    assert enc.modulation["1"].shape == (B, 2 * 8, 4)
    assert enc.modulation["1"].dtype == DTYPE
    torch.testing.assert_close(enc.modulation["1"], ref_factors[0], rtol=RTOL, atol=ATOL)
    # the factors really moved, and differently per sample
    v0 = params["factors"]["init"]["1"]
    assert (enc.modulation["1"] - v0).abs().max() > 1e-2
    assert (enc.modulation["1"][0] - enc.modulation["1"][1]).abs().max() > 1e-3
    torch.testing.assert_close(loss, ref_loss, rtol=RTOL, atol=ATOL)

    # inner MSE history: (B, T), the value before each update
    assert enc.inner_mse.shape == (B, n_inner_steps)
    torch.testing.assert_close(enc.inner_mse.double(), ref_inner, rtol=RTOL, atol=ATOL)
    first = oracles.meta_per_sample_mse(params, model.config, coords.flatten(0, -2), [v0.expand(B, -1, -1)], signal)
    torch.testing.assert_close(enc.inner_mse[:, 0].double(), first, rtol=RTOL, atol=ATOL)
    assert not torch.allclose(enc.inner_mse[:, 0], enc.inner_mse[:, -1])

    got, want = grads_of(loss, params), grads_of(ref_loss, params)
    assert set(want) == {
        "hyponet.layers.0.weight",
        "hyponet.layers.0.bias",
        "hyponet.layers.1.bias",
        "hyponet.layers.2.weight",
        "hyponet.layers.2.bias",
        "hyponet.layers.3.weight",
        "hyponet.layers.3.bias",
        "factors.init.1",
        "factors.shared.1",
    }
    assert "hyponet.fourier.frequencies" not in got  # frozen (quirk 3)
    for name, g in want.items():
        assert g.abs().max() > 0, name
    assert_grads_close(got, want, GRAD_TOL)


def test_modulated_layer_has_no_base_weight():
    model = build("ipc-meta", ipc_config())
    params = make_params(model)
    assert set(params["hyponet"]["layers"]["1"]) == {"bias"}
    assert set(params["hyponet"]["layers"]["0"]) == {"weight", "bias"}
    assert set(params["factors"]) == {"init", "shared"}


def test_float32_matches_float64_reference(coords):
    """The default fp32 path agrees with the fp64 reference to fp32 accuracy."""
    model = build("ipc-meta", ipc_config())
    params64 = make_params(model)
    params32 = oracles.cast(params64, torch.float32)
    signal = make_signal()
    loss, enc, _ = lib_outer(model, params32, signal.float(), coords)
    ref_loss, ref_factors, _ = oracles.meta_outer(params64, model.config, signal, coords, 2)
    assert enc.modulation["1"].dtype == torch.float32
    torch.testing.assert_close(enc.modulation["1"].double(), ref_factors[0], rtol=1e-4, atol=1e-5)
    got = grads_of(loss, params32)
    want = grads_of(ref_loss, params64)
    for name in want:
        assert rel_diff(got[name].double(), want[name]) < 1e-3, name


def test_lr_scale_is_not_detached(coords):
    """Quirk 20: ``s = ||V||^2`` is part of the outer graph; detaching it changes the outer gradients."""
    model = build("ipc-meta", ipc_config())
    params = make_params(model)
    signal = make_signal()
    loss, _, _ = lib_outer(model, params, signal, coords)
    got = grads_of(loss, params)
    detached = grads_of(oracles.meta_outer(params, model.config, signal, coords, 2, detach_scale=True)[0], params)
    assert rel_diff(got["factors.init.1"], detached["factors.init.1"]) > 1e-3


def test_first_order_drops_only_the_second_order_terms(coords):
    model = build("ipc-meta", ipc_config(first_order=True))
    second = build("ipc-meta", ipc_config(first_order=False))
    params = make_params(model)
    signal = make_signal()

    loss, enc, _ = lib_outer(model, params, signal, coords)
    ref_loss, ref_factors, _ = oracles.meta_outer(params, model.config, signal, coords, 2, detach_grad=True)
    # the forward values are those of the second-order path
    torch.testing.assert_close(enc.modulation["1"], ref_factors[0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(loss, ref_loss, rtol=RTOL, atol=ATOL)
    got = grads_of(loss, params)
    assert_grads_close(got, grads_of(ref_loss, params), GRAD_TOL)

    # the second-order terms are really gone: the full reference and the library's second-order path differ
    full = grads_of(lib_outer(second, params, signal, coords)[0], params)
    for name in ("factors.init.1", "factors.shared.1", "hyponet.layers.0.weight", "hyponet.layers.1.bias"):
        assert rel_diff(got[name], full[name]) > 1e-3, name
    # ...while the lr scale ||V||^2 stays differentiable in the first-order path
    both_detached = grads_of(
        oracles.meta_outer(params, model.config, signal, coords, 2, detach_grad=True, detach_scale=True)[0], params
    )
    assert rel_diff(got["factors.init.1"], both_detached["factors.init.1"]) > 1e-3


# ---- evaluation, step counts, chunking ---------------------------------------------------------------------------


@pytest.mark.parametrize("eval_inner_steps, expected", [(3, 3), (None, 2)])
def test_eval_uses_eval_inner_steps_without_a_graph(coords, eval_inner_steps, expected):
    model = build("ipc-meta", ipc_config(n_inner_steps=2, eval_inner_steps=eval_inner_steps))
    params = make_params(model)
    signal = make_signal()
    with torch.no_grad():
        enc = model.encode(params, signal, coords, training=False)
        pred = model.decode(params, enc.modulation, coords.flatten(0, -2))
    assert enc.inner_mse.shape == (B, expected)
    assert not enc.modulation["1"].requires_grad
    assert not pred.requires_grad
    assert not enc.inner_mse.requires_grad

    train = model.encode(params, signal, coords, training=True, n_steps=expected)
    assert train.modulation["1"].requires_grad
    torch.testing.assert_close(enc.modulation["1"], train.modulation["1"].detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(enc.inner_mse, train.inner_mse, rtol=1e-12, atol=1e-12)
    ref_factors, ref_inner = oracles.meta_adapt(params, model.config, signal, coords, expected)
    torch.testing.assert_close(enc.modulation["1"], ref_factors[0].detach(), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(enc.inner_mse.double(), ref_inner, rtol=RTOL, atol=ATOL)

    # training=True without n_steps always takes n_inner_steps
    default_train = model.encode(params, signal, coords, training=True)
    assert default_train.inner_mse.shape == (B, 2)


def test_n_steps_override_and_zero(coords):
    model = build("ipc-meta", ipc_config(n_inner_steps=2))
    params = make_params(model)
    signal = make_signal()
    v0 = params["factors"]["init"]["1"]

    enc = model.encode(params, signal, coords, training=True, n_steps=1, keep_trajectory=True)
    ref_factors, ref_inner = oracles.meta_adapt(params, model.config, signal, coords, 1)
    assert enc.inner_mse.shape == (B, 1)
    torch.testing.assert_close(enc.modulation["1"], ref_factors[0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(enc.inner_mse.double(), ref_inner, rtol=RTOL, atol=ATOL)
    assert len(enc.trajectory) == 2
    torch.testing.assert_close(enc.trajectory[0]["1"], v0.detach().expand(B, -1, -1), rtol=0, atol=0)
    torch.testing.assert_close(enc.trajectory[-1]["1"], enc.modulation["1"], rtol=0, atol=0)

    zero = model.encode(params, signal, coords, training=True, n_steps=0)
    assert zero.inner_mse.shape == (B, 0)
    assert zero.modulation["1"].shape == (B, *v0.shape)
    torch.testing.assert_close(zero.modulation["1"], v0.detach().expand(B, -1, -1), rtol=0, atol=0)
    # with no step the outer loss is the plain decode of V0; V0 still gets its gradient
    pred = model.decode(params, zero.modulation, coords.flatten(0, -2))
    loss = (pred - signal.flatten(1, -2)).square().mean(dim=(1, 2)).mean()
    ref_loss = oracles.meta_outer(params, model.config, signal, coords, 0)[0]
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-15)  # no inner step: no fp32 inner loss involved
    assert_grads_close(grads_of(loss, params), grads_of(ref_loss, params), 1e-12)

    with torch.no_grad():
        evaluated = model.encode(params, signal, coords, training=False, n_steps=3)
    assert evaluated.inner_mse.shape == (B, 3)


@pytest.mark.parametrize("chunk", [1, 2])
def test_vmap_chunking_matches_unchunked(coords, chunk):
    plain = build("ipc-meta", ipc_config())
    chunked = build("ipc-meta", ipc_config(vmap_chunk_size=chunk))
    params = make_params(plain)
    signal = make_signal()
    loss, enc, pred = lib_outer(plain, params, signal, coords)
    loss_c, enc_c, pred_c = lib_outer(chunked, params, signal, coords)
    torch.testing.assert_close(enc_c.modulation["1"], enc.modulation["1"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(enc_c.inner_mse, enc.inner_mse, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(pred_c, pred, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(loss_c, loss, rtol=RTOL, atol=ATOL)
    assert_grads_close(grads_of(loss_c, params), grads_of(loss, params), GRAD_TOL)


def test_float64_inner_loop_keeps_float64_precision(coords):
    """With fp64 params and signal the whole inner loop should run in fp64: the adapted factors and the second-order
    outer gradients then match the fp64 reference, and chunked vmap matches unchunked, to ~1e-15 relative (an inner
    loss cast to fp32 would leave ~1e-8).
    """
    model = build("ipc-meta", ipc_config())
    chunked = build("ipc-meta", ipc_config(vmap_chunk_size=1))
    params = make_params(model)
    signal = make_signal()
    loss, enc, _ = lib_outer(model, params, signal, coords)
    ref_loss, ref_factors, _ = oracles.meta_outer(params, model.config, signal, coords, 2)
    loss_c = lib_outer(chunked, params, signal, coords)[0]
    got, want, got_c = grads_of(loss, params), grads_of(ref_loss, params), grads_of(loss_c, params)
    assert rel_diff(enc.modulation["1"], ref_factors[0]) < 1e-13
    assert max(rel_diff(got[n], want[n]) for n in want) < 1e-12
    assert max(rel_diff(got_c[n], got[n]) for n in want) < 1e-12


# ---- learned-init (fidelity 3.3, quirk 21) ---------------------------------------------------------------------------


def test_learned_init_matches_reference(coords):
    config = learned_init_config()
    model = build("learned-init", config)
    params = make_params(model)
    signal = make_signal()
    n_layer = config.hyponet.n_layer

    shapes = [(16, 16), (16, 16), (16, 16), (16, C)]
    assert set(params["factors"]) == {"init"}
    for k in range(n_layer):
        assert params["factors"]["init"][str(k)].shape == shapes[k]
        assert set(params["hyponet"]["layers"][str(k)]) == {"bias"}  # no base weight rows at all

    loss, enc, _ = lib_outer(model, params, signal, coords)
    ref_loss, ref_factors, ref_inner = oracles.meta_outer(params, config, signal, coords, 2)
    # only the weights adapt: the modulation holds one V per layer and no bias
    assert set(enc.modulation) == {str(k) for k in range(n_layer)}
    for k in range(n_layer):
        assert enc.modulation[str(k)].shape == (B, *shapes[k])
        torch.testing.assert_close(enc.modulation[str(k)], ref_factors[k], rtol=RTOL, atol=ATOL)
        assert (enc.modulation[str(k)] - params["factors"]["init"][str(k)]).abs().max() > 1e-4
    torch.testing.assert_close(enc.inner_mse.double(), ref_inner, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(loss, ref_loss, rtol=RTOL, atol=ATOL)

    got, want = grads_of(loss, params), grads_of(ref_loss, params)
    assert set(want) == {f"hyponet.layers.{k}.bias" for k in range(n_layer)} | {
        f"factors.init.{k}" for k in range(n_layer)
    }
    for k in range(n_layer):  # the biases are meta-learned in the outer loop
        assert want[f"hyponet.layers.{k}.bias"].abs().max() > 0
    assert_grads_close(got, want, GRAD_TOL)


# ---- normalize_weight=False, decode coordinates ------------------------------------------------------------------


def test_normalize_weight_false_makes_lr_scale_one(coords):
    config = ipc_config(hyponet=small_hyponet(normalize_weight=False), inner_lr=1e-3)
    model = build("ipc-meta", config)
    params = make_params(model)
    signal = make_signal()
    loss, enc, _ = lib_outer(model, params, signal, coords)
    ref_loss, ref_factors, ref_inner = oracles.meta_outer(params, config, signal, coords, 2)
    torch.testing.assert_close(enc.modulation["1"], ref_factors[0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(enc.inner_mse.double(), ref_inner, rtol=RTOL, atol=ATOL)
    assert_grads_close(grads_of(loss, params), grads_of(ref_loss, params), GRAD_TOL)

    # one step is exactly V0 - inner_lr * dMSE_b/dV (no ||V||^2 factor)
    one = model.encode(params, signal, coords, training=True, n_steps=1)
    v = params["factors"]["init"]["1"].unsqueeze(0).repeat(B, 1, 1)
    per_sample = oracles.meta_per_sample_mse(params, config, coords.flatten(0, -2), [v], signal)
    (g,) = torch.autograd.grad(per_sample.sum(), [v])
    torch.testing.assert_close(one.modulation["1"], v - config.inner_lr * g, rtol=RTOL, atol=ATOL)
    scaled = v - config.inner_lr * v.square().sum(dim=(1, 2), keepdim=True) * g
    assert rel_diff(one.modulation["1"] - v, scaled - v) > 0.5


def test_decode_per_instance_coords_equals_shared(coords):
    model = build("ipc-meta", ipc_config())
    params = make_params(model)
    signal = make_signal()
    enc = model.encode(params, signal, coords, training=True)
    flat = coords.flatten(0, -2)
    shared = model.decode(params, enc.modulation, flat)
    per_instance = model.decode(params, enc.modulation, flat.unsqueeze(0).expand(B, -1, -1))
    assert shared.shape == per_instance.shape == (B, H * W, C)
    torch.testing.assert_close(per_instance, shared, rtol=1e-12, atol=1e-12)
    # different coordinates per instance are honoured: instance b at shifted points
    shifted = torch.stack([flat + 0.01 * b for b in range(B)])
    out = model.decode(params, enc.modulation, shifted)
    for b in range(B):
        single = model.decode(params, enc.modulation, shifted[b])[b]
        torch.testing.assert_close(out[b], single, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out[1], shared[1])


# ---- the training objective (fidelity 4.4) ---------------------------------------------------------------------------


def test_reconstruction_objective(coords):
    model = build("ipc-meta", ipc_config())
    params = make_params(model)
    signal = make_signal()
    out = reconstruction_objective(model, params, signal, coord_range=(-1, 1))
    ref_loss, ref_factors, ref_inner = oracles.meta_outer(params, model.config, signal, coords, 2)
    ref_mse = oracles.meta_per_sample_mse(params, model.config, coords.flatten(0, -2), ref_factors, signal)

    assert out["mse"].shape == (B,) and out["psnr"].shape == (B,)
    torch.testing.assert_close(out["mse"].double(), ref_mse.detach(), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(out["loss"].double(), ref_loss.detach(), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(out["loss"], out["mse"].mean(), rtol=1e-6, atol=0)
    torch.testing.assert_close(out["psnr"], -10 * torch.log10(out["mse"]), rtol=1e-6, atol=0)
    torch.testing.assert_close(out["psnr"].double(), -10 * torch.log10(ref_mse.detach()), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["inner_psnr"].double(), -10 * torch.log10(ref_inner), rtol=1e-5, atol=1e-5)
    assert out["loss"].requires_grad and not out["psnr"].requires_grad
    # the loss drives the outer step: its gradients are the reference's
    got = grads_of(out["loss"], params)
    want = grads_of(ref_loss, params)
    for name in want:
        assert rel_diff(got[name], want[name]) < 1e-4, name

    # a different coordinate range changes the grid the objective uses
    other = reconstruction_objective(model, params, signal, coord_range=(-3, 3))
    ref_other = oracles.meta_outer(params, model.config, signal, grid((H, W), (-3, 3)), 2)[0]
    torch.testing.assert_close(other["loss"].double(), ref_other.detach(), rtol=1e-5, atol=1e-8)
