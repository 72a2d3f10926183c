"""When a run evaluates, logs reconstruction images and writes checkpoints: pure functions of the epochs done
(fidelity 6.2, with ``epoch = i + 1`` of the reference's loop), so a resumed run keeps the cadence of an uninterrupted
one.

The reference evaluates when ``i == 0 or (i+1) % test_freq == 0``, logs the images of an evaluation when
``(i+1) % 10 == 1 or (i+1) % test_imlog_freq == 0`` (images, audio) and saves when ``(i+1) % save_ckpt_freq == 0``.
Its evaluations fall after epoch 1 and on multiples of ``test_freq`` (10 or more, or 5 for CelebA), so its
``% 10 == 1`` clause only ever selects epoch 1. ginr also evaluates (with images) before the first step and at the
end; and it logs a NeRF's images after epoch 1 too, where the reference's NeRF trainer logs them only when
``(i+1) % 10 == 0 and (i+1) % test_imlog_freq == 0`` (an extra picture, nothing else changes).
"""

from __future__ import annotations

from ginr.config import TrainConfig


def evaluates(epoch: int, train: TrainConfig) -> bool:
    """Evaluate after ``epoch`` epochs: after the first, then every ``eval_every``."""
    return epoch == 1 or epoch % train.eval_every == 0


def logs_images(epoch: int, train: TrainConfig) -> bool:
    """Log the images of the evaluation after ``epoch`` epochs (0: the one before the first step): before the first
    step, after the first epoch, then at every multiple of ``image_every`` epochs (the reference's test_imlog_freq)."""
    return epoch <= 1 or epoch % train.image_every == 0


def checkpoints(epoch: int, train: TrainConfig) -> bool:
    """Write a checkpoint after ``epoch`` epochs: every ``checkpoint_every``."""
    return epoch % train.checkpoint_every == 0
