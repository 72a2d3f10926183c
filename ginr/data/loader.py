"""From ``datasets`` splits to batches: a torch Dataset of signals and deterministic, resumable batch samplers.

Training: every optimizer step consumes ``global_batch`` samples of the epoch's permutation (seeded by the run seed and
the epoch); process ``rank`` takes micro-batch ``a`` of step ``s`` at offset ``s G + (a P + rank) b``. A trailing
remainder smaller than the global batch is dropped, so every step has the same global batch on any process count.
Each sample index travels with its own seed for random transforms. Evaluation: process ``rank`` takes indices
``rank, rank + P, ...`` in order, without padding, so every instance is counted exactly once (quirk 19 fixed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import datasets
import torch
from torch.utils.data import DataLoader, Dataset


class Signals(Dataset):
    """Items ``(index, seed)`` (or a bare index) of a loaded ``split`` (a ``datasets.Dataset``) -> channels-last
    tensors, ``transform(entry, seed)``: (H, W, 3) images in [0, 1] or (T, 1) audio in [-1, 1]. ``entry`` is the
    undecoded ``{bytes, path}`` of a row, read from its ``column`` (``image`` or ``audio``)."""

    def __init__(self, split: datasets.Dataset, transform: Callable, column: str):
        if column not in split.column_names:
            raise ValueError(f"the data has no {column!r} column (columns: {split.column_names})")
        self.split = split
        self.transform = transform
        self.column = column

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key) -> torch.Tensor:
        index, seed = key if isinstance(key, tuple) else (key, None)
        entry = self.split[int(index)][self.column]
        try:
            return self.transform(entry, seed)
        except Exception as error:  # name the file, even from inside a loader worker
            raise BadFileError(failure_message(entry, int(index), error)) from error


VERIFY_COMMAND = "python recipes/prepare_data.py NAME --to DIR --verify-only"
"""The command that checks a prepared paper dataset folder, as failure messages spell it."""


class BadFileError(RuntimeError):
    """A file that cannot be decoded or transformed; the message names it and the fix.

    A DataLoader worker's BadFileError reaches the main process rebuilt from the worker's whole traceback
    (``Caught BadFileError in DataLoader worker process N. Original Traceback ...: <message>``); the message alone
    is kept, so a recipe can print it as one line.
    """

    def __init__(self, message: str):
        if message.startswith("Caught BadFileError"):
            message = message.rstrip().rsplit("BadFileError: ", 1)[-1]
        super().__init__(message)


def failure_message(entry: dict, index: int, error: Exception) -> str:
    """``cannot use <file>: <why>`` and what to do about it."""
    where = entry.get("path") or f"row {index} (in-memory data)"
    return (
        f"cannot use {where}: {type(error).__name__}: {error}. Replace that file (for a paper dataset, "
        f"`{VERIFY_COMMAND}` checks the whole folder; NAME: celeba, ffhq, imagenette or librispeech, DIR: its "
        "--data.path), or pass --data.skip-bad-files to drop unusable files with a count in the log"
    )


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a global batch is reached: per-device micro-batch x processes x accumulation steps."""

    global_batch: int
    micro_batch: int
    num_processes: int
    accumulation: int

    @classmethod
    def derive(cls, global_batch: int, num_processes: int, accumulation: int) -> BatchPlan:
        per_step = num_processes * accumulation
        if global_batch < 1 or global_batch % per_step:
            raise ValueError(
                f"--train.batch-size={global_batch} (the global batch) must be a positive multiple of "
                f"processes x --train.grad-accumulation = {num_processes} x {accumulation} = {per_step}"
            )
        return cls(global_batch, global_batch // per_step, num_processes, accumulation)


def mix_seeds(*values: int) -> int:
    """A 63-bit seed from integers (run seed, epoch, position, ...): a fixed LCG hash, the same on every platform and
    process, so random draws depend only on these values."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state * 6364136223846793005 + value + 1442695040888963407) % (1 << 63)
    return state


class TrainBatchSampler:
    """This process's micro-batches of ``(index, seed)`` for steps ``start_step ..`` of ``epoch``."""

    def __init__(self, size: int, plan: BatchPlan, rank: int, seed: int, epoch: int, start_step: int = 0):
        self.size, self.plan, self.rank, self.seed, self.epoch, self.start_step = (
            size,
            plan,
            rank,
            seed,
            epoch,
            start_step,
        )

    @staticmethod
    def steps_per_epoch(size: int, plan: BatchPlan) -> int:
        return size // plan.global_batch

    def __len__(self) -> int:
        return (self.steps_per_epoch(self.size, self.plan) - self.start_step) * self.plan.accumulation

    def order(self) -> torch.Tensor:
        """The epoch's permutation of the dataset indices."""
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(mix_seeds(self.seed, self.epoch)))

    def step_indices(self, step: int) -> list[int]:
        """Dataset indices of the whole global batch of ``step`` (of this epoch), all processes and micro-batches, in
        the order of their positions ``(a P + rank) b + j``."""
        batch = self.plan.global_batch
        return self.order()[step * batch : (step + 1) * batch].tolist()

    def __iter__(self):
        plan = self.plan
        order = self.order()
        for step in range(self.start_step, self.steps_per_epoch(self.size, plan)):
            for micro in range(plan.accumulation):
                offset = step * plan.global_batch + (micro * plan.num_processes + self.rank) * plan.micro_batch
                positions = range(offset, offset + plan.micro_batch)
                yield [(int(order[p]), mix_seeds(self.seed, self.epoch, p)) for p in positions]


class EvalBatchSampler:
    """Indices ``rank, rank + P, ...`` in batches of ``batch`` (the last may be short; none is padded).

    A split of fewer instances than processes is refused here: every process builds the sampler the same way before
    any collective, so all of them stop together (a process without instances would leave the others waiting in the
    reduction of the evaluation)."""

    def __init__(self, size: int, batch: int, num_processes: int, rank: int):
        if size < num_processes:
            raise ValueError(
                f"the evaluation split has {size} instance(s), fewer than the {num_processes} process(es), so a "
                "process would get none; evaluate with at most that many processes (accelerate launch "
                f"--num_processes {max(size, 1)}) or a larger evaluation split"
            )
        self.indices = list(range(rank, size, num_processes))
        self.batch = batch

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch)

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch):
            yield self.indices[start : start + self.batch]


def make_loader(dataset: Dataset, batch_sampler, num_workers: int) -> DataLoader:
    """A DataLoader over a batch sampler (workers decode and transform; batches are stacked tensors).

    The loader draws its workers' base seed from a generator of its own, not from the global torch RNG, so starting a
    loader (each epoch, each evaluation, on resume) never shifts the random streams of training (dropout).
    Random transforms take their per-sample seeds from the sampler, so the workers' seeds play no part in the data.
    """
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
