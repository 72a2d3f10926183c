"""Shared fixtures: tiny generated data in the layouts ginr reads, and small configs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def smooth_image(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random RGB image (a few low-frequency sinusoids), so INRs can fit it."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.28)
        channels.append(0.5 + 0.4 * np.sin(6.28 * (fy * y + fx * x) + phase))
    return Image.fromarray((np.stack(channels, -1) * 255).astype(np.uint8))


def write_image_folder(root, n_train: int = 16, n_eval: int = 4, size: int = 12, seed: int = 0):
    """``root/train/<class>/*.png`` and ``root/validation/<class>/*.png``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("validation", n_eval)):
        for i in range(count):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            smooth_image(rng, size).save(folder / f"{i:03d}.png")
    return root


def write_audio_folder(root, n_train: int = 8, n_eval: int = 2, seconds: float = 0.02, rate: int = 8000, seed: int = 0):
    """``root/train/*.wav`` and ``root/validation/*.wav``: short chirps at ``rate`` Hz."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    for split, count in (("train", n_train), ("validation", n_eval)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            wave = 0.5 * np.sin(2 * np.pi * rng.uniform(100, 400) * t * (1 + 5 * t))
            soundfile.write(root / split / f"{i:03d}.wav", wave.astype(np.float32), rate)
    return root


def coded_image(value: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A flat image whose red channel (or gray level) is ``value``, so tests can tell files apart after resizing."""
    colour = {"RGB": (value, 0, 0), "L": value, "RGBA": (value, 0, 0, 255)}[mode]
    return Image.new(mode, size, colour)


def red(image_tensor) -> int:
    """The ``value`` of a :func:`coded_image` after decoding and transforming."""
    return round(float(image_tensor[..., 0].mean()) * 255)


def write_celeba(root, ids=range(1, 11), size=(18, 22)):
    """A flat ``img_align_celeba`` folder: ``NNNNNN.jpg`` whose red level is 20 x id (CelebA's 178x218 scaled down)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in ids:
        coded_image(20 * i, size).save(root / f"{i:06d}.jpg", quality=100)
    return root


def write_ffhq(root, count=6, size=8, nested=True):
    """FFHQ-like ``NNNNN.png`` (red level 30 x id), in the official ``00000/`` subfolder when ``nested``."""
    folder = root / "00000" if nested else root
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coded_image(30 * i, (size, size)).save(folder / f"{i:05d}.png")
    return root


IMAGENETTE_FILES = {  # split -> wnid -> file names (written in this order, which is not the sorted one)
    "train": {"n03000684": ["n03000684_9.JPEG", "n03000684_10.JPEG"], "n01440764": ["b.JPEG", "a.JPEG", "c.JPEG"]},
    "val": {"n01440764": ["z.JPEG"], "n03000684": ["ILSVRC2012_val_1.JPEG"]},
}


def write_imagenette(root, size=(30, 24)):
    """``imagenette2-320``-like ``{train,val}/<wnid>/*.JPEG``; each file's red level is its sorted position x 20."""
    for split, classes in IMAGENETTE_FILES.items():
        ordered = [(wnid, name) for wnid in sorted(classes) for name in sorted(classes[wnid])]
        for wnid, names in classes.items():
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            for name in names:
                coded_image(20 * (1 + ordered.index((wnid, name))), size).save(root / split / wnid / name, "PNG")
    return root


LIBRISPEECH = {  # subset -> utterance id -> seconds
    "train-clean-100": {"19-198-0001": 2.5, "103-1240-0000": 1.5, "19-198-0000": 3.0},
    "test-clean": {"1089-134686-0000": 2.0, "121-121726-0000": 0.5},
}


def utterance(uid: str, seconds: float, rate: int = 16000):
    """A deterministic test waveform: a ramp from -0.5 to 0.5 plus a tone keyed to the utterance id."""
    t = np.arange(int(round(seconds * rate))) / rate
    tone = 0.2 * np.sin(2 * np.pi * (100 + sum(map(ord, uid)) % 300) * t)
    return (np.linspace(-0.5, 0.5, t.size) + tone).astype(np.float32)


def write_librispeech(root, rate: int = 16000):
    """``root/LibriSpeech/<subset>/<speaker>/<chapter>/<id>.flac`` (16-bit FLAC, as LibriSpeech ships)."""
    import soundfile

    for subset, clips in LIBRISPEECH.items():
        for uid, seconds in clips.items():
            speaker, chapter, _ = uid.split("-")
            folder = root / "LibriSpeech" / subset / speaker / chapter
            folder.mkdir(parents=True, exist_ok=True)
            soundfile.write(folder / f"{uid}.flac", utterance(uid, seconds, rate), rate, subtype="PCM_16")
    return root


IMAGENETTE_LABELS = ["tench", "English springer", "chain saw"]  # a ClassLabel as Hub copies name ImageNette's


def write_imagenette_parquet(root, config: str = "320px"):
    """A parquet export (revision refs/convert/parquet) of ImageNette: ``<config>/<split>/0000.parquet`` with an
    ``image`` (bytes and file name) and a ``label`` column; row i of a split has red level 10 x (i + 1)."""
    import io

    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=IMAGENETTE_LABELS)})
    for split, labels in (("train", [0, 2, 1, 0]), ("validation", [2, 0])):
        rows = {"image": [], "label": labels}
        for i in range(len(labels)):
            buffer = io.BytesIO()
            coded_image(10 * (i + 1), (24, 20)).save(buffer, format="PNG")
            rows["image"].append({"bytes": buffer.getvalue(), "path": f"{split}_{i:02d}.JPEG"})
        (root / config / split).mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(root / config / split / "0000.parquet")
    return root


def write_librispeech_parquet(root):
    """openslr/librispeech_asr's parquet layout and columns (config ``clean``: train.100 and test) from
    :data:`LIBRISPEECH`, with FLAC bytes in the ``audio`` column."""
    import io

    import datasets
    import soundfile

    card = ["---", "configs:", "- config_name: clean", "  data_files:"]
    for subset, split in (("train-clean-100", "train.100"), ("test-clean", "test")):
        rows = {k: [] for k in ("file", "audio", "text", "speaker_id", "chapter_id", "id")}
        for uid, seconds in LIBRISPEECH[subset].items():
            buffer = io.BytesIO()
            soundfile.write(buffer, utterance(uid, seconds), 16000, format="FLAC", subtype="PCM_16")
            speaker, chapter, _ = uid.split("-")
            values = (
                f"{uid}.flac",
                {"bytes": buffer.getvalue(), "path": f"{uid}.flac"},
                "TEXT",
                int(speaker),
                int(chapter),
                uid,
            )
            for key, value in zip(rows, values):
                rows[key].append(value)
        data = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(sampling_rate=16000))
        (root / "clean" / split).mkdir(parents=True, exist_ok=True)
        data.to_parquet(root / "clean" / split / "0000.parquet")
        card += [f"  - split: {split}", f"    path: clean/{split}/*.parquet"]
    (root / "README.md").write_text("\n".join(card + ["---", ""]))
    return root


def look_at(eye: np.ndarray) -> np.ndarray:
    """The 4x4 camera-to-world matrix (OpenGL / Blender: x right, y up, looking along -z) of a camera at ``eye``
    looking at the origin with the world's +z up."""
    back = eye / np.linalg.norm(eye)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, up, back, eye
    return matrix


def sphere_view(pose: np.ndarray, focal: float, size: int, radius: float, colours) -> np.ndarray:
    """An RGBA uint8 view (size, size, 4) of a sphere of ``radius`` at the origin, its upper half ``colours[0]`` and
    lower half ``colours[1]``, Lambert-shaded; transparent (with black rgb) where the ray misses it. Written from the
    pinhole model directly (pixel centres, y up, looking along -z), independently of ginr.render."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    camera = np.stack([(cols - size / 2) / focal, -(rows - size / 2) / focal, -np.ones_like(rows)], -1)
    direction = camera @ pose[:3, :3].T
    origin = pose[:3, 3]
    a = (direction**2).sum(-1)
    b = 2 * direction @ origin
    c = origin @ origin - radius**2
    disc = b**2 - 4 * a * c
    hit = disc > 0
    t = (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a)
    point = origin + t[..., None] * direction
    normal = point / radius
    shade = 0.4 + 0.6 * np.clip(normal @ np.array([0.3, 0.2, 0.9]) / np.linalg.norm([0.3, 0.2, 0.9]), 0, 1)
    colour = np.where(point[..., 2:] >= 0, colours[0], colours[1]) * shade[..., None]
    rgba = np.zeros((size, size, 4))
    rgba[..., :3] = np.where(hit[..., None], colour, 0.0)
    rgba[..., 3] = hit
    return (rgba * 255).round().astype(np.uint8)


SHAPENET_SPLITS = {"train": ["t0", "t1", "t2", "no_transforms"], "val": ["v0"], "test": ["e0", "e1"]}


def write_shapenet(root, category: str = "cars", frames: int = 8, size: int = 16, seed: int = 0):
    """learnit's layout with spheres for objects: ``<root>/<category minus s>_splits.json`` and
    ``<root>/<category>/<id>/{transforms.json, r_<k>.png}``, ``frames`` RGBA views per object from cameras at
    distance 4 around it (elevations 10-50 degrees), 40-degree field of view. The split lists one object that has no
    transforms.json (skipped, as the reference does)."""
    rng = np.random.default_rng(seed)
    angle = np.deg2rad(40.0)
    focal = 0.5 * size / np.tan(0.5 * angle)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{category.removesuffix('s')}_splits.json").write_text(json.dumps(SHAPENET_SPLITS))
    for ids in SHAPENET_SPLITS.values():
        for object_id in ids:
            folder = root / category / object_id
            folder.mkdir(parents=True, exist_ok=True)
            if object_id == "no_transforms":
                continue
            radius, colours = rng.uniform(0.8, 1.2), rng.uniform(0.1, 0.9, size=(2, 3))
            entries = []
            for k in range(frames):
                azimuth, elevation = 2 * np.pi * k / frames + rng.uniform(0, 0.3), np.deg2rad(rng.uniform(10, 50))
                eye = 4.0 * np.array(
                    [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
                )
                pose = look_at(eye)
                Image.fromarray(sphere_view(pose, focal, size, radius, colours), "RGBA").save(folder / f"r_{k}.png")
                entries.append({"file_path": f"./r_{k}", "transform_matrix": pose.tolist()})
            (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": angle, "frames": entries}))
    return root


@pytest.fixture(scope="session")
def shapenet_folder(tmp_path_factory):
    return write_shapenet(tmp_path_factory.mktemp("shapenet"))


@pytest.fixture(scope="session")
def audio_folder(tmp_path_factory):
    return write_audio_folder(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


TINY_MODEL_FLAGS = [
    "--model.hyponet.hidden-dim",
    "16",
    "--model.hyponet.fourier.dim",
    "8",
    "--model.hyponet.fourier.sigma",
    "4",
    "--model.rank",
    "16",
]


def tiny_meta_config(width: int = 8, fourier_dim: int = 4, rank: int = 8):
    """The embedded default's ipc-meta preset shrunk to a ``width``-wide hyponet with ``fourier_dim`` frequencies and
    rank ``rank``: a model that trains in milliseconds."""
    from ginr import presets

    config = presets.resolve("ipc-meta", "photos")
    hyponet = dataclasses.replace(
        config.model.hyponet,
        hidden_dim=(width,),
        fourier=dataclasses.replace(config.model.hyponet.fourier, dim=fourier_dim),
    )
    return dataclasses.replace(config, model=dataclasses.replace(config.model, hyponet=hyponet, rank=(rank,)))


def tiny_train_flags(folder, out_dir, run_name: str) -> list[str]:
    """Flags for a seconds-long ipc-meta run on an image folder written by :func:`write_image_folder`."""
    return [
        "--model",
        "ipc-meta",
        "--data",
        "photos",
        "--data.source",
        "imagefolder",
        "--data.path",
        str(folder),
        "--data.resolution",
        "8",
        *TINY_MODEL_FLAGS,
        "--train.batch-size",
        "4",
        "--train.epochs",
        "2",
        "--train.eval-every",
        "1",
        "--train.checkpoint-every",
        "1",
        "--train.log-every",
        "1",
        "--train.out-dir",
        str(out_dir),
        "--train.run-name",
        run_name,
    ]


@pytest.fixture(scope="session")
def train():
    """recipes/train.py's ``main(argv)``, run in-process (faster than a launch; SystemExit carries refusals)."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("train_recipe", root / "recipes" / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe.main
