"""The paper's experiments as (model, data) presets (SPEC 9), plus the embedded ``photos`` default.

A preset is a complete :class:`ginr.config.Config`; every field can then be overridden from the command line.
The global batch is the reference's ``total_batch_size`` (SPEC fidelity policy); cadences are in epochs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ginr.config import (
    Config,
    FourierConfig,
    HyponetConfig,
    MetaINRConfig,
    OptimConfig,
    TrainConfig,
)
from ginr.data.catalog import DATA

DATA_NAMES = (
    "photos",
    "celeba178",
    "ffhq178",
    "ffhq256",
    "ffhq512",
    "ffhq1024",
    "imagenette178",
    "librispeech1s",
    "librispeech3s",
    "shapenet-cars",
    "shapenet-chairs",
    "shapenet-lamps",
)

IMAGENETTE178, FFHQ256, PHOTOS = DATA["imagenette178"], DATA["ffhq256"], DATA["photos"]


def _meta(model: str, *, sigma: float, inner_lr: float) -> MetaINRConfig:
    """SPEC 9.3: 5-layer, 256-wide hyponet; ipc-meta factorises layer 1 at rank 256, learned-init adapts every
    full weight."""
    hyponet = HyponetConfig(fourier=FourierConfig(sigma=sigma, dim=128))
    if model == "ipc-meta":
        return MetaINRConfig(hyponet=hyponet, rank=(256,), modulated_layers=(1,), factorized=True, inner_lr=inner_lr)
    return MetaINRConfig(hyponet=hyponet, modulated_layers=None, factorized=False, inner_lr=inner_lr)


def _cadence(epochs: int, checkpoint: int, test: int, images: int) -> TrainConfig:
    """The reference's (save_ckpt_freq, test_freq, test_imlog_freq) in epochs."""
    return TrainConfig(
        batch_size=16, epochs=epochs, checkpoint_every=checkpoint, eval_every=test, image_every=max(1, images // test)
    )


def _paper_meta(model: str, data: str) -> Config:
    table = {  # (sigma, inner_lr, lr, warmup epochs, epochs, cadence)
        ("ipc-meta", "ffhq256"): (64, 0.01, 1e-3, 0.5, 200, (20, 10, 20)),
        ("ipc-meta", "imagenette178"): (128, 0.003, 1e-4, 0.0, 800, (50, 10, 50)),
        ("learned-init", "ffhq256"): (64, 0.001, 3e-4, 0.5, 200, (20, 10, 20)),
        ("learned-init", "imagenette178"): (128, 0.003, 1e-4, 0.0, 800, (50, 10, 50)),
    }
    sigma, inner_lr, lr, warmup, epochs, cadence = table[(model, data)]
    return Config[MetaINRConfig](
        model=_meta(model, sigma=sigma, inner_lr=inner_lr),
        data={"ffhq256": FFHQ256, "imagenette178": IMAGENETTE178}[data],
        optim=OptimConfig(lr=lr, warmup_epochs=warmup),
        train=_cadence(epochs, *cadence),
        model_name=model,
        data_name=data,
    )


def _photos_meta(model: str, data: str) -> Config:
    """The embedded default: 32-px photo tiles, the paper's hyponet with frequencies up to 16 (the grid's Nyquist
    range), sized to train in minutes on two CPU cores."""
    config = _paper_meta(model, "imagenette178")
    hyponet = dataclasses.replace(config.model.hyponet, fourier=FourierConfig(sigma=16, dim=128))
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, hyponet=hyponet, inner_lr=0.01),
        data=PHOTOS,
        optim=OptimConfig(lr=1e-3),
        train=TrainConfig(batch_size=16, epochs=6, eval_every=2, checkpoint_every=2, image_every=1, log_every=5),
        data_name=data,
    )


PRESETS: dict[tuple[str, str], Callable[[str, str], Config]] = {
    ("ipc-meta", "photos"): _photos_meta,
    ("learned-init", "photos"): _photos_meta,
    ("ipc-meta", "ffhq256"): _paper_meta,
    ("ipc-meta", "imagenette178"): _paper_meta,
    ("learned-init", "ffhq256"): _paper_meta,
    ("learned-init", "imagenette178"): _paper_meta,
}


def valid_pairs() -> list[tuple[str, str]]:
    return list(PRESETS)


def resolve(model: str, data: str) -> Config:
    """The preset of ``model`` on ``data``, or a ValueError listing the valid pairs."""
    if (model, data) not in PRESETS:
        pairs = "\n  ".join(f"--model {m} --data {d}" for m, d in PRESETS)
        raise ValueError(f"no preset for --model {model} --data {data}; valid pairs:\n  {pairs}")
    return PRESETS[(model, data)](model, data)
