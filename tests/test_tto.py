"""Test-time optimisation (ginr.tto, inference.refine): batched over instances exactly as one instance at a time, zero
steps is the plain evaluation, for signals and NeRF views."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from ginr import inference, metrics, presets, tasks, tto
from ginr.config import RenderConfig, TransformerConfig
from ginr.coords import grid
from ginr.models import build
from ginr.module import ParamsModule
from ginr.train.evaluate import evaluate, evaluate_views


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def tiny_signal_model(model_name: str):
    config = presets.resolve(model_name, "photos")
    hyponet = dataclasses.replace(
        config.model.hyponet, hidden_dim=(8,), fourier=dataclasses.replace(config.model.hyponet.fourier, dim=4)
    )
    model = dataclasses.replace(config.model, hyponet=hyponet)
    if model_name == "ipc-meta":
        model = dataclasses.replace(model, rank=(8,))
    else:
        tokenizer = dataclasses.replace(model.tokenizer, patch_size=3, padding=0, n_tokens=4)
        transformer = dataclasses.replace(model.transformer, embed_dim=16, n_layer=1, n_head=2)
        model = dataclasses.replace(model, tokenizer=tokenizer, transformer=transformer, n_weight_tokens=(4,))
    built = build(model_name, model)
    return built, built.init(torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def signals():
    return torch.rand(5, 6, 6, 3, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("model_name", ["ipc-meta", "ipc-transinr"])
def test_batched_refinement_equals_one_instance_at_a_time(model_name, signals):
    """The oracle: each instance refined alone by its own Adam in a Python loop (masked: on its observed pixels)."""
    model, params = tiny_signal_model(model_name)
    observed = torch.rand(6, 6, generator=torch.Generator().manual_seed(2)) < 0.5
    for mask in (None, observed):
        modulation = inference.encode(model, params, signals, (-1, 1)).modulation
        batched, history = inference.refine(model, params, signals, modulation, (-1, 1), 4, 1e-2, observed=mask)
        coords = grid((6, 6), (-1, 1))
        coords = coords.flatten(0, -2) if mask is None else coords[mask]
        for i in range(signals.shape[0]):
            target = signals[i : i + 1].flatten(1, -2) if mask is None else signals[i : i + 1, mask]
            alone = {name: t[i : i + 1].detach().clone().requires_grad_() for name, t in modulation.items()}
            optimizer = torch.optim.Adam(list(alone.values()), lr=1e-2)
            for _ in range(4):
                optimizer.zero_grad()
                metrics.mse(model.decode(inference.detached(params), alone, coords), target).backward()
                optimizer.step()
            for name, value in alone.items():
                torch.testing.assert_close(batched[name][i : i + 1], value.detach(), rtol=1e-5, atol=1e-6)
        assert history.shape == (5, 5) and (history[-1] > history[0]).all()


@pytest.mark.parametrize("model_name", ["ipc-meta", "ipc-transinr"])
def test_zero_steps_is_the_plain_evaluation_and_more_steps_fit_better(model_name, signals, accelerator):
    model, params = tiny_signal_model(model_name)
    loader = [signals[:3], signals[3:]]
    plain = evaluate(model, params, loader, accelerator=accelerator, coord_range=(-1.0, 1.0)).metrics
    test_time = tto.TestTime((0, 3, 10), lr=1e-2)
    result = evaluate(
        model, params, loader, accelerator=accelerator, coord_range=(-1.0, 1.0), test_time=test_time,
        keep_instances=True,
    )  # fmt: skip
    rows = tto.by_steps(result.metrics)
    assert [row["tto_steps"] for row in rows] == [0, 3, 10] and all(row["count"] == 5 for row in rows)
    for name in ("psnr", "mse", "ssim"):
        assert rows[0][name] == pytest.approx(plain[name], rel=1e-6), name
    assert rows[2]["psnr"] > rows[1]["psnr"] > rows[0]["psnr"]
    if model_name == "ipc-meta":
        assert rows[0]["inner_psnr/0"] == pytest.approx(plain["inner_psnr/0"], rel=1e-6)
    # every instance's numbers, in the split's order (the loader here is a list: instances numbered as they come)
    assert [row["instance"] for row in result.instances] == list(range(5))
    mean = sum(row["tto10/psnr"] for row in result.instances) / 5
    assert mean == pytest.approx(rows[2]["psnr"], rel=1e-6)


def test_by_steps_splits_rows_and_the_counts_are_checked():
    values = {"model": "m", "tto5/psnr": 2.0, "tto0/psnr": 1.0, "tto0/ssim": 0.5, "tto5/ssim": 0.6, "count": 3}
    assert tto.by_steps(values) == [
        {"model": "m", "count": 3, "tto_steps": 0, "psnr": 1.0, "ssim": 0.5},
        {"model": "m", "count": 3, "tto_steps": 5, "psnr": 2.0, "ssim": 0.6},
    ]
    with pytest.raises(ValueError, match="--tto-steps 0 -1"):
        tto.TestTime((0, -1))
    with pytest.raises(ValueError, match="--tto-lr 0"):
        tto.TestTime((1,), lr=0)


@pytest.fixture(scope="module")
def tiny_nerf():
    config = presets.resolve("ipc-transinr", "shapenet-cars", 1)
    model_config = dataclasses.replace(
        config.model,
        tokenizer=dataclasses.replace(config.model.tokenizer, n_tokens=4),
        transformer=TransformerConfig(embed_dim=16, n_layer=1, n_head=2, resid_dropout=0.0),
        n_weight_tokens=(4,),
        hyponet=dataclasses.replace(
            config.model.hyponet, hidden_dim=(8,), fourier=dataclasses.replace(config.model.hyponet.fourier, dim=6)
        ),
    )
    config = dataclasses.replace(
        config, model=model_config, data=dataclasses.replace(config.data, resolution=16),
        render=RenderConfig(points_per_ray=4, train_rays=16, chunk_rays=256, eval_rays=None),
    )  # fmt: skip
    model = build(config.model_name, config.model)
    torch.manual_seed(0)
    batch = tasks.random_batch(config, 2, torch.device("cpu"))
    return config, model, model.init(torch.Generator().manual_seed(0)), batch


def test_a_nerf_refines_on_its_support_views_and_is_measured_on_its_query_views(tiny_nerf, accelerator):
    config, model, params, batch = tiny_nerf
    render_config, depth = config.render, config.data.depth_range
    plain = evaluate_views(model, params, [batch], accelerator=accelerator, render_config=render_config,
                           depth_range=depth).metrics  # fmt: skip
    test_time = tto.TestTime((0, 5), lr=1e-2)
    measured = evaluate_views(model, params, [batch], accelerator=accelerator, render_config=render_config,
                              depth_range=depth, test_time=test_time).metrics  # fmt: skip
    rows = tto.by_steps(measured)
    assert [row["tto_steps"] for row in rows] == [0, 5]
    for name in ("psnr", "ssim"):
        assert rows[0][name] == pytest.approx(plain[name], rel=1e-6), name
    assert rows[1]["psnr"] != rows[0]["psnr"]

    # the rays are seeded on a fork of the RNG: the same refinement twice, and the caller's stream untouched
    modulation = model.encode(params, batch["support"], None, training=False).modulation
    before = torch.random.get_rng_state()
    first, history = tto.refine_views(model, params, batch["support"], modulation, render_config, depth, test_time)
    assert torch.equal(torch.random.get_rng_state(), before)
    second, _ = tto.refine_views(model, params, batch["support"], modulation, render_config, depth, test_time)
    for name in first:
        assert torch.equal(first[name], second[name])
    assert history.shape == (6, 2)


def test_the_bench_times_an_evaluation_with_20_test_time_steps(signals):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    import bench

    model, params = tiny_signal_model("ipc-transinr")
    module = ParamsModule(model, params)
    config = presets.resolve("ipc-transinr", "photos")
    assert bench.tto_rate(module, config, signals, contextlib.nullcontext(), torch.device("cpu")) > 0
