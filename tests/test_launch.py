"""Real ``accelerate launch recipes/train.py`` runs on tiny local data: artifacts, exact resume, 2 processes, a SIGKILL
in the middle of a save, a diverging run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import tiny_train_flags, write_image_folder
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ginr.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ["--train.ema", "0.9", "--optim.max-grad-norm", "0.05"]
"""EMA and gradient clipping on, so their state is part of what must resume exactly."""


def command(args: list[str], config: str, recipe: str) -> tuple[list[str], dict[str, str]]:
    """The ``accelerate launch`` command line (a free port for several processes) and its environment."""
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
    return [*command, str(ROOT / "recipes" / recipe), *args], env


def launch(
    args: list[str], config: str = "cpu.yaml", timeout: int = 600, recipe: str = "train.py", status: int = 0
) -> subprocess.CompletedProcess:
    argv, env = command(args, config, recipe)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == status, result.stdout[-3000:] + result.stderr[-3000:]
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
    saved = json.loads((run / "config.json").read_text())
    assert saved["model_name"] == "ipc-meta"
    # compile "auto" is recorded as what this (CPU) machine ran, so a resume elsewhere keeps it
    assert (saved["train"]["precision"], saved["train"]["compile"]) == ("fp32", "off")
    assert "fp32 on cpu" in result.stdout + result.stderr
    history = json.loads((run / "eval_metrics.json").read_text())
    assert [row["step"] for row in history] == [0, 4, 8] and all(row["count"] == 4 for row in history)
    assert "evaluation on the held-out split" in result.stdout + result.stderr

    result = launch(["--init-from", str(run), "--out", str(tmp_path / "eval.json")], recipe="eval.py")
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["count"] == 4 and evaluated["psnr"] == history[-1]["psnr"]  # same weights, same numbers
    assert "psnr" in result.stdout

    # fine-tuning starts from the trained weights: its step-0 evaluation is the source run's last one
    launch(["--init-from", str(run), "--train.epochs", "1", "--train.out-dir", str(tmp_path), "--train.run-name", "ft"])
    tuned = json.loads((tmp_path / "ft" / "eval_metrics.json").read_text())
    assert tuned[0]["step"] == 0 and tuned[0]["psnr"] == history[-1]["psnr"]
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["train"]["init_from"] == str(run)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, image_folder) -> Path:
    """An uninterrupted 8-step run on one process, checkpoints at steps 4 and 8."""
    out = tmp_path_factory.mktemp("whole")
    launch([*tiny_train_flags(image_folder, out, "whole"), *EXTRAS])
    return out / "whole"


def test_images_are_logged_for_the_raw_and_the_ema_weights(whole_run):
    """Evaluations at steps 0, 4 and 8 (before the first step, after epoch 1, at the end): each logs its images, for
    both weight rows (the cadence in epochs is tested in test_metrics_schedule)."""
    events = EventAccumulator(str(whole_run / "tensorboard"), size_guidance={"images": 0}).Reload()
    for tag in ("eval", "eval_ema"):
        assert [event.step for event in events.Images(f"{tag}/reconstruction_x1")] == [0, 4, 8]


def test_compiled_training_run_follows_the_eager_one(tmp_path, image_folder):
    """--train.compile default (what 'auto' picks on a GPU) through the recipe: the same evaluations as eager."""
    psnr = {}
    for mode in ("off", "default"):
        launch([*tiny_train_flags(image_folder, tmp_path, mode), "--train.compile", mode])
        psnr[mode] = [row["psnr"] for row in json.loads((tmp_path / mode / "eval_metrics.json").read_text())]
    assert len(psnr["off"]) == 3
    assert psnr["default"] == pytest.approx(psnr["off"], abs=1e-3)


def assert_same_checkpoints(expected: Path, found: Path, step: int, rel: float = 0.0) -> None:
    """Weights, optimizer state and EMA of ``step`` equal (``rel`` 0: bit for bit; else in relative norm)."""
    for name in ("model/model.safetensors", "optimizer.safetensors", "ema.safetensors"):
        a, b = checkpoint_tensors(expected, step, name), checkpoint_tensors(found, step, name)
        assert a.keys() == b.keys()
        for key in a:
            if rel == 0.0:
                assert torch.equal(a[key], b[key]), (name, key)
            else:
                assert (a[key] - b[key]).norm() <= rel * a[key].norm(), (name, key)


def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path, image_folder, whole_run):
    launch([*tiny_train_flags(image_folder, tmp_path, "stopped"), *EXTRAS, "--train.max-steps", "5"])
    stopped = tmp_path / "stopped"
    assert (stopped / "checkpoints" / "step-00000005").is_dir()
    launch(["--resume", str(stopped), "--train.max-steps", "None"])
    history = json.loads((stopped / "eval_metrics.json").read_text())
    assert {row["weights"] for row in history} == {"raw", "ema"}
    assert_same_checkpoints(whole_run, stopped, 8)  # bit-identical


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


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants, deepest first (torchrun starts its workers in sessions of their own, so killing
    the launcher's process group would orphan them)."""
    try:
        root = psutil.Process(pid)
        return [*reversed(root.children(recursive=True)), root]
    except psutil.NoSuchProcess:
        return []


def launch_killed_during_save(args: list[str], config: str, partial: Path, attempts: int = 3) -> None:
    """Start ``accelerate launch`` and SIGKILL its whole process tree, as a scheduler or a node failure would, while
    ``partial`` (the folder a checkpoint is written into before its rename) exists.

    The trainers run at a lower priority than this poller, so the kill lands within the save's few milliseconds even
    on a loaded machine; a kill that still comes after the rename is retried from a fresh run folder.
    """
    final = partial.parent / partial.name[1:].removesuffix(".partial")
    for _ in range(attempts):
        shutil.rmtree(partial.parents[1], ignore_errors=True)
        argv, env = command(args, config, "train.py")
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.nice(10)
        )
        tree, refreshed = [], 0.0
        while process.poll() is None and not partial.exists():
            if time.monotonic() - refreshed > 0.5:
                tree, refreshed = process_tree(process.pid), time.monotonic()
            time.sleep(0.0002)
        for victim in [*tree, *process_tree(process.pid)]:
            try:
                victim.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        process.wait(timeout=60)
        if process.returncode == -signal.SIGKILL and partial.exists() and not final.exists():
            psutil.wait_procs(tree, timeout=30)
            return
    pytest.fail(f"could not kill the run while {partial} existed in {attempts} attempts")


def test_sigkill_during_a_save_loses_nothing_and_two_process_resume_matches(tmp_path, image_folder):
    """Two processes: a run killed while writing its step-8 checkpoint keeps step 4 loadable, ignores the partial
    folder, and resumed from step 4 ends where an uninterrupted two-process run ends (within 1e-6 relative)."""
    launch([*tiny_train_flags(image_folder, tmp_path, "whole"), *EXTRAS], config="cpu_2proc.yaml")
    run = tmp_path / "killed"
    partial = run / "checkpoints" / ".step-00000008.partial"
    launch_killed_during_save([*tiny_train_flags(image_folder, tmp_path, "killed"), *EXTRAS], "cpu_2proc.yaml", partial)
    assert checkpoint.complete_checkpoints(run) == [run / "checkpoints" / "step-00000004"]
    assert checkpoint.latest(run) == run / "checkpoints" / "step-00000004"
    checkpoint.verify(run / "checkpoints" / "step-00000004")

    result = launch(["--resume", str(run)], config="cpu_2proc.yaml")
    assert f"resumed from {run / 'checkpoints' / 'step-00000004'} at step 4" in result.stdout + result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    assert_same_checkpoints(tmp_path / "whole", run, 8, rel=1e-6)
    history = json.loads((run / "eval_metrics.json").read_text())
    assert [row["step"] for row in history if row["weights"] == "raw"] == [0, 4, 8]


def test_a_diverging_run_stops_naming_the_step_the_batch_and_the_last_checkpoint(tmp_path, whole_run):
    """Resumed at step 8 with an absurd learning rate and --train.nonfinite stop: step 9 throws the weights to ~1e30,
    step 10's loss overflows; the run stops there, and the checkpoints it had are untouched and still resume."""
    run = tmp_path / "run"
    shutil.copytree(whole_run, run)
    before = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    flags = ["--resume", str(run), "--train.epochs", "3", "--optim.lr", "1e30", "--train.nonfinite", "stop"]
    result = launch(flags, status=1)
    last = run / "checkpoints" / "step-00000008"
    assert (
        "error: step 10: the loss is not finite on training instances" in result.stderr
        and "(the step's batch: training instances [" in result.stderr
        and f"stopped because --train.nonfinite stop. Last good checkpoint: {last}; continue from it" in result.stderr
    ), result.stderr[-3000:]
    assert {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()} == before
    assert checkpoint.latest(run) == last


def test_two_processes_refuse_an_evaluation_split_smaller_than_the_process_count(tmp_path):
    """Every rank refuses before any collective (no rank waits forever) and before the run folder is written."""
    folder = write_image_folder(tmp_path / "images", n_train=8, n_eval=1)
    result = launch(tiny_train_flags(folder, tmp_path / "runs", "run"), config="cpu_2proc.yaml", status=1)
    assert "error: the evaluation split has 1 instance(s), fewer than the 2 process(es)" in result.stderr
    assert not (tmp_path / "runs" / "run" / "config.json").exists()


def test_evaluations_and_their_images_follow_the_references_cadence(tmp_path, image_folder):
    """--train.eval-every 2 over 5 epochs of 4 steps: before training, after the first epoch (the reference's epoch
    index 0), after epochs 2 and 4, and at the end; --train.image-every 4: images with all but epoch 2's."""
    flags = tiny_train_flags(image_folder, tmp_path, "run")
    flags[flags.index("--train.epochs") + 1] = "5"
    flags[flags.index("--train.eval-every") + 1] = "2"
    flags[flags.index("--train.checkpoint-every") + 1] = "5"
    launch([*flags, "--train.image-every", "4"])
    history = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
    assert [row["step"] for row in history] == [0, 4, 8, 16, 20]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [event.step for event in events.Images("eval/reconstruction_x1")] == [0, 4, 16, 20]


def test_a_run_that_stops_keeps_the_evaluations_it_made(tmp_path, image_folder):
    """eval_metrics.json is written after every evaluation, not only at a normal end: a run stopped by a diverging
    loss (exit status 1) still has its step-0 evaluation."""
    flags = [*tiny_train_flags(image_folder, tmp_path, "run"), "--optim.lr", "1e30", "--train.nonfinite", "stop"]
    result = launch(flags, status=1)
    assert "--train.nonfinite stop" in result.stderr
    history = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
    assert [row["step"] for row in history] == [0] and history[0]["psnr"] > 0


def test_resume_is_exact_with_dropout_coordinate_noise_and_subsampling(tmp_path, image_folder):
    """ipc-transinr draws dropout masks, coordinate noise and coordinate subsets from the RNG every step: a run
    stopped after 3 steps and resumed ends bit-identical to one that never stopped (2 epochs of 4 steps)."""
    flags = ["--model", "ipc-transinr", "--data", "photos", *TINY_HYPERNET, *DATA_FLAGS["image"](image_folder)]
    flags += ["--train.epochs", "2", "--train.checkpoint-every", "1", "--train.out-dir", str(tmp_path), *EXTRAS]
    launch([*flags, "--train.run-name", "whole"])
    launch([*flags, "--train.run-name", "stopped", "--train.max-steps", "3"])
    launch(["--resume", str(tmp_path / "stopped"), "--train.max-steps", "None"])
    assert_same_checkpoints(tmp_path / "whole", tmp_path / "stopped", 8)
