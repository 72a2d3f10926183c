"""SIGINT and SIGTERM under ``accelerate launch``: the run finishes its step, checkpoints, names the checkpoint and the
resume command, exits 130 / 143; the processes of a 2-process run agree; a later second signal stops at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
from conftest import tiny_train_flags
from test_launch import EXTRAS, assert_same_checkpoints, command, launch, process_tree

from ginr.train import checkpoint

LONG = ["--train.epochs", "50"]
"""200 steps: long enough to be signalled mid-run (the cadence of the tiny runs is per epoch of 4 steps)."""


def start_and_wait(args: list[str], config: str, run: Path) -> subprocess.Popen:
    """Start ``accelerate launch`` in a session of its own (as a terminal would) once the run's first checkpoint
    exists."""
    argv, env = command(args, config, "train.py")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    while process.poll() is None and not (run / "checkpoints" / "step-00000004").is_dir():
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    return process


def stopped_step(output: str, name: str, run: Path) -> int:
    """The step named by the one line the stopped run prints (asserting its form and that it is printed once)."""
    lines = re.findall(rf"stopped by {name} after step (\d+): checkpoint (\S+); continue with: (.*)", output)
    assert len(lines) == 1, output[-3000:]
    step, path, resume = lines[0]
    assert Path(path) == run / "checkpoints" / f"step-{int(step):08d}"
    assert resume == f"accelerate launch -q recipes/train.py --resume {run}"
    return int(step)


def test_ctrl_c_checkpoints_exits_130_and_resumes_bit_identically(tmp_path, image_folder):
    """A terminal's Ctrl-C (SIGINT to the launcher and the trainer, then accelerate's SIGTERM: one request)."""
    run = tmp_path / "stopped"
    process = start_and_wait([*tiny_train_flags(image_folder, tmp_path, "stopped"), *EXTRAS, *LONG], "cpu.yaml", run)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    step = stopped_step(out + err, "SIGINT", run)
    assert checkpoint.latest(run) == run / "checkpoints" / f"step-{step:08d}"

    end = ["--train.max-steps", str(step + 2)]
    launch(["--resume", str(run), *end])
    launch([*tiny_train_flags(image_folder, tmp_path, "whole"), *EXTRAS, *LONG, *end])
    assert_same_checkpoints(tmp_path / "whole", run, step + 2)  # bit-identical


def test_two_processes_stop_together_when_one_worker_gets_sigterm(tmp_path, image_folder):
    """Only rank 1 is signalled: the per-step agreement stops rank 0 after the same step, and both write their part
    of the checkpoint."""
    run = tmp_path / "run"
    process = start_and_wait([*tiny_train_flags(image_folder, tmp_path, "run"), *LONG], "cpu_2proc.yaml", run)
    workers = [p for p in process_tree(process.pid) if p.environ().get("RANK") == "1" and p.pid != process.pid]
    assert len(workers) == 1
    workers[0].send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    step = stopped_step(out + err, "SIGTERM", run)
    folder = run / "checkpoints" / f"step-{step:08d}"
    checkpoint.verify(folder)
    assert (folder / "rng-0.safetensors").is_file() and (folder / "rng-1.safetensors").is_file()
    assert checkpoint.read_trainer_state(folder)["step"] == step
    psutil.wait_procs(process_tree(process.pid), timeout=30)


SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from types import SimpleNamespace
    from ginr.train.signals import StopRequests
    with StopRequests(SimpleNamespace(num_processes=1)) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)  # within a second: the same request
        time.sleep(0.1)
        print(stop.agreed(), flush=True)
        time.sleep(float(sys.argv[1]))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
    print("went on")
    """
)


def test_a_second_signal_after_the_first_second_stops_at_once():
    later = subprocess.run([sys.executable, "-c", SCRIPT, "1.2"], capture_output=True, text=True, timeout=60)
    assert later.returncode == 143 and later.stdout.split() == [str(int(signal.SIGINT))]
    assert "SIGTERM again: stopped at once, without a checkpoint" in later.stderr
    at_once = subprocess.run([sys.executable, "-c", SCRIPT, "0"], capture_output=True, text=True, timeout=60)
    assert at_once.returncode == 0 and at_once.stdout.splitlines() == [str(int(signal.SIGINT)), "went on"]
