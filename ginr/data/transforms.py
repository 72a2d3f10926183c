"""Image decoding and the reference's image transforms (fidelity 7), producing channels-last float tensors in [0, 1].

Random transforms draw from a per-sample ``torch.Generator`` (seeded by the sampler from the run seed, the epoch and
the sample's position), so a resumed run and any number of loader workers see the same crops.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image


def open_image(entry: dict) -> Image.Image:
    """The image of an undecoded entry (``bytes`` and/or ``path``), opened but not decoded."""
    return Image.open(io.BytesIO(entry["bytes"]) if entry.get("bytes") else entry["path"])


def check_header(entry: dict, seed: int | None = None) -> None:
    """Refuse (raise) an entry whose file is no image PIL can read or fails its format's own integrity check (PIL's
    ``verify``: a PNG's chunk checksums and a truncated PNG; a JPEG's header only): the cheap pass over every file of
    a split before training (:func:`ginr.data.cache.check_headers`). ``seed`` is unused (the transforms' signature)."""
    with open_image(entry) as image:
        image.verify()


def decode_image(entry: dict) -> Image.Image:
    """An undecoded entry (``bytes`` and/or ``path``) -> a fully decoded RGB PIL image (8 bits per channel).

    Decoding is forced here, so a truncated or corrupt file fails now, not later inside a transform. Grayscale, palette,
    CMYK and RGBA/LA images are converted to RGB, alpha dropped, as torchvision's ``default_loader`` does (the
    reference's CelebA loader skips the conversion, which only matters for the non-RGB files it cannot batch anyway).
    Deeper grayscale is scaled, not clipped (PIL's own conversion clips it at 255, which turns a 16-bit PNG white):
    16-bit (``I;16*``, and ``I``, which PIL gives for 16-bit PNGs too) by 65535, float (``F``) read as [0, 1] and
    refused outside it, then rounded to 8 bits.
    """
    with open_image(entry) as image:
        image.load()
        if image.mode == "RGB":
            return image.copy()
        if image.mode.startswith("I") or image.mode == "F":
            return gray_to_rgb(np.asarray(image, dtype=np.float64), image.mode)
        return image.convert("RGB")


def gray_to_rgb(values: np.ndarray, mode: str) -> Image.Image:
    """A 16-bit integer (``I;16*``, ``I``) or float (``F``, in [0, 1]) grayscale array -> an 8-bit RGB image."""
    if mode == "F":
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ValueError(
                f"a floating-point (mode F) image must hold values in [0, 1]; this one spans "
                f"[{values.min():g}, {values.max():g}]: save it as an 8- or 16-bit image"
            )
    else:
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(
                f"a {mode} image must hold 16-bit values (0..65535); this one spans [{values.min():g}, "
                f"{values.max():g}]: save it as an 8- or 16-bit image"
            )
        values = values / 65535
    return Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L").convert("RGB")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (H, W, 3) float32 in [0, 1], bit-identical to torchvision's ``ToTensor`` (k / 255 in float32).

    numpy rather than torch ops: a loader process then starts no intra-op thread pool, which, oversubscribed,
    can make small tensor ops many times slower."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / np.float32(255))


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
            f"image of {width}x{height} px is smaller than the {resolution}-px random crop; pass "
            "--data.skip-bad-files to drop such images, or --data.train-transform resize_center_crop, or a smaller "
            "--data.resolution"
        )
    top = int(torch.randint(0, height - resolution + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - resolution + 1, (1,), generator=generator))
    image = TF.crop(image, top, left, resolution, resolution)
    if torch.rand(1, generator=generator) < 0.5:
        image = TF.hflip(image)
    return image


class ImageTransform:
    """Picklable transform for loader workers: an undecoded image entry (+ per-sample seed) -> (H, W, 3) tensor."""

    def __init__(self, resolution: int, mode: str = "resize_center_crop"):
        if mode not in ("resize_center_crop", "random_crop_flip"):
            raise ValueError(f"unknown image transform {mode!r}; choose resize_center_crop or random_crop_flip")
        self.resolution = resolution
        self.mode = mode

    def __call__(self, entry: dict, seed: int | None) -> torch.Tensor:
        image = decode_image(entry)
        if self.mode == "random_crop_flip":
            generator = torch.Generator().manual_seed(seed if seed is not None else 0)
            image = random_crop_flip(image, self.resolution, generator)
        else:
            image = resize_center_crop(image, self.resolution)
        return to_tensor(image)
