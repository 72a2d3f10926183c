"""The training objective shared by every model (SPEC 4): encode, decode, per-sample MSE.

Hypernetwork presets may train on jittered coordinates (SPEC 4.2) and on a random subset of them (SPEC 4.3); the
noise is drawn before the subset, on the signal's device, in training only.
"""

from __future__ import annotations

import torch

from ginr import metrics
from ginr.coords import grid
from ginr.models.base import Model


def jitter(coords: torch.Tensor, batch: int, shape: tuple[int, ...], coord_range: tuple[float, float]) -> torch.Tensor:
    """(N, D) -> (B, N, D): every component of every point of every instance moves by U(-1/2, 1/2) (hi - lo) / S0,
    S0 the first axis's size, for every axis (quirk 22)."""
    lo, hi = coord_range
    noise = torch.rand(batch, *coords.shape, device=coords.device) - 0.5
    return coords + noise * (hi - lo) / shape[0]


def subsample(coords: torch.Tensor, target: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random subset of ``int(N ratio)`` points per instance: coords (N, D) or (B, N, D) and targets
    (B, N, C) -> (B, n, D), (B, n, C)."""
    batch, count = target.shape[:2]
    keep = int(count * ratio)
    index = torch.rand(batch, count, device=target.device).argsort(dim=1)[:, :keep]
    coords = coords.expand(batch, *coords.shape[-2:])
    gather = lambda t: torch.gather(t, 1, index.unsqueeze(-1).expand(-1, -1, t.shape[-1]))  # noqa: E731
    return gather(coords), gather(target)


def reconstruction_objective(
    model: Model,
    params: dict,
    signal: torch.Tensor,
    *,
    coord_range: tuple[float, float],
    coord_noise: bool = False,
    coord_subsample: float | None = None,
) -> dict[str, torch.Tensor]:
    """``loss`` = mean over the batch of each instance's MSE over its training coordinates, plus per-sample
    ``mse``/``psnr`` (detached) and, for meta-learned models, ``inner_mse`` (B, T).

    ``signal`` is channels-last (B, *S, C). The encoder always sees the whole signal (and its full grid).
    """
    shape = tuple(signal.shape[1:-1])
    coords = grid(shape, coord_range, device=signal.device)
    encoding = model.encode(params, signal, coords, training=True)
    points, target = coords.flatten(0, -2), signal.flatten(1, -2)
    if coord_noise:
        points = jitter(points, signal.shape[0], shape, coord_range)
    if coord_subsample is not None and coord_subsample < 1:
        points, target = subsample(points, target, coord_subsample)
    pred = model.decode(params, encoding.modulation, points)
    mse = metrics.mse_per_sample(pred, target)
    out = {"loss": mse.mean(), "mse": mse.detach(), "psnr": metrics.psnr(mse.detach())}
    if encoding.inner_mse is not None:
        out["inner_mse"] = encoding.inner_mse.detach()
    return out
