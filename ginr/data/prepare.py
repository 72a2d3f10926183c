"""Materialise a dataset in the layout ginr reads (fidelity 7), then verify it: counts, image sizes, split membership.

Sources: the official archive (zip / tar, any compression) or an extracted folder, placed file by file by a rule per
dataset; or, for ImageNette and LibriSpeech, their parquet copy on the Hugging Face Hub (or a local parquet folder
with the same columns). Bytes are copied as they are, so the files equal the official ones (only a Hub copy's
non-FLAC audio is re-encoded, losslessly, as FLAC).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import soundfile
from PIL import Image
from tqdm.auto import tqdm

from ginr.config import DataConfig
from ginr.data.catalog import IMAGENETTE_CLASSES, DatasetFacts
from ginr.data.hub import open_hub
from ginr.data.layouts import FFHQ_LISTS, IMAGE_EXTENSIONS
from ginr.data.sources import load_split


class VerificationError(ValueError):
    """A dataset folder that does not match the reference's; the message lists every problem."""


def materialise(name: str, facts: DatasetFacts, sources: list[str], to: Path) -> int:
    """Write dataset ``name`` into ``to`` from archives / extracted folders, or from one Hub id or parquet folder
    (the known Hub copy when ``sources`` is empty); the number of files written. A source that reads as a local
    path (absolute, ``./``, ``~``, or an archive name) but does not exist is refused before ``to`` is made."""
    sources = [str(Path(s).expanduser()) if s.startswith("~") else s for s in sources]
    for source in sources:
        local = source.startswith(("/", ".")) or source.lower().endswith(ARCHIVE_SUFFIXES)
        if local and not Path(source).exists():
            raise FileNotFoundError(f"--from {source}: no such file or folder")
    to.mkdir(parents=True, exist_ok=True)
    files = [path for path in map(Path, sources) if path.is_file() or _is_file_folder(path)]
    if sources and len(files) == len(sources):
        return from_files(name, files, to)
    if len(sources) <= 1:
        return from_hub(name, facts, to, sources[0] if sources else None)
    raise ValueError(f"--from {' '.join(sources)}: give archives or folders of files, or one Hub id / parquet folder")


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".gz", ".tar.bz2", ".tar.xz")
"""Names that can only be local archives, never Hub ids."""


def _is_file_folder(path: Path) -> bool:
    """A folder of the dataset's own files, not of parquet files (which is read as a Hub copy)."""
    return path.is_dir() and not any(path.rglob("*.parquet"))


# ---- where each file of an archive or folder goes ------------------------------------------------------------------


def _place_celeba(name: str) -> str | None:
    base = os.path.basename(name)
    return base if re.fullmatch(r"\d{6}\.jpg", base) else None


def _place_ffhq(name: str) -> str | None:
    base = os.path.basename(name)
    return base if re.fullmatch(r"\d{5}\.png", base) else None


def _place_imagenette(name: str) -> str | None:
    parts = name.replace("\\", "/").split("/")
    if len(parts) >= 3 and parts[-3] in ("train", "val") and parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return "/".join(parts[-3:])
    return None


def _place_librispeech(name: str) -> str | None:
    parts = name.replace("\\", "/").split("/")
    if len(parts) >= 4 and parts[-1].endswith(".flac") and re.fullmatch(r"[a-z]+-[a-z]+(-\d+)?", parts[-4]):
        return "LibriSpeech/" + "/".join(parts[-4:])
    return None


PLACE: dict[str, Callable[[str], str | None]] = {
    "celeba": _place_celeba,
    "ffhq": _place_ffhq,
    "imagenette": _place_imagenette,
    "librispeech": _place_librispeech,
}


def _members(source: Path) -> Iterator[tuple[str, Callable[[], io.BufferedIOBase]]]:
    """(name, opener) for every file of an archive or folder."""
    if source.is_dir():
        for root, _, names in sorted(os.walk(source)):
            for name in sorted(names):
                path = Path(root) / name
                yield str(path.relative_to(source)), lambda path=path: open(path, "rb")
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: archive.open(info)
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile():
                    yield member.name, lambda member=member: archive.extractfile(member)
    else:
        raise ValueError(f"--from {source}: not a folder, zip or tar archive")


def from_files(name: str, sources: list[Path], to: Path) -> int:
    """Copy the files of ``sources`` (archives or folders) that belong to dataset ``name`` into ``to``."""
    place, written = PLACE[name], 0
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"--from {source}: no such file or folder")
        for member, opener in tqdm(_members(source), desc=f"{source.name}", unit=" files"):
            target = place(member)
            if target is None:
                continue
            destination = to / target
            if destination.exists() and source.is_dir() and destination.samefile(source / member):
                written += 1  # already in place (--from overlaps --to)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with opener() as src, open(destination, "wb") as dst:
                shutil.copyfileobj(src, dst)
            written += 1
    if not written:
        raise FileNotFoundError(f"no {name} files found in {', '.join(map(str, sources))}")
    return written


# ---- from a Hub (or local parquet) copy ----------------------------------------------------------------------------


def _wnid(label: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", label.lower())
    for wnid, name in IMAGENETTE_CLASSES.items():
        if key in (wnid, re.sub(r"[^a-z0-9]", "", name.lower())):
            return wnid
    raise ValueError(f"unknown ImageNette class {label!r}; expected one of {sorted(IMAGENETTE_CLASSES.values())}")


def from_hub(name: str, facts: DatasetFacts, to: Path, ref: str | None = None) -> int:
    """Write the Hub copy of ``name`` (or ``ref``: another id or a local parquet folder with the same columns, config
    and layout) into ``to``."""
    copy = facts.hub
    if copy is None:
        raise ValueError(f"{name} has no known Hub copy that keeps the reference's file ids; pass --from ARCHIVE")
    written = 0
    for folder, split in copy.splits.items():
        rows = open_hub(ref or copy.repo, split, copy.config, copy.revision)
        if name == "imagenette":
            labels = rows.features["label"].names
            rows = rows.cast_column("image", datasets.Image(decode=False))
            for i, row in enumerate(tqdm(rows, desc=f"{name} {split}", unit=" images")):
                entry = row["image"]
                file = os.path.basename(entry.get("path") or "") or f"{i:05d}.JPEG"
                _write(to / folder / _wnid(labels[row["label"]]) / file, entry["bytes"])
                written += 1
        else:
            rows = rows.cast_column("audio", datasets.Audio(decode=False))
            for row in tqdm(rows, desc=f"{name} {split}", unit=" clips"):
                path = (
                    to / "LibriSpeech" / folder / str(row["speaker_id"]) / str(row["chapter_id"]) / f"{row['id']}.flac"
                )
                _write(path, _as_flac(row["audio"]["bytes"]))
                written += 1
    return written


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _as_flac(data: bytes) -> bytes:
    """FLAC bytes as they are; any other format soundfile reads, re-encoded losslessly as 16-bit FLAC."""
    if data[:4] == b"fLaC":
        return data
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def copy_split_lists(split_lists: Path, to: Path) -> None:
    """Copy FFHQ's list files next to the images, where ginr looks when --data.split-lists is not set."""
    for list_name in FFHQ_LISTS.values():
        if not (split_lists / list_name).is_file():
            raise FileNotFoundError(f"--split-lists {split_lists}: {list_name} is missing")
        if not ((to / list_name).exists() and (to / list_name).samefile(split_lists / list_name)):
            shutil.copyfile(split_lists / list_name, to / list_name)


# ---- verification --------------------------------------------------------------------------------------------------


def verify(name: str, facts: DatasetFacts, folder: Path) -> list[str]:
    """Load every split as training will and check it against ``facts``; a report, or VerificationError."""
    problems, report, splits = [], [], {}
    for split, expected in facts.counts.items():
        try:
            splits[split] = load_split(DataConfig(source=facts.source, path=str(folder)), split)
        except (FileNotFoundError, ValueError) as error:
            problems.append(f"{split}: {error}")
            continue
        count = len(splits[split])
        report.append(f"{split}: {count} instances (expected {expected})")
        if count != expected:
            problems.append(f"{split}: {count} instances, expected {expected}")
    paths = {split: [e["path"] for e in data[data.column_names[0]]] for split, data in splits.items()}
    if facts.image_size is not None:
        problems += _check_sizes(facts.image_size, paths)
    if name in MEMBERSHIP:  # CelebA's splits are id ranges, every id of which the loader found
        problems += MEMBERSHIP[name](facts, paths)
    if problems:
        raise VerificationError(f"{folder} is not a complete {name} folder:\n  " + "\n  ".join(problems))
    return report


def _check_sizes(rule: str, paths: dict[str, list[str]]) -> list[str]:
    files = [p for split in paths.values() for p in split]
    sizes = {}
    for path in tqdm(files, desc="image sizes", unit=" images"):
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
        except OSError as error:
            sizes[path] = f"unreadable ({error})"
    if rule == "square":
        expected = sizes[files[0]] if files else None
        ok = isinstance(expected, tuple) and expected[0] == expected[1]
        wrong = [p for p, s in sizes.items() if not ok or s != expected]
        rule = f"one square size ({expected})"
    elif rule.startswith("short"):
        short = int(rule[5:])
        wrong = [p for p, s in sizes.items() if not isinstance(s, tuple) or min(s) != short]
        rule = f"a shorter side of {short} px"
    else:
        expected = tuple(int(v) for v in rule.split("x"))
        wrong = [p for p, s in sizes.items() if s != expected]
        rule = f"{rule} px"
    if wrong:
        return [f"{len(wrong)} image(s) do not have {rule} (first: {wrong[0]}: {sizes[wrong[0]]})"]
    return []


def _membership_ffhq(facts: DatasetFacts, paths: dict[str, list[str]]) -> list[str]:
    train, held_out = ({os.path.basename(p) for p in paths.get(s, [])} for s in ("train", "validation"))
    overlap = train & held_out
    return [f"{len(overlap)} file(s) are in both FFHQ lists (first: {sorted(overlap)[0]})"] if overlap else []


def _membership_imagenette(facts: DatasetFacts, paths: dict[str, list[str]]) -> list[str]:
    classes = {split: {Path(p).parent.name for p in files} for split, files in paths.items()}
    expected = set(facts.classes)
    return [
        f"{split}: classes {sorted(found)}, expected {sorted(expected)}"
        for split, found in classes.items()
        if found != expected
    ]


def _membership_librispeech(facts: DatasetFacts, paths: dict[str, list[str]]) -> list[str]:
    problems = []
    speakers = {split: {Path(p).parent.parent.name for p in files} for split, files in paths.items()}
    if len(speakers) == 2 and set.intersection(*speakers.values()):
        problems.append(
            f"speakers shared by {' and '.join(speakers)}: {sorted(set.intersection(*speakers.values()))[:5]}"
        )
    wrong = []
    for path in tqdm([p for split in paths.values() for p in split], desc="sample rates", unit=" clips"):
        try:
            rate = soundfile.info(path).samplerate
        except soundfile.LibsndfileError as error:
            rate = f"unreadable ({error})"
        if rate != 16000:
            wrong.append(f"{path}: {rate}")
    if wrong:
        problems.append(f"{len(wrong)} clip(s) are not 16 kHz FLAC (first: {wrong[0]})")
    return problems


MEMBERSHIP = {
    "ffhq": _membership_ffhq,
    "imagenette": _membership_imagenette,
    "librispeech": _membership_librispeech,
}
