"""Evaluation survives running out of device memory: smaller chunks, the same metrics."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_meta_config

from ginr import presets
from ginr.models import build
from ginr.train.evaluate import evaluate


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


@pytest.fixture
def tiny():
    config = tiny_meta_config()
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    signal = torch.rand(9, 6, 6, 3, generator=torch.Generator().manual_seed(1))
    return model, params, [signal[:6], signal[6:]]  # two batches: 6 and 3 instances


def run(model, params, loader, accelerator):
    return evaluate(model, params, loader, accelerator=accelerator, coord_range=(-1.0, 1.0))


def fits_at_most(model, size: int, error: Exception, monkeypatch) -> list[int]:
    """Make ``model.encode`` fail with ``error`` on batches above ``size``; returns the batch sizes it was given."""
    encode, seen = model.encode, []

    def limited(params, signal, *args, **kwargs):
        seen.append(signal.shape[0])
        if signal.shape[0] > size:
            raise error
        return encode(params, signal, *args, **kwargs)

    monkeypatch.setattr(model, "encode", limited)
    return seen


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory"),
    ],
    ids=["cuda", "other backend"],
)
def test_out_of_memory_falls_back_to_smaller_chunks_with_the_same_metrics(
    tiny, accelerator, monkeypatch, caplog, error
):
    model, params, loader = tiny
    whole = run(model, params, loader, accelerator)
    seen = fits_at_most(model, 2, error, monkeypatch)
    with caplog.at_level(logging.WARNING):
        chunked = run(model, params, loader, accelerator)
    # batch 6: 6 and 3 fail, then 2 + 2 + 2; images (4 instances) fail and are left out; batch 3: 2 + 1
    assert seen == [6, 3, 2, 2, 2, 4, 2, 1]
    assert chunked.metrics.keys() == whole.metrics.keys() and chunked.metrics["count"] == 9
    for name, value in whole.metrics.items():
        assert chunked.metrics[name] == pytest.approx(value, rel=1e-6), name
    assert whole.images and not chunked.images
    assert "measuring 3 instances at a time" in caplog.text and "measuring 2 instances at a time" in caplog.text
    assert "out of memory drawing the reconstruction images; leaving them out" in caplog.text


def test_out_of_memory_on_one_instance_and_other_errors_are_raised(tiny, accelerator, monkeypatch):
    model, params, loader = tiny
    fits_at_most(model, 0, torch.cuda.OutOfMemoryError("CUDA out of memory"), monkeypatch)
    with pytest.raises(torch.OutOfMemoryError, match="evaluation ran out of memory on a single instance"):
        run(model, params, loader, accelerator)
    monkeypatch.undo()
    fits_at_most(model, 2, RuntimeError("mat1 and mat2 shapes cannot be multiplied"), monkeypatch)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run(model, params, loader, accelerator)


def test_evaluation_never_shifts_the_training_rng(tiny, accelerator, monkeypatch):
    """A model drawing random numbers in evaluation (dropout left on, say) leaves the global stream where it was."""
    model, params, loader = tiny
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *args, **kwargs: (torch.rand(3), encode(*args, **kwargs))[1])
    state = torch.get_rng_state()
    run(model, params, loader, accelerator)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("n_steps", [1, 3])
def test_inner_psnr_is_reported_per_step_only(tiny, accelerator, n_steps):
    model, params, loader = tiny
    metrics = evaluate(model, params, loader, accelerator=accelerator, coord_range=(-1.0, 1.0), n_steps=n_steps)
    inner = sorted(name for name in metrics.metrics if name.startswith("inner_psnr"))
    assert inner == [f"inner_psnr/{t}" for t in range(n_steps)]  # no bare inner_psnr beside inner_psnr/0


@pytest.mark.parametrize("signal_shape", [(6, 6, 3), (40, 1)], ids=["image", "audio"])
def test_metrics_are_means_of_per_instance_values_on_unclamped_outputs(accelerator, signal_shape):
    """Quirk 23 and fidelity 4.4: psnr is the mean over instances of -10 log10(instance MSE), measured on the raw
    outputs; an output bias of 2 puts them far outside [0, 1], where a clamp would change every figure."""
    config = presets.resolve("ipc-meta", "photos")
    *shape, channels = signal_shape
    hyponet = dataclasses.replace(
        config.model.hyponet,
        input_dim=len(shape),
        output_dim=channels,
        output_bias=2.0,
        hidden_dim=(8,),
        fourier=dataclasses.replace(config.model.hyponet.fourier, dim=4 * len(shape)),
    )
    model = build(config.model_name, dataclasses.replace(config.model, hyponet=hyponet, rank=(8,)))
    params = model.init(torch.Generator().manual_seed(0))
    signal = torch.rand(5, *signal_shape, generator=torch.Generator().manual_seed(1))
    result = evaluate(model, params, [signal[:3], signal[3:]], accelerator=accelerator, coord_range=(-1.0, 1.0))

    axes = torch.meshgrid(*[(torch.arange(n) + 0.5) / n * 2 - 1 for n in shape], indexing="ij")  # pixel centres
    coords = torch.stack(axes, -1)
    with torch.enable_grad():
        modulation = model.encode(params, signal, coords, training=False).modulation
    pred = model.decode(params, modulation, coords.reshape(-1, len(shape))).detach().reshape(signal.shape)
    assert pred.min() > 1.0  # far outside the signal's range
    mse = ((pred - signal) ** 2).reshape(5, -1).mean(1)
    assert result.metrics["psnr"] == pytest.approx((-10 * torch.log10(mse)).mean().item(), rel=1e-5)
    assert result.metrics["mse"] == pytest.approx(mse.mean().item(), rel=1e-5)
    clamped = ((pred.clamp(0, 1) - signal) ** 2).reshape(5, -1).mean(1)
    assert abs((-10 * torch.log10(clamped)).mean().item() - result.metrics["psnr"]) > 1.0  # a clamp would show
    assert result.metrics["count"] == 5
