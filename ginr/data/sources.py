"""Where the signals come from (fidelity 7): one entry point, :func:`load_split`, over every ``--data.source``.

Every source returns a ``datasets.Dataset`` split with one column, ``image`` or ``audio``, of undecoded entries
(``{bytes, path}``); the loader workers decode them.
"""

from __future__ import annotations

import datasets

from ginr.config import DataConfig
from ginr.data import layouts
from ginr.data.hub import load_hub_split, signal_column
from ginr.data.photos import load_photos


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
