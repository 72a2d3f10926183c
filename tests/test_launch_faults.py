"""Faults at the edges of a run: a refusal under ``accelerate launch -q`` (the README's way) is one message with no
traceback; a diverged run never names a checkpoint of diverged weights as good."""

from __future__ import annotations

import subprocess

from conftest import tiny_train_flags
from test_launch import command

from ginr.train import checkpoint


def test_a_refusal_under_accelerate_launch_q_is_one_message_without_a_traceback():
    argv, env = command(["--model", "ipc-mets"], "cpu.yaml", "train.py")
    argv.insert(argv.index("--config_file"), "-q")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1  # accelerate's status for a failed child (the recipe's own is 2)
    assert result.stderr.count("error: unknown --model ipc-mets; did you mean ipc-meta?") == 1, result.stderr
    assert result.stderr.count("--model ipc-meta --data photos") == 1  # the list of valid pairs, once
    assert "Traceback" not in result.stderr


def test_no_checkpoint_is_written_or_named_good_during_a_skip_streak(tmp_path, image_folder):
    """--optim.lr 1e30: step 1's finite update throws the weights to ~1e30, every later loss overflows. The epoch-1
    checkpoint (step 4) falls in the skip streak: not written, so none is named good and --resume finds none."""
    args = [*tiny_train_flags(image_folder, tmp_path, "run"), "--optim.lr", "1e30", "--train.nonfinite", "skip"]
    argv, env = command([*args, "--train.skip-limit", "5"], "cpu.yaml", "train.py")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1
    assert "stopped because 5 steps in a row were skipped (--train.skip-limit 5). Last good checkpoint: none yet" in (
        result.stderr
    ), result.stderr[-3000:]
    assert "no checkpoint at step 4: its weights gave numbers that are not finite" in result.stdout + result.stderr
    assert checkpoint.latest(tmp_path / "run") is None
