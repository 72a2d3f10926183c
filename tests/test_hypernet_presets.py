"""ipc-transinr and transinr at the paper's sizes (fidelity 2.1 [verified], fidelity 9): weight-token counts, parameter
counts, shapes and init, and every paper preset's tokens against its data."""

from __future__ import annotations

import math

import pytest
import torch

from ginr import presets
from ginr.data import signal_shape
from ginr.models import build
from ginr.models.hypernet import HypernetINR
from ginr.nn import tokenizers
from ginr.pytree import leaves


def _preset_model(model_name: str, data: str) -> HypernetINR:
    return build(model_name, presets.resolve(model_name, data).model)


@pytest.mark.parametrize(
    "model_name, data, count, groups",
    [
        ("transinr", "ffhq178", 259, [64, 64, 64, 64, 3]),
        ("transinr", "ffhq512", 259, [64, 64, 64, 64, 3]),
        ("transinr", "librispeech1s", 257, [64, 64, 64, 64, 1]),
        ("transinr", "librispeech3s", 257, [64, 64, 64, 64, 1]),
        ("ipc-transinr", "ffhq178", 256, [256]),
        ("ipc-transinr", "librispeech1s", 256, [256]),
    ],
)
def test_paper_weight_token_counts(model_name, data, count, groups):
    model = _preset_model(model_name, data)
    assert model.n_weight_tokens == count
    assert list(model.groups.values()) == groups
    stop = 0
    for name in model.token_slices:
        assert int(name) == model.layers[list(model.token_slices).index(name)]
        a, b = model.token_slices[name]
        assert a == stop
        stop = b
    assert stop == count


# ----------------------------------------------------------------------------------------------------------------------
# Paper-size parameter counts (fidelity 2.1 [verified]), one init per model
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_params():
    out = {}
    for model_name, data in (("ipc-transinr", "ffhq178"), ("transinr", "ffhq178"), ("ipc-transinr", "librispeech1s")):
        model = _preset_model(model_name, data)
        out[(model_name, data)] = (model, model.init(torch.Generator().manual_seed(0)))
    return out


def _counts(params: dict) -> tuple[int, int]:
    tensors = leaves(params)
    return sum(t.numel() for t in tensors), sum(t.numel() for t in tensors if not t.requires_grad)


@pytest.mark.parametrize(
    "model_name, data, millions, dead, frozen",
    [
        ("ipc-transinr", "ffhq178", 43.746, 256 * 256, 64),
        ("transinr", "ffhq178", 44.477, 0, 64),
        ("ipc-transinr", "librispeech1s", 44.452, 256 * 256, 2048),
    ],
)
def test_paper_parameter_counts(paper_params, model_name, data, millions, dead, frozen):
    """ginr's count plus the reference's dead base-weight rows of the modulated layer 1 (256 x 256) rounds to the
    reference's count; the frozen Fourier frequencies are included."""
    _, params = paper_params[(model_name, data)]
    total, n_frozen = _counts(params)
    assert round((total + dead) / 1e6, 3) == millions
    assert n_frozen == frozen
    has_weight = "weight" in params["hyponet"]["layers"]["1"]
    assert has_weight == (dead == 0)


def test_paper_ipc_transinr_ffhq178_shapes_and_init(paper_params):
    model, params = paper_params[("ipc-transinr", "ffhq178")]
    assert params["tokens"]["position"].shape == (400, 768)
    assert params["tokens"]["linear"]["weight"].shape == (768, 243)
    assert params["weight_tokens"].shape == (256, 768)
    assert set(params["heads"]) == {"1"}
    assert params["heads"]["1"]["linear"]["weight"].shape == (256, 768)
    assert params["factors"]["shared"]["1"].shape == (256, 256)
    assert [tuple(layer["weight"].shape) for n, layer in params["hyponet"]["layers"].items() if n != "1"] == [
        (256, 256),
        (256, 256),
        (256, 256),
        (256, 3),
    ]
    # N(0, 1) embeddings and tokens; shared factor randn / sqrt(G fi) = N(0, 1/256^2); PyTorch-default Linear
    for t in (params["tokens"]["position"], params["weight_tokens"]):
        assert abs(t.std().item() - 1) < 0.02 and abs(t.mean().item()) < 0.02
    shared = params["factors"]["shared"]["1"]
    assert abs(shared.std().item() * 256 - 1) < 0.02
    w = params["tokens"]["linear"]["weight"]
    assert w.abs().max() <= 1 / math.sqrt(243) and w.abs().max() > 0.99 / math.sqrt(243)
    head = params["heads"]["1"]
    assert torch.equal(head["norm"]["weight"], torch.ones(768)) and torch.equal(head["norm"]["bias"], torch.zeros(768))
    assert head["linear"]["weight"].abs().max() <= 1 / math.sqrt(768)
    assert head["linear"]["bias"].abs().max() > 0.9 / math.sqrt(768)


def test_paper_audio_position_and_token_width(paper_params):
    model, params = paper_params[("ipc-transinr", "librispeech1s")]
    assert params["tokens"]["position"].shape == (80, 768)
    assert params["tokens"]["linear"]["weight"].shape == (768, 200)
    assert params["hyponet"]["fourier"]["frequencies"].shape == (2048,)
    assert params["hyponet"]["layers"]["0"]["weight"].shape == (4096, 256)


# ----------------------------------------------------------------------------------------------------------------------
# Paper presets
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", list(presets.HYPERNET_ROWS))
@pytest.mark.parametrize("model_name", ["ipc-transinr", "transinr"])
def test_every_paper_hypernet_preset_builds_and_its_tokens_match_its_data(model_name, data):
    config = presets.resolve(model_name, data)
    model = build(model_name, config.model)
    assert isinstance(model, HypernetINR)
    shape, channels = signal_shape(config.data)
    model.check_signal(shape, channels)
    tok = config.model.tokenizer
    assert tokenizers.n_tokens(tok, shape) == tok.n_tokens
    tokens = tokenizers.tokenize(tok, torch.zeros(1, *shape, channels))
    assert tokens.shape == (1, tok.n_tokens, tokenizers.token_dim(tok, channels))
    expected_tokens = {
        "celeba178": 400,
        "ffhq178": 400,
        "imagenette178": 400,
        "ffhq512": 256,
        "ffhq1024": 1024,
        "librispeech1s": 80,
        "librispeech3s": 240,
    }[data]
    assert tok.n_tokens == expected_tokens
    audio = data.startswith("librispeech")
    assert tok.type == ("audio_patches" if audio else "image_patches")
    assert config.model.hyponet.input_dim == len(shape) and config.model.hyponet.output_dim == channels
    assert config.model.factorized == (model_name == "ipc-transinr")
    assert model.n_weight_tokens == (256 if model_name == "ipc-transinr" else (257 if audio else 259))
