"""The training options (fidelity 4.2 coordinate noise, fidelity 4.3 coordinate subsampling; quirk 22) and the
reconstruction objective with them on a hypernet, against ``oracles.hypernet``."""

from __future__ import annotations

import dataclasses

import oracles
import pytest
import torch
from test_hypernet import TINY_TRANSFORMER, audio_config, image_config

from ginr.coords import grid
from ginr.models.hypernet import HypernetINR
from ginr.pytree import flatten
from ginr.train import objective


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
    pred = oracles.hypernet(oracles.cast(params, torch.float64), config, signal.double(), points.double())
    mse = ((pred - target.double()) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(out["mse"].double(), mse, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["loss"].double(), mse.mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["psnr"].double(), -10 * torch.log10(mse), rtol=1e-5, atol=1e-5)
    # the options took effect: the full-grid loss differs
    full = objective.reconstruction_objective(model, params, signal, coord_range=(-1.0, 1.0))
    full_pred = oracles.hypernet(
        oracles.cast(params, torch.float64), config, signal.double(), grid((8, 8)).double().flatten(0, -2)
    )
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
