"""Output locations checked before any work: a folder or file that a recipe will write must be one it can write."""

from __future__ import annotations

import os
from pathlib import Path


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (made if need be), or None: a file in the way (``folder`` or a
    parent of it), or a read-only folder (permissions or a read-only filesystem: the nearest folder that exists must
    be writable, since the rest will be made in it)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable (read-only permissions or filesystem)"
    return None


def writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a folder this process can write into (:func:`folder_problem`), or a ValueError naming ``flag``.
    Nothing is created; the recipe makes the folder when it writes."""
    folder = Path(path).expanduser()
    problem = folder_problem(folder)
    if problem:
        raise ValueError(f"{flag} {path}: {problem}; give a folder this user can write to")
    return folder


def writable_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a file this process can write: not a folder, not read-only, in a folder :func:`folder_problem`
    accepts; else a ValueError naming ``flag``."""
    file = Path(path).expanduser()
    problem = folder_problem(file.parent)
    if file.is_dir():
        problem = "it is a folder; give the path of the file to write"
    elif file.exists() and not os.access(file, os.W_OK):
        problem = "it is read-only"
    if problem:
        raise ValueError(f"{flag} {path}: {problem}")
    return file
