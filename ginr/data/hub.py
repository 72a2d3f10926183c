"""Hugging Face datasets: a Hub id (parquet-backed; ``datasets`` no longer runs loading scripts) or a local folder of
parquet files, as a split of undecoded ``{bytes, path}`` entries in a column named ``image`` or ``audio``.

Scripted Hub datasets (such as ``frgfm/imagenette``) are read from their parquet export: revision
``refs/convert/parquet`` with the config as a folder. Offline (``HF_HUB_OFFLINE=1``) a dataset is read from the
``datasets`` cache or, failing that, from a snapshot in the Hub cache (``hf download --repo-type dataset``).
Decoding is left to ginr (PIL, soundfile), so no FFmpeg or torchcodec is needed.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import huggingface_hub
from huggingface_hub.errors import LocalEntryNotFoundError

PARQUET_EXPORT = "refs/convert/parquet"


def load_hub_split(
    ref: str | None, split: str, config: str | None = None, revision: str | None = None, column: str | None = None
) -> datasets.Dataset:
    """``split`` of the dataset ``ref`` (a Hub id or a local folder) with its image or audio column left undecoded."""
    return signal_column(open_hub(ref, split, config, revision), column, ref)


def open_hub(ref: str | None, split: str, config: str | None = None, revision: str | None = None) -> datasets.Dataset:
    """``split`` of the dataset ``ref`` with all its columns, from the Hub, the local caches or a local folder."""
    if not ref:
        raise ValueError("--data.path is not set; pass a Hub dataset id (owner/name) or a local parquet folder")
    kwargs = {"data_dir": config} if revision == PARQUET_EXPORT else {"name": config}
    local = Path(ref).expanduser()
    try:
        if local.is_dir():
            return datasets.load_dataset(str(local), split=split, **kwargs)
        try:
            return datasets.load_dataset(ref, split=split, revision=revision, **kwargs)
        except ConnectionError:
            return datasets.load_dataset(_cached_snapshot(ref, revision), split=split, **kwargs)
    except ValueError as error:  # an unknown split or config
        raise ValueError(
            f"--data.path={ref} (config {config}): {error}; set --data.train-split / --data.eval-split / "
            "--data.hub-config"
        ) from error


def _cached_snapshot(ref: str, revision: str | None) -> str:
    try:
        return huggingface_hub.snapshot_download(ref, repo_type="dataset", revision=revision, local_files_only=True)
    except LocalEntryNotFoundError as error:
        where = f" --revision {revision}" if revision else ""
        raise FileNotFoundError(
            f"dataset {ref} is not in the local Hugging Face caches and the Hub cannot be reached; run once online, "
            f"or fetch it with `hf download {ref} --repo-type dataset{where}`, or pass a local parquet folder"
        ) from error


def signal_column(data: datasets.Dataset, column: str | None, ref: str) -> datasets.Dataset:
    """Keep only the Image or Audio ``column`` (the first such column if None), undecoded, named image or audio."""
    features = data.features
    if column is None:
        column = next((n for n, f in features.items() if isinstance(f, datasets.Image | datasets.Audio)), None)
        if column is None:
            raise ValueError(f"{ref} has no Image or Audio column ({dict(features)}); name one with --data.column")
    elif column not in features:
        raise ValueError(f"--data.column={column}: {ref} has no such column (columns: {list(features)})")
    feature = features[column]
    if isinstance(feature, datasets.Image):
        kind, undecoded = "image", datasets.Image(decode=False)
    elif isinstance(feature, datasets.Audio):
        kind, undecoded = "audio", datasets.Audio(decode=False)
    else:
        raise ValueError(f"--data.column={column}: {ref}'s column is {feature}, not an Image or Audio feature")
    data = data.select_columns([column]).cast_column(column, undecoded)
    return data.rename_column(column, kind) if column != kind else data


def label_column(data: datasets.Dataset) -> str | None:
    """The name of the first ``ClassLabel`` column of ``data`` (ImageNette's ``label``), or None if it has none."""
    return next((name for name, feature in data.features.items() if isinstance(feature, datasets.ClassLabel)), None)
