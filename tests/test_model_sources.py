"""Where a model comes from (a model folder, a run folder, a checkpoint folder or a Hub repo id), and how the recipes
refuse a source, data or flag that does not fit: ``error: ...`` and exit status 2, never a traceback."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from ginr import cli, hub, presets
from ginr import config as config_lib
from ginr.config import DataConfig
from ginr.hub import ModelFileError, from_pretrained, save_pretrained
from ginr.models import build
from ginr.module import ParamsModule
from ginr.pytree import flatten
from ginr.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def recipe(name: str):
    """The module of ``recipes/<name>.py`` (registered, as its dataclasses need)."""
    module_name = f"ginr_recipe_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ROOT / "recipes" / f"{name}.py")
        sys.modules[module_name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def tiny(model_name: str = "ipc-meta", data: DataConfig | None = None):
    config = presets.resolve(model_name, "photos")
    model = config.model
    fourier = dataclasses.replace(model.hyponet.fourier, dim=4)
    model = dataclasses.replace(model, hyponet=dataclasses.replace(model.hyponet, hidden_dim=(8,), fourier=fourier))
    if model_name in ("ipc-meta", "learned-init"):
        model = dataclasses.replace(model, rank=(8,))
    else:
        tokenizer = dataclasses.replace(model.tokenizer, patch_size=4, padding=0, n_tokens=4)
        transformer = dataclasses.replace(model.transformer, embed_dim=16, n_layer=1, n_head=2)
        model = dataclasses.replace(model, tokenizer=tokenizer, transformer=transformer, n_weight_tokens=(8,))
    return dataclasses.replace(config, model=model, data=data or DataConfig(resolution=8))


def save_step(run: Path, step: int, config, seed: int) -> dict[str, torch.Tensor]:
    """A checkpoint of ``step`` holding weights drawn with ``seed``; returns them (flat)."""
    model = build(config.model_name, config.model)
    holder = ParamsModule(model, model.init(torch.Generator().manual_seed(seed)))
    checkpoint.save(
        run, step, accelerator=Accelerator(cpu=True), config=config, params=holder.tree(),
        optimizer=torch.optim.Adam(holder.parameters()),
        trainer_state={"num_processes": 1, "global_batch": 2, "eval_history": []},
    )  # fmt: skip
    return {name: value.detach() for name, value in flatten(holder.tree()).items()}


def same_params(loaded, expected: dict[str, torch.Tensor]) -> bool:
    flat = flatten(loaded.params)
    return flat.keys() == expected.keys() and all(torch.equal(flat[k], v) for k, v in expected.items())


@pytest.fixture
def run(tmp_path, image_folder):
    """A run folder with checkpoints of steps 1 and 2 (different weights), on the image folder's data."""
    config = tiny(data=DataConfig(source="imagefolder", path=str(image_folder), resolution=8))
    folder = tmp_path / "run"
    weights = {step: save_step(folder, step, config, seed=step) for step in (1, 2)}
    (folder / "config.json").write_text(config_lib.dumps(config))  # a run's own config, as recipes/train.py writes
    return folder, weights


def tamper(step_folder: Path) -> None:
    path = step_folder / "model" / hub.WEIGHTS_NAME
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def refused(main, args, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# ---- resolving a source ------------------------------------------------------------------------------------------


def test_a_run_folder_loads_its_newest_complete_and_intact_checkpoint(run):
    folder, weights = run
    steps = folder / "checkpoints"
    assert hub.model_dir(folder) == steps / "step-00000002" / "model"
    assert same_params(from_pretrained(folder), weights[2])
    (steps / ".step-00000003.partial" / "model").mkdir(parents=True)  # a save killed half-way: never considered
    tamper(steps / "step-00000002")  # the newest no longer matches its manifest: passed over
    assert hub.model_dir(str(folder)) == steps / "step-00000001" / "model"
    assert same_params(from_pretrained(folder), weights[1])


def test_a_checkpoint_folder_loads_its_model_once_it_verifies(run):
    folder, weights = run
    step = folder / "checkpoints" / "step-00000001"
    assert same_params(from_pretrained(step), weights[1])
    tamper(step)
    with pytest.raises(
        ModelFileError, match=r"step-00000001 is not a complete and intact checkpoint \(.*checksum"
    ) as e:
        from_pretrained(step)
    assert "give its run folder" in str(e.value) and str(step / "model") in str(e.value)
    (step / "manifest.json").unlink()  # an incomplete checkpoint
    with pytest.raises(ModelFileError, match="no readable manifest.json; the checkpoint is incomplete"):
        from_pretrained(step)


def test_a_run_without_an_intact_checkpoint_is_refused_naming_the_run_and_the_fix(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(config_lib.dumps(tiny()))
    with pytest.raises(ModelFileError, match=f"{run} is a run folder without a complete and intact checkpoint"):
        from_pretrained(run)
    err = refused(cli.parse_train_args, ["--init-from", str(run)], capsys)  # was a CheckpointError traceback
    assert f"{run} is a run folder without a complete and intact checkpoint" in err and "train until" in err


def test_init_from_a_run_folder_takes_its_newest_checkpoint(run):
    folder, _ = run
    config, _ = cli.parse_train_args(["--init-from", str(folder), "--train.epochs", "1"], console=False)
    saved = hub.read_config(folder / "checkpoints" / "step-00000002" / "model")
    assert config.model == saved.model and config.train.init_from == str(folder)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["model"].update(factorized=True), "--model.factorized is ipc-meta, not learned-init"),
        (lambda c: c["train"].update(coord_noise=True), "--train.coord-subsample and --train.coord-noise apply to"),
        (lambda c: c["data"].update(source="shapenet"), "multi-view data .* and a NeRF model .* go together"),
    ],
    ids=["name against factorized", "meta with coordinate noise", "views data for a signal model"],
)
def test_a_hand_edited_config_that_breaks_a_cross_section_rule_is_refused_by_every_reader(
    tmp_path, capsys, edit, message
):
    config = tiny("learned-init")
    folder = save_pretrained(tmp_path / "model", config, build(config.model_name, config.model).init(None))
    saved = config_lib.to_dict(config)
    edit(saved)
    (folder / hub.CONFIG_NAME).write_text(json.dumps(saved))
    with pytest.raises(
        ModelFileError, match=f"(?s)config.json is not a valid ginr config: invalid configuration:.*{message}"
    ):
        hub.read_config(folder)
    assert re.search(message, refused(cli.parse_train_args, ["--init-from", str(folder)], capsys))
    assert re.search(message, refused(cli.parse_train_args, ["--resume", str(folder)], capsys))


def test_a_resumed_run_without_a_config_names_the_flag_and_what_to_give(tmp_path, capsys):
    err = refused(cli.parse_train_args, ["--resume", str(tmp_path)], capsys)
    assert err.startswith(
        f"error: --resume {tmp_path}: {tmp_path / 'config.json'} not found; give the folder of a ginr run"
    )


def test_loading_a_model_does_not_import_the_training_package():
    code = "import sys, ginr.hub; sys.exit(any(name.startswith('ginr.train') for name in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_refusals_turn_a_checkpoint_error_into_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info, cli.refusals():
        raise checkpoint.CheckpointError("step-00000004 does not fit")
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: step-00000004 does not fit\n"


# ---- the recipes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eval", "encode", "render", "reconstruct", "push_to_hub"])
def test_every_recipe_refuses_a_run_without_a_checkpoint(tmp_path, capsys, name):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000001" / "model").mkdir(parents=True)  # no manifest: an unfinished save
    (run / "config.json").write_text(config_lib.dumps(tiny()))
    module = recipe(name)
    args = {
        "eval": lambda: module.Args(model=str(run)),
        "encode": lambda: module.Args(model=str(run), out=str(tmp_path / "m.safetensors")),
        "render": lambda: module.Args(model=str(run), out=str(tmp_path / "out")),
        "reconstruct": lambda: module.Args(model=str(run), input=str(tmp_path), out=str(tmp_path / "out")),
        "push_to_hub": lambda: module.Args(run=str(run), repo_id="someone/tiny", dry_run=True),
    }[name]()
    err = refused(module.main, args, capsys)
    assert f"{run} is a run folder without a complete and intact checkpoint" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.safetensors").exists()


def test_encode_reads_a_run_folder(run, tmp_path):
    folder, weights = run
    encode = recipe("encode")
    encode.main(encode.Args(model=str(folder), out=str(tmp_path / "m.safetensors"), batch_size=3))
    assert load_file(str(tmp_path / "m.safetensors"))["psnr"].shape == (4,)  # the 4 held-out images


@pytest.mark.parametrize("name", ["eval", "encode"])
def test_eval_and_encode_refuse_missing_data(run, tmp_path, capsys, name):
    folder, _ = run
    module = recipe(name)
    extra = {"out": str(tmp_path / "m.safetensors")} if name == "encode" else {}
    err = refused(module.main, module.Args(model=str(folder), data_path=str(tmp_path / "nowhere"), **extra), capsys)
    assert f"{tmp_path / 'nowhere'}" in err


@pytest.mark.parametrize("name", ["eval", "encode"])
def test_eval_and_encode_refuse_an_out_file_they_cannot_write(tmp_path, capsys, name):
    config = tiny()
    folder = save_pretrained(tmp_path / "model", config, build(config.model_name, config.model).init(None))
    (tmp_path / "file").write_text("")
    module = recipe(name)
    err = refused(module.main, module.Args(model=str(folder), out=str(tmp_path / "file" / "m.json")), capsys)
    assert f"--out {tmp_path / 'file' / 'm.json'}: {tmp_path / 'file'} is a file, not a folder" in err


@pytest.mark.parametrize("name", ["eval", "encode"])
def test_inner_steps_for_a_hypernetwork_model_are_refused_naming_the_flag(tmp_path, capsys, name):
    config = tiny("ipc-transinr")
    folder = save_pretrained(tmp_path / "model", config, build(config.model_name, config.model).init(None))
    module = recipe(name)
    extra = {"out": str(tmp_path / "m.safetensors")} if name == "encode" else {}
    err = refused(module.main, module.Args(model=str(folder), n_steps=5, **extra), capsys)
    assert "--n-steps 5: ipc-transinr is a hypernetwork model (ipc-transinr, transinr)" in err
    assert "takes no inner steps; drop --n-steps" in err
