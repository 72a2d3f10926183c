"""Checkpoints (atomic, verified, resumable) and model folders (strict safetensors + JSON)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_meta_config
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ginr import config as config_lib
from ginr import from_pretrained, save_pretrained
from ginr.coords import grid
from ginr.hub import ModelFileError
from ginr.models import build
from ginr.module import ParamsModule
from ginr.pytree import flatten, tree_map
from ginr.train import checkpoint
from ginr.train.checkpoint import CheckpointError


def make_run(seed: int = 0, rank: int = 8):
    config = tiny_meta_config(rank=rank)
    model = build(config.model_name, config.model)
    module = ParamsModule(model, model.init(torch.Generator().manual_seed(seed)))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    return config, model, module, optimizer


def take_step(model, module, optimizer):
    signal = torch.rand(2, 4, 4, 3, generator=torch.Generator().manual_seed(5))
    coords = grid((4, 4))
    params = module.tree()
    enc = model.encode(params, signal, coords, training=True)
    loss = (model.decode(params, enc.modulation, coords.flatten(0, 1)) - signal.flatten(1, 2)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def save(run_dir, step, config, module, optimizer, accelerator, keep=3):
    state = {"num_processes": 1, "global_batch": 2, "eval_history": []}
    return checkpoint.save(
        run_dir,
        step,
        accelerator=accelerator,
        config=config,
        params=module.tree(),
        optimizer=optimizer,
        trainer_state=state,
        keep=keep,
    )


def restore(folder, accelerator, module, optimizer, global_batch=2):
    return checkpoint.restore(
        folder, accelerator=accelerator, module=module, optimizer=optimizer, global_batch=global_batch
    )


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def test_save_restore_round_trip(tmp_path, accelerator):
    config, model, module, optimizer = make_run()
    take_step(model, module, optimizer)
    folder = save(tmp_path, 1, config, module, optimizer, accelerator)
    expected_next = torch.rand(5)  # the RNG stream right after the save
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"model/model.safetensors", "model/config.json", "optimizer.safetensors", "rng-0.safetensors"} <= set(
        manifest["files"]
    )

    _, _, fresh, fresh_optimizer = make_run(seed=1)
    state, ema = restore(checkpoint.latest(tmp_path), accelerator, fresh, fresh_optimizer)
    assert state["step"] == 1 and ema is None
    assert torch.equal(torch.rand(5), expected_next)
    for (name, a), (_, b) in zip(module.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    for p, q in zip(module.parameters(), fresh.parameters()):
        a, b = optimizer.state[p], fresh_optimizer.state[q]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    take_step(model, module, optimizer)
    take_step(model, fresh, fresh_optimizer)
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), fresh.parameters()))


def test_tampered_checkpoint_is_refused_and_skipped(tmp_path, accelerator):
    config, model, module, optimizer = make_run()
    save(tmp_path, 1, config, module, optimizer, accelerator)
    newest = save(tmp_path, 2, config, module, optimizer, accelerator)
    weights = newest / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        checkpoint.verify(newest)
    assert checkpoint.latest(tmp_path).name == "step-00000001"
    _, _, fresh, fresh_optimizer = make_run(seed=1)
    before = [p.clone() for p in fresh.parameters()]
    with pytest.raises(CheckpointError):
        restore(newest, accelerator, fresh, fresh_optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.parameters()))  # nothing changed


def test_partial_folder_is_ignored_and_pruning_keeps_the_newest(tmp_path, accelerator):
    config, model, module, optimizer = make_run()
    for step in (1, 2, 3):
        save(tmp_path, step, config, module, optimizer, accelerator, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000003"]
    (tmp_path / "checkpoints" / "step-00000009").mkdir()  # a folder without manifest (killed mid-save elsewhere)
    assert checkpoint.latest(tmp_path).name == "step-00000003"


def test_model_folder_round_trip(tmp_path):
    config, model, module, _ = make_run()
    save_pretrained(tmp_path, config, module.tree())
    loaded = from_pretrained(tmp_path)
    assert loaded.config == config
    signal, coords = torch.rand(2, 4, 4, 3), grid((4, 4))
    outputs = []
    for params in (module.tree(), loaded.params):
        enc = loaded.model.encode(params, signal, coords, training=False)
        outputs.append(loaded.model.decode(params, enc.modulation, coords.flatten(0, 1)))
    assert torch.equal(outputs[0].detach(), outputs[1].detach())
    assert {k for k, v in flatten(loaded.params).items() if not v.requires_grad} == {"hyponet.fourier.frequencies"}


def test_model_folder_mismatch_and_corruption_are_refused(tmp_path):
    config, _, module, _ = make_run(rank=8)
    save_pretrained(tmp_path, config, module.tree())
    other = tiny_meta_config(rank=4)
    (tmp_path / "config.json").write_text(config_lib.dumps(other))
    with pytest.raises(
        ModelFileError, match=r"does not match the model built from its config.json: shape mismatches \['factors.init.1"
    ):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(config_lib.dumps(config))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelFileError, match="config.json is missing"):
        from_pretrained(tmp_path)


def test_from_pretrained_reads_the_hub_cache_offline(tmp_path, monkeypatch):
    """A repo id resolves through the local Hugging Face cache layout with HF_HUB_OFFLINE=1."""
    config, _, module, _ = make_run()
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--someone--ginr-tiny" / "snapshots" / commit
    save_pretrained(snapshot, config, module.tree())
    refs = cache / "models--someone--ginr-tiny" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    loaded = from_pretrained("someone/ginr-tiny")
    expected = flatten(module.tree())
    assert flatten(loaded.params).keys() == expected.keys()
    assert all(torch.equal(value, expected[name].detach()) for name, value in flatten(loaded.params).items())
    with pytest.raises(ModelFileError, match="neither a local folder nor a valid Hub repo id"):
        from_pretrained("not a repo//id")
    (tmp_path / "runs" / "ipc-meta_photos_1").mkdir(parents=True)
    with pytest.raises(ModelFileError) as error:  # reads as a Hub id too, but its folder is here: a typo
        from_pretrained(tmp_path / "runs" / "ipc-meta_photo_1")
    assert str(error.value) == (
        f"{tmp_path / 'runs' / 'ipc-meta_photo_1'}: no such folder in {tmp_path / 'runs'}; the closest there: "
        "ipc-meta_photos_1 (nor a valid Hub repo id)"
    )
    (tmp_path / "runs" / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"weights.safetensors is a file, not a model folder; give the folder"):
        from_pretrained(tmp_path / "runs" / "weights.safetensors")


# ---- bad checkpoints change nothing ------------------------------------------------------------------------------


def snapshot(module, optimizer) -> tuple:
    """Everything a restore could change: the weights, the optimizer state and the RNG."""
    return {k: v.clone() for k, v in module.state_dict().items()}, copy.deepcopy(optimizer.state_dict()), rng_now()


def rng_now():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_unchanged(before, module, optimizer) -> None:
    weights, optimizer_state, rng = before
    assert all(torch.equal(weights[k], v) for k, v in module.state_dict().items())
    now = optimizer.state_dict()
    assert now["param_groups"] == optimizer_state["param_groups"]
    for index, entries in optimizer_state["state"].items():
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(now["state"][index][k])) for k, v in entries.items())
    torch_rng, numpy_rng, python_rng = rng_now()
    assert torch.equal(torch_rng, rng[0]) and (numpy_rng == rng[1]).all() and python_rng == rng[2]


def resign(folder) -> None:
    """Rewrite the manifest for the files as they are now: a consistent checkpoint that still does not fit."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def truncate(folder):
    path = folder / "optimizer.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def tamper(folder):
    path = folder / "trainer_state.json"
    path.write_text(path.read_text().replace('"step": 1', '"step": 7'))


def other_process_count(folder):
    path = folder / "trainer_state.json"
    path.write_text(path.read_text().replace('"num_processes": 1', '"num_processes": 2'))
    resign(folder)


def wrong_optimizer_shape(folder):
    path = folder / "optimizer.safetensors"
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.endswith("exp_avg"))
    tensors[key] = torch.zeros(3, 3)
    save_file(tensors, str(path))
    resign(folder)


@pytest.mark.parametrize(
    "fault, rank, global_batch, message",
    [
        (truncate, 8, 2, "optimizer.safetensors does not match its checksum in .*: truncated or modified"),
        (tamper, 8, 2, "trainer_state.json does not match its checksum"),
        (None, 4, 2, r"does not match the model built from this run's config: shape mismatches \['factors.init.1"),
        (other_process_count, 8, 2, "written with 2 process\\(es\\), this run has 1; resume with the same process"),
        (None, 8, 4, "written with 2 as global batch, this run has 4; resume with --train.batch-size 2"),
        (wrong_optimizer_shape, 8, 2, r"optimizer state \d+.exp_avg has shape \(3, 3\)"),
    ],
    ids=["truncated", "tampered", "other model", "process count", "global batch", "optimizer shape"],
)
def test_a_bad_checkpoint_is_refused_and_changes_nothing(tmp_path, accelerator, fault, rank, global_batch, message):
    config, model, module, optimizer = make_run(rank=rank)
    take_step(model, module, optimizer)
    folder = save(tmp_path, 1, config, module, optimizer, accelerator)
    if fault is not None:
        fault(folder)
    _, fresh_model, fresh, fresh_optimizer = make_run(seed=1)
    take_step(fresh_model, fresh, fresh_optimizer)  # optimizer state that a half-done restore would overwrite
    before = snapshot(fresh, fresh_optimizer)
    with pytest.raises(CheckpointError, match=message):
        restore(folder, accelerator, fresh, fresh_optimizer, global_batch=global_batch)
    assert_unchanged(before, fresh, fresh_optimizer)


@pytest.mark.parametrize(
    "failure",
    [
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors'
        OSError(28, "No space left on device"),  # a JSON file's
    ],
    ids=["safetensors", "os"],
)
def test_a_failed_write_leaves_no_partial_checkpoint_and_names_the_last_good_one(
    tmp_path, accelerator, monkeypatch, failure
):
    """A full disk (any I/O error while writing) is a CheckpointError on every process, naming the step, the cause and
    the last good checkpoint; nothing half-written stays and the earlier checkpoint is untouched."""
    config, _, module, optimizer = make_run()
    good = save(tmp_path, 1, config, module, optimizer, accelerator)
    before = {p.name: p.read_bytes() for p in good.rglob("*") if p.is_file()}
    write = checkpoint.save_file

    def full_disk(tensors, path, *args, **kwargs):
        if path.endswith("optimizer.safetensors"):
            raise failure
        return write(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(CheckpointError) as error:
        save(tmp_path, 2, config, module, optimizer, accelerator)
    assert str(error.value).startswith(f"could not write the checkpoint of step 2 in {tmp_path / 'checkpoints'} (")
    assert "No space left on device" in str(error.value) and str(good) in str(error.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [good.name]  # no partial folder left
    assert {p.name: p.read_bytes() for p in good.rglob("*") if p.is_file()} == before
    monkeypatch.setattr(checkpoint, "save_file", write)
    again = save(tmp_path, 2, config, module, optimizer, accelerator)  # with space again
    assert checkpoint.latest(tmp_path) == again


def test_non_finite_weights_are_never_checkpointed(tmp_path, accelerator):
    config, model, module, optimizer = make_run()
    save(tmp_path, 1, config, module, optimizer, accelerator, keep=1)
    with torch.no_grad():
        module.factors.init.get_parameter("1")[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"after step 2 are not finite \(factors.init.1\).*step-00000001"):
        save(tmp_path, 2, config, module, optimizer, accelerator, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000001"]


def test_pruning_keeps_the_checkpoint_just_written_over_a_bad_newer_one(tmp_path, accelerator, caplog):
    """Checkpoints 4 and 8, 8 corrupted: the run resumes from 4 and stops at 6 with keep 1. Pruning by step alone
    would keep only the corrupted 8; 6 must stay (and 8 is left for the run to overwrite)."""
    config, model, module, optimizer = make_run()
    for step in (4, 8):
        save(tmp_path, step, config, module, optimizer, accelerator, keep=2)
    tamper_bytes = tmp_path / "checkpoints" / "step-00000008" / "optimizer.json"
    tamper_bytes.write_text(tamper_bytes.read_text() + " ")
    with caplog.at_level(logging.WARNING):
        assert checkpoint.latest(tmp_path).name == "step-00000004"
    assert "passing over step-00000008" in caplog.text and "optimizer.json does not match its checksum" in caplog.text
    save(tmp_path, 6, config, module, optimizer, accelerator, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000006", "step-00000008"]
    assert checkpoint.latest(tmp_path).name == "step-00000006"


# ---- bad model folders -------------------------------------------------------------------------------------------


def test_model_folder_with_wrong_dtypes_or_non_finite_weights_is_refused(tmp_path):
    config, _, module, _ = make_run()
    save_pretrained(tmp_path, config, tree_map(lambda t: t.double(), module.tree()))
    with pytest.raises(ModelFileError, match=r"dtype mismatches \[.*file torch.float64 vs model torch.float32"):
        from_pretrained(tmp_path)
    params = tree_map(torch.Tensor.detach, module.tree())
    params["factors"]["init"]["1"] = params["factors"]["init"]["1"].clone().fill_(float("inf"))
    save_pretrained(tmp_path, config, params)
    with pytest.raises(ModelFileError, match=r"holds non-finite values \(NaN or inf\) in \['factors.init.1'\]"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["optim"].update(lr="fast"), r"optim.lr='fast': expected float"),
        (lambda c: c["model"].update(rank=[8.5]), r"model.rank\[0\]=8.5: expected int"),
        (lambda c: c["train"].update(precision="fp8"), r"train.precision='fp8': choose one of \['fp32', 'tf32'"),
        (lambda c: c["optim"].update(lr=-1.0), r"--optim.lr=-1.0: must be > 0"),
        (lambda c: c.update(model_name="siren"), r"unknown model 'siren'; choose one of: ipc-meta"),
        (
            lambda c: c.pop("model_name"),
            r"missing section\(s\) \['model_name'\]; a saved ginr config has every one of \['data', 'data_name'",
        ),
    ],
    ids=["string for a float", "float for an int", "unknown choice", "invalid value", "unknown model", "no model name"],
)
def test_model_folder_with_a_bad_config_is_refused(tmp_path, edit, message):
    config, _, module, _ = make_run()
    save_pretrained(tmp_path, config, module.tree())
    data = json.loads((tmp_path / "config.json").read_text())
    edit(data)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=r"(?s)config.json is not a valid ginr config: .*" + message):
        from_pretrained(tmp_path)


# ---- nothing is unpickled ----------------------------------------------------------------------------------------

PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def unpickling(source: str) -> list[str]:
    """Lines of ``source`` that could unpickle: pickle-like imports, ``torch.load`` without ``weights_only=True``,
    ``numpy.load`` with ``allow_pickle=True``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
            if any(m.split(".")[0] in PICKLERS for m in modules) or (modules == ["torch"] and "load" in names):
                found.append(f"line {node.lineno}: import")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = ast.unparse(node.func.value)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if owner == "torch" and keywords.get("weights_only") != "True":
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and keywords.get("allow_pickle") == "True":
                found.append(f"line {node.lineno}: numpy.load with allow_pickle=True")
    return found


def test_nothing_in_ginr_or_the_recipes_can_unpickle():
    assert unpickling("import pickle\nfrom torch import load\ntorch.load(f)\nnp.load(f, allow_pickle=True)") == [
        "line 1: import",
        "line 2: import",
        "line 3: torch.load without weights_only=True",
        "line 4: numpy.load with allow_pickle=True",
    ]
    assert unpickling("torch.load(f, weights_only=True)\nsafetensors.torch.load(data)") == []
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "ginr").rglob("*.py")) + sorted((root / "recipes").glob("*.py"))
    assert len(files) > 20
    for path in files:
        assert unpickling(path.read_text()) == [], path


def test_a_registered_model_of_your_own_saves_and_loads_like_the_shipped_ones(tmp_path, monkeypatch):
    """ginr.models.register: build, save_pretrained and from_pretrained know the new name; an unknown name is refused
    when saving (it could not be loaded back)."""
    from ginr import models
    from ginr.config import MetaINRConfig
    from ginr.models.meta import MetaINR

    class HalfStepMeta(MetaINR):
        def inner_lr_scale(self, factor):
            return 0.5

    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # registrations end with the test
    config, _, module, _ = make_run()
    custom = dataclasses.replace(config, model_name="half-step-meta")
    with pytest.raises(ValueError, match=r"unknown model 'half-step-meta'.*ginr.models.register it first"):
        save_pretrained(tmp_path / "unknown", custom, module.tree())
    models.register("half-step-meta", MetaINRConfig, HalfStepMeta)
    with pytest.raises(ValueError, match="already registered"):
        models.register("half-step-meta", MetaINRConfig, HalfStepMeta)
    save_pretrained(tmp_path / "model", custom, module.tree())
    loaded = from_pretrained(tmp_path / "model")
    assert type(loaded.model) is HalfStepMeta and loaded.config.model_name == "half-step-meta"
    assert flatten(loaded.params).keys() == flatten(module.tree()).keys()
    # the hook takes effect: one inner step moves the factor by 0.5 / ||V||^2 times the shipped model's step
    signal = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(3))
    start = loaded.params["factors"]["init"]["1"].detach()
    steps = {}
    for name, model in (("custom", loaded.model), ("shipped", build("ipc-meta", config.model))):
        with torch.enable_grad():
            encoding = model.encode(loaded.params, signal, grid((8, 8)), training=False, n_steps=1)
        steps[name] = start - encoding.modulation["1"].detach()
    assert steps["shipped"].abs().max() > 0
    torch.testing.assert_close(steps["custom"], steps["shipped"] * 0.5 / start.square().sum())
