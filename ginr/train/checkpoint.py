"""Training checkpoints: one folder per step, written atomically, verified by a manifest of checksums.

Layout of ``<run>/checkpoints/step-00000120/``::

    model/model.safetensors, model/config.json    # a ginr model folder (ginr.from_pretrained reads it)
    ema.safetensors                               # EMA weights, when EMA is on
    optimizer.safetensors, optimizer.json         # optimizer tensors / param groups and scalars
    trainer_state.json                            # step, epoch, process count, data position, metrics
    rng-<rank>.safetensors, rng-<rank>.json       # every process's torch / CUDA / numpy / Python RNG
    manifest.json                                 # size and sha256 of every file above, written last

Everything is first written into ``.step-00000120.partial``, flushed to disk, then renamed; a folder without a valid
manifest is never loaded, so a run killed mid-save resumes from the previous checkpoint. Only safetensors and JSON
are read: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ginr import hub
from ginr.manifest import MANIFEST, PREFIX, CheckpointError, complete_checkpoints, latest, sha256, verify
from ginr.pytree import flatten


def folder_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- optimizer and RNG state as safetensors + JSON ---------------------------------------------------------------


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors of the optimizer state (``state.<param>.<name>``) and a JSON part (param groups, scalars)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`optimizer_state`: the ``state_dict`` to give ``optimizer.load_state_dict``."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [
        {**group, "betas": tuple(group["betas"])} if "betas" in group else group for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def check_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict, where: Path) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` fits ``optimizer``'s parameters (groups, sizes, shapes),
    so that loading it cannot fail half-way or leave state of the wrong shape for the next step."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    saved_sizes = [len(group["params"]) for group in state_dict["param_groups"]]
    if saved_sizes != sizes:
        raise CheckpointError(f"{where} holds optimizer state for parameter groups of sizes {saved_sizes}, not {sizes}")
    for index, entries in state_dict["state"].items():
        if not 0 <= index < len(params):
            raise CheckpointError(f"{where} holds optimizer state for parameter {index}; the model has {len(params)}")
        for name, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[index].shape:
                raise CheckpointError(
                    f"{where}: optimizer state {index}.{name} has shape {tuple(value.shape)}, its parameter "
                    f"{tuple(params[index].shape)}"
                )


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's torch CPU / CUDA, numpy and Python RNG states."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(internal), gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# ---- saving ------------------------------------------------------------------------------------------------------


def save(
    run_dir: Path,
    step: int,
    *,
    accelerator,
    config,
    params: dict,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    ema: dict[str, torch.Tensor] | None = None,
    keep: int = 3,
) -> Path:
    """Write the checkpoint of ``step`` atomically (collective: every process calls it) and prune old ones.

    Weights that are not finite are refused with :class:`CheckpointError` before anything is written, so they can
    never replace (or prune) a good checkpoint.
    """
    broken = [
        name for name, value in flatten(params).items() if value.is_floating_point() and not value.isfinite().all()
    ]
    if broken:
        raise CheckpointError(
            f"the weights after step {step} are not finite ({', '.join(sorted(broken))}); no checkpoint written, the "
            f"last good one is {latest(run_dir) or 'none (no checkpoint yet)'}"
        )
    root = Path(run_dir) / "checkpoints"
    final = root / folder_name(step)
    partial = root / f".{folder_name(step)}.partial"

    def make_partial():
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)

    def write_parts():
        rank = accelerator.process_index
        tensors, meta = rng_state()
        save_file(tensors, str(partial / f"rng-{rank}.safetensors"))
        (partial / f"rng-{rank}.json").write_text(json.dumps(meta))
        if accelerator.is_main_process:
            hub.save_pretrained(partial / "model", config, params)
            tensors, meta = optimizer_state(optimizer)
            save_file(tensors, str(partial / "optimizer.safetensors"))
            (partial / "optimizer.json").write_text(json.dumps(meta))
            if ema is not None:
                ema_cpu = {k: v.detach().to("cpu").contiguous() for k, v in ema.items()}
                save_file(ema_cpu, str(partial / "ema.safetensors"))
            (partial / "trainer_state.json").write_text(json.dumps({**trainer_state, "step": step}, indent=2))

    def seal():
        if accelerator.is_main_process:
            files = sorted(p for p in partial.rglob("*") if p.is_file())
            manifest = {}
            for path in files:
                _fsync(path)
                manifest[str(path.relative_to(partial))] = {"bytes": path.stat().st_size, "sha256": sha256(path)}
            (partial / MANIFEST).write_text(json.dumps({"step": step, "files": manifest}, indent=2))
            _fsync(partial / MANIFEST)
            for directory in {p.parent for p in files} | {partial}:
                _fsync(directory)
            if final.exists():  # a checkpoint of this step that failed verification, left by an earlier attempt
                shutil.rmtree(final)
            os.replace(partial, final)
            _fsync(root)
            prune(root, keep, final)

    for phase in (make_partial, write_parts, seal):  # every process finishes each phase before the next
        _all_or_none(phase, accelerator, step, root, partial)
    return final


def _all_or_none(phase, accelerator, step: int, root: Path, partial: Path) -> None:
    """Run ``phase`` on every process (collective). If it fails to write on any (a full disk, permissions),
    every process raises the same :class:`CheckpointError` and the partial folder is removed: no process is left
    waiting for the others, and no half-written checkpoint remains."""
    try:
        phase()
        failure = None
    except (OSError, SafetensorError) as error:  # safetensors reports its own I/O errors as SafetensorError
        failure = f"{type(error).__name__}: {error}"
    failures = [f for f in gather_object([failure]) if f]
    if failures:
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointError(
            f"could not write the checkpoint of step {step} in {root} "
            f"({failures[0]}); nothing of it was kept, the last good one is "
            f"{latest(root.parent) or 'none (no checkpoint yet)'}: free space or fix the folder, then --resume"
        )


def prune(root: Path, keep: int, newest: Path) -> None:
    """Remove stale partial folders and all but the newest ``keep`` complete checkpoints up to ``newest``, the one
    just written, which always stays. Folders of later steps (only left when a run resumed before them because they
    failed verification) are left for the run to overwrite when it reaches their step."""
    older = [p for p in complete_checkpoints(root.parent) if p.name < newest.name]
    for path in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(f".{PREFIX}*.partial"):
        shutil.rmtree(stale, ignore_errors=True)


# ---- finding and loading -----------------------------------------------------------------------------------------


def read_optimizer_state(folder: Path, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state dict checkpoint ``folder`` keeps, checked against ``optimizer``'s parameters
    (:func:`check_optimizer_state`: a :class:`CheckpointError` when it does not fit)."""
    saved = optimizer_state_dict(
        load_file(str(folder / "optimizer.safetensors")), json.loads((folder / "optimizer.json").read_text())
    )
    check_optimizer_state(optimizer, saved, folder / "optimizer.safetensors")
    return saved


def optimizer_source(init_from: str, model_folder: Path) -> Path | None:
    """The checkpoint whose Adam state a run fine-tuning from ``--init-from init_from`` can restore, given the model
    folder :func:`ginr.hub.model_dir` found there: for a run folder its newest intact checkpoint, for a checkpoint
    folder itself. None for a model folder or a Hub model, which keep no optimizer state."""
    if Path(init_from).expanduser() == model_folder or not (model_folder.parent / "optimizer.safetensors").is_file():
        return None
    return model_folder.parent


def load_source_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> int:
    """Load the Adam moments and step counts of checkpoint ``folder`` into ``optimizer`` (a fine-tuning run's), keeping
    the run's own hyper-parameters (lr, betas, eps, weight decay); a :class:`CheckpointError`, with nothing changed,
    when they do not fit its parameters. Returns the source's step count."""
    saved = read_optimizer_state(folder, optimizer)
    optimizer.load_state_dict({"state": saved["state"], "param_groups": optimizer.state_dict()["param_groups"]})
    return read_trainer_state(folder)["step"]


def read_trainer_state(folder: Path) -> dict:
    return json.loads((Path(folder) / "trainer_state.json").read_text())


def restore(folder: Path, *, accelerator, module, optimizer, global_batch: int) -> tuple[dict, dict | None]:
    """Load weights, optimizer, this process's RNG and (if present) EMA from a checkpoint.

    Everything is read and checked first (checksums, process count, global batch, every key and shape) and only then
    applied, so a checkpoint that does not fit raises :class:`CheckpointError` and changes nothing. Returns the trainer
    state and the EMA tensors (or None). Every process continues its own RNG streams, so a run resumes on the process
    count that wrote the checkpoint, and at the same global batch, so that the data order continues.
    """
    folder = Path(folder)
    verify(folder)
    state = read_trainer_state(folder)
    for what, saved, now, flag in (
        ("process(es)", state["num_processes"], accelerator.num_processes, "the same process count"),
        ("as global batch", state["global_batch"], global_batch, f"--train.batch-size {state['global_batch']}"),
    ):
        if saved != now:
            raise CheckpointError(
                f"{folder} was written with {saved} {what}, this run has {now}; resume with {flag} so that the data "
                "order and every process's random streams continue"
            )
    unwrapped = accelerator.unwrap_model(module)
    live = {**dict(unwrapped.named_parameters()), **dict(unwrapped.named_buffers())}
    try:
        params = flatten(hub.load_params(folder / "model", unwrapped.model, model_from="this run's config"))
    except hub.ModelFileError as error:
        raise CheckpointError(f"{error}; a resumed run keeps the model flags of the run that wrote {folder}") from error
    optimizer_dict = read_optimizer_state(folder, optimizer)
    ema_file = folder / "ema.safetensors"
    ema = None
    if ema_file.is_file():  # on the weights' device, where the average is updated
        ema = {name: value.to(accelerator.device) for name, value in load_file(str(ema_file)).items()}
        try:
            hub.check_structure(live, ema, str(ema_file), "this run's model")
        except hub.ModelFileError as error:
            raise CheckpointError(str(error)) from error
    rank = accelerator.process_index
    rng = load_file(str(folder / f"rng-{rank}.safetensors")), json.loads((folder / f"rng-{rank}.json").read_text())

    with torch.no_grad():  # nothing below can fail on a checked checkpoint
        for name, value in params.items():
            live[name].copy_(value)
    optimizer.load_state_dict(optimizer_dict)
    set_rng_state(*rng)
    return state, ema
