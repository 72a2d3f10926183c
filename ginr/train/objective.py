"""The training objective shared by every model (SPEC 4.4): encode, decode on the grid, per-sample MSE."""

from __future__ import annotations

import torch

from ginr import metrics
from ginr.coords import grid
from ginr.models.base import Model


def reconstruction_objective(
    model: Model, params: dict, signal: torch.Tensor, *, coord_range: tuple[float, float]
) -> dict[str, torch.Tensor]:
    """``loss`` = mean over the batch of each instance's MSE over its full grid, plus per-sample ``mse``/``psnr``
    (detached) and, for meta-learned models, ``inner_mse`` (B, T).

    ``signal`` is channels-last (B, *S, C).
    """
    coords = grid(tuple(signal.shape[1:-1]), coord_range, device=signal.device)
    encoding = model.encode(params, signal, coords, training=True)
    pred = model.decode(params, encoding.modulation, coords.flatten(0, -2))
    mse = metrics.mse_per_sample(pred, signal.flatten(1, -2))
    out = {"loss": mse.mean(), "mse": mse.detach(), "psnr": metrics.psnr(mse.detach())}
    if encoding.inner_mse is not None:
        out["inner_mse"] = encoding.inner_mse.detach()
    return out
