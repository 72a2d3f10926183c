"""Real ``accelerate launch recipes/train.py`` runs on tiny local data: artifacts, exact resume, 2 processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_flags
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def launch(
    args: list[str], config: str = "cpu.yaml", timeout: int = 600, recipe: str = "train.py"
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "accelerate_configs" / config),
    ]
    if config == "cpu_2proc.yaml":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            command += ["--main_process_port", str(s.getsockname()[1])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, str(ROOT / "recipes" / recipe), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def checkpoint_tensors(run: Path, step: int, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step-{step:08d}" / name))


def test_train_writes_checkpoints_events_and_the_eval_table(tmp_path, image_folder):
    result = launch(tiny_train_flags(image_folder, tmp_path, "run"))
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    for step in (4, 8):
        manifest = json.loads((run / "checkpoints" / f"step-{step:08d}" / "manifest.json").read_text())
        assert manifest["step"] == step and "model/model.safetensors" in manifest["files"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "config.json").read_text())["model_name"] == "ipc-meta"
    history = json.loads((run / "eval_metrics.json").read_text())
    assert [row["step"] for row in history] == [0, 4, 8] and all(row["count"] == 4 for row in history)
    assert "evaluation on the held-out split" in result.stdout + result.stderr

    result = launch([str(run), "--out", str(tmp_path / "eval.json")], recipe="eval.py")
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["count"] == 4 and evaluated["psnr"] == history[-1]["psnr"]  # same weights, same numbers
    assert "psnr" in result.stdout


def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path, image_folder):
    """With EMA and gradient clipping on, so their state is part of what must resume exactly."""
    extras = ["--train.ema", "0.9", "--optim.max-grad-norm", "0.05"]
    launch([*tiny_train_flags(image_folder, tmp_path, "whole"), *extras])
    launch([*tiny_train_flags(image_folder, tmp_path, "stopped"), *extras, "--train.max-steps", "5"])
    stopped = tmp_path / "stopped"
    assert (stopped / "checkpoints" / "step-00000005").is_dir()
    launch(["--resume", str(stopped), "--train.max-steps", "None"])
    history = json.loads((stopped / "eval_metrics.json").read_text())
    assert {row["weights"] for row in history} == {"raw", "ema"}
    for name in ("model/model.safetensors", "optimizer.safetensors", "ema.safetensors"):
        whole, resumed = checkpoint_tensors(tmp_path / "whole", 8, name), checkpoint_tensors(stopped, 8, name)
        assert whole.keys() == resumed.keys()
        for key in whole:
            assert torch.equal(whole[key], resumed[key]), (name, key)  # bit-identical


def test_two_processes_give_the_outer_gradients_of_one(tmp_path, image_folder):
    """After one Adam step, exp_avg = (1 - beta1) g: the checkpoints compare the outer gradients exactly."""
    flags = ["--train.max-steps", "1", "--train.no-eval-at-start"]
    launch([*tiny_train_flags(image_folder, tmp_path, "one"), *flags])
    result = launch([*tiny_train_flags(image_folder, tmp_path, "two"), *flags], config="cpu_2proc.yaml")
    assert "= 2 x 2 process(es) x 1" in result.stdout + result.stderr
    two = tmp_path / "two" / "checkpoints" / "step-00000001"
    assert json.loads((two / "trainer_state.json").read_text())["num_processes"] == 2
    assert (two / "rng-0.safetensors").is_file() and (two / "rng-1.safetensors").is_file()
    one_state = checkpoint_tensors(tmp_path / "one", 1, "optimizer.safetensors")
    two_state = checkpoint_tensors(tmp_path / "two", 1, "optimizer.safetensors")
    averages = [k for k in one_state if k.endswith("exp_avg")]
    assert len(averages) == 11
    for key in averages:
        a, b = one_state[key], two_state[key]
        assert a.abs().max() > 0
        assert (a - b).norm() <= 1e-6 * a.norm(), key


def test_a_meta_model_trains_on_an_audio_folder(tmp_path, audio_folder):
    """The same hyponet and recipe on 1-D signals: 160-sample clips resampled from 8 kHz files."""
    flags = [
        "--model", "ipc-meta", "--data.source", "audiofolder", "--data.path", str(audio_folder),
        "--data.clip-seconds", "0.01", "--model.hyponet.input-dim", "1", "--model.hyponet.output-dim", "1",
        "--model.hyponet.output-bias", "0", "--model.hyponet.hidden-dim", "16", "--model.hyponet.fourier.dim", "8",
        "--model.rank", "16", "--train.batch-size", "4", "--train.epochs", "1",
        "--train.out-dir", str(tmp_path), "--train.run-name", "audio",
    ]  # fmt: skip
    launch(flags)
    history = json.loads((tmp_path / "audio" / "eval_metrics.json").read_text())
    assert [row["step"] for row in history] == [0, 2] and history[-1]["count"] == 2
    assert "ssim" not in history[-1] and history[-1]["psnr"] > 0


TINY_HYPERNET = [
    "--model.hyponet.hidden-dim", "16", "--model.hyponet.fourier.dim", "8", "--model.transformer.embed-dim", "32",
    "--model.transformer.n-layer", "1", "--model.transformer.n-head", "2", "--model.n-weight-tokens", "8",
    "--train.batch-size", "4", "--train.epochs", "1", "--train.log-every", "1",
]  # fmt: skip
DATA_FLAGS = {
    "image": lambda folder: [
        "--data.source", "imagefolder", "--data.path", str(folder), "--data.resolution", "8",
        "--model.tokenizer.patch-size", "4", "--model.tokenizer.padding", "0", "--model.tokenizer.n-tokens", "4",
        "--train.coord-noise", "--train.coord-subsample", "0.5",
    ],
    "audio": lambda folder: [
        "--data.source", "audiofolder", "--data.path", str(folder), "--data.clip-seconds", "0.01",
        "--model.hyponet.input-dim", "1", "--model.hyponet.output-dim", "1", "--model.hyponet.output-bias", "0",
        "--model.tokenizer.type", "audio_patches", "--model.tokenizer.patch-size", "40",
        "--model.tokenizer.n-tokens", "4",
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    "model, kind", [("ipc-transinr", "image"), ("transinr", "audio"), ("transinr", "image"), ("ipc-transinr", "audio")]
)
def test_hypernetwork_models_train_end_to_end(tmp_path, image_folder, audio_folder, model, kind):
    folder = image_folder if kind == "image" else audio_folder
    flags = ["--model", model, "--data", "photos", *TINY_HYPERNET, *DATA_FLAGS[kind](folder)]
    launch([*flags, "--train.out-dir", str(tmp_path), "--train.run-name", "run"])
    run = tmp_path / "run"
    history = json.loads((run / "eval_metrics.json").read_text())
    steps = 4 if kind == "image" else 2
    assert [row["step"] for row in history] == [0, steps] and history[-1]["psnr"] > 0
    saved = json.loads((run / "checkpoints" / f"step-{steps:08d}" / "model" / "config.json").read_text())
    assert saved["model_name"] == model and saved["model"]["factorized"] == (model == "ipc-transinr")
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload().Tags()
    if kind == "audio":
        assert {"eval/truth_0", "eval/reconstruction_x1_0", "eval/reconstruction_x3_0"} <= set(events["audio"])
        assert "eval/waveforms" in events["images"]
    else:
        assert {"eval/reconstruction_x1", "eval/reconstruction_x3"} <= set(events["images"])
