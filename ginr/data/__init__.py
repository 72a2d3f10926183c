"""Data: sources (the embedded photos, local folders, the reference's layouts, the Hub, ShapeNet's views),
transforms, the pre-resized cache and resumable samplers (fidelity 7)."""

from __future__ import annotations

import datasets

from ginr.config import DataConfig
from ginr.data.audio import AudioClip
from ginr.data.cache import check_headers, drop_unusable, resized_cache
from ginr.data.loader import BadFileError, BatchPlan, EvalBatchSampler, Signals, TrainBatchSampler, make_loader
from ginr.data.shapenet import ShapeNetViews
from ginr.data.sources import SplitRows, describe_split, load_split
from ginr.data.transforms import ImageTransform


def signal_transform(config: DataConfig, kind: str, training: bool) -> AudioClip | ImageTransform:
    """The transform of ``kind`` (``"image"`` or ``"audio"``) signals: the training split's (random crops where the
    config asks for them) or, without ``training``, the deterministic evaluation one (images resized and centre-cropped
    to the resolution; audio trimmed by ``audio_trim_seconds``, cut from its start to the clip length)."""
    if kind == "audio":
        return AudioClip(config.sample_rate, config.clip_seconds, training, config.audio_trim_seconds)
    return ImageTransform(config.resolution, config.train_transform if training else "resize_center_crop")


def make_signals(config: DataConfig, split: datasets.Dataset, name: str, training: bool) -> Signals:
    """A loaded ``split`` (one column of undecoded entries, named for the kind of signal it holds: ``image`` or
    ``audio``) with its transform (:func:`signal_transform`), cached or checked by a full decode as the config asks,
    else every file's header checked (a bad file is refused now, not mid-training); ``name`` labels logs and cache
    folders."""
    column = "audio" if "audio" in split.column_names else "image"
    transform = signal_transform(config, column, training)
    if config.cache_dir and column == "image" and transform.mode == "resize_center_crop":
        split = resized_cache(split, transform, config.cache_dir, name, config.num_workers, config.skip_bad_files)
    elif config.skip_bad_files:
        split = drop_unusable(split, transform, column, config.num_workers, name)
    else:
        check_headers(split, column, config.num_workers, name)
    return Signals(split, transform, column)


AUDIO_SOURCES = ("audiofolder", "librispeech")
VIEW_SOURCES = ("shapenet",)


def is_views(config: DataConfig) -> bool:
    """The data is multi-view renders (novel-view synthesis) rather than signals."""
    return config.source in VIEW_SOURCES


def signal_shape(config: DataConfig) -> tuple[tuple[int, ...], int] | None:
    """The spatial shape and channel count of the signals this data config produces (support views: (n, H, W), 3);
    None for a Hub dataset, whose kind is only known once it is loaded."""
    if config.source == "hub":
        return None
    if is_views(config):
        return (config.support_views, config.resolution, config.resolution), 3
    if config.source in AUDIO_SOURCES:
        return (int(round(config.clip_seconds * config.sample_rate)),), 1
    return (config.resolution, config.resolution), 3


def train_dataset(config: DataConfig) -> Signals | ShapeNetViews:
    """The training split with the training transform (random crops, or random view draws, where the data config
    asks for them)."""
    split = config.train_split
    if is_views(config):
        return ShapeNetViews(config, split, training=True)
    return make_signals(config, load_split(config, split), f"{config.source}-{split}", training=True)


def eval_dataset(config: DataConfig, split: str | None = None) -> Signals | ShapeNetViews:
    """The held-out split (or ``split``) with the deterministic transform (views: the fixed list of draws)."""
    split = split or config.eval_split
    if is_views(config):
        return ShapeNetViews(config, split, training=False)
    return make_signals(config, load_split(config, split), f"{config.source}-{split}", training=False)


__all__ = [
    "BadFileError",
    "BatchPlan",
    "EvalBatchSampler",
    "ShapeNetViews",
    "Signals",
    "SplitRows",
    "TrainBatchSampler",
    "describe_split",
    "eval_dataset",
    "is_views",
    "make_loader",
    "make_signals",
    "signal_shape",
    "signal_transform",
    "train_dataset",
]
