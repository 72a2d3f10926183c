"""Training pieces in-process: EMA, the precision policy, the params holder, the logged utilisation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_meta_config, tiny_train_flags
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ginr
from ginr import presets
from ginr.hub import read_config
from ginr.models import build
from ginr.module import ParamsModule
from ginr.pytree import flatten
from ginr.train import flops, setup
from ginr.train.ema import init_ema, update_ema
from ginr.train.objective import reconstruction_objective


def test_ema_follows_the_warmed_up_decay():
    weights = {"w": torch.zeros(3)}
    ema = init_ema(weights)
    weights["w"] += 1.0
    update_ema(ema, weights, decay=0.999, step=0)  # mu = min(0.999, 1/10) = 0.1
    assert torch.allclose(ema["w"], torch.full((3,), 0.9))
    update_ema(ema, weights, decay=0.5, step=1000)  # mu = 0.5
    assert torch.allclose(ema["w"], torch.full((3,), 0.95))


def test_bf16_autocast_stays_close_to_fp32_with_fp32_loss():
    config = tiny_meta_config(16, 8, 16)
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    signal = torch.rand(3, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    exact = reconstruction_objective(model, params, signal, coord_range=(-1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = reconstruction_objective(model, params, signal, coord_range=(-1, 1))
    assert low["loss"].dtype == torch.float32  # the loss and metrics stay in fp32
    assert low["loss"].item() == pytest.approx(exact["loss"].item(), rel=0.05)
    assert low["loss"].item() != exact["loss"].item()  # autocast really ran in bf16
    low["loss"].backward()
    assert all(torch.isfinite(leaf.grad).all() for leaf in flatten(params).values() if leaf.grad is not None)


def test_holder_exposes_the_pytree_as_parameters_and_buffers():
    config = tiny_meta_config(16, 8, 16)
    params = ginr.init(config, torch.Generator().manual_seed(0))
    module = ParamsModule(build(config.model_name, config.model), params)
    assert [name for name, _ in module.named_buffers()] == ["hyponet.fourier.frequencies"]
    names = {name for name, _ in module.named_parameters()}
    assert names == set(flatten(params)) - {"hyponet.fourier.frequencies"}
    tree = module.tree()
    assert tree["factors"]["init"]["1"] is module.factors.init.get_parameter("1")
    with pytest.raises(RuntimeError, match="without an objective"):
        module(torch.rand(1, 8, 8, 3))


@pytest.mark.parametrize(
    "cuda, cpu_flag, expected",
    [
        (True, False, "default"),  # a GPU: compiled
        (True, True, "off"),  # --train.cpu on a GPU machine
        (False, False, "off"),  # a CPU machine
    ],
)
def test_auto_compile_follows_the_machine_and_precision_stays_the_references(monkeypatch, cuda, cpu_flag, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    train = dataclasses.replace(presets.resolve("ipc-meta", "photos").train, cpu=cpu_flag)
    assert (train.precision, train.compile) == ("fp32", "auto")  # the fidelity policy: fp32 unless asked
    resolved = setup.resolve_auto(train)
    assert (resolved.precision, resolved.compile) == ("fp32", expected)


def test_explicit_compile_is_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    train = dataclasses.replace(presets.resolve("ipc-meta", "photos").train, precision="bf16", compile="off")
    assert setup.resolve_auto(train) == train


@pytest.mark.parametrize("precision, tf32", [("fp32", False), ("tf32", True)])
def test_tf32_matmuls_only_when_asked(precision, tf32):
    """Quirk 6 / fidelity 0: fp32 runs the reference's arithmetic with TF32 off; ``tf32`` turns it on for matmuls and
    convolutions. Each case starts from the opposite setting, so neither can pass by leaving the flags alone."""
    matmul, cudnn, threads = torch.backends.cuda.matmul, torch.backends.cudnn, torch.get_num_threads()
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = not tf32
    train = dataclasses.replace(presets.resolve("ipc-meta", "photos").train, precision=precision, cpu=True)
    try:
        setup.make_accelerator(train)
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (tf32, tf32)
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
        torch.set_num_threads(threads)


def test_the_first_ema_update_uses_the_warm_up_of_step_0(tmp_path, image_folder, train):
    """Fidelity 6.6: the reference updates its average with the step count before incrementing it, so after the first
    step the average is init + (1 - min(decay, 1/10)) (weights - init) = init + 0.9 (weights - init)."""
    flags = tiny_train_flags(image_folder, tmp_path, "run")
    train([*flags, "--train.ema", "0.999", "--train.max-steps", "1", "--train.no-eval-at-start"])
    folder = tmp_path / "run" / "checkpoints" / "step-00000001"
    ema, weights = load_file(folder / "ema.safetensors"), load_file(folder / "model" / "model.safetensors")
    config = read_config(tmp_path / "run")
    initial = flatten(build(config.model_name, config.model).init(torch.Generator().manual_seed(0)))
    moved = {name: weights[name] - initial[name] for name in weights if (weights[name] != initial[name]).any()}
    assert moved  # the step changed the weights
    for name, change in moved.items():
        torch.testing.assert_close(ema[name] - initial[name], 0.9 * change, rtol=1e-4, atol=1e-7)


def test_mfu_is_logged_beside_img_per_s(tmp_path, image_folder, train, monkeypatch):
    """train/mfu = FLOPs per instance (counted once, on the first step's micro-batch of 4) x train/img_per_s over the
    ceiling, which comes from the cache (measured here once, stubbed to 1 GFLOP/s)."""
    counted, measured = [], []
    step_flops = flops.step_flops
    monkeypatch.setattr(flops, "step_flops", lambda *args: counted.append(step_flops(*args)) or counted[-1])
    monkeypatch.setattr(flops, "matmul_ceiling", lambda device, precision: measured.append(precision) or 1e9)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    train([*tiny_train_flags(image_folder, tmp_path, "run"), "--train.no-eval-at-start"])
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    mfu, img_per_s = events.Scalars("train/mfu"), events.Scalars("train/img_per_s")
    assert len(counted) == 1 and measured == ["fp32"] and counted[0] > 0
    assert [event.step for event in mfu] == [event.step for event in img_per_s] == list(range(1, 9))
    for logged, rate in zip(mfu, img_per_s):
        assert logged.value == pytest.approx(counted[0] / 4 * rate.value / 1e9, rel=1e-5)
