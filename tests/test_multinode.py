"""accelerate_configs/multi_node.yaml, run as two machines on one host: machine ranks 0 and 1, one process each, the
main process at 127.0.0.1, gloo on the CPU. It trains as 2 processes on one machine do, and resumes."""

from __future__ import annotations

import socket
import subprocess
import sys

from conftest import tiny_train_flags
from test_launch import EXTRAS, ROOT, assert_same_checkpoints, command, launch


def launch_two_machines(args: list[str], timeout: int = 600) -> None:
    """The same command on both "machines", as the config's header says, with the machine rank and address set."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    argv, env = command(args, "cpu.yaml", "train.py")
    script = argv.index(str(ROOT / "recipes" / "train.py"))
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / "accelerate_configs" / "multi_node.yaml"), "--num_machines", "2", "--num_processes", "2",
                "--main_process_ip", "127.0.0.1", "--main_process_port", port]  # fmt: skip
    machines = [
        subprocess.Popen(
            [*launcher, "--machine_rank", str(rank), *argv[script:]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for machine in machines:
        out, err = machine.communicate(timeout=timeout)
        assert machine.returncode == 0, out[-2000:] + err[-3000:]


def test_two_machines_train_like_two_processes_and_resume(tmp_path, image_folder):
    launch([*tiny_train_flags(image_folder, tmp_path, "one_machine"), *EXTRAS], config="cpu_2proc.yaml")
    launch_two_machines([*tiny_train_flags(image_folder, tmp_path, "two"), *EXTRAS, "--train.max-steps", "5"])
    launch_two_machines(["--resume", str(tmp_path / "two"), "--train.max-steps", "None"])
    assert_same_checkpoints(tmp_path / "one_machine", tmp_path / "two", 8, rel=1e-6)
