"""Presets, flag overrides and refusals of bad input (cli + config)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ginr import cli, presets
from ginr import config as config_lib
from ginr.cli import parse_train_args
from ginr.config import MetaINRConfig


def parse(*argv):
    return parse_train_args(list(argv), console=False)[0]


def test_default_is_ipc_meta_on_photos():
    config = parse()
    assert (config.model_name, config.data_name) == ("ipc-meta", "photos")
    assert config.model.factorized and config.model.modulated_layers == (1,)
    assert config.data.source == "photos"


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
    """SPEC 9.3, resolved without the data on disk."""
    config = parse("--model", model, "--data", data)
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


def test_overrides_are_typed_and_nested():
    config = parse(
        "--model",
        "ipc-meta",
        "--optim.lr",
        "2e-4",
        "--train.batch-size",
        "8",
        "--model.rank",
        "64",
        "--model.modulated-layers",
        "1",
        "2",
        "--model.hyponet.fourier.sigma",
        "32",
        "--train.precision",
        "bf16",
    )
    assert config.optim.lr == 2e-4 and config.train.batch_size == 8 and config.model.rank == (64,)
    assert config.model.modulated_layers == (1, 2) and config.model.hyponet.fourier.sigma == 32.0
    assert config.train.precision == "bf16"
    assert parse("--model.modulated-layers", "None").model.modulated_layers is None


def test_help_shows_the_chosen_preset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_train_args(["--model", "learned-init", "--data", "ffhq256", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--optim.lr" in out and "0.0003" in out  # learned-init ffhq256's lr
    assert "--model.inner-lr" in out and "Inner-loop learning rate" in out


def test_unknown_pair_lists_valid_pairs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--model", "learned-init", "--data", "librispeech1s")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no preset for --model learned-init --data librispeech1s" in err
    assert "--model ipc-meta --data ffhq256" in err


def test_unknown_model_name(capsys):
    with pytest.raises(SystemExit):
        parse("--model", "siren")
    assert "no preset for --model siren" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--optim.lr", "-1"], "--optim.lr=-1.0: must be > 0"),
        (["--train.batch-size", "0"], "--train.batch-size=0: must be > 0"),
        (["--model.modulated-layers", "7"], "--model.modulated-layers=(7,) must name distinct layers in 0..4"),
        (["--model.rank", "300", "8"], "--model.rank=(300, 8): give 1 value or one per modulated layer"),
        (
            ["--model.modulated-layers", "1", "4", "--model.rank", "64", "8"],
            "--model.rank: 8 for layer 4 must be in 1..3",
        ),
        (["--model.hyponet.fourier.dim", "7"], "--model.hyponet.fourier.dim=7 must be a positive multiple of"),
        (["--data.coord-range", "1", "-1"], "--data.coord-range=(1.0, -1.0): needs lo < hi"),
        (["--model.inner-lr", "0"], "--model.inner-lr=0.0 must be > 0"),
        (["--train.skip-limit", "0"], "--train.skip-limit=0: must be > 0"),
        (["--train.keep-checkpoints", "0"], "--train.keep-checkpoints=0: must be > 0"),
        (
            ["--data.source", "audiofolder", "--data.path", "/data/speech"],
            "the data gives 1-D signals with 1 channel(s), but --model.hyponet.input-dim=2 and",
        ),
        (
            ["--data.path", "/data/mine"],
            "--data.path=/data/mine is not read by --data.source photos (the embedded photographs); add --data.source "
            "imagefolder",
        ),
        (
            ["--model.hyponet.output-dim", "1"],
            "the data gives 2-D signals with 3 channel(s), but --model.hyponet.input-dim=2 and "
            "--model.hyponet.output-dim=1",
        ),
    ],
)
def test_bad_values_are_refused_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--optim.lr", "fast"],
        ["--optim.learning-rate", "1e-3"],
        ["--train.precision", "fp8"],
        ["--train.nonfinite", "ignore"],
    ],
)
def test_bad_flags_are_refused(argv):
    with pytest.raises(SystemExit) as exit_info:
        parse_train_args(argv, console=False)
    assert exit_info.value.code == 2


def test_non_finite_policy_defaults_to_skip_with_a_limit():
    train = parse().train
    assert (train.nonfinite, train.skip_limit) == ("skip", 10)
    assert parse("--train.nonfinite", "stop").train.nonfinite == "stop"


def test_config_json_round_trip():
    for model, data in presets.PRESETS:
        config = presets.resolve(model, data)
        again = config_lib.from_dict(json.loads(config_lib.dumps(config)))
        assert again == config


def test_from_dict_refuses_unknown_fields():
    data = config_lib.to_dict(presets.resolve("ipc-meta", "photos"))
    data["model"]["rnak"] = [3]
    with pytest.raises(ValueError, match=r"model: unknown field\(s\) \['rnak'\] for MetaINRConfig"):
        config_lib.from_dict(data)


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("train", "batch_size", "16", "train.batch_size='16': expected int"),
        ("train", "cpu", 1, "train.cpu=1: expected bool"),
        ("train", "batch_size", True, "train.batch_size=True: expected int"),
        ("optim", "betas", [0.9], r"optim.betas=\[0.9\]: expected 2 values"),
        ("optim", "min_lr", "none", r"optim.min_lr='none' is not a float \| None"),
        ("data", "source", "s3", r"data.source='s3': choose one of \['photos', 'imagefolder'"),
        ("model", "modulated_layers", [1, "2"], r"model.modulated_layers=\[1, '2'\] is not a tuple"),
    ],
)
def test_from_dict_refuses_values_of_the_wrong_type(section, field, value, message):
    """A hand-edited config.json (a run's, a checkpoint's, a Hub folder's) cannot smuggle in a value of another type."""
    data = config_lib.to_dict(presets.resolve("ipc-meta", "photos"))
    data[section][field] = value
    with pytest.raises(ValueError, match=message):
        config_lib.from_dict(data)


def test_resume_reads_the_saved_config(tmp_path, capsys):
    base = presets.resolve("learned-init", "ffhq256")
    base = dataclasses.replace(base, optim=dataclasses.replace(base.optim, lr=5e-5))
    (tmp_path / "config.json").write_text(config_lib.dumps(base))
    config, resume = parse_train_args(["--resume", str(tmp_path), "--train.epochs", "3"], console=False)
    assert resume == tmp_path and config.optim.lr == 5e-5 and config.train.epochs == 3
    assert isinstance(config.model, MetaINRConfig) and not config.model.factorized
    with pytest.raises(SystemExit):
        parse_train_args(["--resume", str(tmp_path), "--model", "ipc-meta"], console=False)
    assert "differs from the resumed run's learned-init" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_train_args(["--resume", str(tmp_path / "nope")], console=False)
    assert "config.json not found" in capsys.readouterr().err


def test_init_from_takes_the_model_from_the_pretrained_folder(tmp_path, capsys):
    saved = presets.resolve("learned-init", "ffhq256")
    saved = dataclasses.replace(saved, model=dataclasses.replace(saved.model, inner_lr=0.02))
    (tmp_path / "config.json").write_text(config_lib.dumps(saved))
    config = parse("--init-from", str(tmp_path), "--data", "imagenette178", "--train.epochs", "2")
    assert config.model == saved.model and config.model_name == "learned-init"
    assert config.data_name == "imagenette178" and config.data.resolution == 178
    assert config.train.init_from == str(tmp_path) and config.train.epochs == 2
    for argv, message in (
        (["--model", "ipc-meta"], "--model ipc-meta differs from"),
        (["--data", "mnist"], "--data mnist: unknown data preset"),
        (["--resume", str(tmp_path)], "--init-from starts a new run"),
    ):
        with pytest.raises(SystemExit):
            parse("--init-from", str(tmp_path), *argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--init-from", str(tmp_path / "missing"))
    assert f"{tmp_path / 'missing'}: no such folder in {tmp_path}" in capsys.readouterr().err


def test_a_data_path_for_a_model_trained_on_the_embedded_photos_is_refused():
    photos = presets.resolve("ipc-meta", "photos").data
    assert cli.with_data_path(photos, None) is photos
    with pytest.raises(
        ValueError, match=r"--data-path /x: this model was trained on the embedded photos .* drop --data-path"
    ):
        cli.with_data_path(photos, "/x")
    celeba = presets.resolve("ipc-transinr", "celeba178").data
    assert cli.with_data_path(celeba, "/data/celeba").path == "/data/celeba"
