"""Data: sources (the embedded photos, local folders, reference layouts), transforms and resumable samplers."""

from __future__ import annotations

from ginr.config import DataConfig
from ginr.data.audio import AudioClip
from ginr.data.loader import BatchPlan, EvalBatchSampler, Signals, TrainBatchSampler, make_loader
from ginr.data.sources import load_split
from ginr.data.transforms import ImageTransform


def _signals(config: DataConfig, split: str, training: bool) -> Signals:
    data = load_split(config, split)
    if config.source == "audiofolder":
        return Signals(data, AudioClip(config.sample_rate, config.clip_seconds, random_crop=training), "audio")
    mode = config.train_transform if training else "resize_center_crop"
    return Signals(data, ImageTransform(config.resolution, mode), "image")


def signal_shape(config: DataConfig) -> tuple[tuple[int, ...], int]:
    """The spatial shape and channel count of the signals this data config produces."""
    if config.source == "audiofolder":
        return (int(round(config.clip_seconds * config.sample_rate)),), 1
    return (config.resolution, config.resolution), 3


def train_dataset(config: DataConfig) -> Signals:
    """The training split with the training transform (random crops where the data config asks for them)."""
    return _signals(config, config.train_split, training=True)


def eval_dataset(config: DataConfig, split: str | None = None) -> Signals:
    """The held-out split (or ``split``) with the deterministic transform."""
    return _signals(config, split or config.eval_split, training=False)


__all__ = [
    "BatchPlan",
    "EvalBatchSampler",
    "Signals",
    "TrainBatchSampler",
    "eval_dataset",
    "make_loader",
    "signal_shape",
    "train_dataset",
]
