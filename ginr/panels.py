"""Labelled side-by-side images for a person to look at: the input a model saw, its prediction and the ground truth.

The layout is fixed, so a reader (or a test) can find each panel: every panel sits under a white label strip
``LABEL_HEIGHT`` pixels tall, and panels are ``GAP`` white pixels apart, left to right for images and top to bottom
for audio, in the order of :data:`LABELS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ginr.train.plots import waveform_image

LABELS = ("input", "prediction", "ground truth")
LABEL_HEIGHT = 14
GAP = 4
MIN_PANEL_WIDTH = 64  # narrower panels are enlarged by a whole factor, so their label fits and pixels stay square


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> (H, W, 3) uint8, rounded as ``torchvision.utils.save_image`` rounds."""
    return (image.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def enlarge(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(H, W, C) -> (*shape, C) by nearest neighbour, so every original pixel stays visible as a block."""
    resized = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None].float(), size=shape, mode="nearest-exact")
    return resized[0].permute(1, 2, 0)


def side_by_side(panels: Sequence[torch.Tensor], labels: Sequence[str], vertical: bool = False) -> Image.Image:
    """Equal-sized (H, W, 3) panels in [0, 1], each under its label, ``GAP`` pixels apart: one RGB image."""
    height, width = panels[0].shape[:2]
    cell_height = LABEL_HEIGHT + height
    step = (cell_height if vertical else width) + GAP  # from one panel's start to the next one's
    length = len(panels) * step - GAP
    canvas = Image.new("RGB", (width, length) if vertical else (length, cell_height), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        left, top = (0, k * step) if vertical else (k * step, 0)
        canvas.paste(Image.fromarray(to_uint8(panel)), (left, top + LABEL_HEIGHT))
        draw.text((left + 1, top), label, fill="black")
    return canvas


def image_comparison(observed: torch.Tensor, prediction: torch.Tensor, truth: torch.Tensor) -> Image.Image:
    """Input | prediction | ground truth, (H, W, 3) each, at one scale: the larger of the prediction's and the truth's
    sizes (the other enlarged by nearest neighbour), the three enlarged together by the smallest whole factor that
    makes a panel at least ``MIN_PANEL_WIDTH`` wide."""
    height, width = max(prediction.shape[:2], truth.shape[:2])
    factor = -(-MIN_PANEL_WIDTH // width)
    shape = (height * factor, width * factor)
    return side_by_side([enlarge(image, shape) for image in (observed, prediction, truth)], LABELS)


def audio_comparison(
    observed: torch.Tensor, prediction: torch.Tensor, truth: torch.Tensor, height: int = 96, width: int = 512
) -> Image.Image:
    """Input, prediction and ground truth clips ((T,) each; the prediction may have more samples, at a higher rate),
    one waveform under the other on one time axis: each pixel column spans the same stretch of the clip in every
    panel (:func:`ginr.train.plots.waveform_image`, drawn in one colour)."""
    panels = [
        waveform_image(clip[None], clip[None], height, width).permute(1, 2, 0) for clip in (observed, prediction, truth)
    ]
    return side_by_side(panels, LABELS, vertical=True)
