"""Model folders: ``model.safetensors`` plus a ``config.json`` that rebuilds the model, locally or on the Hub.

The same folder is a checkpoint's ``model/`` part, a ``save_pretrained`` output and a Hugging Face Hub repo.
Loading is strict: every key and shape of the file must match the model the config builds. Nothing is unpickled.

A model is named by its folder, a Hub repo id, a training run's folder (its newest complete and intact checkpoint)
or a checkpoint folder (:func:`model_dir`; checkpoints are found and checked by :mod:`ginr.manifest`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ginr import config as config_lib
from ginr import rules
from ginr.manifest import CheckpointError, latest, verify
from ginr.models import Model, build, model_config_type
from ginr.pytree import flatten, unflatten

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class ModelFileError(ValueError):
    """A model folder that is missing, unreadable or does not match its config."""


@dataclasses.dataclass
class Pretrained:
    """A loaded model: its full config, the model object and its params."""

    config: config_lib.Config
    model: Model
    params: dict


def save_pretrained(folder: str | os.PathLike, config: config_lib.Config, params: dict) -> Path:
    """Write ``params`` (a pytree) and ``config`` into ``folder``. The config must name a known model (shipped or
    :func:`ginr.models.register`-ed), so that :func:`from_pretrained` can rebuild it."""
    build(config.model_name, config.model)  # refuses a name or config that from_pretrained could not rebuild
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in flatten(params).items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "library": "ginr"})
    (folder / CONFIG_NAME).write_text(config_lib.dumps(config))
    return folder


def read_config(folder: str | os.PathLike) -> config_lib.Config:
    """The :class:`ginr.config.Config` stored in ``folder/config.json`` (a model, checkpoint or run folder), refused
    with a :class:`ModelFileError` when it is missing, unreadable, or breaks a rule of :func:`ginr.rules.validate`
    (a hand-edited file included). The one reader of a saved config: ``--resume``, ``--init-from`` and every loader
    use it."""
    path = Path(folder) / CONFIG_NAME
    try:
        config = config_lib.from_dict(json.loads(path.read_text()), model_config_type)
        rules.validate(config)
        return config
    except FileNotFoundError as error:
        raise ModelFileError(
            f"{path} is missing: {path.parent} is not a ginr model folder, nor a run folder (checkpoints/) or a "
            "checkpoint folder (model/); give one of those or a Hub repo id"
        ) from error
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path} is not a valid ginr config: {error}") from error


def load_params(folder: str | os.PathLike, model: Model, model_from: str = "its config.json") -> dict:
    """The params in ``folder/model.safetensors``, checked strictly against the structure ``model.init`` builds (every
    key, shape and dtype) and refused when any value is not finite. ``model_from`` says where ``model`` came from, for
    the error message."""
    path = Path(folder) / WEIGHTS_NAME
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as error:
        raise ModelFileError(
            f"{path} is missing; give a model folder, a run folder (once it saved a checkpoint), a checkpoint folder "
            "or a Hub repo id"
        ) from error
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error
    expected = flatten(model.init(torch.Generator().manual_seed(0)))
    check_structure(expected, tensors, str(path), f"the model built from {model_from}")
    broken = [name for name, value in tensors.items() if value.is_floating_point() and not value.isfinite().all()]
    if broken:
        raise ModelFileError(f"{path} holds non-finite values (NaN or inf) in {sorted(broken)}")
    return unflatten({name: tensors[name].requires_grad_(ref.requires_grad) for name, ref in expected.items()})


def check_structure(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str, against: str
) -> None:
    """Raise :class:`ModelFileError` naming every missing, unexpected, mis-shaped or mis-typed key."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    common = [name for name in expected if name in found]
    shapes = [
        f"{name}: file {tuple(found[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in common
        if found[name].shape != expected[name].shape
    ]
    dtypes = [
        f"{name}: file {found[name].dtype} vs model {expected[name].dtype}"
        for name in common
        if found[name].dtype != expected[name].dtype
    ]
    problems = [
        f"{what} {items}"
        for what, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
            ("dtype mismatches", dtypes),
        )
        if items
    ]
    if problems:
        raise ModelFileError(f"{where} does not match {against}: " + "; ".join(problems))


def model_dir(id_or_dir: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a model. ``id_or_dir`` is a model folder; a training run's folder (its newest complete and
    intact checkpoint's ``model/``, :func:`ginr.manifest.latest`); a checkpoint folder (its ``model/``, once
    :func:`ginr.manifest.verify` passes); or a Hub repo id, whose snapshot (``revision`` a branch, tag or commit)
    ``huggingface_hub.snapshot_download`` fetches, honouring ``HF_HUB_OFFLINE`` and the local cache and fetching only
    ``config.json`` and ``model.safetensors``."""
    folder = Path(id_or_dir).expanduser()
    if folder.is_dir():
        return local_model_dir(folder)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(str(id_or_dir), revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except HFValidationError as error:
        raise ModelFileError(
            missing_folder(folder, "nor a valid Hub repo id")
            or f"{id_or_dir!r} is neither a local folder nor a valid Hub repo id"
        ) from error
    except LocalEntryNotFoundError as error:
        raise ModelFileError(
            missing_folder(
                folder, "as a Hub repo id, it is not in the Hugging Face cache and the Hub cannot be reached"
            )
            or f"{id_or_dir!r} is not a local folder and is not in the Hugging Face cache, and the Hub cannot be reached "
            "(offline?); download it once with network access or give a local folder"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelFileError(
            missing_folder(folder, "nor a Hub repo of that name")
            or f"{id_or_dir!r}: no such model repo on the Hub (or it is private: log in)"
        ) from error


def missing_folder(folder: Path, hub_note: str) -> str | None:
    """What is wrong with ``folder`` when it reads as a local path (a file, or a folder missing from a local folder
    that exists: most likely mistyped, so the closest names there are given), followed by ``hub_note`` on why it was
    not a Hub repo either; None when it does not read as a local path."""
    if folder.is_file():
        return f"{folder} is a file, not a model folder; give the folder that holds it ({hub_note})"
    parent = folder.parent
    if parent == Path(".") or not parent.is_dir():
        return None
    names = sorted(p.name for p in parent.iterdir() if p.is_dir())
    close = difflib.get_close_matches(folder.name, names, n=3, cutoff=0.5)
    hint = f"; the closest there: {', '.join(close)}" if close else ""
    return f"{folder}: no such folder in {parent}{hint} ({hub_note})"


def local_model_dir(folder: Path) -> Path:
    """The model folder of a local ``folder``: a run's newest complete and intact checkpoint's ``model/`` (a run
    folder has ``checkpoints/``, and a ``config.json`` of its own beside it), a checkpoint's ``model/`` once the
    checkpoint passes its manifest, or else ``folder`` itself (:func:`read_config` and :func:`load_params` then say
    what is missing)."""
    if (folder / "checkpoints").is_dir():
        newest = latest(folder)
        if newest is None:
            raise ModelFileError(
                f"{folder} is a run folder without a complete and intact checkpoint in {folder / 'checkpoints'} (none "
                "saved yet, or every one fails its manifest: see the warnings above); give one of its checkpoint "
                "folders or a model folder, or train until the run saves a checkpoint"
            )
        return newest / "model"
    if (folder / "model" / CONFIG_NAME).is_file():
        try:
            verify(folder)
        except CheckpointError as error:
            raise ModelFileError(
                f"{folder} is not a complete and intact checkpoint ({error}); give its run folder for the newest "
                f"intact checkpoint, or {folder / 'model'} itself to load that model folder unchecked"
            ) from error
        return folder / "model"
    return folder


def from_pretrained(id_or_dir: str | os.PathLike, revision: str | None = None) -> Pretrained:
    """Load a ginr model from a model folder, a Hugging Face Hub repo id (``revision`` a branch, tag or commit), a
    training run's folder (its newest complete and intact checkpoint) or a checkpoint folder (see :func:`model_dir`).
    Every refusal is a :class:`ModelFileError` naming the source."""
    folder = model_dir(id_or_dir, revision)
    config = read_config(folder)
    model = build(config.model_name, config.model)
    return Pretrained(config=config, model=model, params=load_params(folder, model))
