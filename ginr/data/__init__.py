"""Data: sources (the embedded photos, local folders, reference layouts), transforms and resumable samplers."""

from __future__ import annotations

from ginr.config import DataConfig
from ginr.data.loader import BatchPlan, EvalBatchSampler, ImageSignals, TrainBatchSampler, make_loader
from ginr.data.sources import load_split
from ginr.data.transforms import ImageTransform


def train_dataset(config: DataConfig) -> ImageSignals:
    """The training split with the training transform."""
    return ImageSignals(
        load_split(config, config.train_split), ImageTransform(config.resolution, config.train_transform)
    )


def eval_dataset(config: DataConfig, split: str | None = None) -> ImageSignals:
    """The held-out split (or ``split``) with the deterministic resize + centre-crop transform."""
    return ImageSignals(load_split(config, split or config.eval_split), ImageTransform(config.resolution))


__all__ = [
    "BatchPlan",
    "EvalBatchSampler",
    "ImageSignals",
    "TrainBatchSampler",
    "eval_dataset",
    "make_loader",
    "train_dataset",
]
