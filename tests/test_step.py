"""The training step in-process: non-finite losses, gradients and weights are caught, skipped or stopped on."""

from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch
from accelerate import Accelerator

from ginr import presets
from ginr.coords import grid
from ginr.data import BatchPlan
from ginr.models import build
from ginr.module import ParamsModule
from ginr.train.objective import objective_for
from ginr.train.step import NonFiniteError, NonFiniteGuard, StepResult, train_step

PLAN = BatchPlan(global_batch=4, micro_batch=2, num_processes=1, accumulation=2)


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def make_run(accelerator):
    config = presets.resolve("ipc-meta", "photos")
    hyponet = dataclasses.replace(
        config.model.hyponet, hidden_dim=(8,), fourier=dataclasses.replace(config.model.hyponet.fourier, dim=4)
    )
    model = build(config.model_name, dataclasses.replace(config.model, hyponet=hyponet, rank=(8,)))
    module = ParamsModule(model, model.init(torch.Generator().manual_seed(0)), objective=objective_for(config))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    return accelerator.prepare(module, optimizer)


def batch(seed: int) -> list[torch.Tensor]:
    """One global batch: ``accumulation`` micro-batches of 2 images of 4x4 px."""
    signal = torch.rand(PLAN.global_batch, 4, 4, 3, generator=torch.Generator().manual_seed(seed))
    return list(signal.split(PLAN.micro_batch))


def step(module, optimizer, accelerator, micro_batches, max_grad_norm=None) -> StepResult:
    return train_step(
        module, optimizer, iter(micro_batches), accelerator=accelerator, plan=PLAN, lr=1e-2, max_grad_norm=max_grad_norm
    )


def weights(module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_logged_inner_psnr_is_the_mean_of_per_sample_psnrs(accelerator):
    """Fidelity 4.4: the meta trainer logs, per inner step, the mean over samples of each sample's PSNR (not the PSNR of
    the mean MSE, which is lower whenever the samples differ)."""
    module, optimizer = make_run(accelerator)
    model, params = module.model, module.tree()
    micro_batches = batch(1)
    with torch.no_grad():
        per_sample = []
        for signal in micro_batches:
            coords = grid(tuple(signal.shape[1:-1]), (-1.0, 1.0))
            inner_mse = model.encode(params, signal, coords, training=True).inner_mse
            per_sample.append(-10 * torch.log10(inner_mse))
    per_sample = torch.cat(per_sample)
    result = step(module, optimizer, accelerator, micro_batches)
    torch.testing.assert_close(result.metrics["inner_psnr"], per_sample.mean(dim=0), rtol=1e-5, atol=1e-5)
    psnr_of_mean_mse = -10 * torch.log10((10 ** (-per_sample / 10)).mean(dim=0))
    assert (result.metrics["inner_psnr"] > psnr_of_mean_mse + 1e-3).all()


def test_a_nan_in_the_data_skips_the_step_and_leaves_weights_and_optimizer_untouched(accelerator):
    """A run that meets a NaN image ends exactly where a run that never saw that batch ends."""
    module, optimizer = make_run(accelerator)
    clean_module, clean_optimizer = make_run(accelerator)
    assert not step(module, optimizer, accelerator, batch(1), max_grad_norm=0.1).skipped
    before, moments = weights(module), copy.deepcopy(optimizer.state_dict())

    poisoned = batch(2)
    poisoned[1][0, 2, 3, 1] = float("nan")  # micro-batch 1, instance 0: position (1 x 1 + 0) x 2 + 0 = 2
    result = step(module, optimizer, accelerator, poisoned, max_grad_norm=0.1)
    assert result.skipped and result.bad_positions == [2]
    assert not result.gradients_finite and result.weights_finite
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    state = optimizer.state_dict()["state"]
    assert all(torch.equal(moments["state"][i][k], state[i][k]) for i in state for k in state[i])  # Adam's step too
    assert all(p.grad is None for p in module.parameters())

    step(module, optimizer, accelerator, batch(3), max_grad_norm=0.1)
    for micro_batches in (batch(1), batch(3)):
        step(clean_module, clean_optimizer, accelerator, micro_batches, max_grad_norm=0.1)
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), clean_module.parameters()))


def test_a_nan_in_the_weights_stops_the_run_naming_the_step_the_batch_and_the_checkpoint(accelerator, tmp_path):
    module, optimizer = make_run(accelerator)
    with torch.no_grad():
        next(iter(module.parameters()))[0] = float("nan")
    result = step(module, optimizer, accelerator, batch(1))
    assert result.skipped and not result.weights_finite and result.bad_positions == [0, 1, 2, 3]
    guard = NonFiniteGuard("skip", limit=10)  # skipping cannot repair the weights: it stops at once
    last = tmp_path / "checkpoints" / "step-00000004"
    with pytest.raises(NonFiniteError) as error:
        guard.check(result, 7, batch=lambda: [11, 5, 2, 8], last_checkpoint=lambda: last)
    message = str(error.value)
    assert message.startswith("step 7: the weights are not finite (an earlier update diverged)")
    assert "the loss is not finite on training instances [11, 5, 2, 8]" in message
    assert "skipping cannot recover weights that are not finite" in message
    assert f"Last good checkpoint: {last}; continue from it with --resume" in message


def bad(positions=(), gradients=True) -> StepResult:
    return StepResult(metrics={}, bad_positions=list(positions), gradients_finite=gradients, weights_finite=True)


GOOD = StepResult(metrics={}, bad_positions=[], gradients_finite=True, weights_finite=True)


def test_skip_counts_and_stops_after_the_limit_in_a_row():
    guard = NonFiniteGuard("skip", limit=3)
    check = functools.partial(guard.check, batch=lambda: [4, 0, 9, 1], last_checkpoint=lambda: None)
    assert check(GOOD, 1) is None
    assert check(bad([2]), 2) == (
        "step 2: the loss is not finite on training instances [9] (the step's batch: training instances "
        "[4, 0, 9, 1]); skipped (1 skipped so far)"
    )
    assert check(bad(gradients=False), 3).startswith("step 3: the loss or the gradients are not finite")
    assert check(GOOD, 4) is None and (guard.skipped, guard.in_a_row) == (2, 0)
    check(bad([0]), 5)
    check(bad([0]), 6)
    with pytest.raises(NonFiniteError, match=r"step 7: .*3 steps in a row were skipped \(--train.skip-limit 3\)"):
        check(bad([0]), 7)
    assert guard.skipped == 5


def test_stop_stops_at_the_first_non_finite_step():
    guard = NonFiniteGuard("stop", limit=10)
    with pytest.raises(NonFiniteError) as error:
        guard.check(bad([1]), 3, batch=lambda: [6, 7], last_checkpoint=lambda: None)
    assert str(error.value) == (
        "step 3: the loss is not finite on training instances [7] (the step's batch: training instances [6, 7]); "
        "stopped because --train.nonfinite stop. Last good checkpoint: none yet"
    )
