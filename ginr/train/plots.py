"""Waveform plots for TensorBoard, drawn directly into image tensors (no plotting library needed)."""

from __future__ import annotations

import torch

TRUTH_COLOUR = torch.tensor([0.55, 0.55, 0.55])
RECONSTRUCTION_COLOUR = torch.tensor([0.85, 0.2, 0.1])


def _envelope(samples: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column, the pixel rows spanned by the samples that fall in it (values in [-1, 1] map top to bottom)."""
    buckets = torch.tensor_split(samples.float().clamp(-1, 1), width)
    low = torch.stack([b.min() if b.numel() else torch.tensor(0.0) for b in buckets])
    high = torch.stack([b.max() if b.numel() else torch.tensor(0.0) for b in buckets])
    to_row = lambda v: ((1 - v) / 2 * (height - 1)).round().long()  # noqa: E731
    return to_row(high), to_row(low)


def waveform_image(
    truth: torch.Tensor, reconstruction: torch.Tensor, height: int = 96, width: int = 512
) -> torch.Tensor:
    """(count, T) ground truth and reconstruction -> (3, count * height, width): one panel per clip, the truth in
    grey under the reconstruction in red, on white."""
    panels = []
    rows = torch.arange(height)[:, None]
    for true_clip, clip in zip(truth.cpu(), reconstruction.cpu()):
        panel = torch.ones(3, height, width)
        for samples, colour in ((true_clip, TRUTH_COLOUR), (clip, RECONSTRUCTION_COLOUR)):
            top, bottom = _envelope(samples, width, height)
            mask = (rows >= top) & (rows <= bottom)
            panel = torch.where(mask, colour[:, None, None], panel)
        panels.append(panel)
    return torch.cat(panels, dim=1)
