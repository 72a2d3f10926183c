"""Fine-tuning (``--init-from``) starts where the model is: the source run's Adam state restored when it kept one,
else a fresh Adam whose learning rate warms up; the run says and records which."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_flags
from safetensors.torch import load_file

from ginr import hub, models, presets, rules
from ginr.config import OptimConfig
from ginr.module import ParamsModule
from ginr.train import checkpoint, schedule, setup, state

NAME = ["--train.run-name", "ft"]


@pytest.fixture(scope="module")
def source(tmp_path_factory, image_folder, train) -> Path:
    """A finished tiny ipc-meta run (8 steps, checkpoints at 4 and 8) trained with a large learning rate, so that a
    fresh Adam's first full-size step visibly wrecks it."""
    out = tmp_path_factory.mktemp("source")
    train([*tiny_train_flags(image_folder, out, "source"), "--optim.lr", "5e-2"])
    return out / "source"


def held_out_psnr(run: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["psnr"]) for row in json.loads((run / "eval_metrics.json").read_text())]


def test_fine_tuning_a_run_restores_its_adam_state_and_its_first_step_keeps_the_psnr(source, tmp_path, train, capsys):
    train(["--init-from", str(source), "--train.max-steps", "1", "--train.out-dir", str(tmp_path), *NAME])
    newest = source / "checkpoints" / "step-00000008"
    assert (
        f"fine-tuning: Adam state restored from {newest} (after its step 8); the learning rate warmed up over 100 "
        "steps (--optim.init-warmup-steps)" in capsys.readouterr().out
    )
    run = tmp_path / "ft"
    assert json.loads((run / "config.json").read_text())["optim"]["init_state"] == "restored"
    (start, before), (step, after) = held_out_psnr(run)
    assert (start, step) == (0, 1) and before == held_out_psnr(source)[-1][1]
    assert after > before - 0.5, "the first step wrecked the model"
    tuned = load_file(str(run / "checkpoints" / "step-00000001" / "optimizer.safetensors"))
    saved = load_file(str(newest / "optimizer.safetensors"))
    assert tuned.keys() == saved.keys()
    assert torch.equal(tuned["state.0.step"], saved["state.0.step"] + 1)  # Adam continued: bias correction and all


def fresh_optimizer(model_folder: Path, optim: OptimConfig) -> torch.optim.Adam:
    config = hub.read_config(model_folder)
    model = models.build(config.model_name, config.model)
    return setup.adam(ParamsModule(model, hub.load_params(model_folder, model)).parameters(), optim)


def test_the_restored_moments_are_the_sources_and_the_runs_own_hyper_parameters_stay(source):
    folder = hub.model_dir(str(source))
    optimizer = fresh_optimizer(folder, OptimConfig(lr=3e-4, betas=(0.8, 0.99)))
    optim, note = state.start_fine_tuning(OptimConfig(lr=3e-4), str(source), folder, optimizer)
    assert optim.init_state == "restored" and "restored" in note
    saved = load_file(str(folder.parent / "optimizer.safetensors"))
    restored, _ = checkpoint.optimizer_state(optimizer)
    assert restored.keys() == saved.keys() and all(torch.equal(restored[k], saved[k]) for k in saved)
    assert optimizer.param_groups[0]["lr"] == 3e-4 and optimizer.param_groups[0]["betas"] == (0.8, 0.99)


def test_a_bare_model_folder_takes_the_warm_up_and_says_so(source):
    folder = source / "checkpoints" / "step-00000008" / "model"  # a model folder: no optimizer state beside it
    optimizer = fresh_optimizer(folder, OptimConfig())
    optim, note = state.start_fine_tuning(OptimConfig(init_warmup_steps=7), str(folder), folder, optimizer)
    assert optim.init_state == "warm-up" and not optimizer.state
    assert note == (
        f"fine-tuning: {folder} keeps no optimizer state (only run and checkpoint folders do); a fresh Adam, the "
        "learning rate warmed up over 7 steps (--optim.init-warmup-steps)"
    )


def test_optimizer_state_that_does_not_fit_takes_the_warm_up_naming_why(source):
    folder = hub.model_dir(str(source))
    params = [torch.zeros(3, requires_grad=True)]  # not the source's parameters
    optimizer = torch.optim.Adam(params)
    optim, note = state.start_fine_tuning(OptimConfig(), str(source), folder, optimizer)
    assert optim.init_state == "warm-up" and not optimizer.state
    assert f"the optimizer state of {folder.parent} does not fit" in note


@pytest.mark.parametrize("init_state", ["restored", "warm-up"])
def test_a_fine_tuning_run_warms_up_from_lr_over_n_and_a_run_from_scratch_does_not(init_state):
    warm = OptimConfig(lr=1e-3, init_warmup_steps=4, init_state=init_state)
    assert [schedule.learning_rate(s, warm, 10, 100) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )
    assert schedule.learning_rate(0, dataclasses.replace(warm, init_state=None), 10, 100) == 1e-3
    both = dataclasses.replace(warm, warmup_epochs=1.0)  # on top of the epoch warm-up (its first step is at lr 0)
    assert schedule.learning_rate(2, both, 10, 100) == pytest.approx(1e-3 * 2 / 10 * 3 / 4)


def test_a_negative_warm_up_is_refused_naming_the_flag():
    config = presets.resolve("ipc-meta", "photos")
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, init_warmup_steps=-1))
    with pytest.raises(ValueError, match="--optim.init-warmup-steps=-1: must be >= 0"):
        rules.validate(config)
