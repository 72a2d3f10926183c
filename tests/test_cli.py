"""The command line of the recipes (ginr.cli): presets chosen by --model / --data, flags, the names a typo is
closest to, the configs --resume and --init-from read, and every refusal (status 2, one message)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import tyro

from ginr import cli, models, presets
from ginr import config as config_lib
from ginr.cli import parse_train_args
from ginr.config import MetaINRConfig
from ginr.models import model_config_type
from ginr.models.meta import MetaINR


def parse(*argv):
    return parse_train_args(list(argv), console=False)[0]


def test_default_is_ipc_meta_on_photos():
    config = parse()
    assert (config.model_name, config.data_name) == ("ipc-meta", "photos")
    assert config.model.factorized and config.model.modulated_layers == (1,)
    assert config.data.source == "photos"


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


def refused(*argv, capsys) -> str:
    """The error a command line ends with (status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model", "ipc-mets"],
            "error: unknown --model ipc-mets; did you mean ipc-meta?\nno preset for --model ipc-mets",
        ),
        (["--data", "celeba"], "error: unknown --data celeba; did you mean celeba178?\nno preset for --model ipc-meta"),
        (["--model", "siren"], "error: unknown --model siren\nno preset for --model siren"),
    ],
)
def test_an_unknown_model_or_data_name_gets_the_closest_name_before_the_list(argv, message, capsys):
    err = refused(*argv, capsys=capsys)
    assert err.startswith(message) and "valid pairs:\n  --model ipc-meta --data photos" in err


@pytest.mark.parametrize(
    "flag, closest",
    [
        ("--optim.learning-rate", "--optim.lr"),
        ("--train.batchsize", "--train.batch-size"),
        ("--model.innerlr", "--model.inner-lr"),
    ],
)
def test_an_unknown_flag_gets_the_closest_known_flag_in_one_line(flag, closest, capsys):
    err = refused(flag, "1", "--train.max-steps", "1", capsys=capsys)
    assert err == f"error: unknown flag {flag}; did you mean {closest}?\n"


def test_the_flags_checked_for_typos_are_the_flags_tyro_makes():
    """flag_names must list every flag tyro accepts, or a correct flag would be refused as a typo."""
    for model, data in (("ipc-meta", "photos"), ("ipc-transinr", "shapenet-cars")):
        base = presets.resolve(model, data)
        model_type = model_config_type(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            parser = tyro.extras.get_parser(config_lib.Config[model_type], default=base)
        tyro_flags = {flag for action in parser._actions for flag in action.option_strings}
        assert tyro_flags - {"-h", "--help"} <= cli.flag_names(model_type)
        assert "--train.init-from" in cli.flag_names(model_type) - tyro_flags  # suppressed: tyro itself refuses it


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model", "learned-init", "--model.factorized"],
            "--model.factorized is ipc-meta, not learned-init: use --model ipc-meta",
        ),
        (
            ["--model", "ipc-meta", "--model.no-factorized"],
            "--model.no-factorized is learned-init, not ipc-meta: use --model learned-init",
        ),
        (
            ["--model", "transinr", "--data", "celeba178", "--model.factorized"],
            "--model.factorized is ipc-transinr, not transinr: use --model ipc-transinr",
        ),
        (
            ["--model", "ipc-transinr", "--data", "celeba178", "--model.no-factorized"],
            "--model.no-factorized is transinr, not ipc-transinr: use --model transinr",
        ),
    ],
)
def test_a_model_name_and_its_factorized_field_must_agree(argv, message, capsys):
    assert message in refused(*argv, capsys=capsys)


def test_the_rank_is_checked_only_where_it_is_used():
    assert parse("--model", "learned-init", "--model.rank", "0").model.rank == (0,)  # learned-init has no rank


def test_every_problem_is_reported_together(capsys):
    err = refused("--optim.lr", "-1", "--train.batch-size", "0", "--model.inner-lr", "0", capsys=capsys)
    assert err.startswith("error: invalid configuration:\n")
    for problem in (
        "--optim.lr=-1.0: must be > 0",
        "--train.batch-size=0: must be > 0",
        "--model.inner-lr=0.0 must be > 0",
    ):
        assert f"\n  {problem}" in err


def test_the_model_list_follows_registrations(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # registrations end with the test
    assert "my-meta" not in models.model_names() and "my-meta" not in cli.usage()
    models.register("my-meta", MetaINRConfig, MetaINR)
    assert (
        models.model_names()[-1] == "my-meta"
        and "--model {ipc-meta,ipc-transinr,transinr,learned-init,my-meta}" in cli.usage()
    )


def test_resuming_a_photos_run_that_recorded_a_data_path_still_works(tmp_path, capsys):
    """Older runs recorded a --data.path the embedded photos ignored: only a fresh command line is refused for it."""
    saved = presets.resolve("ipc-meta", "photos")
    saved = dataclasses.replace(saved, data=dataclasses.replace(saved.data, path="/data/mine"))
    (tmp_path / "config.json").write_text(config_lib.dumps(saved))
    config, resume = parse_train_args(["--resume", str(tmp_path)], console=False)
    assert resume == tmp_path and config.data.path == "/data/mine"
    assert "is not read by --data.source photos" in refused("--data.path", "/data/mine", capsys=capsys)
