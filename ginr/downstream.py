"""Modulations as features: the labelled export that ``recipes/encode.py RUN --out DIR`` writes, and how to read it.

    exported, meta = read_export("exports/celeba")           # a datasets.DatasetDict and DIR/ginr_export.json
    row = exported["validation"][0]                           # index, split, source, label (if any), modulation, psnr
    modulation = unflatten_modulation(row["modulation"], meta["layers"])  # {"layer": {"factor": (1, ...)}} for decode

An export is a Hugging Face ``datasets.DatasetDict`` (one split per data split, saved with ``save_to_disk``) and, beside
it, ``ginr_export.json``: the model, its config, each modulation layer's shape (``layers``, in
:func:`ginr.pytree.flatten` key order, the order the flat ``modulation`` column concatenates them in), the label
names and where they came from, and the splits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import torch

from ginr.pytree import flatten, unflatten

META_FILE = "ginr_export.json"
"""The export's metadata, beside the saved ``DatasetDict``."""


def read_export(folder: str | Path) -> tuple[datasets.DatasetDict, dict]:
    """``(datasets.DatasetDict, meta)`` of an export folder written by ``recipes/encode.py --out DIR``; ``meta`` is
    ``ginr_export.json``: ``model``, ``config`` (a config dict), ``layers`` (``{flatten key: shape}``),
    ``label_names`` (or None), ``label_source`` (or None), ``splits``."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a ginr export: it has no {META_FILE} (write one with recipes/encode.py)"
        )
    return datasets.load_from_disk(str(folder)), json.loads(meta_path.read_text())


def flatten_modulation(modulation: dict) -> torch.Tensor:
    """A batch of modulations (a pytree of (B, ...) leaves) as the export's flat vectors (B, D): every leaf flattened,
    concatenated in :func:`ginr.pytree.flatten` key order (:func:`unflatten_modulation` undoes it)."""
    return torch.cat([value.flatten(1) for value in flatten(modulation).values()], dim=1)


def unflatten_modulation(vector: Sequence[float] | torch.Tensor, layers: Mapping[str, Sequence[int]]) -> dict:
    """The modulation pytree of one exported row's flat ``modulation`` (or of a batch (B, D) of them): each layer of
    ``layers`` (``{flatten key: shape}``, in order) cut from the vector and given a leading batch dimension, ready
    for :func:`ginr.inference.decode`. A vector whose length is not the layers' total is refused."""
    flat = torch.as_tensor(vector, dtype=torch.float32)
    batch = flat.reshape(-1, flat.shape[-1])
    sizes = [math.prod(shape) for shape in layers.values()]
    if batch.shape[-1] != sum(sizes):
        raise ValueError(f"a modulation of {batch.shape[-1]} values, but the layers {dict(layers)} hold {sum(sizes)}")
    parts = torch.split(batch, sizes, dim=-1)
    return unflatten(
        {name: part.reshape(batch.shape[0], *shape) for (name, shape), part in zip(layers.items(), parts, strict=True)}
    )
