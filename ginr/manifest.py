"""A run's checkpoints, found and checked against their manifests (the read side; :mod:`ginr.train.checkpoint`
writes them, and :mod:`ginr.hub` loads a run's newest intact one without needing the training package).

A checkpoint is a folder ``checkpoints/step-NNNNNNNN/`` whose ``manifest.json``, written last, lists the size and
sha256 of every file in it; a folder without one is an unfinished save.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

MANIFEST = "manifest.json"
PREFIX = "step-"
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that is incomplete, tampered with or does not fit the run.

    A RuntimeError, not a ValueError: it also stops a run whose weights turned non-finite (nothing to save), which is
    no bad argument; recipes refuse it like a bad value through :func:`ginr.cli.refusals`."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inside(name: str) -> bool:
    """``name`` is a relative path that stays inside its folder (no absolute path, no ``..`` part)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and "\\" not in name


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of ``run_dir`` that have a manifest, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / MANIFEST).is_file())


def verify(folder: Path) -> dict:
    """Check every file of ``folder`` against its manifest; return the manifest or raise :class:`CheckpointError`."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder}: no readable {MANIFEST}; the checkpoint is incomplete") from error
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
        for e in files.values()
    ):
        raise CheckpointError(
            f'{folder / MANIFEST} is not a ginr manifest (its "files" must map each name to its bytes and sha256); '
            "the checkpoint is damaged"
        )
    for name, entry in files.items():
        if not inside(name):
            raise CheckpointError(f"{folder / MANIFEST} names {name!r}, a path outside the checkpoint folder: refused")
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the checkpoint is incomplete")
        if path.stat().st_size != entry["bytes"] or sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{path} does not match its checksum in {folder / MANIFEST}: truncated or modified")
    return manifest


def latest(run_dir: Path, below: int | None = None) -> Path | None:
    """The newest checkpoint of ``run_dir`` that passes :func:`verify` (of a step below ``below``, when given); newer
    ones that fail are named in a warning and passed over (partial folders of a killed save have no manifest and are
    not considered)."""
    for folder in reversed(complete_checkpoints(run_dir)):
        if below is not None and int(folder.name.removeprefix(PREFIX)) >= below:
            continue
        try:
            verify(folder)
            return folder
        except CheckpointError as error:
            log.warning("passing over %s: %s", folder.name, error)
    return None
