"""The paper's experiments as (model, data) presets (fidelity 9), plus the embedded ``photos`` default.

A preset is a complete :class:`ginr.config.Config`; every field can then be overridden from the command line.
The global batch is the reference's ``total_batch_size``, 16 for every image, audio and meta-learning preset and 32
for NeRF (fidelity policy); cadences are in epochs. NeRF presets take the number of support views (1-5 in the
paper), which sets the token count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ginr.config import (
    Config,
    FourierConfig,
    HypernetINRConfig,
    HyponetConfig,
    MetaINRConfig,
    OptimConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from ginr.data.catalog import DATA
from ginr.rules import did_you_mean

DATA_NAMES = tuple(DATA)
"""The names users type after ``--data`` (the data catalog's)."""


# ---- the reference's per-experiment values --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One experiment of fidelity 9: Fourier scale, tokens, training options, length and (ckpt, test, image) cadence."""

    sigma: float
    epochs: int
    cadence: tuple[int, int, int]
    patch: tuple[int, int] = (9, 1)  # patch size, padding
    n_tokens: int = 400
    subsample: float | None = None
    coord_noise: bool = False
    transinr_cadence: tuple[int, int, int] | None = None  # where the transinr config differs


HYPERNET_ROWS = {  # fidelity 9.1, 9.2
    "celeba178": Row(sigma=64, epochs=300, cadence=(5, 5, 5)),
    "ffhq178": Row(sigma=64, epochs=1000, cadence=(10, 10, 10)),
    "imagenette178": Row(sigma=128, epochs=4000, cadence=(50, 10, 50), coord_noise=True),
    "ffhq512": Row(
        sigma=128, epochs=400, cadence=(10, 10, 50), patch=(32, 0), n_tokens=256, subsample=0.1,
        transinr_cadence=(20, 10, 20),
    ),
    "ffhq1024": Row(
        sigma=256, epochs=400, cadence=(50, 10, 50), patch=(32, 0), n_tokens=1024, subsample=0.1,
        transinr_cadence=(20, 10, 20),
    ),
    "librispeech1s": Row(sigma=1024, epochs=1000, cadence=(50, 10, 10), patch=(200, 0), n_tokens=80),
    "librispeech3s": Row(
        sigma=1024, epochs=1000, cadence=(50, 10, 10), patch=(200, 0), n_tokens=240, subsample=0.25
    ),
}  # fmt: skip

NERF_ROWS = {"shapenet-cars": 1000, "shapenet-chairs": 1000, "shapenet-lamps": 400}  # fidelity 9.4: epochs
NERF_CADENCE = (100, 20, 100)  # checkpoint / test / image epochs

META_ROWS = {  # fidelity 9.3: (sigma, inner_lr, lr, warm-up epochs, epochs, cadence)
    ("ipc-meta", "ffhq256"): (64, 0.01, 1e-3, 0.5, 200, (20, 10, 20)),
    ("ipc-meta", "imagenette178"): (128, 0.003, 1e-4, 0.0, 800, (50, 10, 50)),
    ("learned-init", "ffhq256"): (64, 0.001, 3e-4, 0.5, 200, (20, 10, 20)),
    ("learned-init", "imagenette178"): (128, 0.003, 1e-4, 0.0, 800, (50, 10, 50)),
}


def _train(epochs: int, cadence: tuple[int, int, int], **extra) -> TrainConfig:
    """The reference's (save_ckpt_freq, test_freq, test_imlog_freq) in epochs, at the global batch 16."""
    checkpoint, test, images = cadence
    return TrainConfig(
        batch_size=16, epochs=epochs, checkpoint_every=checkpoint, eval_every=test, image_every=images, **extra
    )


def _hyponet(data: str, sigma: float) -> HyponetConfig:
    """5 layers, 256 wide, ReLU, kaiming_uniform / zero init, weight normalisation (fidelity 9); audio maps 1-D time to
    one channel with 2048 frequencies up to 1024 and no output bias."""
    if data.startswith("librispeech"):
        return HyponetConfig(input_dim=1, output_dim=1, output_bias=0.0, fourier=FourierConfig(sigma=sigma, dim=2048))
    return HyponetConfig(fourier=FourierConfig(sigma=sigma, dim=128))


def _modulation(model: str) -> dict:
    """ipc-transinr: 256 weight tokens factorise layer 1; transinr: 64 tokens for every layer (fidelity 2.1, 3.1)."""
    if model == "ipc-transinr":
        return dict(n_weight_tokens=(256,), modulated_layers=(1,), factorized=True)
    return dict(n_weight_tokens=(64,), modulated_layers=None, factorized=False)


def _paper_hypernet(model: str, data: str) -> Config:
    row = HYPERNET_ROWS[data]
    tokenizer = TokenizerConfig(
        type="audio_patches" if data.startswith("librispeech") else "image_patches",
        patch_size=row.patch[0],
        padding=row.patch[1],
        n_tokens=row.n_tokens,
    )
    cadence = row.transinr_cadence if model == "transinr" and row.transinr_cadence else row.cadence
    return Config[HypernetINRConfig](
        model=HypernetINRConfig(hyponet=_hyponet(data, row.sigma), tokenizer=tokenizer, **_modulation(model)),
        data=DATA[data],
        optim=OptimConfig(lr=1e-4),
        train=_train(row.epochs, cadence, coord_subsample=row.subsample, coord_noise=row.coord_noise),
        model_name=model,
        data_name=data,
    )


def _paper_nerf(model: str, data: str, support_views: int = 1) -> Config:
    """Fidelity 9.4: 6-layer hyponet from 3-D points to rgb + density (no output bias, 20 frequencies 2^0..2^8 per
    axis), 8x8 patches of every support view (256 tokens per 128-px view), ipc-transinr's 256 weight tokens on layer 1
    or transinr's 32 on every layer (chairs with 5 views too: quirk 18 fixed), global batch 32, lr 1e-4, evaluation
    every 20 epochs (an estimate from 128 rays per object, quirk 11) and a full render at the end."""
    data_config = dataclasses.replace(DATA[data], support_views=support_views)
    hyponet = HyponetConfig(
        n_layer=6,
        input_dim=3,
        output_dim=4,
        output_bias=0.0,
        fourier=FourierConfig(type="deterministic_transinr_nerf", sigma=8, dim=60),
    )
    patch = 8
    tokenizer = TokenizerConfig(
        type="nerf_views", patch_size=patch, padding=0, n_tokens=support_views * (data_config.resolution // patch) ** 2
    )
    modulation = _modulation(model) if model == "ipc-transinr" else dict(_modulation(model), n_weight_tokens=(32,))
    return Config[HypernetINRConfig](
        model=HypernetINRConfig(hyponet=hyponet, tokenizer=tokenizer, **modulation),
        data=data_config,
        optim=OptimConfig(lr=1e-4),
        train=dataclasses.replace(_train(NERF_ROWS[data], NERF_CADENCE), batch_size=32),
        model_name=model,
        data_name=data,
    )


def _paper_meta(model: str, data: str) -> Config:
    sigma, inner_lr, lr, warmup, epochs, cadence = META_ROWS[(model, data)]
    hyponet = _hyponet(data, sigma)
    if model == "ipc-meta":
        meta = MetaINRConfig(hyponet=hyponet, rank=(256,), modulated_layers=(1,), factorized=True, inner_lr=inner_lr)
    else:
        meta = MetaINRConfig(hyponet=hyponet, modulated_layers=None, factorized=False, inner_lr=inner_lr)
    return Config[MetaINRConfig](
        model=meta,
        data=DATA[data],
        optim=OptimConfig(lr=lr, warmup_epochs=warmup),
        train=_train(epochs, cadence),
        model_name=model,
        data_name=data,
    )


PHOTOS_TRAIN = TrainConfig(batch_size=16, epochs=6, eval_every=2, checkpoint_every=2, image_every=1, log_every=5)


def _photos_meta(model: str, data: str) -> Config:
    """The embedded default: 32-px photo tiles, the paper's hyponet with frequencies up to 16 (the grid's Nyquist
    range), sized to train in minutes on two CPU cores."""
    config = _paper_meta(model, "imagenette178")
    hyponet = _hyponet(data, sigma=16)
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, hyponet=hyponet, inner_lr=0.01),
        data=DATA["photos"],
        optim=OptimConfig(lr=1e-3),
        train=PHOTOS_TRAIN,
        data_name=data,
    )


def _photos_hypernet(model: str, data: str) -> Config:
    """The embedded photos for the hypernetwork models: 4-px patches (64 tokens) and a compact transformer
    (4 blocks, 256 wide, 8 heads) so that a run takes minutes on a CPU; the paper's structure otherwise."""
    config = _paper_hypernet(model, "celeba178")
    model_config = dataclasses.replace(
        config.model,
        hyponet=_hyponet(data, sigma=16),
        tokenizer=TokenizerConfig(patch_size=4, padding=0, n_tokens=64),
        transformer=TransformerConfig(embed_dim=256, n_layer=4, n_head=8),
    )
    return dataclasses.replace(config, model=model_config, data=DATA["photos"], train=PHOTOS_TRAIN, data_name=data)


PRESETS: dict[tuple[str, str], Callable[[str, str], Config]] = {
    ("ipc-meta", "photos"): _photos_meta,
    ("learned-init", "photos"): _photos_meta,
    ("ipc-transinr", "photos"): _photos_hypernet,
    ("transinr", "photos"): _photos_hypernet,
    **{key: _paper_meta for key in META_ROWS},
    **{(model, data): _paper_hypernet for data in HYPERNET_ROWS for model in ("ipc-transinr", "transinr")},
    **{(model, data): _paper_nerf for data in NERF_ROWS for model in ("ipc-transinr", "transinr")},
}


def resolve(model: str, data: str, support_views: int | None = None) -> Config:
    """The preset of ``model`` on ``data``, or a ValueError naming an unknown name (with the closest known one) and
    listing the valid pairs. ``support_views`` (NeRF presets only) sets the support views and with them the token
    count (its bounds are :func:`ginr.rules.validate`'s)."""
    if (model, data) not in PRESETS:
        unknown = [
            did_you_mean(flag, name, known)
            for flag, name, known in (("--model", model, {m for m, _ in PRESETS}), ("--data", data, DATA_NAMES))
            if name not in known
        ]
        pairs = "\n  ".join(f"--model {m} --data {d}" for m, d in PRESETS)
        raise ValueError("\n".join([*unknown, f"no preset for --model {model} --data {data}; valid pairs:\n  {pairs}"]))
    if support_views is None:
        return PRESETS[(model, data)](model, data)
    if data not in NERF_ROWS:
        raise ValueError(f"--data.support-views applies to the novel-view presets ({', '.join(NERF_ROWS)}), not {data}")
    return _paper_nerf(model, data, support_views)
