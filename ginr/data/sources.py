"""Where the signals come from (fidelity 7): one entry point, :func:`load_split`, over every ``--data.source``.

Every source returns a ``datasets.Dataset`` split with one column, ``image`` or ``audio``, of undecoded entries
(``{bytes, path}``); the loader workers decode them. :func:`describe_split` tells where each row came from and its
label where the data has one (for exports of the modulations, :mod:`ginr.downstream`).
"""

from __future__ import annotations

import collections
import dataclasses

import datasets

from ginr.config import DataConfig
from ginr.data import layouts
from ginr.data.hub import label_column, load_hub_split, open_hub, signal_column
from ginr.data.photos import EVAL_PHOTOS, TRAIN_PHOTOS, load_photos


def load_split(config: DataConfig, split: str) -> datasets.Dataset:
    """The ``split`` of the configured source as a ``datasets.Dataset`` with an ``image`` or ``audio`` column."""
    source = config.source
    if source == "celeba":
        return layouts.load_celeba(config.path, split)
    if source == "ffhq":
        return layouts.load_ffhq(config.path, config.split_lists, split)
    if source == "librispeech":
        return layouts.load_librispeech(config.path, split)
    if source == "hub":
        return load_hub_split(config.path, split, config.hub_config, config.hub_revision, config.column)
    if source == "photos":
        splits = {name: signal_column(data, "image", "photos") for name, data in load_photos(config.resolution).items()}
    elif source in ("imagefolder", "audiofolder"):
        splits = layouts.scan_splits(layouts.existing_folder(config.path), source.removesuffix("folder"))
    else:
        raise ValueError(f"unknown --data.source {source!r}")
    split = layouts.SPLIT_ALIASES.get(split, split)  # the folder val/ is the split validation
    if split not in splits:
        where = f"--data.source={source}"
        if source != "photos":
            names = [split, *(alias for alias, name in layouts.SPLIT_ALIASES.items() if name == split)]
            where += f" at --data.path={config.path} (expected a folder {', '.join(f'{n}/' for n in names)} there)"
        raise ValueError(
            f"split {split!r} not found in {where}; it has {sorted(splits)} (set --data.train-split / --data.eval-split)"
        )
    return splits[split]


@dataclasses.dataclass(frozen=True)
class SplitRows:
    """Where each row of a split (as :func:`load_split` returns it) came from, and its label if the data has one."""

    sources: list[str]
    """A row's file path; for the embedded photos ``<photo name>#<tile index within the photo>``; for a Hub row that
    carries its bytes with no file name, ``<dataset>#<row>``."""
    labels: list[int] | None = None
    """A row's label (a position in ``label_names``), or None when the data has no labels."""
    label_names: list[str] | None = None
    label_source: str | None = None
    """Where the labels come from: ``class folders``, ``hub column <name>`` or ``photo of origin``."""


def describe_split(config: DataConfig, split: str) -> SplitRows:
    """The sources and labels of the rows of ``split`` (in :func:`load_split`'s order): the class sub-folders of an
    image or audio folder, the first ``ClassLabel`` column of a Hub dataset, the photograph a tile was cut from."""
    source = config.source
    if source == "photos":
        photos = load_photos(config.resolution)[layouts.SPLIT_ALIASES.get(split, split)]["photo"]
        names = [*TRAIN_PHOTOS, *EVAL_PHOTOS]
        tiles_so_far = collections.Counter()
        sources = []
        for photo in photos:
            sources.append(f"{photo}#{tiles_so_far[photo]}")
            tiles_so_far[photo] += 1
        return SplitRows(sources, [names.index(photo) for photo in photos], names, "photo of origin")
    if source == "hub":
        data = open_hub(config.path, split, config.hub_config, config.hub_revision)
        rows = SplitRows(_entry_paths(signal_column(data, config.column, config.path), config.path))
        column = label_column(data)
        if column is None:
            return rows
        names = data.features[column].names
        return dataclasses.replace(rows, labels=data[column], label_names=names, label_source=f"hub column {column}")
    rows = SplitRows(_entry_paths(load_split(config, split), config.path))
    if source not in ("imagefolder", "audiofolder"):
        return rows
    classes = layouts.folder_classes(layouts.existing_folder(config.path), source.removesuffix("folder"))
    if classes is None:
        return rows
    names, labels = classes
    split = layouts.SPLIT_ALIASES.get(split, split)
    return dataclasses.replace(rows, labels=labels[split], label_names=names, label_source="class folders")


def _entry_paths(data: datasets.Dataset, ref: str | None) -> list[str]:
    """Each row's file path (read from Arrow, leaving the bytes there), or ``<ref>#<row>`` where a row has none."""
    column = "audio" if "audio" in data.column_names else "image"
    paths = []
    for batch in data.select_columns([column]).with_format("arrow").iter(batch_size=4096):
        paths += batch[column].combine_chunks().field("path").to_pylist()
    return [path or f"{ref}#{row}" for row, path in enumerate(paths)]
