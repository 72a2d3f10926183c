"""ShapeNet multi-view renders in the learnit layout, as (support, query) view draws (fidelity 7 "ShapeNet item", 9.4).

Layout of ``--data.path``::

    car_splits.json                 {"train": [ids], "val": [ids], "test": [ids]}   (chair_, lamp_ likewise)
    cars/<id>/transforms.json       {"camera_angle_x": a, "frames": [{"file_path": p, "transform_matrix": 4x4}, ...]}
    cars/<id>/<basename(p)>.png     RGBA, composited on white

An item is ``{"support": views, "query": views}`` with ``views = {"images": (n, H, W, 3) in [0, 1], "poses": (n, 3, 4)
camera-to-world, "focals": (n, 2)}`` and ``focal = W / 2 / tan(camera_angle_x / 2)`` for both axes. Training items
``(index, seed)`` take object ``index mod n_objects`` (each object ``--data.train-repeat`` times per epoch) and draw
``support + query`` distinct frames among its first ``--data.train-views`` with the sample's seed, so a resumed run
draws the same views. Evaluation items are a fixed list: index ``i`` is draw ``i // n_objects`` of object
``i mod n_objects`` among all frames, seeded by ``i`` alone (quirk 24 fixed); ``--data.redraw-eval`` draws anew every
time, as the reference does.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ginr.config import DataConfig
from ginr.data.layouts import existing_folder
from ginr.data.loader import BadFileError, mix_seeds

log = logging.getLogger(__name__)
SPLIT_ALIASES = {"validation": "val", "valid": "val"}
EVAL_SEED = 0x5EED_0F_E7A1
"""Seeds the fixed list of evaluation draws (the same for every run, so evaluations compare)."""


def split_file(root: Path, category: str) -> Path:
    """``<root>/<category minus s>_splits.json`` (cars -> car_splits.json)."""
    return root / f"{category.removesuffix('s')}_splits.json"


def object_ids(root: Path, category: str, split: str) -> list[str]:
    """The object ids of ``split`` (train / val / test) of ``category``, in the split file's order."""
    path = split_file(root, category)
    if not path.is_file():
        raise FileNotFoundError(
            f"--data.path={root}: {path.name} is missing; ShapeNet needs learnit's layout <path>/{path.name} and "
            f"<path>/{category}/<id>/transforms.json (or set --data.category)"
        )
    splits = json.loads(path.read_text())
    key = SPLIT_ALIASES.get(split, split)
    if key not in splits:
        raise ValueError(f"{path} has no split {split!r}; it has {sorted(splits)} (set --data.train-split/eval-split)")
    return [str(i) for i in splits[key]]


class ViewsObject:
    """One object: its folder, frame files and camera-to-world matrices (4x4), and its horizontal field of view."""

    def __init__(self, folder: Path):
        meta = json.loads((folder / "transforms.json").read_text())
        self.folder = folder
        self.camera_angle_x = float(meta["camera_angle_x"])
        self.files = [folder / image_name(frame["file_path"]) for frame in meta["frames"]]
        self.poses = torch.tensor([frame["transform_matrix"] for frame in meta["frames"]], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.files)

    def views(self, frames: list[int], resolution: int | None = None) -> dict[str, torch.Tensor]:
        """``{"images", "poses", "focals"}`` of ``frames``; ``resolution``: the size every image must have."""
        images = torch.stack([load_view(self.files[k], resolution) for k in frames])
        width = images.shape[2]
        focal = 0.5 * width / math.tan(0.5 * self.camera_angle_x)
        return {
            "images": images,
            "poses": self.poses[frames, :3, :4],
            "focals": torch.full((len(frames), 2), focal, dtype=torch.float32),
        }


def image_name(file_path: str) -> str:
    """The reference's ``basename(file_path) + ".png"`` (a file_path that already ends in .png is taken as is)."""
    name = os.path.basename(file_path)
    return name if name.lower().endswith(".png") else name + ".png"


def load_view(path: Path, resolution: int | None) -> torch.Tensor:
    """An RGBA PNG composited on white, ``rgb a + (1 - a)``, as (H, W, 3) float32 in [0, 1] (RGB files as they are).

    A file that cannot be read, or is not ``resolution`` px square, is a :class:`BadFileError` naming it (a training
    run stops with that one line, as for any data file)."""
    try:
        with Image.open(path) as image:
            image.load()
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / np.float32(255)
    except (OSError, ValueError) as error:
        raise BadFileError(f"cannot read the view {path}: {error}; replace the file or drop its object") from error
    if resolution is not None and rgba.shape[:2] != (resolution, resolution):
        raise BadFileError(
            f"{path} is {rgba.shape[1]}x{rgba.shape[0]} px but --data.resolution is {resolution}; views are not "
            "resized (set --data.resolution, and --model.tokenizer.n-tokens to match)"
        )
    alpha = rgba[..., 3:]
    return torch.from_numpy(rgba[..., :3] * alpha + (1 - alpha))


def read_objects(config: DataConfig, split: str) -> list[ViewsObject]:
    """The objects of ``split`` that have a ``transforms.json`` (the reference skips the others; ginr logs how many)."""
    root = existing_folder(config.path)
    ids = object_ids(root, config.category, split)
    folder = root / config.category
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--data.path={root}: no {config.category}/ folder beside {split_file(root, config.category).name}"
        )
    objects = [ViewsObject(folder / i) for i in ids if (folder / i / "transforms.json").is_file()]
    if len(objects) < len(ids):
        log.warning("%s %s: %d of %d objects have no transforms.json; skipped", config.category, split,
                    len(ids) - len(objects), len(ids))  # fmt: skip
    if not objects:
        raise FileNotFoundError(f"{folder}: none of the {len(ids)} {split} objects has a transforms.json")
    return objects


class ShapeNetViews(Dataset):
    """Training draws (``training``) or the evaluation list of one split; items as in the module docstring."""

    def __init__(self, config: DataConfig, split: str, training: bool):
        self.objects = read_objects(config, split)
        self.training = training
        self.support, self.query = config.support_views, config.query_views
        self.resolution = config.resolution
        self.repeat = config.train_repeat if training else config.eval_draws
        self.redraw = config.redraw_eval and not training
        self.frames = config.train_views if training else None
        needed = self.support + self.query
        for obj in self.objects:
            available = len(obj) if self.frames is None else min(self.frames, len(obj))
            if available < needed:
                flag = "--data.train-views" if training else "--data.support-views / --data.query-views"
                raise ValueError(
                    f"{obj.folder} has {available} usable frames, fewer than the {needed} distinct views an item "
                    f"draws ({self.support} support + {self.query} query); check {flag}"
                )

    def __len__(self) -> int:
        return len(self.objects) * self.repeat

    def draw(self, index: int, seed: int | None) -> tuple[ViewsObject, list[int]]:
        """The object of ``index`` and its support + query frames."""
        obj = self.objects[index % len(self.objects)]
        count = len(obj) if self.frames is None else min(self.frames, len(obj))
        generator = torch.Generator()
        if self.redraw:
            generator.seed()
        else:
            generator.manual_seed(seed if self.training and seed is not None else mix_seeds(EVAL_SEED, index))
        return obj, torch.randperm(count, generator=generator)[: self.support + self.query].tolist()

    def __getitem__(self, key) -> dict[str, dict[str, torch.Tensor]]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        obj, frames = self.draw(int(index), seed)
        return {
            "support": obj.views(frames[: self.support], self.resolution),
            "query": obj.views(frames[self.support :], self.resolution),
        }
