"""Loader throughput: images (or clips) per second decoded and transformed, beside the training throughput it feeds.

    python recipes/bench_data.py --data imagenette178 --workers 0 2          # generated originals, no download
    python recipes/bench_data.py --data ffhq256 --workers 16 --cached        # also the pre-resized cache
    python recipes/bench_data.py --data celeba178 --path /data/celeba        # the real files

Without ``--path`` it writes ``--files`` synthetic originals of the dataset's native format (CelebA 178x218 JPEG,
FFHQ 1024x1024 PNG, ImageNette 426x320 JPEG, LibriSpeech 12.7 s 16-bit FLAC) and cycles through them; the page cache
holds them, as it holds a dataset that fits in memory. One epoch of the preset's training split runs through the
real loader (``make_loader`` over ``TrainBatchSampler``, global batch 16); the first batch (worker start-up) is not
timed. ``--cached`` repeats the run on the pre-resized cache (for resize_center_crop splits) after building it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import tyro
from PIL import Image

from ginr.data import BatchPlan, TrainBatchSampler, make_loader, make_signals, train_dataset
from ginr.data.catalog import DATA
from ginr.data.layouts import files_dataset
from ginr.train.logger import table

# Measured for this project: training img/s per device at global batch 16, the reference's (fp32, H200) and ginr's target.
TRAINING = {
    "celeba178": (141.3, 1400),
    "ffhq256": (52.7, 530),
    "imagenette178": (106.7, 1100),
    "librispeech1s": (190.3, 1900),
}
NATIVE = {"celeba": ("jpg", (178, 218)), "ffhq": ("png", (1024, 1024)), "imagefolder": ("jpg", (426, 320))}


@dataclasses.dataclass
class Args:
    data: str = "imagenette178"
    """Data preset (its source, resolution and training transform)."""
    path: str | None = None
    """The real dataset folder (--data.path); None generates synthetic originals."""
    workers: tuple[int, ...] = (0, 2)
    """Loader worker counts to time."""
    batches: int = 12
    """Batches of 16 to time per run (after one untimed batch)."""
    files: int = 32
    """Synthetic originals to generate (cycled to fill the batches)."""
    cached: bool = False
    """Also time the pre-resized cache."""


def synthetic(source: str, folder: Path, count: int) -> list[Path]:
    """``count`` files in the native format of ``source``: smooth images with noise, or speech-length tones."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        if source == "librispeech":
            t = np.arange(int(12.7 * 16000)) / 16000
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(t.size)
            paths.append(folder / f"{i:05d}.flac")
            soundfile.write(paths[-1], wave.astype(np.float32), 16000, subtype="PCM_16")
            continue
        extension, (width, height) = NATIVE[source]
        y, x = np.mgrid[0:height, 0:width] / max(width, height)
        base = np.stack([np.sin(6 * x + c + i) * np.cos(4 * y - c) for c in range(3)], -1) * 90 + 128
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:05d}.{extension}")
        Image.fromarray(pixels).save(paths[-1], quality=95)
    return paths


def throughput(dataset, workers: int, batches: int) -> float:
    """Samples per second through ``make_loader`` after one untimed batch."""
    plan = BatchPlan(16, 16, 1, 1)
    done, epoch, tick = -1, 0, None
    while done < batches:
        for _ in make_loader(dataset, TrainBatchSampler(len(dataset), plan, 0, 0, epoch), workers):
            done += 1
            if done == 0:
                tick = time.perf_counter()
            if done == batches:
                break
        epoch += 1
    return batches * plan.global_batch / (time.perf_counter() - tick)


def main(args: Args) -> None:
    preset = DATA[args.data]
    with tempfile.TemporaryDirectory() as scratch:
        config = dataclasses.replace(preset, path=args.path, cache_dir=str(Path(scratch) / "cache"))
        if args.path is None:
            files = synthetic(preset.source, Path(scratch), args.files)
            kind = "audio" if preset.source == "librispeech" else "image"
            repeats = -(-(args.batches + 1) * 16 // len(files))
            data = files_dataset(kind, files * repeats)

            def build(cfg):
                return make_signals(cfg, data, f"bench-{args.data}", training=True)

        else:
            build = train_dataset
        variants = [("originals", dataclasses.replace(config, cache_dir=None))]
        if args.cached and preset.train_transform == "resize_center_crop" and preset.source != "librispeech":
            variants.append(("pre-resized cache", config))
        reference, target = TRAINING.get(args.data, ("-", "-"))
        rows = []
        for label, variant in variants:
            for workers in args.workers:
                tick = time.perf_counter()
                dataset = build(dataclasses.replace(variant, num_workers=workers))
                prepared = time.perf_counter() - tick
                rows.append(
                    {
                        "data": args.data,
                        "files": "real" if args.path else "synthetic",
                        "read from": label,
                        "workers": workers,
                        "setup s": round(prepared, 1),
                        "loader img/s": round(throughput(dataset, workers, args.batches), 1),
                        "train img/s (reference)": reference,
                        "train img/s (ginr target)": target,
                    }
                )
        print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main(tyro.cli(Args))
