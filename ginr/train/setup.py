"""Run set-up: the Accelerator with the chosen precision and seeds, and the run folder (checked, then started)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
import shutil
from pathlib import Path
from typing import IO

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ginr import config as config_lib
from ginr import manifest, paths
from ginr.data import TrainBatchSampler
from ginr.train.lock import RunInUseError, lock_run

MIXED = {"fp32": "no", "tf32": "no", "bf16": "bf16", "fp16": "fp16"}
CONFIG = "config.json"
RUN_OUTPUTS = ("checkpoints", "tensorboard", "eval_metrics.json", CONFIG)
"""What a run writes into its folder; ``--train.overwrite`` deletes these and nothing else."""


def resolve_auto(train: config_lib.TrainConfig) -> config_lib.TrainConfig:
    """``train`` with ``compile`` 'auto' made concrete for this machine: torch.compile's default mode on a CUDA GPU
    (the same function, tested; it fuses the many small elementwise kernels, 3.8x for ipc-meta in bf16 on an H200,
    README "Benchmarks"), eager elsewhere (compiling did not pay on CPUs)."""
    if train.compile == "auto":
        gpu = not train.cpu and torch.cuda.is_available()
        train = dataclasses.replace(train, compile="default" if gpu else "off")
    return train


def make_accelerator(train: config_lib.TrainConfig) -> Accelerator:
    """An Accelerator for ``train.precision``; TF32 matmuls only for ``tf32`` (fp32 is the reference's arithmetic).
    Without an accelerator (or with ``train.cpu``) it runs on the CPU, several processes over gloo.

    Every process seeds torch, numpy and Python with ``seed + process index`` (weights and data order are seeded
    separately from ``seed`` alone, so they are the same on every process).
    """
    cpu = train.cpu or not torch.accelerator.is_available()  # a torchrun-started CPU process joins gloo DDP
    accelerator = Accelerator(mixed_precision=MIXED[train.precision], cpu=cpu)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(train.cpu_threads or cpu_share())
    allow_tf32 = train.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    seed = train.seed + accelerator.process_index
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return accelerator


def cpu_share() -> int:
    """This process's share of the CPUs it may run on: ``accelerate launch`` sets OMP_NUM_THREADS=1 unless told
    otherwise, which would leave all but one core idle."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, len(os.sched_getaffinity(0)) // local_processes)


def adam(parameters, optim: config_lib.OptimConfig) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the config's settings, fused into one kernel per step where the device has one
    (CPU and CUDA float tensors): the same update, about 3x faster for the hypernetworks' 44 M parameters on a CPU."""
    params = list(parameters)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(
        params, lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay, fused=fused
    )


def run_length(train_size: int, plan, train: config_lib.TrainConfig) -> tuple[int, int]:
    """``(steps per epoch, total steps)`` of a run over ``train_size`` instances (``--train.max-steps`` caps the
    total); a ValueError when the split is smaller than one global batch."""
    steps_per_epoch = TrainBatchSampler.steps_per_epoch(train_size, plan)
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {train_size} instances, fewer than one global batch ({plan.global_batch})"
        )
    total = steps_per_epoch * train.epochs
    return steps_per_epoch, total if train.max_steps is None else min(total, train.max_steps)


def describe(config: config_lib.Config, module, sizes: tuple[int, int], plan, steps_per_epoch: int, total: int) -> str:
    """The run's one-line summary: model and data, parameters, split ``sizes`` (train, eval), the batch plan, the
    length, the arithmetic and the device."""
    train = config.train
    n_params = sum(p.numel() for p in module.parameters())
    compiled = "" if train.compile == "off" else f", compiled ({train.compile})"
    return (
        f"{config.model_name} on {config.data_name}: {n_params / 1e6:.3f} M parameters, {sizes[0]} train / "
        f"{sizes[1]} eval instances, global batch {plan.global_batch} = {plan.micro_batch} x {plan.num_processes} "
        f"process(es) x {plan.accumulation}, {steps_per_epoch} steps/epoch, {total} steps, {train.precision}{compiled} "
        f"on {next(module.parameters()).device.type}"
    )


def run_folder(config: config_lib.Config, resume: Path | None, accelerator: Accelerator) -> tuple[Path, IO | None]:
    """The run folder: the resumed one, or ``out_dir/run_name`` (default ``<model>_<data>_<date-time>``), locked
    (:func:`ginr.train.lock.lock_run`) by the main process, with the lock's file (None on the other processes): keep
    it open for the run. Writes nothing else: :func:`start_run` does, once everything else has been checked.

    A folder locked by another run is refused (:class:`~ginr.train.lock.RunInUseError`, even with
    ``--train.overwrite``); one that already holds a run is refused (FileExistsError) unless ``--train.overwrite`` (or
    ``--resume``); the message offers ``--resume`` only when the run has a checkpoint to continue from. Collective: every
    process gets the same folder and the same refusal.
    """
    if resume is not None:
        folder = resume
    else:
        name = config.train.run_name
        if name is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            name = f"{config.model_name}_{config.data_name}_{stamp}"
            name = broadcast_object_list([name])[0]  # the main process's clock names the run
        folder = Path(config.train.out_dir) / name
    paths.writable_folder(folder, "--resume" if resume is not None else "--train.out-dir")
    held, refusal = None, None
    if accelerator.is_main_process:
        try:
            held = lock_run(folder)
        except RunInUseError as error:
            refusal = str(error)
    refusal = broadcast_object_list([refusal])[0]
    if refusal is not None:
        raise RunInUseError(refusal)
    if resume is None and (folder / CONFIG).exists() and not config.train.overwrite:
        if manifest.latest(folder) is None:  # stopped before its first checkpoint: nothing to --resume
            raise FileExistsError(
                f"{folder} holds a run with no complete and intact checkpoint to continue; pass --train.overwrite to "
                "start it again there, or pick another --train.run-name"
            )
        raise FileExistsError(
            f"{folder} already holds a run; continue it with --resume {folder}, pick another --train.run-name, "
            "or pass --train.overwrite to replace it"
        )
    return folder, held


def start_run(folder: Path, config: config_lib.Config, accelerator: Accelerator, resumed: bool) -> None:
    """Write the run's ``config.json`` (collective). A resumed run records the flags that extended it; a new run in a
    folder that held one (``--train.overwrite``) first deletes that run's outputs, so none of its checkpoints can be
    resumed or pruned as if it were this run's."""
    if accelerator.is_main_process:
        if not resumed:
            for name in RUN_OUTPUTS:
                path = folder / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / CONFIG, config_lib.dumps(config))
    accelerator.wait_for_everyone()


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader (or a kill) sees the old file or the new one, never a part."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
