"""The code users are shown runs as written: the README's library example and the usage block of the Hub model card
(both against a model saved to a local folder, offline)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

import ginr
from ginr import presets
from ginr.model_card import usage

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def saved_photos_model(folder: Path) -> tuple[ginr.Config, Path]:
    config = presets.resolve("ipc-meta", "photos")
    return config, ginr.save_pretrained(folder, config, ginr.init(config, torch.Generator().manual_seed(0)))


def test_readme_library_example_runs(tmp_path):
    """In a fresh interpreter, so that only what ``import ginr`` itself imports is available (as for a user)."""
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in python_blocks(readme) if "ginr.from_pretrained" in b]
    _, folder = saved_photos_model(tmp_path / "model")
    assert '"user/ginr-celeba178"' in block
    block = block.replace('"user/ginr-celeba178"', repr(str(folder))).replace("steps=50", "steps=2")
    block += "\nprint(tuple(values.shape), tuple(psnr_per_step.shape))\n"
    done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # values at x3 resolution; PSNR before the first refinement step and after each, per image
    assert done.stdout.split("\n")[-2] == "(4, 9216, 3) (3, 4)"


def test_model_card_usage_runs(tmp_path):
    config, folder = saved_photos_model(tmp_path / "model")
    (block,) = python_blocks(usage(config, str(folder)))
    namespace = {"signals": torch.rand(2, 32, 32, 3), "shape": (48, 48)}
    exec(compile(block, "model card", "exec"), namespace)
    assert namespace["values"].shape == (2, 48, 48, 3)
