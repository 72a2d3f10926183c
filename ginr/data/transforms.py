"""Image transforms of the reference (SPEC 7) producing channels-last float tensors in [0, 1].

Random transforms draw from a per-sample ``torch.Generator`` (seeded by the sampler from the run seed, the epoch and
the sample's position), so a resumed run and any number of loader workers see the same crops.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette and RGBA images become RGB (alpha is dropped)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL -> (H, W, C) float in [0, 1]."""
    return TF.to_tensor(image).permute(1, 2, 0).contiguous()


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """``Resize(resolution)`` (shorter side, bilinear with antialiasing, as torchvision on PIL) then
    ``CenterCrop(resolution)``."""
    image = TF.resize(image, resolution, interpolation=TF.InterpolationMode.BILINEAR)
    return TF.center_crop(image, resolution)


def random_crop_flip(image: Image.Image, resolution: int, generator: torch.Generator) -> Image.Image:
    """``RandomCrop(resolution)`` at native scale, then ``RandomHorizontalFlip`` (ImageNette training, quirk 16)."""
    width, height = image.size
    if width < resolution or height < resolution:
        raise ValueError(
            f"image of {width}x{height} px is smaller than the {resolution}-px random crop; "
            "use data.train_transform=resize_center_crop or a smaller data.resolution"
        )
    top = int(torch.randint(0, height - resolution + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - resolution + 1, (1,), generator=generator))
    image = TF.crop(image, top, left, resolution, resolution)
    if torch.rand(1, generator=generator) < 0.5:
        image = TF.hflip(image)
    return image


class ImageTransform:
    """Picklable transform for loader workers: PIL image (+ per-sample seed) -> (H, W, 3) tensor."""

    def __init__(self, resolution: int, mode: str = "resize_center_crop"):
        if mode not in ("resize_center_crop", "random_crop_flip"):
            raise ValueError(f"unknown image transform {mode!r}; choose resize_center_crop or random_crop_flip")
        self.resolution = resolution
        self.mode = mode

    def __call__(self, image: Image.Image, seed: int | None) -> torch.Tensor:
        image = to_rgb(image)
        if self.mode == "random_crop_flip":
            generator = torch.Generator().manual_seed(seed if seed is not None else 0)
            image = random_crop_flip(image, self.resolution, generator)
        else:
            image = resize_center_crop(image, self.resolution)
        return to_tensor(image)
