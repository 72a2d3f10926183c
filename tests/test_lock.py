"""The run folder's lock: a second run (new, --train.overwrite or --resume) is refused with exit 2 naming the holder;
a SIGKILLed holder leaves nothing locked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_train_flags

from ginr.train.lock import LOCK, RunInUseError, lock_run

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from pathlib import Path; from ginr.train.lock import lock_run; f = lock_run(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)"  # noqa: E501
TRY = "import sys; from pathlib import Path; from ginr.train.lock import RunInUseError, lock_run\ntry:\n    lock_run(Path(sys.argv[1]))\nexcept RunInUseError as error:\n    print('in use:', error)"  # noqa: E501


def test_a_later_run_in_the_same_process_takes_the_lock_over(tmp_path):
    """In one process runs follow each other (main called again after a run ended or was refused, as in-process
    tests and library users do): the earlier lock file is closed, and another process is still refused."""
    earlier = lock_run(tmp_path / "run")
    later = lock_run(tmp_path / "run")
    assert earlier.closed and not later.closed
    assert (tmp_path / "run" / LOCK).read_text().startswith(f"pid {os.getpid()} on ")
    probe = subprocess.run([sys.executable, "-c", TRY, str(tmp_path / "run")], capture_output=True, text=True)
    assert probe.stdout.startswith(f"in use: {tmp_path / 'run'} is in use by another run (pid {os.getpid()} on ")
    later.close()


def test_a_sigkilled_holder_leaves_the_folder_unlocked(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(RunInUseError, match=rf"pid {holder.pid} on {socket.gethostname()}, started "):
        lock_run(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    lock_run(tmp_path / "run").close()
    assert (tmp_path / "run" / LOCK).is_file()


def train(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "train.py"), *args], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def test_a_second_run_in_a_locked_folder_is_refused_even_with_overwrite_or_resume(tmp_path, image_folder):
    flags = tiny_train_flags(image_folder, tmp_path, "run")
    train([*flags, "--train.epochs", "1"])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*"))
    held = lock_run(tmp_path / "run")  # as a run still going would
    for args in ([*flags, "--train.overwrite"], ["--resume", str(tmp_path / "run")]):
        result = train(args)
        assert result.returncode == 2, result.stderr[-3000:]
        lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert lines == [
            f"error: {tmp_path / 'run'} is in use by another run (pid {os.getpid()} on {socket.gethostname()}, "
            f"started {lines[0].split('started ')[1]}"
        ], result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*")) == before  # nothing deleted
    held.close()
