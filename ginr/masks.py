"""Partial observations: fit a signal from part of it and measure the rest.

An observation mask is a boolean tensor of a signal's spatial shape (*S) (True = observed), shared by every instance
of a batch: seeded random positions (:func:`random_mask`, ``--keep-fraction``), a mask image (:func:`image_mask`,
``--mask``, white = observed) or an audio gap (:func:`gap_mask`, ``--gap START END``). How a model sees a masked
signal (:func:`encode_observed`):

- meta-learned models adapt on the observed coordinates only (their inner loop's MSE is over those positions);
- hypernetwork models read a full grid of patches and have no channel for a mask, so they read the signal with every
  unobserved position filled with the mean of the instance's observed values, per channel (:func:`fill_unobserved`).

Either may then refine on the observed positions (``--tto-steps``, :func:`ginr.inference.refine`). The metrics split
the PSNR into observed and unobserved positions (:func:`split_psnr`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ginr import metrics
from ginr.models.base import Encoding, Model
from ginr.models.meta import MetaINR


@dataclasses.dataclass(frozen=True)
class Observation:
    """Which part of each signal a model is given (the flags of eval.py and reconstruct.py); at most one of the
    three, none: the whole signal."""

    keep_fraction: float | None = None
    """Keep this fraction of the positions (pixels or samples), drawn at random with ``seed``."""
    mask: str | None = None
    """Image files: a mask image, white (>= 50% grey) = observed, resized (nearest) to the image's size."""
    gap: tuple[float, float] | None = None
    """Audio: the seconds [START, END) are unobserved."""
    seed: int = 0
    """Seed of the random positions of ``keep_fraction``."""

    def check(self, audio: bool) -> None:
        """Refuse (ValueError naming the flag) what does not apply: two ways at once, a fraction outside (0, 1], a
        mask image for audio, a gap for images."""
        given = [name for name, value in (("--keep-fraction", self.keep_fraction), ("--mask", self.mask),
                                          ("--gap", self.gap)) if value is not None]  # fmt: skip
        if len(given) > 1:
            raise ValueError(f"give one of {' and '.join(given)}, not both")
        if self.keep_fraction is not None and not 0 < self.keep_fraction <= 1:
            raise ValueError(f"--keep-fraction {self.keep_fraction} must be in (0, 1]")
        if self.mask is not None and audio:
            raise ValueError("--mask is an image mask; for audio give --gap START END or --keep-fraction")
        if self.gap is not None and not audio:
            raise ValueError("--gap START END is a time gap in audio; for images give --mask FILE or --keep-fraction")
        if self.gap is not None and not 0 <= self.gap[0] < self.gap[1]:
            raise ValueError(f"--gap {self.gap[0]} {self.gap[1]}: give 0 <= START < END seconds")

    @property
    def partial(self) -> bool:
        return any(value is not None for value in (self.keep_fraction, self.mask, self.gap))

    def mask_for(self, shape: tuple[int, ...], sample_rate: int | None = None) -> torch.Tensor | None:
        """The boolean mask (*S) of signals of spatial ``shape`` (audio: at ``sample_rate``), or None for the whole
        signal; refused when it leaves no position observed."""
        if self.keep_fraction is not None:
            observed = random_mask(shape, self.keep_fraction, self.seed)
        elif self.mask is not None:
            observed = image_mask(Path(self.mask), shape)
        elif self.gap is not None:
            observed = gap_mask(shape[0], sample_rate, *self.gap)
        else:
            return None
        if not observed.any():
            raise ValueError("the observation mask leaves no position observed")
        return observed


def random_mask(shape: tuple[int, ...], keep_fraction: float, seed: int) -> torch.Tensor:
    """A boolean mask (*S) with ``round(keep_fraction * N)`` (at least one) True positions drawn at random (seeded)."""
    total = int(torch.Size(shape).numel())
    kept = max(1, round(keep_fraction * total))
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    observed = torch.zeros(total, dtype=torch.bool)
    observed[order[:kept]] = True
    return observed.view(shape)


def image_mask(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """The mask image at ``path`` as a boolean (H, W) mask: white (grey level >= 128) = observed, resized (nearest)
    to ``shape`` (H, W)."""
    try:
        image = Image.open(path).convert("L")
    except OSError as error:
        raise ValueError(f"--mask: cannot read {path}: {error}") from error
    height, width = shape
    return torch.from_numpy(np.asarray(image.resize((width, height), Image.NEAREST)) >= 128)


def gap_mask(length: int, sample_rate: int, start: float, end: float) -> torch.Tensor:
    """A boolean mask (T,) of ``length`` samples at ``sample_rate`` with the samples in [start, end) seconds
    unobserved."""
    seconds = torch.arange(length) / sample_rate
    return (seconds < start) | (seconds >= end)


def fill_unobserved(signal: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``signal`` (B, *S, C) with every unobserved position set to the mean of the instance's observed values, per
    channel (what a hypernetwork model reads)."""
    mean = signal[:, observed].mean(dim=1)  # (B, C)
    shape = (1, *observed.shape, 1)
    return torch.where(observed.view(shape), signal, mean.view(mean.shape[0], *[1] * observed.dim(), -1))


def hidden(signal: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``signal`` (B, *S, C) with every unobserved position set to 0 (black; silence): what is shown as the input."""
    return signal * observed.view(1, *observed.shape, 1)


def encode_observed(
    model: Model,
    params: dict,
    signal: torch.Tensor,
    coords: torch.Tensor,
    observed: torch.Tensor | None,
    n_steps: int | None = None,
) -> Encoding:
    """The model's evaluation encoding of ``signal`` (B, *S, C) on its grid ``coords`` (*S, D) given only its
    ``observed`` positions (None: all): a meta model adapts on the observed coordinates only (a flat list of them),
    a hypernetwork reads the signal filled by :func:`fill_unobserved`."""
    if observed is None:
        return model.encode(params, signal, coords, training=False, n_steps=n_steps)
    if isinstance(model, MetaINR):
        return model.encode(params, signal[:, observed], coords[observed], training=False, n_steps=n_steps)
    return model.encode(params, fill_unobserved(signal, observed), coords, training=False, n_steps=n_steps)


def split_psnr(pred: torch.Tensor, target: torch.Tensor, observed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each instance's PSNR (B,) on the observed positions and on the unobserved ones (NaN where there are none) of
    ``pred`` and ``target`` (B, *S, C)."""
    error = (metrics.at_least_fp32(pred) - metrics.at_least_fp32(target)).square()
    return {
        "psnr_observed": metrics.psnr(error[:, observed].flatten(1).mean(dim=1)),
        "psnr_unobserved": metrics.psnr(error[:, ~observed].flatten(1).mean(dim=1)),
    }
