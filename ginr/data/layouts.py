"""Local folders as ``datasets.Dataset`` splits of undecoded ``{bytes, path}`` entries (fidelity 7).

- ``imagefolder`` / ``audiofolder``: ``<path>/<split>/[<class>/]*``, classes sorted and files sorted within each class,
  as torchvision's ``ImageFolder`` orders them (ImageNette: ``imagenette2-320/{train,val}/<wnid>/*.JPEG``).
- ``celeba``: the flat ``img_align_celeba`` folder ``000001.jpg .. 202599.jpg``, split by id (quirk 17).
- ``ffhq``: ``NNNNN.png`` (flat, or the official ``00000/`` .. ``69000/`` subfolders) chosen and ordered by the
  reference's list files (quirk 29).
- ``librispeech``: ``<path>[/LibriSpeech]/<subset>/<speaker>/<chapter>/*.flac``, sorted by utterance id as
  torchaudio's ``LIBRISPEECH`` does.

Only file names are read here; decoding happens in the loader workers, so a bad file is reported when it is used
(or up front with ``--data.skip-bad-files``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets

# torchvision's IMG_EXTENSIONS (matched case-insensitively, as ImageFolder does).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
logger = logging.getLogger(__name__)
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}

# fidelity 7: train = ids 1-162770; the reference evaluates on the official test ids (quirk 17); official val is unused.
CELEBA_IDS = {"train": (1, 162770), "validation": (162771, 182637), "test": (182638, 202599)}
FFHQ_LISTS = {"train": "ffhqtrain.txt", "validation": "ffhqvalidation.txt"}
ENTRY = datasets.Features({"bytes": datasets.Value("binary"), "path": datasets.Value("string")})


def files_dataset(column: str, paths: list) -> datasets.Dataset:
    """A split whose ``column`` holds ``{bytes: None, path}`` entries, in the given order."""
    return datasets.Dataset.from_dict(
        {column: [{"bytes": None, "path": str(p)} for p in paths]}, features=datasets.Features({column: ENTRY})
    )


def existing_folder(path: str | None, flag: str = "--data.path") -> Path:
    """``path`` as a folder that exists, or an error naming ``flag``."""
    if not path:
        raise ValueError(f"{flag} is not set; pass {flag} /path/to/the/data")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag}={path}: no such folder")
    return folder


def _sorted_files(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """Files under ``folder`` (recursively) with one of ``extensions``: walk roots sorted, names sorted within.

    Links to folders are followed (a class folder may be a link), except a link back into the folders that lead to it
    (a loop: every file would be listed again at each turn); each one skipped is logged."""
    listed, chains = [], {str(folder): {os.path.realpath(folder)}}
    for root, dirs, names in os.walk(folder, followlinks=True):
        chain = chains.pop(root)
        for name in list(dirs):
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if real in chain:
                logger.warning("not following %s: a link back to %s (a loop)", path, real)
                dirs.remove(name)
            else:
                chains[path] = chain | {real}
        listed.append((root, names))
    return [
        os.path.join(root, name)
        for root, names in sorted(listed)
        for name in sorted(names)
        if name.lower().endswith(extensions)
    ]


def scan_splits(folder: Path, kind: str) -> dict[str, datasets.Dataset]:
    """``<folder>/<split>/**`` for kind ``image`` or ``audio``; ``val``/``valid``/``dev`` are named ``validation``.

    ``datasets``' own audiofolder builder needs torchcodec (and FFmpeg) even to list files, and its imagefolder
    builder does not promise torchvision's order, so ginr lists files itself.
    """
    extensions = IMAGE_EXTENSIONS if kind == "image" else AUDIO_EXTENSIONS
    splits = {name: files_dataset(kind, files) for name, (_, files) in _split_files(folder, extensions).items()}
    if not splits:
        loose = [p.name for p in folder.iterdir() if p.name.lower().endswith(extensions)]
        found = (
            f"; found {len(loose)} file(s) directly in it (first: {loose[0]}): move them into a split folder"
            if loose
            else ""
        )
        prepared = (
            "; for ImageNette, `python recipes/prepare_data.py imagenette --to DIR` makes it" if kind == "image" else ""
        )
        raise FileNotFoundError(
            f"--data.path={folder}: no {kind} files ({', '.join(extensions)}) in the {kind}folder layout "
            f"<path>/<split>/[<class>/]*{found}{prepared}"
        )
    return splits


def _split_files(folder: Path, extensions: tuple[str, ...]) -> dict[str, tuple[Path, list[str]]]:
    """``{split name: (its folder, its files in order)}`` of the split folders of ``folder`` that hold files."""
    splits = {}
    for split_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _sorted_files(split_dir, extensions)
        if files:
            splits[SPLIT_ALIASES.get(split_dir.name, split_dir.name)] = (split_dir, files)
    return splits


def folder_classes(folder: Path, kind: str) -> tuple[list[str], dict[str, list[int]]] | None:
    """The class sub-folders of a ``<folder>/<split>/<class>/*`` layout as labels: the sorted class names of every
    split together (so a label means the same class in each split) and ``{split: each file's label}`` in
    :func:`scan_splits`' row order; None when a file lies directly in its split folder (no classes)."""
    extensions = IMAGE_EXTENSIONS if kind == "image" else AUDIO_EXTENSIONS
    classes = {}
    for name, (split_dir, files) in _split_files(folder, extensions).items():
        parts = [Path(file).relative_to(split_dir).parts for file in files]
        if any(len(part) == 1 for part in parts):
            return None
        classes[name] = [part[0] for part in parts]
    names = sorted({label for labels in classes.values() for label in labels})
    numbers = {label: number for number, label in enumerate(names)}
    return names, {split: [numbers[label] for label in labels] for split, labels in classes.items()}


def celeba_folder(path: str | None) -> Path:
    """The folder holding ``000001.jpg``: ``path`` itself or its ``img_align_celeba[/img_align_celeba]`` inside."""
    folder = existing_folder(path)
    for candidate in (folder, folder / "img_align_celeba", folder / "img_align_celeba" / "img_align_celeba"):
        if (candidate / "000001.jpg").is_file():
            return candidate
    raise FileNotFoundError(
        f"--data.path={folder}: no 000001.jpg there or in img_align_celeba/ inside it; CelebA must be the flat "
        "aligned folder 000001.jpg .. 202599.jpg (recipes/prepare_data.py celeba --from img_align_celeba.zip --to DIR)"
    )


def load_celeba(path: str | None, split: str) -> datasets.Dataset:
    """The CelebA ``split`` (train / validation / test) by file id; every id of the split must be present."""
    if split not in CELEBA_IDS:
        raise ValueError(f"CelebA splits are {sorted(CELEBA_IDS)}, not {split!r} (set --data.train-split/eval-split)")
    folder = celeba_folder(path)
    first, last = CELEBA_IDS[split]
    names = [f"{i:06d}.jpg" for i in range(first, last + 1)]
    present = set(os.listdir(folder))
    missing = [name for name in names if name not in present]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(names)} CelebA {split} files (ids {first}-{last}) are not in {folder} "
            f"(first: {missing[0]}); get the whole img_align_celeba.zip and run "
            f"recipes/prepare_data.py celeba --from img_align_celeba.zip --to {folder}"
        )
    return files_dataset("image", [folder / name for name in names])


def load_ffhq(path: str | None, split_lists: str | None, split: str) -> datasets.Dataset:
    """FFHQ's ``split`` (train / validation): the files its list names, in the list's order (quirk 29)."""
    if split not in FFHQ_LISTS:
        raise ValueError(f"FFHQ splits are {sorted(FFHQ_LISTS)}, not {split!r} (set --data.train-split/eval-split)")
    folder = existing_folder(path)
    lists = existing_folder(split_lists, "--data.split-lists") if split_lists else folder
    list_file = lists / FFHQ_LISTS[split]
    if not list_file.is_file():
        raise FileNotFoundError(
            f"{list_file} is missing: FFHQ needs the reference's {' and '.join(FFHQ_LISTS.values())}; pass "
            "--data.split-lists FOLDER, or copy them next to the images (recipes/prepare_data.py ffhq --split-lists)"
        )
    names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    files = {p.name: p for pattern in ("*.png", "*/*.png") for p in folder.glob(pattern)}
    missing = [name for name in names if name not in files]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(names)} FFHQ files listed in {list_file} are not in {folder} "
            f"(first: {missing[0]}); FFHQ must be NNNNN.png, flat or in the official 00000/ .. 69000/ subfolders"
        )
    return files_dataset("image", [files[name] for name in names])


def load_librispeech(path: str | None, subset: str) -> datasets.Dataset:
    """The LibriSpeech ``subset`` (e.g. train-clean-100, test-clean), sorted by utterance id like torchaudio."""
    folder = existing_folder(path)
    roots = [folder, folder / "LibriSpeech"]
    subset_dir = next((root / subset for root in roots if (root / subset).is_dir()), None)
    if subset_dir is None:
        found = sorted(p.name for root in roots if root.is_dir() for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"--data.path={folder}: no LibriSpeech subset {subset!r} in it or in LibriSpeech/ (found: {found}); "
            f"get {subset}.tar.gz from openslr.org/12 and run recipes/prepare_data.py librispeech --from "
            f"{subset}.tar.gz --to {folder}"
        )
    files = sorted(subset_dir.glob("*/*/*.flac"), key=lambda p: p.stem)
    if not files:
        raise FileNotFoundError(f"{subset_dir}: no FLAC files in the layout <speaker>/<chapter>/<utterance>.flac")
    return files_dataset("audio", files)
