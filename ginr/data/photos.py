"""``photos``: the embedded default data, tiles of the photographs inside the scikit-image wheel (no download).

Each photograph is resized so its shorter side is ``resolution x scale`` for each scale, centre-cropped to whole
tiles and cut into ``resolution x resolution`` tiles (row-major). Training tiles come from seven photographs; the
held-out split is every tile of two other photographs (a cat and a rocket launch), so evaluation measures how the
model generalises to unseen images.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import datasets
import torchvision.transforms.functional as TF
from PIL import Image

TRAIN_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
)
EVAL_PHOTOS = ("chelsea.png", "rocket.jpg")
SCALES = (4, 8)


def photo_folder() -> Path:
    """The folder of sample images installed with scikit-image."""
    try:
        return Path(str(importlib.resources.files("skimage") / "data"))
    except ModuleNotFoundError as error:
        raise RuntimeError("the 'photos' data needs scikit-image: pip install scikit-image") from error


def tiles(image: Image.Image, resolution: int, scales: tuple[int, ...] = SCALES) -> list[Image.Image]:
    """Row-major ``resolution``-px tiles of ``image`` resized to each scale (shorter side = resolution * scale)."""
    out = []
    for scale in scales:
        resized = TF.resize(image, resolution * scale, interpolation=TF.InterpolationMode.BILINEAR)
        width, height = resized.size
        rows, cols = height // resolution, width // resolution
        cropped = TF.center_crop(resized, [rows * resolution, cols * resolution])
        for r in range(rows):
            for c in range(cols):
                out.append(cropped.crop((c * resolution, r * resolution, (c + 1) * resolution, (r + 1) * resolution)))
    return out


def load_photos(resolution: int = 32) -> datasets.DatasetDict:
    """``train`` and ``validation`` splits of photo tiles, columns ``image`` (PIL) and ``photo`` (file name)."""
    folder = photo_folder()
    features = datasets.Features({"image": datasets.Image(), "photo": datasets.Value("string")})
    splits = {}
    for split, names in (("train", TRAIN_PHOTOS), ("validation", EVAL_PHOTOS)):
        images, photos = [], []
        for name in names:
            path = folder / name
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing from the scikit-image install; reinstall scikit-image")
            with Image.open(path) as photo:
                cut = tiles(photo.convert("RGB"), resolution)
            images += cut
            photos += [name] * len(cut)
        splits[split] = datasets.Dataset.from_dict({"image": images, "photo": photos}, features=features)
    return datasets.DatasetDict(splits)
