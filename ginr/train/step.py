"""One optimizer step over a global batch, and what a step whose numbers are not finite does (``--train.nonfinite``).

Every step checks, on every process, the loss of each instance, the gradients and the weights it starts from; one
all-reduce of a flag per position of the global batch (plus one for the gradients, one for the weights) tells every
process the same verdict, so under DDP they all skip, or all stop, together. A skipped step leaves the weights, the
optimizer state (Adam's moments and step count) and the EMA untouched; its batch is consumed all the same, so the
data order, the learning-rate schedule and resuming do not depend on whether steps were skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ginr.data import BatchPlan
from ginr.pytree import to_device

LOGGED = ("psnr", "mse", "inner_psnr")


@dataclasses.dataclass
class StepResult:
    """What one call of :func:`train_step` did; the same on every process except ``metrics``."""

    metrics: dict[str, torch.Tensor]
    """Means over this process's samples of the objective's ``psnr``, ``mse``, ``inner_psnr`` (not reduced)."""
    bad_positions: list[int]
    """Positions in the global batch (``(a P + rank) b + j``, all processes) whose loss was not finite."""
    gradients_finite: bool
    """The loss and the gradients were finite on every process."""
    weights_finite: bool
    """The weights the step started from were finite."""

    @property
    def skipped(self) -> bool:
        return bool(self.bad_positions) or not (self.gradients_finite and self.weights_finite)

    def scalars(self, accelerator) -> dict[str, float]:
        """The step's ``loss`` (the MSE), ``psnr`` and ``inner_psnr/<t>`` (meta models: the mean of per-sample PSNRs
        after t inner steps, as ``psnr``), averaged over the processes (collective)."""
        mean = {k: accelerator.reduce(v.detach(), reduction="mean") for k, v in self.metrics.items()}
        scalars = {"loss": float(mean["mse"]), "psnr": float(mean["psnr"])}
        if "inner_psnr" in mean:
            scalars.update({f"inner_psnr/{t}": value for t, value in enumerate(mean["inner_psnr"].tolist())})
        return scalars


def _all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor: every value of every tensor is finite (one device sync when read)."""
    if not tensors:
        return torch.tensor(True)
    return torch.stack([t.detach().isfinite().all() for t in tensors]).all()


def train_step(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[torch.Tensor | dict],
    *,
    accelerator,
    plan: BatchPlan,
    lr: float,
    max_grad_norm: float | None,
    epoch: int = 0,
) -> StepResult:
    """Take ``plan.accumulation`` micro-batches (tensors, or dicts of tensors) from ``batches``, accumulate their
    gradients (synchronised across processes on the last one) and, unless any loss, gradient or weight is not finite
    on any process, clip and step. The objective sees ``epoch`` (NeRF samples rays by it).

    Collective: every process calls it once per step. The gradients are zeroed either way. With fp16's loss scaler the
    scaler handles overflowing gradients itself (it skips those steps and lowers its scale), so only the losses and
    weights are checked.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    params = list(module.parameters())
    flags = torch.zeros(plan.global_batch + 2, device=accelerator.device)  # [positions | gradients | weights]
    flags[-1] = ~_all_finite(params)
    sums: dict[str, torch.Tensor] = {}
    loss_finite = torch.tensor(True, device=accelerator.device)
    for micro in range(plan.accumulation):
        batch = to_device(next(batches), accelerator.device)
        sync = micro == plan.accumulation - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(module):
            out = module(batch, epoch=epoch)
            accelerator.backward(out["loss"] / plan.accumulation)
        offset = (micro * plan.num_processes + accelerator.process_index) * plan.micro_batch
        flags[offset : offset + plan.micro_batch] = ~out["mse"].isfinite()
        loss_finite &= out["loss"].detach().isfinite()
        for name in LOGGED:
            if name in out:
                sums[name] = sums.get(name, 0) + out[name].mean(dim=0) / plan.accumulation
    grads = [p.grad for p in params if p.grad is not None] if accelerator.scaler is None else []
    flags[-2] = ~(loss_finite & _all_finite(grads).to(loss_finite.device))
    flags = accelerator.reduce(flags, reduction="sum").cpu()
    result = StepResult(
        metrics=sums,
        bad_positions=torch.nonzero(flags[:-2]).flatten().tolist(),
        gradients_finite=not flags[-2],
        weights_finite=not flags[-1],
    )
    if not result.skipped:
        if max_grad_norm is not None:
            accelerator.clip_grad_norm_(module.parameters(), max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return result


class NonFiniteError(RuntimeError):
    """A step whose numbers are not finite under ``--train.nonfinite stop``, or one skipped step too many."""


@dataclasses.dataclass
class NonFiniteGuard:
    """Applies ``--train.nonfinite`` to each :class:`StepResult`; its counts are part of the trainer state."""

    policy: str
    """'skip' or 'stop'."""
    limit: int
    """Under 'skip', stop once this many steps in a row were skipped."""
    skipped: int = 0
    """Steps skipped in the whole run."""
    in_a_row: int = 0
    """Steps skipped since the last good one."""

    def check(
        self,
        result: StepResult,
        step: int,
        batch: Callable[[], list[int]],
        last_checkpoint: Callable[[], Path | None],
    ) -> str | None:
        """``step`` is the 1-based number of the step; ``batch`` gives the dataset indices of its global batch by
        position and ``last_checkpoint`` the newest good checkpoint (both asked only when the step was not finite).

        Returns None for a good step, a message for a skipped one; raises :class:`NonFiniteError` naming the step,
        the batch and the last good checkpoint when the run must stop: under 'stop', when the limit of skips in a
        row is reached, and when the weights themselves are not finite (skipping cannot help then).
        """
        if not result.skipped:
            self.in_a_row = 0
            return None
        self.skipped += 1
        self.in_a_row += 1
        what = describe(result, batch())
        if self.policy == "stop" or self.in_a_row >= self.limit or not result.weights_finite:
            if not result.weights_finite:
                why = "skipping cannot recover weights that are not finite"
            elif self.policy == "stop":
                why = "--train.nonfinite stop"
            else:
                why = f"{self.in_a_row} steps in a row were skipped (--train.skip-limit {self.limit})"
            found = last_checkpoint()
            resume = (
                f"{found}; continue from it with --resume (perhaps with a lower --optim.lr)" if found else "none yet"
            )
            raise NonFiniteError(f"step {step}: {what}; stopped because {why}. Last good checkpoint: {resume}")
        return f"step {step}: {what}; skipped ({self.skipped} skipped so far)"


def describe(result: StepResult, batch: list[int]) -> str:
    """What was not finite in a step, with the dataset indices of its global batch."""
    parts = []
    if not result.weights_finite:
        parts.append("the weights are not finite (an earlier update diverged)")
    if result.bad_positions:
        indices = [batch[p] for p in result.bad_positions]
        parts.append(f"the loss is not finite on training instances {indices}")
    if not result.gradients_finite and not parts:
        parts.append("the loss or the gradients are not finite")
    return " and ".join(parts) + f" (the step's batch: training instances {batch})"
