"""The straight path between two instances' modulations, decoded: is the space between them smooth?

    start = inference.encode(model, params, a, coord_range).modulation     # one instance each: leaves (1, ...)
    end = inference.encode(model, params, b, coord_range).modulation
    frames = decode_path(model, params, start, end, 8, (32, 32), coord_range)   # (10, 32, 32, 3): a, 8 steps, b

``steps`` points lie strictly between the two ends, so a path has ``steps + 2`` points at t = k / (steps + 1): t = 0
is exactly ``start`` and t = 1 exactly ``end`` (their own reconstructions), and an odd ``steps`` has the average of the
two at its middle. A NeRF's path is rendered from one camera (:func:`render_path`).
"""

from __future__ import annotations

import torch

from ginr import inference
from ginr.config import RenderConfig
from ginr.models.base import Model
from ginr.pytree import leaves, tree_map


def path_times(steps: int) -> torch.Tensor:
    """The ``steps + 2`` points t = 0, 1 / (steps + 1), ..., 1 of a path with ``steps`` points between its ends."""
    if steps < 0:
        raise ValueError(f"steps {steps} must be >= 0 (the points between the two ends)")
    return torch.linspace(0, 1, steps + 2)


def straight_path(start: dict, end: dict, steps: int) -> dict:
    """The modulations ``(1 - t) start + t end`` at :func:`path_times`: leaves (1, ...) of one instance each ->
    (steps + 2, ...), exactly ``start`` first and exactly ``end`` last."""
    times = path_times(steps).to(leaves(start)[0].device)

    def interpolate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        t = times.to(a.dtype).view(-1, *[1] * (a.dim() - 1))
        return (1 - t) * a + t * b

    return tree_map(interpolate, start, end)


def decode_path(
    model: Model,
    params: dict,
    start: dict,
    end: dict,
    steps: int,
    shape: tuple[int, ...],
    coord_range: tuple[float, float],
) -> torch.Tensor:
    """The signals (steps + 2, *shape, C) of :func:`straight_path` from ``start`` to ``end``, decoded on the grid of
    ``shape`` (:func:`ginr.inference.decode`)."""
    with torch.no_grad():
        return inference.decode(model, params, straight_path(start, end, steps), shape, coord_range)


def render_path(
    model: Model,
    params: dict,
    start: dict,
    end: dict,
    steps: int,
    pose: torch.Tensor,
    focal: torch.Tensor,
    size: tuple[int, int],
    render_config: RenderConfig,
    depth_range: tuple[float, float],
) -> torch.Tensor:
    """A NeRF's views (steps + 2, H, W, 3) of :func:`straight_path` from ``start`` to ``end``, every one from the
    camera ``pose`` (3, 4) with focal lengths ``focal`` (2,) (:func:`ginr.inference.novel_views`)."""
    path = straight_path(start, end, steps)
    count = steps + 2
    poses, focals = pose.expand(count, 1, 3, 4), focal.expand(count, 1, 2)
    return inference.novel_views(model, params, None, poses, focals, size, render_config, depth_range, path)[:, 0]
