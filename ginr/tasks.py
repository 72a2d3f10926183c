"""NeRF or signal model: the one place that tells the two apart.

A config whose data is multi-view renders (``--data.source shapenet``, :func:`ginr.data.is_views`) is a NeRF's: it
encodes an object's support views and renders novel views. Any other config is a signal model's: it encodes images or
audio and decodes them at any resolution. The library and the recipes choose between the two with
:func:`nerf_or_signals` (the training objective in :func:`ginr.train.objective.objective_for`, the evaluation in
:func:`ginr.train.evaluate.evaluate_config`, the route of ``recipes/reconstruct.py``), time either on
:func:`random_batch`, and refuse the kind a recipe does not apply to with :func:`require_nerf` or
:func:`require_signals`. (The data loaders pick their dataset in :mod:`ginr.data`.)
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F

from ginr.config import Config
from ginr.data import is_views, signal_shape

T = TypeVar("T")


def nerf_or_signals(config: Config, *, nerf: T, signals: T) -> T:
    """``nerf`` for a NeRF's ``config``, ``signals`` for a signal model's."""
    return nerf if is_views(config.data) else signals


def require_nerf(config: Config, model: str) -> None:
    """Refuse (a ValueError naming ``model``) a signal model where only a NeRF applies (rendering novel views)."""
    if not is_views(config.data):
        raise ValueError(f"{model} is not a NeRF (it was trained on {config.data_name}); see reconstruct.py")


def require_signals(config: Config, model: str) -> None:
    """Refuse (a ValueError naming ``model``) a NeRF where only a signal model applies: a NeRF has no modulation of
    its own per instance of a split, only of the support views it is given."""
    if is_views(config.data):
        raise ValueError(
            f"{model} is a NeRF; its modulations come from support views: use recipes/render.py or "
            "recipes/reconstruct.py (an object folder and --support frames)"
        )


def random_batch(config: Config, batch: int, device: torch.device) -> torch.Tensor | dict[str, dict]:
    """A random training batch of the shape ``config`` trains on, so a step can be timed without a dataset: ``batch``
    signals (B, *S, C) (images in [0, 1], audio in [-1, 1]), or ``batch`` objects with their support views and one
    query view (``{"support": views, "query": views}``, see :func:`random_views`)."""
    data = config.data
    if is_views(data):
        support = random_views(batch, data.support_views, data.resolution, device)
        return {"support": support, "query": random_views(batch, 1, data.resolution, device)}
    shape, channels = signal_shape(data)
    signal = torch.rand(batch, *shape, channels, device=device)
    return signal * 2 - 1 if channels == 1 else signal


def random_views(batch: int, views: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random ``size`` px images (B, n, H, W, 3) seen from cameras 4 units from the origin, looking at it (so rays
    cross the depth range), with their poses (B, n, 3, 4) and focal lengths (B, n, 2)."""
    eye = F.normalize(torch.randn(batch * views, 3), dim=1) * 4
    back = eye / eye.norm(dim=1, keepdim=True)
    right = F.normalize(torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]).expand_as(back), back), dim=1)
    poses = torch.stack([right, torch.linalg.cross(back, right), back, eye], dim=2).view(batch, views, 3, 4)
    return {
        "images": torch.rand(batch, views, size, size, 3, device=device),
        "poses": poses.to(device),
        "focals": torch.full((batch, views, 2), 131.25, device=device),  # learnit's 128 px at ~52 degrees
    }
