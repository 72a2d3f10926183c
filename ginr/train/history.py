"""A run's evaluations and their record: each evaluation of the raw weights (and of their EMA) on the held-out split
is logged (TensorBoard scalars; on the image cadence its images, audio and notes too), printed, and kept as a row
of the run's history, which ``<run>/eval_metrics.json`` holds after every evaluation (so a run that stops early keeps
its table) and the summary table shows at the end. The history travels in the checkpoints' trainer state."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ginr.config import Config
from ginr.models.base import Model
from ginr.module import ParamsModule
from ginr.pytree import unflatten
from ginr.train import cadence, setup
from ginr.train.evaluate import EvalResult, evaluate_config
from ginr.train.logger import RunLogger, say, table
from ginr.train.state import TrainerState

METRICS_FILE = "eval_metrics.json"
SUMMARY_COLUMNS = ("step", "epoch", "weights", "psnr", "ssim", "mse", "psnr_estimate", "count")


@dataclasses.dataclass
class Evaluator:
    """Evaluates a run's weights on its held-out split and records the results (see the module)."""

    config: Config
    model: Model
    loader: object
    """The held-out split's loader (this process's shard)."""
    accelerator: object
    logger: RunLogger
    run_dir: Path

    def __call__(self, holder: ParamsModule, state: TrainerState, *, full: bool = False, final: bool = False) -> None:
        """Evaluate the weights of ``holder`` (and ``state.ema``) after ``state.step`` steps and record each in
        ``state.history``. A NeRF renders full views when ``full`` or ``final``, else the in-training estimate; the
        final evaluation always logs its images. Collective."""
        holder.eval()
        weights = {"": holder.tree()}
        if state.ema is not None:
            weights["ema"] = unflatten(state.ema)
        with_images = final or cadence.logs_images(state.epochs_done, self.config.train)
        for suffix, params in weights.items():
            result = evaluate_config(
                self.config,
                self.model,
                params,
                self.loader,
                accelerator=self.accelerator,
                estimate=not (full or final),
            )
            self.record(result, suffix, state, with_images)
        if self.accelerator.is_main_process:
            setup.write_atomic(self.run_dir / METRICS_FILE, json.dumps(state.history, indent=2))
        holder.train()

    def record(self, result: EvalResult, suffix: str, state: TrainerState, with_images: bool) -> None:
        """Log one evaluation under ``eval`` (``eval_<suffix>`` for other weights), append its history row (the
        metrics but the inner-loop PSNRs) and print it."""
        tag, step = "eval" + (f"_{suffix}" if suffix else ""), state.step
        self.logger.scalars(tag, result.metrics, step)
        if with_images:
            self.logger.images(tag, result.images, step)
            self.logger.audio(tag, result.audio, step)
            for name, text in result.text.items():
                self.logger.text(f"{tag}/{name}", text, step)
        state.history.append(
            {
                "step": step,
                "epoch": round(step / state.steps_per_epoch, 3),
                "weights": suffix or "raw",
                **{k: v for k, v in result.metrics.items() if not k.startswith("inner")},
            }
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k != "count")
        say(self.accelerator, f"[{tag} @ step {step}] {shown}")


def needs_final(state: TrainerState) -> bool:
    """The run ends without a full evaluation of its last weights (none at this step, or only the NeRF estimate)."""
    return not state.history or state.history[-1]["step"] != state.step or "psnr" not in state.history[-1]


def summary(history: list[dict]) -> str:
    """The history as a text table, with the columns some row has."""
    return table(history, [c for c in SUMMARY_COLUMNS if any(c in row for row in history)])
