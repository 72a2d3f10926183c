"""The trainer state: what a run carries from step to step besides the weights and the optimizer (the step, the
non-finite guard's counts, the evaluation history, the EMA), what its checkpoints keep of it
(``trainer_state.json`` with the data position and the batch plan, ``ema.safetensors``), and what resuming gives back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ginr.config import Config, OptimConfig, TrainConfig
from ginr.data import BatchPlan
from ginr.module import ParamsModule
from ginr.train import checkpoint
from ginr.train.checkpoint import CheckpointError
from ginr.train.ema import init_ema, named_state
from ginr.train.step import NonFiniteGuard


@dataclasses.dataclass
class TrainerState:
    """A run's state between steps; :meth:`saved` is what a checkpoint keeps of it besides the tensors."""

    step: int
    """Optimizer steps taken (skipped ones included): the run's position."""
    steps_per_epoch: int
    plan: BatchPlan
    """How the global batch is split; a resumed run must have the same."""
    guard: NonFiniteGuard
    """``--train.nonfinite`` with its counts of skipped steps."""
    history: list[dict]
    """The evaluations so far (rows of eval_metrics.json)."""
    ema: dict[str, torch.Tensor] | None
    """The moving average of the weights (None: ``--train.ema 0``)."""
    saved_at: int | None = None
    """The step of this run's newest checkpoint (None: none yet)."""

    @property
    def epochs_done(self) -> int:
        return self.step // self.steps_per_epoch

    def saved(self) -> dict:
        """``trainer_state.json`` of a checkpoint at this step (:func:`checkpoint.save` adds the step): where the
        data order stands, the batch plan a resume must match, the guard's counts and the history."""
        return {
            "epoch": self.epochs_done,
            "step_in_epoch": self.step % self.steps_per_epoch,
            "num_processes": self.plan.num_processes,
            "global_batch": self.plan.global_batch,
            "micro_batch": self.plan.micro_batch,
            "accumulation": self.plan.accumulation,
            "skipped_steps": self.guard.skipped,
            "skipped_in_a_row": self.guard.in_a_row,
            "eval_history": self.history,
        }


def checkpoint_to_resume(run_dir: Path) -> Path:
    """The newest complete and intact checkpoint of ``run_dir``; a ValueError when there is none."""
    latest = checkpoint.latest(run_dir)
    if latest is None:
        raise ValueError(
            f"--resume {run_dir}: no complete and intact checkpoint in {run_dir / 'checkpoints'}, so nothing "
            "to continue; start the run again with its first command plus --train.overwrite"
        )
    return latest


def start_fine_tuning(optim: OptimConfig, init_from: str, model_folder: Path, optimizer) -> tuple[OptimConfig, str]:
    """Start the Adam of a run fine-tuning from ``--init-from init_from`` (whose weights came from ``model_folder``)
    where the source stopped: with the source run's Adam state when it kept one that fits
    (:func:`checkpoint.load_source_optimizer`), else fresh; either way the learning rate warms up over
    ``optim.init_warmup_steps`` (:mod:`ginr.train.schedule`). A fresh Adam's first updates move every weight by about
    the learning rate, whatever its gradient (measured in the README's "Fine-tuning"). Returns ``optim`` with the choice recorded (``init_state``, kept in the run's config.json,
    so a resumed run continues the same schedule) and the line that says it."""
    warm_up = f"warmed up over {optim.init_warmup_steps} steps" if optim.init_warmup_steps else "not warmed up"
    warm_up = f"the learning rate {warm_up} (--optim.init-warmup-steps)"
    source = checkpoint.optimizer_source(init_from, model_folder)
    if source is not None:
        try:
            step = checkpoint.load_source_optimizer(source, optimizer)
            return dataclasses.replace(optim, init_state="restored"), (
                f"fine-tuning: Adam state restored from {source} (after its step {step}); {warm_up}"
            )
        except CheckpointError as error:
            why = f"the optimizer state of {source} does not fit ({error})"
    else:
        why = f"{init_from} keeps no optimizer state (only run and checkpoint folders do)"
    return dataclasses.replace(optim, init_state="warm-up"), f"fine-tuning: {why}; a fresh Adam, {warm_up}"


def start(
    train: TrainConfig, plan: BatchPlan, steps_per_epoch: int, latest: Path | None, accelerator, module, optimizer
) -> TrainerState:
    """A new run's state, or (``latest`` given) the state of that checkpoint, whose weights, optimizer state and this
    process's random streams are loaded into ``module`` (the prepared one), ``optimizer`` and torch (a
    :class:`CheckpointError`, with nothing changed, when it does not fit). The EMA starts from the current weights unless the checkpoint has one;
    ``--train.ema 0`` turns it off (a resumed run does not continue its saved average then)."""
    saved, ema = {}, None
    if latest is not None:
        saved, ema = checkpoint.restore(
            latest, accelerator=accelerator, module=module, optimizer=optimizer, global_batch=plan.global_batch
        )
    if not train.ema:
        ema = None
    elif ema is None:
        ema = init_ema(named_state(accelerator.unwrap_model(module)))
    guard = NonFiniteGuard(
        train.nonfinite, train.skip_limit, saved.get("skipped_steps", 0), saved.get("skipped_in_a_row", 0)
    )
    step = saved.get("step", 0)
    history = saved.get("eval_history", [])
    return TrainerState(step, steps_per_epoch, plan, guard, history, ema, saved_at=None if latest is None else step)


def save(
    state: TrainerState, run_dir: Path, accelerator, config: Config, holder: ParamsModule, optimizer
) -> Path | None:
    """Write the checkpoint of ``state.step`` (collective; :func:`checkpoint.save`) and note it in ``state``; during a
    streak of skipped steps write nothing and return None: those weights gave numbers that are not finite, so a
    checkpoint of them would be resumed (and would prune good ones) though no run can recover from it."""
    if state.guard.in_a_row:
        return None
    path = checkpoint.save(
        run_dir,
        state.step,
        accelerator=accelerator,
        config=config,
        params=holder.tree(),
        optimizer=optimizer,
        trainer_state=state.saved(),
        ema=state.ema,
        keep=config.train.keep_checkpoints,
    )
    state.saved_at = state.step
    return path
