"""Hugging Face datasets offline: local parquet folders and a snapshot in the Hub cache layout (HF_HUB_OFFLINE=1),
with the image or audio column decoded by ginr (no torchcodec, no FFmpeg)."""

from __future__ import annotations

import dataclasses
import shutil

import datasets
import huggingface_hub
import pytest
import torch
from conftest import red, utterance, write_imagenette_parquet, write_librispeech_parquet

from ginr.config import DataConfig
from ginr.data import catalog, eval_dataset, train_dataset
from ginr.data.hub import PARQUET_EXPORT


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    """Keep the datasets and Hub caches of these tests out of the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def _imagenette_hub(path: str) -> DataConfig:
    return dataclasses.replace(
        catalog.IMAGENETTE178,
        source="hub",
        path=path,
        hub_config="320px",
        hub_revision=PARQUET_EXPORT,
        resolution=8,
        num_workers=0,
    )


def test_local_parquet_export(tmp_path):
    config = _imagenette_hub(str(write_imagenette_parquet(tmp_path / "export")))
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (4, 2)
    assert [red(held_out[i]) for i in range(2)] == [10, 20]  # the copy's row order
    assert train.split.column_names == ["image"] and train.split[0]["image"]["path"] == "train_00.JPEG"
    crop = train[(1, 4)]  # random 8-px crop of a flat 24x20 image at native scale
    assert crop.shape == (8, 8, 3) and red(crop) == 20 and 0 <= crop.min() and crop.max() <= 1
    assert torch.equal(train[(1, 4)], crop)


def test_hub_id_offline_from_the_hub_cache_layout(tmp_path):
    """An id that ``hf download`` put in the Hub cache loads with HF_HUB_OFFLINE=1 (as conftest sets)."""
    assert huggingface_hub.constants.HF_HUB_OFFLINE
    repo = tmp_path / "hub-cache" / "datasets--frgfm--imagenette"
    commit = "0123456789abcdef0123456789abcdef01234567"
    write_imagenette_parquet(repo / "snapshots" / commit)
    (repo / "refs" / "refs" / "convert").mkdir(parents=True)
    (repo / "refs" / "refs" / "convert" / "parquet").write_text(commit)
    held_out = eval_dataset(_imagenette_hub("frgfm/imagenette"))
    assert len(held_out) == 2 and held_out[1].shape == (8, 8, 3) and red(held_out[1]) == 20
    shutil.rmtree(repo)
    with pytest.raises(
        FileNotFoundError,
        match=r"frgfm/imagenette is not in the local .*`hf download frgfm/imagenette --repo-type dataset --revision refs/convert/parquet`",
    ):
        eval_dataset(_imagenette_hub("frgfm/imagenette"))


def test_audio_from_parquet_is_decoded_with_soundfile(tmp_path):
    root = write_librispeech_parquet(tmp_path / "librispeech_asr")
    config = dataclasses.replace(
        catalog.DATA["librispeech1s"],
        source="hub",
        path=str(root),
        hub_config="clean",
        train_split="train.100",
        eval_split="test",
        num_workers=0,
    )
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (3, 2)
    clip = held_out[0][:, 0]  # 1089-134686-0000, 2 s: the first second survives the 1-s trim
    assert clip.shape == (16000,) and torch.allclose(
        clip, torch.from_numpy(utterance("1089-134686-0000", 2.0)[:16000]), atol=1e-4
    )
    assert train[(0, 3)].shape == (16000, 1)


def test_hub_mistakes_name_the_flag(tmp_path):
    root = str(write_imagenette_parquet(tmp_path / "export"))
    with pytest.raises(ValueError, match=r"--data.column=picture: .* no such column \(columns: \['image', 'label'\]\)"):
        eval_dataset(dataclasses.replace(_imagenette_hub(root), column="picture"))
    with pytest.raises(ValueError, match=r"--data.column=label: .* not an Image or Audio feature"):
        eval_dataset(dataclasses.replace(_imagenette_hub(root), column="label"))
    with pytest.raises(ValueError, match=r"--data.path=.*export \(config 320px\): .*test.* --data.eval-split"):
        eval_dataset(dataclasses.replace(_imagenette_hub(root), eval_split="test"))
    with pytest.raises(ValueError, match="--data.path is not set; pass a Hub dataset id"):
        eval_dataset(dataclasses.replace(_imagenette_hub(root), path=None))
