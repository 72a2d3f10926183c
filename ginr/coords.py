"""Coordinate grids (fidelity 4.1)."""

from __future__ import annotations

import torch


def grid(
    shape: tuple[int, ...],
    coord_range: tuple[float, float] = (-1.0, 1.0),
    upsample: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pixel-centre coordinates of a signal of spatial ``shape``, as ``(*shape', D)``.

    Along an axis with N samples, ``c_i = lo + (hi - lo) (i + 0.5) / N``; ``meshgrid(indexing="ij")`` puts the first
    axis (rows, or time) in ``[..., 0]``. ``upsample`` r samples ``int(N r)`` centres over the same range, for
    decoding at a higher resolution than the data.
    """
    lo, hi = coord_range
    axes = []
    for size in shape:
        count = int(size * upsample)
        axes.append(lo + (hi - lo) * (torch.arange(count, device=device, dtype=torch.float32) + 0.5) / count)
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
