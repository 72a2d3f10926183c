"""Where the signals come from: the embedded photos, a local ``imagefolder`` or ``audiofolder``, or FFHQ by its split
lists (SPEC 7).

Every source returns ``datasets.Dataset`` splits with an ``image`` column (``audio`` for audiofolder).
"""

from __future__ import annotations

from pathlib import Path

import datasets

from ginr.config import DataConfig
from ginr.data.photos import load_photos

FFHQ_LISTS = {"train": "ffhqtrain.txt", "validation": "ffhqvalidation.txt"}


def _existing_folder(path: str | None, field: str) -> Path:
    if not path:
        raise ValueError(f"{field} is not set; pass {field.replace('_', '-')} /path/to/the/data")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{field}={path}: no such folder")
    return folder


def load_split(config: DataConfig, split: str) -> datasets.Dataset:
    """The ``split`` of the configured source as a ``datasets.Dataset`` with an ``image`` or ``audio`` column."""
    if config.source == "photos":
        splits = load_photos(config.resolution)
    elif config.source == "imagefolder":
        folder = _existing_folder(config.path, "--data.path")
        try:
            splits = datasets.load_dataset("imagefolder", data_dir=str(folder))
        except (FileNotFoundError, ValueError) as error:
            raise FileNotFoundError(
                f"--data.path={folder}: no images found in the imagefolder layout <path>/<split>/[<class>/]*.png "
                f"({error})"
            ) from error
    elif config.source == "audiofolder":
        splits = _scan_audio_folder(_existing_folder(config.path, "--data.path"))
    elif config.source == "ffhq":
        return _load_ffhq(config, split)
    else:
        raise ValueError(f"unknown data.source {config.source!r}; choose photos, imagefolder or ffhq")
    if split not in splits:
        raise ValueError(f"split {split!r} not found in data.source={config.source}; it has {sorted(splits)}")
    return splits[split]


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}


def _scan_audio_folder(folder: Path) -> dict[str, datasets.Dataset]:
    """``<folder>/<split>/**/*.wav|flac|...`` in sorted order, as ``audio`` entries ``{path, bytes}``.

    ``datasets``' own audiofolder builder needs torchcodec (and FFmpeg) even to list files, so ginr lists them itself;
    soundfile decodes them later.
    """
    splits = {}
    for split_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(str(p) for p in split_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if files:
            name = SPLIT_ALIASES.get(split_dir.name, split_dir.name)
            splits[name] = datasets.Dataset.from_dict({"audio": [{"path": f, "bytes": None} for f in files]})
    if not splits:
        raise FileNotFoundError(
            f"--data.path={folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in the audiofolder layout "
            "<path>/<split>/[<class>/]*.wav"
        )
    return splits


def _load_ffhq(config: DataConfig, split: str) -> datasets.Dataset:
    """FFHQ from a flat folder of ``NNNNN.png`` selected and ordered by the reference's list files (quirk 29)."""
    folder = _existing_folder(config.path, "--data.path")
    lists = _existing_folder(config.split_lists, "--data.split_lists")
    if split not in FFHQ_LISTS:
        raise ValueError(f"FFHQ splits are {sorted(FFHQ_LISTS)}, not {split!r}")
    list_file = lists / FFHQ_LISTS[split]
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file} is missing; --data.split_lists must hold {sorted(FFHQ_LISTS.values())}")
    names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(names)} FFHQ files listed in {list_file} are not in {folder} "
            f"(first: {missing[0]}); FFHQ must be one flat folder of NNNNN.png"
        )
    return datasets.Dataset.from_dict(
        {"image": [str(folder / name) for name in names]}, features=datasets.Features({"image": datasets.Image()})
    )
