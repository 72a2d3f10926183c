"""Learning-rate schedule (fidelity 6.3): linear warm-up from 0, then constant or cosine to ``min_lr``; a fine-tuning
run warms up on top of that.

A pure function of the optimizer step (counted at the global batch), so resuming needs no scheduler state.
"""

from __future__ import annotations

import math

from ginr.config import OptimConfig


def learning_rate(step: int, optim: OptimConfig, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based).

    Warm-up: ``lr * step / warm`` while ``step <= warm`` with ``warm = warmup_epochs * steps_per_epoch``; the first
    step runs at lr 0, as the reference's (quirk 8). Afterwards the lr stays at ``lr`` unless ``min_lr`` is set,
    in which case it follows a half cosine from ``lr`` to ``min_lr`` over the remaining steps.

    A fine-tuning run (``optim.init_state`` set) scales that by ``(step + 1) / N`` while ``step < N =
    init_warmup_steps``: its first step runs at ``lr / N``.
    """
    lr = _scheduled(step, optim, steps_per_epoch, total_steps)
    if optim.init_state is not None and step < optim.init_warmup_steps:
        lr *= (step + 1) / optim.init_warmup_steps
    return lr


def _scheduled(step: int, optim: OptimConfig, steps_per_epoch: int, total_steps: int) -> float:
    warm = optim.warmup_epochs * steps_per_epoch
    if warm > 0 and step <= warm:
        return optim.lr * step / warm
    if optim.min_lr is None:
        return optim.lr
    progress = min(1.0, (step - warm) / max(1.0, total_steps - warm))
    return optim.min_lr + (optim.lr - optim.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
