"""A launched fine-tuning run from a bare model folder (no optimizer state beside it): it says it takes the
warm-up, records it in its config, and its learning rate starts at lr / --optim.init-warmup-steps."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_train_flags
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_launch import launch


def test_fine_tuning_a_model_folder_warms_up_and_says_so(tmp_path, image_folder, train):
    train([*tiny_train_flags(image_folder, tmp_path, "source"), "--train.epochs", "1"])  # in-process: faster
    model = tmp_path / "source" / "checkpoints" / "step-00000004" / "model"
    flags = ["--train.max-steps", "2", "--optim.init-warmup-steps", "4", "--train.out-dir", str(tmp_path)]
    result = launch(["--init-from", str(model), *flags, "--train.run-name", "ft"])
    assert f"fine-tuning: {model} keeps no optimizer state" in result.stdout + result.stderr
    assert "the learning rate warmed up over 4 steps" in result.stdout + result.stderr
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["optim"]["init_state"] == "warm-up" and saved["train"]["init_from"] == str(model)
    lr = saved["optim"]["lr"]
    events = EventAccumulator(str(tmp_path / "ft" / "tensorboard")).Reload()
    assert [event.value for event in events.Scalars("train/lr")] == pytest.approx([lr / 4, lr * 2 / 4])
