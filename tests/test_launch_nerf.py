"""A NeRF end to end on spheres rendered by the tests (conftest.write_shapenet): a real ``accelerate launch
recipes/train.py`` with the ShapeNet preset shrunk by flags, then recipes/eval.py (one and two processes),
recipes/render.py and recipes/reconstruct.py on its checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_launch import assert_same_checkpoints, launch

ROOT = Path(__file__).resolve().parents[1]
TINY_NERF = [
    "--model", "ipc-transinr", "--data", "shapenet-cars", "--data.support-views", "2", "--data.resolution", "16",
    "--model.tokenizer.n-tokens", "8", "--model.hyponet.hidden-dim", "16", "--model.hyponet.fourier.dim", "6",
    "--model.transformer.embed-dim", "32", "--model.transformer.n-layer", "1", "--model.transformer.n-head", "2",
    "--model.n-weight-tokens", "8", "--data.train-views", "6", "--data.eval-draws", "2", "--data.num-workers", "0",
    "--render.points-per-ray", "8", "--render.train-rays", "32", "--render.eval-rays", "16",
    "--render.chunk-rays", "100", "--render.foreground-first-epochs", "1", "--train.batch-size", "3",
    "--train.epochs", "3", "--train.eval-every", "1", "--train.checkpoint-every", "2", "--train.image-every", "1",
    "--train.log-every", "1", "--train.ema", "0.9",
]  # fmt: skip


def run(recipe: str, args: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / recipe), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def nerf_run(tmp_path_factory, shapenet_folder) -> Path:
    out = tmp_path_factory.mktemp("nerf")
    launch([*TINY_NERF, "--data.path", str(shapenet_folder), "--train.out-dir", str(out), "--train.run-name", "run"])
    return out / "run"


def test_a_nerf_trains_with_estimates_and_ends_with_a_full_evaluation(nerf_run):
    """3 objects x repeat 2 / batch 3 = 2 steps per epoch; a ray-sampled estimate at step 0, full renders of every
    (test object, draw) after the first epoch, as the reference's epoch index 0, an estimate again after epoch 2
    (quirk 11), and full renders at the end: 2 objects x 2 draws; the EMA weights too (quirk 12)."""
    history = json.loads((nerf_run / "eval_metrics.json").read_text())
    assert [(row["step"], row["weights"], "psnr" in row, "psnr_estimate" in row) for row in history] == [
        (0, "raw", False, True), (0, "ema", False, True), (2, "raw", True, False), (2, "ema", True, False),
        (4, "raw", False, True), (4, "ema", False, True), (6, "raw", True, False), (6, "ema", True, False),
    ]  # fmt: skip
    assert all(row["count"] == 4 for row in history) and history[-1]["psnr"] > 0
    events = EventAccumulator(str(nerf_run / "tensorboard"), size_guidance={"images": 0}).Reload().Tags()
    assert {"eval/psnr", "eval/psnr_estimate", "train/psnr", "train/loss"} <= set(events["scalars"])
    assert {"eval/views", "eval_ema/views"} <= set(events["images"])
    assert "eval/view_psnr/text_summary" in events["tensors"]
    saved = json.loads((nerf_run / "config.json").read_text())
    assert saved["model"]["tokenizer"]["n_tokens"] == 8 and saved["data"]["support_views"] == 2


def test_eval_recipe_repeats_the_final_evaluation_on_one_and_two_processes(nerf_run, tmp_path):
    """The fixed list of draws (quirk 24 fixed) makes the evaluation reproducible, and two processes count every
    instance once (quirk 19 fixed)."""
    final = json.loads((nerf_run / "eval_metrics.json").read_text())[-2]  # the raw weights' (the model folder's)
    for config, name in (("cpu.yaml", "one.json"), ("cpu_2proc.yaml", "two.json")):
        launch([str(nerf_run), "--batch-size", "2", "--out", str(tmp_path / name)], config=config, recipe="eval.py")
        row = json.loads((tmp_path / name).read_text())
        assert row["count"] == 4 and row["psnr"] == pytest.approx(final["psnr"], rel=1e-5)
        assert "psnr_estimate" not in row


def test_render_recipe_writes_views_with_psnr_and_an_orbit_gif(nerf_run, tmp_path):
    out = run(
        "render.py", [str(nerf_run), "--support", "0", "5", "--views", "1", "3", "--orbit", "4", "--out", str(tmp_path)]
    )
    assert "view 1: psnr" in out and "view 3: psnr" in out and "mean psnr over 2 view(s)" in out
    assert {p.name for p in tmp_path.iterdir()} == {
        "e0_support.png",
        "e0_view001.png",
        "e0_view003.png",
        "e0_orbit.gif",
    }
    with Image.open(tmp_path / "e0_orbit.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (16, 16)
    with Image.open(tmp_path / "e0_view001.png") as image:
        assert image.size == (2 * 16 + 6, 16 + 4)  # ground truth | render
    failed = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "render.py"), str(nerf_run), "--support", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode != 0 and "the model reads 2 support view(s)" in failed.stderr


def test_render_recipe_refuses_bad_views_and_settings_before_rendering(nerf_run, shapenet_folder, tmp_path):
    obj = tmp_path / "object"
    shutil.copytree(shapenet_folder / "cars" / "e0", obj)
    Image.open(obj / "r_3.png").resize((8, 8)).save(obj / "r_3.png")  # the model reads 16-px views
    for args, message in (
        (["--folder", str(obj), "--support", "0", "3"], "r_3.png is 8x8 px but --data.resolution is 16"),
        (["--folder", str(obj), "--support", "0", "1", "--views", "3"], "r_3.png is 8x8 px"),
        (["--orbit", "-3"], "--orbit -3 must be >= 0 (0: no orbit) and --fps 20 >= 1"),
        (["--fps", "0"], "--fps 0 >= 1"),
    ):
        failed = subprocess.run(
            [sys.executable, str(ROOT / "recipes" / "render.py"), str(nerf_run), "--out", str(tmp_path / "out"), *args],
            capture_output=True, text=True,
        )  # fmt: skip
        assert failed.returncode == 2 and "error: " in failed.stderr and message in failed.stderr, args
        assert "Traceback" not in failed.stderr and not (tmp_path / "out").exists()


def test_reconstruct_recipe_renders_a_set_of_views(nerf_run, shapenet_folder, tmp_path):
    folder = shapenet_folder / "cars" / "e1"
    out = run(
        "reconstruct.py",
        [str(nerf_run), str(folder), "--support", "2", "4", "--views", "0", "7", "--out", str(tmp_path)],
    )
    assert "view 0: psnr" in out and "view 7: psnr" in out and "support frames [2, 4], mean psnr" in out
    assert {p.name for p in tmp_path.iterdir()} == {"e1_view000.png", "e1_view007.png"}


def test_push_to_hub_stages_a_nerf_with_view_samples_and_render_usage(nerf_run, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "push_to_hub.py"), str(nerf_run), "--repo-id", "someone/nerf",
         "--stage-dir", str(tmp_path), "--samples", "2", "--dry-run"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = (tmp_path / "README.md").read_text()
    assert "novel-view-synthesis" in card and "python recipes/render.py someone/nerf" in card
    assert "samples/views.png" in card and (tmp_path / "samples" / "views.png").is_file()


def test_a_stopped_nerf_run_resumes_exactly(nerf_run, shapenet_folder, tmp_path):
    """View draws are seeded per sample and rays and jitter come from the checkpointed RNG, so a run stopped after
    step 2 and resumed ends bit-identical to the uninterrupted one."""
    flags = [*TINY_NERF, "--data.path", str(shapenet_folder), "--train.out-dir", str(tmp_path), "--train.run-name", "s"]
    launch([*flags, "--train.max-steps", "2"])
    launch(["--resume", str(tmp_path / "s"), "--train.max-steps", "None"])
    assert_same_checkpoints(nerf_run, tmp_path / "s", 4)
