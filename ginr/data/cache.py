"""One pass over a split before training: the pre-resized cache (``--data.cache-dir``), the bad-file check
(``--data.skip-bad-files``), which decode every file, or else a header check of every file.

Both run the split's own transform on every row with ``datasets.map`` in ``--data.num-workers`` processes, so a
corrupt, truncated or too-small file is found before the first step. The cache keeps each ``resize_center_crop``
output as a lossless PNG (``save_to_disk``); read back, the same transform is the identity on it, so cached and
uncached runs see bit-identical tensors while later epochs and runs skip decoding and resizing the originals.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from pathlib import Path

import datasets
import filelock
import numpy as np
from PIL import Image

from ginr.data import audio, transforms
from ginr.data.layouts import ENTRY
from ginr.data.loader import BadFileError, failure_message
from ginr.data.transforms import ImageTransform

logger = logging.getLogger(__name__)
CACHE_VERSION = 1


class _Probe:
    """Picklable ``datasets.map`` function: the row's transform output (as PNG bytes if ``keep``) and its error."""

    def __init__(self, transform, column: str, keep: bool):
        self.transform, self.column, self.keep = transform, column, keep

    def __call__(self, row: dict, index: int) -> dict:
        entry, out, error = row[self.column], None, ""
        try:
            pixels = self.transform(entry, 0)
        except Exception as failure:
            error = failure_message(entry, index, failure)
        else:
            if self.keep:
                buffer = io.BytesIO()
                Image.fromarray(np.round(pixels.numpy() * 255).astype(np.uint8)).save(buffer, format="PNG")
                out = {"bytes": buffer.getvalue(), "path": None}
        return {"error": error, self.column: out} if self.keep else {"error": error}


def _probe(data: datasets.Dataset, transform, column: str, keep: bool, num_workers: int, desc: str):
    features = {"error": datasets.Value("string"), **({column: ENTRY} if keep else {})}
    return data.map(
        _Probe(transform, column, keep),
        with_indices=True,
        remove_columns=data.column_names,
        features=datasets.Features(features),
        num_proc=num_workers if num_workers > 1 else None,
        desc=desc,
    )


def _keep_usable(data: datasets.Dataset, errors: list[str], skip: bool, name: str) -> datasets.Dataset:
    bad = [i for i, error in enumerate(errors) if error]
    if not bad:
        return data
    if not skip:
        raise BadFileError(f"{errors[bad[0]]} ({len(bad)} unusable file(s) in {name})")
    logger.warning(
        "skipped %d of %d files of %s that cannot be used (first: %s)", len(bad), len(errors), name, errors[bad[0]]
    )
    return data.select([i for i, error in enumerate(errors) if not error])


def drop_unusable(data: datasets.Dataset, transform, column: str, num_workers: int, name: str) -> datasets.Dataset:
    """``data`` without the rows ``transform`` fails on (logged with their count)."""
    checked = _probe(data, transform, column, False, num_workers, f"checking {name}")
    return _keep_usable(data, checked["error"], skip=True, name=name)


def check_headers(data: datasets.Dataset, column: str, num_workers: int, name: str) -> None:
    """Open every file of ``data`` and check its header (images: PIL's ``verify``; audio: libsndfile's header and
    truncation), raising :class:`BadFileError` for the first that fails, with the count: the cheap pass that finds
    a broken file before the run folder is written, when neither the cache nor ``--data.skip-bad-files`` decodes
    every file. Damage that only a full decode shows (a JPEG cut short) is still found when the file is used."""
    check = audio.check_header if column == "audio" else transforms.check_header
    checked = _probe(data, check, column, False, num_workers, f"checking the files of {name}")
    _keep_usable(data, checked["error"], skip=False, name=name)


def files_state(data: datasets.Dataset) -> str:
    """A digest of the size and modification time of every file the rows are read from (rows that carry their bytes,
    as Hub copies do, have none): a file replaced or changed on disk gives a new cache key, where the split's
    fingerprint sees only the paths."""
    digest = hashlib.sha1()
    for batch in data.with_format("arrow").iter(batch_size=4096):
        entries = batch["image"].combine_chunks()  # the bytes stay in Arrow
        on_disk = entries.field("bytes").is_null().to_pylist()
        for path, read_from_file in zip(entries.field("path").to_pylist(), on_disk):
            if read_from_file and path:
                state = os.stat(path)
                digest.update(f"{path}|{state.st_size}|{state.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def resized_cache(
    data: datasets.Dataset, transform: ImageTransform, cache_dir: str, name: str, num_workers: int, skip_bad: bool
) -> datasets.Dataset:
    """``data`` as resized PNGs under ``cache_dir`` (built once, under a file lock so parallel processes share it)."""
    if transform.mode != "resize_center_crop":
        raise ValueError(f"only resize_center_crop outputs can be cached, not {transform.mode}")
    key = hashlib.sha1(
        f"{CACHE_VERSION}|{data._fingerprint}|{files_state(data)}|{transform.resolution}|{skip_bad}".encode()
    ).hexdigest()
    folder = Path(cache_dir).expanduser() / f"{name}-{transform.resolution}px-{key[:16]}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(f"{folder}.lock"):
        if not folder.is_dir():
            built = _probe(data, transform, "image", True, num_workers, f"caching {name} at {transform.resolution} px")
            built = _keep_usable(built, built["error"], skip_bad, name).remove_columns("error")
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            built.save_to_disk(str(partial))
            partial.rename(folder)
            logger.info("cached %d images of %s in %s", len(built), name, folder)
    return datasets.load_from_disk(str(folder))
