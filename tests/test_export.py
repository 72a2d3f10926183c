"""The labelled export of modulations (recipes/encode.py --out DIR) and reading it back (ginr.downstream)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import datasets
import pytest
import torch
from conftest import IMAGENETTE_LABELS, write_imagenette_parquet
from test_inference import saved_model, tiny
from test_nerf import tiny_config

import ginr
from ginr import downstream, inference
from ginr.config import DataConfig
from ginr.data import describe_split, eval_dataset
from ginr.data.hub import PARQUET_EXPORT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import encode as encode_recipe  # noqa: E402


def export(tmp_path: Path, config: ginr.Config, **args) -> tuple[datasets.DatasetDict, dict, Path]:
    folder = saved_model(tmp_path, config)
    out = tmp_path / "export"
    encode_recipe.main(encode_recipe.Args(model=str(folder), out=str(out), **{"batch_size": 3, **args}))
    exported, meta = downstream.read_export(out)
    return exported, meta, folder


def test_export_round_trip_with_class_folders_as_labels(tmp_path, image_folder):
    data = DataConfig(source="imagefolder", path=str(image_folder), resolution=8)
    exported, meta, folder = export(tmp_path, tiny("ipc-meta", data))
    assert list(exported) == ["train", "validation"] and meta["splits"] == ["train", "validation"]
    features = exported["train"].features
    assert list(features) == ["index", "split", "source", "label", "modulation", "psnr"]
    assert features["index"] == datasets.Value("int64") and features["psnr"] == datasets.Value("float32")
    assert features["modulation"] == datasets.List(datasets.Value("float32"))
    assert features["label"] == datasets.ClassLabel(names=["class0", "class1"])
    assert meta["label_names"] == ["class0", "class1"] and meta["label_source"] == "class folders"
    assert meta["layers"] == {"1": [16, 16]} and meta["model"] == str(folder) and meta["config"]["data"]["resolution"]
    validation = exported["validation"]
    assert validation["index"] == [0, 1, 2, 3] and set(validation["split"]) == {"validation"}
    assert validation["label"] == [0, 0, 1, 1]  # class0/000.png, class0/002.png, class1/001.png, class1/003.png
    assert [Path(source).parent.name for source in validation["source"]] == ["class0", "class0", "class1", "class1"]
    loaded = ginr.from_pretrained(folder)
    row = validation[2]
    signal = eval_dataset(data, "validation")[row["index"]][None]
    expected = inference.encode(loaded.model, loaded.params, signal, data.coord_range).modulation
    torch.testing.assert_close(downstream.unflatten_modulation(row["modulation"], meta["layers"]), expected)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "read_export" in b]
    namespace = {}
    exec(snippet.replace("exports/<run>", str(tmp_path / "export")).replace("runs/<run>", str(folder)), namespace)
    assert namespace["label"] == "class0" and namespace["image"].shape == (1, 64, 64, 3)


def test_unflatten_modulation_refuses_a_vector_of_another_length():
    with pytest.raises(ValueError, match="a modulation of 5 values, but the layers"):
        downstream.unflatten_modulation([0.0] * 5, {"1": [2, 2]})
    batch = downstream.unflatten_modulation(torch.arange(8.0).view(2, 4), {"a.b": [2], "c": [2]})
    assert torch.equal(batch["a"]["b"], torch.tensor([[0.0, 1], [4, 5]])) and batch["c"].shape == (2, 2)


def test_a_folder_without_class_folders_exports_no_label(tmp_path, audio_folder):
    assert describe_split(DataConfig(source="audiofolder", path=str(audio_folder)), "train").labels is None


def test_a_hub_dataset_labels_rows_by_its_class_label_column(tmp_path):
    root = str(write_imagenette_parquet(tmp_path / "hub"))
    config = DataConfig(source="hub", path=root, hub_config="320px", hub_revision=PARQUET_EXPORT)
    rows = describe_split(config, "train")
    assert rows.labels == [0, 2, 1, 0] and rows.label_names == IMAGENETTE_LABELS
    assert rows.label_source == "hub column label" and rows.sources[1] == "train_01.JPEG"


def test_the_photos_export_labels_tiles_by_their_photo(tmp_path):
    exported, meta, _ = export(tmp_path, tiny("ipc-meta", DataConfig()), split="validation", n_steps=0, batch_size=64)
    assert list(exported) == ["validation"] and meta["label_source"] == "photo of origin"
    rows = exported["validation"]
    names = rows.features["label"].names
    assert names == meta["label_names"] and len(names) == 9  # every photo, so train and validation labels agree
    photos = [names[label] for label in rows["label"]]
    assert set(photos) == {"chelsea.png", "rocket.jpg"}
    assert rows["source"][0] == "chelsea.png#0" and rows["source"][photos.index("rocket.jpg")] == "rocket.jpg#0"
    assert all(source.startswith(photo + "#") for source, photo in zip(rows["source"], photos, strict=True))


def test_a_nerf_exports_one_row_per_object(tmp_path, shapenet_folder):
    config = tiny_config(shapenet_folder)
    exported, meta, folder = export(tmp_path, config)
    assert meta["splits"] == ["train", "test"] and meta["label_names"] is None
    test = exported["test"]
    assert test["source"] == ["e0", "e1"] and test["index"] == [0, 1]
    assert list(test.features) == ["index", "split", "source", "modulation"]  # no label, no psnr
    loaded = ginr.from_pretrained(folder)
    support = {k: v[None] for k, v in eval_dataset(config.data, "test")[1]["support"].items()}
    expected = loaded.model.encode(inference.detached(loaded.params), support, None, training=False).modulation
    torch.testing.assert_close(downstream.unflatten_modulation(test[1]["modulation"], meta["layers"]), expected)


def test_a_safetensors_out_still_refuses_a_nerf(tmp_path, shapenet_folder, capsys):
    folder = saved_model(tmp_path, tiny_config(shapenet_folder))
    with pytest.raises(SystemExit):
        encode_recipe.main(encode_recipe.Args(model=str(folder), out=str(tmp_path / "m.safetensors")))
    assert "is a NeRF" in capsys.readouterr().err
