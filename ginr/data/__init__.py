"""Data: sources (the embedded photos, local folders, the reference's layouts, the Hub), transforms, the pre-resized
cache and resumable samplers (SPEC 7)."""

from __future__ import annotations

import datasets

from ginr.config import DataConfig
from ginr.data.audio import AudioClip
from ginr.data.cache import drop_unusable, resized_cache
from ginr.data.loader import BadFileError, BatchPlan, EvalBatchSampler, Signals, TrainBatchSampler, make_loader
from ginr.data.sources import load_split
from ginr.data.transforms import ImageTransform


def make_signals(config: DataConfig, data: datasets.Dataset, name: str, training: bool) -> Signals:
    """A loaded split (an ``image`` or ``audio`` column of undecoded entries) with its transform, checked or cached
    as the config asks; ``name`` labels logs and cache folders."""
    kind = "audio" if "audio" in data.column_names else "image"
    if kind == "audio":
        transform = AudioClip(config.sample_rate, config.clip_seconds, training, config.audio_trim_seconds)
    else:
        transform = ImageTransform(config.resolution, config.train_transform if training else "resize_center_crop")
    if config.cache_dir and kind == "image" and transform.mode == "resize_center_crop":
        data = resized_cache(data, transform, config.cache_dir, name, config.num_workers, config.skip_bad_files)
    elif config.skip_bad_files:
        data = drop_unusable(data, transform, kind, config.num_workers, name)
    return Signals(data, transform, kind)


AUDIO_SOURCES = ("audiofolder", "librispeech")


def signal_shape(config: DataConfig) -> tuple[tuple[int, ...], int] | None:
    """The spatial shape and channel count of the signals this data config produces; None for a Hub dataset, whose
    kind is only known once it is loaded."""
    if config.source == "hub":
        return None
    if config.source in AUDIO_SOURCES:
        return (int(round(config.clip_seconds * config.sample_rate)),), 1
    return (config.resolution, config.resolution), 3


def train_dataset(config: DataConfig) -> Signals:
    """The training split with the training transform (random crops where the data config asks for them)."""
    split = config.train_split
    return make_signals(config, load_split(config, split), f"{config.source}-{split}", training=True)


def eval_dataset(config: DataConfig, split: str | None = None) -> Signals:
    """The held-out split (or ``split``) with the deterministic transform."""
    split = split or config.eval_split
    return make_signals(config, load_split(config, split), f"{config.source}-{split}", training=False)


__all__ = [
    "BadFileError",
    "BatchPlan",
    "EvalBatchSampler",
    "Signals",
    "TrainBatchSampler",
    "eval_dataset",
    "make_loader",
    "make_signals",
    "signal_shape",
    "train_dataset",
]
