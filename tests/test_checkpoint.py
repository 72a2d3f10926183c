"""Checkpoints (atomic, verified, resumable) and model folders (strict safetensors + JSON)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from accelerate import Accelerator

from ginr import config as config_lib
from ginr import from_pretrained, presets, save_pretrained
from ginr.coords import grid
from ginr.hub import ModelFileError
from ginr.models import build
from ginr.module import ParamsModule
from ginr.pytree import flatten
from ginr.train import checkpoint
from ginr.train.checkpoint import CheckpointError


def tiny_config(rank: int = 8):
    config = presets.resolve("ipc-meta", "photos")
    hyponet = dataclasses.replace(
        config.model.hyponet, hidden_dim=(8,), fourier=dataclasses.replace(config.model.hyponet.fourier, dim=4)
    )
    return dataclasses.replace(config, model=dataclasses.replace(config.model, hyponet=hyponet, rank=(rank,)))


def make_run(seed: int = 0, rank: int = 8):
    config = tiny_config(rank)
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
    state = {"num_processes": 1, "eval_history": []}
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
    state, ema = checkpoint.restore(
        checkpoint.latest(tmp_path), accelerator=accelerator, module=fresh, optimizer=fresh_optimizer
    )
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
        checkpoint.restore(newest, accelerator=accelerator, module=fresh, optimizer=fresh_optimizer)
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
    other = tiny_config(rank=4)
    (tmp_path / "config.json").write_text(config_lib.dumps(other))
    with pytest.raises(ModelFileError, match=r"does not match its config: shape mismatches \['factors.init.1"):
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
