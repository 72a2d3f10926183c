"""Inputs that once got through (issue 18): each is refused with one line naming it, or handled and documented."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import tiny_meta_config, write_image_folder
from PIL import Image

from ginr import config as config_lib
from ginr import hub, paths, presets, rules
from ginr.config import DataConfig
from ginr.data import BadFileError, audio, layouts, make_signals, signal_shape
from ginr.data.transforms import decode_image
from ginr.manifest import CheckpointError, verify
from ginr.models import build
from ginr.reference import from_reference, rules_for
from ginr.train import memory


def test_a_manifest_of_the_wrong_shape_or_with_paths_outside_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is not a ginr manifest"):
        verify(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"../x": {"bytes": 0, "sha256": "0"}}}))
    with pytest.raises(CheckpointError, match="'../x', a path outside the checkpoint folder"):
        verify(tmp_path)


@pytest.mark.parametrize(
    "section, field, flag", [("optim", "lr", "--optim.lr"), ("data", "coord_range", "--data.coord-range")]
)
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_non_finite_float_in_any_field_is_refused(section, field, flag, value):
    config = presets.resolve("ipc-meta", "photos")
    old = getattr(getattr(config, section), field)
    new = (old[0], value) if isinstance(old, tuple) else value
    config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{field: new})})
    with pytest.raises(ValueError, match=f"{flag}=.*must be a finite number"):
        rules.validate(config)


def test_infinity_in_a_saved_config_is_refused(tmp_path):
    data = config_lib.to_dict(presets.resolve("ipc-meta", "photos"))
    data["model"]["hyponet"]["fourier"]["sigma"] = math.inf
    (tmp_path / "config.json").write_text(json.dumps(data))  # json writes Infinity
    with pytest.raises(hub.ModelFileError, match="--model.hyponet.fourier.sigma=inf: must be a finite number"):
        hub.read_config(tmp_path)


def test_a_saved_config_without_a_section_is_refused_by_name(tmp_path):
    data = config_lib.to_dict(presets.resolve("ipc-meta", "photos"))
    del data["train"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(
        hub.ModelFileError, match=r"config.json is not a valid ginr config: missing section\(s\) \['train'\]"
    ):
        hub.read_config(tmp_path)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ""])
def test_a_run_name_must_be_one_folder_name(name):
    config = presets.resolve("ipc-meta", "photos")
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, run_name=name))
    with pytest.raises(ValueError, match="--train.run-name=.*must be one folder name"):
        rules.validate(config)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])  # PIL gives I;16 and I
def test_a_16_bit_grayscale_image_is_scaled_not_clipped(tmp_path, dtype):
    Image.fromarray(np.full((4, 4), 30000, dtype)).save(
        tmp_path / "deep.png" if dtype == np.uint16 else tmp_path / "deep.tif"
    )
    path = next(tmp_path.iterdir())
    assert np.asarray(decode_image({"path": str(path)})).tolist() == [[[117] * 3] * 4] * 4  # 30000 / 65535 * 255


def test_other_modes_become_rgb_and_a_float_image_outside_0_1_is_refused(tmp_path):
    for mode in ("LA", "P", "CMYK", "1"):
        Image.new(mode, (3, 3)).save(tmp_path / "x.tif")
        assert decode_image({"path": str(tmp_path / "x.tif")}).mode == "RGB"
    Image.fromarray(np.full((3, 3), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert np.asarray(decode_image({"path": str(tmp_path / "f.tif")}))[0, 0, 0] == 128
    Image.fromarray(np.full((3, 3), 200.0, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"must hold values in \[0, 1\]"):
        decode_image({"path": str(tmp_path / "f.tif")})


def test_a_symlink_loop_in_an_image_folder_adds_no_file(tmp_path):
    write_image_folder(tmp_path, n_train=3, n_eval=1)
    os.symlink(tmp_path / "train", tmp_path / "train" / "loop")  # train/loop/loop/... without end
    assert len(layouts.scan_splits(tmp_path, "image")["train"]) == 3


def test_a_truncated_or_out_of_range_wav_is_refused(tmp_path):
    samples = (np.sin(np.arange(800) / 5) * 0.5).astype(np.float32)
    soundfile.write(tmp_path / "whole.wav", samples, 8000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "whole.wav").read_bytes()[:60])
    soundfile.write(tmp_path / "loud.wav", samples * 1000, 8000, subtype="FLOAT")
    assert audio.decode({"path": str(tmp_path / "whole.wav")}, 8000).shape == (800,)
    with pytest.raises(ValueError, match="truncated: its header declares 1600 bytes of samples, the file holds 16"):
        audio.decode({"path": str(tmp_path / "cut.wav")}, 8000)
    with pytest.raises(ValueError, match=r"samples reach 500, far outside \[-1, 1\]"):
        audio.decode({"path": str(tmp_path / "loud.wav")}, 8000)


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_a_broken_file_is_found_before_training(tmp_path, kind):
    """The header pass of every split (no cache, no --data.skip-bad-files) names the file when the data is built."""
    bad = tmp_path / "train" / ("broken.png" if kind == "image" else "broken.wav")
    bad.parent.mkdir()
    if kind == "image":
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / "good.png")
        bad.write_bytes((tmp_path / "train" / "good.png").read_bytes()[:40])
    else:
        soundfile.write(tmp_path / "train" / "good.wav", np.zeros(80, np.float32), 8000)
        bad.write_bytes((tmp_path / "train" / "good.wav").read_bytes()[:50])
    split = layouts.scan_splits(tmp_path, kind)["train"]
    config = DataConfig(source=f"{kind}folder", path=str(tmp_path), resolution=4, sample_rate=8000)
    with pytest.raises(BadFileError, match=f"cannot use {bad}: .*1 unusable file"):
        make_signals(config, split, "train", training=True)


def test_a_reference_state_dict_with_a_non_tensor_or_nan_is_refused():
    config = tiny_meta_config()
    model = build(config.model_name, config.model)
    state = {rule.reference: torch.zeros(rule.shape) for rule in rules_for(model)}
    first = next(iter(state))
    with pytest.raises(ValueError, match=f"not tensors: \\['{first} \\(int\\)'\\]"):
        from_reference({**state, first: 3}, model)
    with pytest.raises(ValueError, match=f"non-finite values \\(NaN or inf\\) in \\['{first}'\\]"):
        from_reference({**state, first: torch.full(state[first].shape, math.nan)}, model)


def test_an_output_folder_in_the_way_of_a_file_or_read_only_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=f"--out {tmp_path / 'file' / 'm.json'}: {tmp_path / 'file'} is a file"):
        paths.writable_file(tmp_path / "file" / "m.json", "--out")
    with pytest.raises(ValueError, match="it is a folder; give the path of the file"):
        paths.writable_file(tmp_path, "--out")
    assert paths.writable_folder(tmp_path / "new" / "run", "--train.out-dir") == tmp_path / "new" / "run"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only filesystem answers (EROFS)
    with pytest.raises(ValueError, match=f"--resume {tmp_path}: {tmp_path} is not writable"):
        paths.writable_folder(tmp_path, "--resume")


def test_a_step_that_cannot_fit_is_refused_naming_the_levers():
    config = presets.resolve("ipc-meta", "photos")
    huge = dataclasses.replace(config, data=dataclasses.replace(config.data, resolution=100000))
    with pytest.raises(
        ValueError, match="one training step needs about .* GiB.*--train.grad-accumulation.*--data.resolution"
    ):
        memory.check_fits(huge, 16, torch.device("cpu"))
    memory.check_fits(config, 16, torch.device("cpu"))


def test_no_paper_preset_is_estimated_over_24_gb_at_its_own_batch():
    for model in ("ipc-meta", "learned-init", "ipc-transinr", "transinr"):
        for data in presets.DATA_NAMES:
            try:
                config = presets.resolve(model, data)
            except ValueError:
                continue
            assert signal_shape(config.data) is not None
            assert memory.step_bytes(config, config.train.batch_size) < 24e9, (model, data)


def test_a_refused_pickle_is_named_without_advice_to_unpickle_it(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    import import_reference

    torch.save({"state_dict": {"x": Path("p")}}, tmp_path / "p.pt")
    with pytest.raises(Exception) as refused:
        torch.load(tmp_path / "p.pt", weights_only=True)
    message = import_reference.load_failure(refused.value)
    assert "weights_only" not in message and "safe_globals" not in message and "\n" not in message
    assert message.startswith("it holds pickled objects other than tensors (Unsupported global: GLOBAL pathlib")
