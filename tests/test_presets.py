"""The paper's experiments as presets (ginr.presets), checked against fidelity 9's tables."""

from __future__ import annotations

import pytest

from ginr import presets, rules


@pytest.mark.parametrize(
    "model, data, lr, inner_lr, sigma, warmup, epochs, factorized",
    [
        ("ipc-meta", "ffhq256", 1e-3, 0.01, 64, 0.5, 200, True),
        ("ipc-meta", "imagenette178", 1e-4, 0.003, 128, 0.0, 800, True),
        ("learned-init", "ffhq256", 3e-4, 0.001, 64, 0.5, 200, False),
        ("learned-init", "imagenette178", 1e-4, 0.003, 128, 0.0, 800, False),
    ],
)
def test_paper_meta_presets(model, data, lr, inner_lr, sigma, warmup, epochs, factorized):
    """Fidelity 9.3, resolved without the data on disk."""
    config = presets.resolve(model, data)
    assert config.optim.lr == lr and config.optim.warmup_epochs == warmup
    assert config.model.inner_lr == inner_lr and config.model.n_inner_steps == 2
    assert config.model.hyponet.fourier.sigma == sigma and config.model.hyponet.fourier.dim == 128
    assert config.model.hyponet.hidden_dims() == (256,) * 4 and config.model.hyponet.output_bias == 0.5
    assert config.model.factorized is factorized
    assert config.model.modulated_layers == ((1,) if factorized else None)
    assert config.train.batch_size == 16 and config.train.epochs == epochs
    assert config.data.resolution == (256 if data == "ffhq256" else 178)
    if data == "imagenette178":
        assert config.data.train_transform == "random_crop_flip"


def test_every_preset_passes_validate():
    for model, data in presets.PRESETS:
        rules.validate(presets.resolve(model, data), fresh_run=True)
    for views in (2, 5):
        rules.validate(presets.resolve("transinr", "shapenet-chairs", views), fresh_run=True)


@pytest.mark.parametrize(
    "data, sigma, patch, tokens, subsample, coord_noise, epochs, cadence, transinr_cadence",
    [  # fidelity 9.1 and 9.2
        ("celeba178", 64, (9, 1), 400, None, False, 300, (5, 5, 5), (5, 5, 5)),
        ("ffhq178", 64, (9, 1), 400, None, False, 1000, (10, 10, 10), (10, 10, 10)),
        ("imagenette178", 128, (9, 1), 400, None, True, 4000, (50, 10, 50), (50, 10, 50)),
        ("ffhq512", 128, (32, 0), 256, 0.1, False, 400, (10, 10, 50), (20, 10, 20)),
        ("ffhq1024", 256, (32, 0), 1024, 0.1, False, 400, (50, 10, 50), (20, 10, 20)),
        ("librispeech1s", 1024, (200, 0), 80, None, False, 1000, (50, 10, 10), (50, 10, 10)),
        ("librispeech3s", 1024, (200, 0), 240, 0.25, False, 1000, (50, 10, 10), (50, 10, 10)),
    ],
)
def test_paper_hypernetwork_presets(
    data, sigma, patch, tokens, subsample, coord_noise, epochs, cadence, transinr_cadence
):
    for model, groups, layers, factorized, freqs in (
        ("ipc-transinr", (256,), (1,), True, cadence),
        ("transinr", (64,), None, False, transinr_cadence),
    ):
        config = presets.resolve(model, data)
        m, train = config.model, config.train
        assert (m.n_weight_tokens, m.modulated_layers, m.factorized) == (groups, layers, factorized)
        assert m.hyponet.fourier.sigma == sigma and m.hyponet.hidden_dims() == (256,) * 4
        assert (m.tokenizer.patch_size, m.tokenizer.padding, m.tokenizer.n_tokens) == (*patch, tokens)
        assert (m.transformer.embed_dim, m.transformer.n_layer, m.transformer.n_head) == (768, 6, 12)
        assert (train.coord_subsample, train.coord_noise, train.epochs, train.batch_size) == (
            subsample,
            coord_noise,
            epochs,
            16,
        )
        assert (train.checkpoint_every, train.eval_every, train.image_every) == freqs
        assert config.optim.lr == 1e-4
        audio = data.startswith("librispeech")
        assert (m.hyponet.input_dim, m.hyponet.output_dim, m.hyponet.output_bias) == (
            (1, 1, 0.0) if audio else (2, 3, 0.5)
        )
        assert m.hyponet.fourier.dim == (2048 if audio else 128)


@pytest.mark.parametrize("data, epochs", [("shapenet-cars", 1000), ("shapenet-chairs", 1000), ("shapenet-lamps", 400)])
@pytest.mark.parametrize("views", [None, 3])
def test_paper_nerf_presets(data, epochs, views):
    """Fidelity 9.4: 256 tokens per 128-px support view, G 256 on layer 1 or 32 on every layer, global batch 32."""
    for model, groups, layers in (("ipc-transinr", (256,), (1,)), ("transinr", (32,), None)):
        config = presets.resolve(model, data, views)
        m = config.model
        assert (m.n_weight_tokens, m.modulated_layers) == (groups, layers)
        assert config.data.support_views == (views or 1) and m.tokenizer.n_tokens == 256 * (views or 1)
        assert (m.tokenizer.type, m.tokenizer.patch_size, m.tokenizer.padding) == ("nerf_views", 8, 0)
        assert (m.hyponet.n_layer, m.hyponet.input_dim, m.hyponet.output_dim, m.hyponet.output_bias) == (6, 3, 4, 0.0)
        assert (m.hyponet.fourier.type, m.hyponet.fourier.sigma, m.hyponet.fourier.dim) == (
            "deterministic_transinr_nerf",
            8,
            60,
        )
        assert (config.train.batch_size, config.train.epochs, config.optim.lr) == (32, epochs, 1e-4)


def test_support_views_belong_to_the_nerf_presets_and_their_bounds_to_validate():
    with pytest.raises(ValueError, match="--data.support-views applies to the novel-view presets"):
        presets.resolve("ipc-transinr", "celeba178", 2)
    with pytest.raises(ValueError, match=r"--data.support-views=0: must be >= 1 \(the paper uses 1 to 5\)"):
        rules.validate(presets.resolve("ipc-transinr", "shapenet-cars", 0))


def test_an_unknown_name_gets_the_closest_one_and_the_valid_pairs():
    with pytest.raises(ValueError) as info:
        presets.resolve("ipc-mets", "ffhq256")
    lines = str(info.value).split("\n")
    assert lines[:2] == [
        "unknown --model ipc-mets; did you mean ipc-meta?",
        "no preset for --model ipc-mets --data ffhq256; valid pairs:",
    ]
    with pytest.raises(ValueError, match="^unknown --data ffhq265; did you mean ffhq256\\?\\nno preset"):
        presets.resolve("learned-init", "ffhq265")
    with pytest.raises(ValueError, match="^no preset for --model learned-init --data celeba178"):  # both names exist
        presets.resolve("learned-init", "celeba178")
