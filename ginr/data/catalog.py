"""The paper's data presets (fidelity 7, 9.1-9.4) and the facts ``recipes/prepare_data.py`` checks a dataset against.

``DATA[name]`` is the :class:`DataConfig` behind ``--data name``: the reference's splits, resolution, transforms,
16 kHz audio cut to 1 or 3 s with the last second dropped (quirk 15), and coordinates in [-1, 1] except for 3 s
audio, which spans [-3, 3] so the sample spacing stays 2/16000 (fidelity 4.1). ShapeNet (learnit's 128-px renders):
train on the train objects' views 0-24, each object ``repeat`` times per epoch, evaluate 100 seeded draws of each test
object from all its views, rays from depth 2 to 6.
"""

from __future__ import annotations

import dataclasses

from ginr.config import DataConfig

# Loader processes per training process (the reference used 16); recipes/bench_data.py measures what they sustain.
WORKERS = 8


def _ffhq(resolution: int) -> DataConfig:
    return DataConfig(
        source="ffhq", resolution=resolution, train_split="train", eval_split="validation", num_workers=WORKERS
    )


def _librispeech(seconds: int) -> DataConfig:
    return DataConfig(
        source="librispeech",
        train_split="train-clean-100",
        eval_split="test-clean",
        sample_rate=16000,
        clip_seconds=float(seconds),
        audio_trim_seconds=1.0,
        coord_range=(-float(seconds), float(seconds)),
        num_workers=WORKERS,
    )


PHOTOS = DataConfig(source="photos", resolution=32)
CELEBA178 = DataConfig(source="celeba", resolution=178, train_split="train", eval_split="test", num_workers=WORKERS)
IMAGENETTE178 = DataConfig(
    source="imagefolder",
    resolution=178,
    train_transform="random_crop_flip",
    train_split="train",
    eval_split="validation",
    num_workers=WORKERS,
)


def _shapenet(category: str, repeat: int) -> DataConfig:
    return DataConfig(
        source="shapenet",
        category=category,
        resolution=128,
        train_split="train",
        eval_split="test",
        train_views=25,
        train_repeat=repeat,
        eval_draws=100,
        depth_range=(2.0, 6.0),
        num_workers=WORKERS,
    )


DATA: dict[str, DataConfig] = {
    "photos": PHOTOS,
    "celeba178": CELEBA178,
    "ffhq178": _ffhq(178),
    "ffhq256": _ffhq(256),
    "ffhq512": _ffhq(512),
    "ffhq1024": _ffhq(1024),
    "imagenette178": IMAGENETTE178,
    "librispeech1s": _librispeech(1),
    "librispeech3s": _librispeech(3),
    "shapenet-cars": _shapenet("cars", repeat=2),
    "shapenet-chairs": _shapenet("chairs", repeat=1),
    "shapenet-lamps": _shapenet("lamps", repeat=3),
}


# ImageNette's classes: ImageNet wnid -> the class name Hub copies use.
IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}


@dataclasses.dataclass(frozen=True)
class HubCopy:
    """A parquet copy of a dataset on the Hugging Face Hub and how its splits map to the reference's."""

    repo: str
    config: str | None
    revision: str | None
    splits: dict[str, str]
    """Reference split (layout folder) -> the copy's split name."""


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """What a complete dataset folder holds: instances per split and the image size rule."""

    source: str
    counts: dict[str, int]
    """Split -> number of instances (the split names ginr loads)."""
    image_size: str | None
    """'178x218' (every image that size), 'short320' (shorter side 320 px), 'square' (one size, square), None: audio."""
    classes: tuple[str, ...] = ()
    """Class folders every split must have (ImageNette's wnids)."""
    hub: HubCopy | None = None


DATASETS: dict[str, DatasetFacts] = {
    "celeba": DatasetFacts("celeba", {"train": 162770, "validation": 19867, "test": 19962}, "178x218"),
    "ffhq": DatasetFacts("ffhq", {"train": 60000, "validation": 10000}, "square"),
    "imagenette": DatasetFacts(
        "imagefolder",
        {"train": 9469, "validation": 3925},
        "short320",
        tuple(IMAGENETTE_CLASSES),
        HubCopy("frgfm/imagenette", "320px", "refs/convert/parquet", {"train": "train", "val": "validation"}),
    ),
    "librispeech": DatasetFacts(
        "librispeech",
        {"train-clean-100": 28539, "test-clean": 2620},
        None,
        hub=HubCopy("openslr/librispeech_asr", "clean", None, {"train-clean-100": "train.100", "test-clean": "test"}),
    ),
}
