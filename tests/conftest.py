"""Shared fixtures: tiny generated data in the layouts ginr reads, and small configs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def smooth_image(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random RGB image (a few low-frequency sinusoids), so INRs can fit it."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.28)
        channels.append(0.5 + 0.4 * np.sin(6.28 * (fy * y + fx * x) + phase))
    return Image.fromarray((np.stack(channels, -1) * 255).astype(np.uint8))


def write_image_folder(root, n_train: int = 16, n_eval: int = 4, size: int = 12, seed: int = 0):
    """``root/train/<class>/*.png`` and ``root/validation/<class>/*.png``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("validation", n_eval)):
        for i in range(count):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            smooth_image(rng, size).save(folder / f"{i:03d}.png")
    return root


def write_audio_folder(root, n_train: int = 8, n_eval: int = 2, seconds: float = 0.02, rate: int = 8000, seed: int = 0):
    """``root/train/*.wav`` and ``root/validation/*.wav``: short chirps at ``rate`` Hz."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    for split, count in (("train", n_train), ("validation", n_eval)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            wave = 0.5 * np.sin(2 * np.pi * rng.uniform(100, 400) * t * (1 + 5 * t))
            soundfile.write(root / split / f"{i:03d}.wav", wave.astype(np.float32), rate)
    return root


@pytest.fixture(scope="session")
def audio_folder(tmp_path_factory):
    return write_audio_folder(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


TINY_MODEL_FLAGS = [
    "--model.hyponet.hidden-dim",
    "16",
    "--model.hyponet.fourier.dim",
    "8",
    "--model.hyponet.fourier.sigma",
    "4",
    "--model.rank",
    "16",
]


def tiny_train_flags(folder, out_dir, run_name: str) -> list[str]:
    """Flags for a seconds-long ipc-meta run on an image folder written by :func:`write_image_folder`."""
    return [
        "--model",
        "ipc-meta",
        "--data",
        "photos",
        "--data.source",
        "imagefolder",
        "--data.path",
        str(folder),
        "--data.resolution",
        "8",
        *TINY_MODEL_FLAGS,
        "--train.batch-size",
        "4",
        "--train.epochs",
        "2",
        "--train.eval-every",
        "1",
        "--train.checkpoint-every",
        "1",
        "--train.log-every",
        "1",
        "--train.out-dir",
        str(out_dir),
        "--train.run-name",
        run_name,
    ]
