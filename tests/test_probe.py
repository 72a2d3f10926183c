"""Probes (ginr.probe, recipes/probe.py): separable features are learned, shuffled labels are not, the split keeps the
classes' proportions, PCA reconstructs, and the recipe runs end to end on a tiny export written in the export format."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import datasets
import pytest
import torch

from ginr import config as config_lib
from ginr import inference, models
from ginr.data import eval_dataset
from ginr.downstream import META_FILE
from ginr.probe import (
    PCA,
    PROBES,
    Standardiser,
    nearest_neighbour,
    probe_accuracies,
    stratified_split,
    train_linear,
)
from ginr.pytree import flatten
from tests.conftest import tiny_meta_config, write_image_folder


def blobs(n_per_class: int, n_classes: int = 3, dim: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs: class ``c`` around its own random centre (well apart), unit noise."""
    generator = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(123))
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=generator), labels


def test_separable_blobs_are_learned_by_every_probe():
    train, train_labels = blobs(30, seed=0)
    test, test_labels = blobs(20, seed=1)
    accuracies = probe_accuracies(train, train_labels, test, test_labels, 3)
    assert set(accuracies) == set(PROBES)
    assert all(acc > 0.9 for acc in accuracies.values()), accuracies
    assert probe_accuracies(train, train_labels, test, test_labels, 3, pca=5)["linear"] > 0.9


def test_shuffled_labels_stay_at_chance():
    train, train_labels = blobs(100, n_classes=2, seed=0)
    test, test_labels = blobs(100, n_classes=2, seed=1)
    shuffle = torch.Generator().manual_seed(7)
    train_labels = train_labels[torch.randperm(len(train_labels), generator=shuffle)]
    test_labels = test_labels[torch.randperm(len(test_labels), generator=shuffle)]
    accuracies = probe_accuracies(train, train_labels, test, test_labels, 2)
    assert all(abs(acc - 0.5) < 0.15 for acc in accuracies.values()), accuracies  # 4 sigma of 200 coin flips


def test_probes_are_deterministic():
    train, train_labels = blobs(10, seed=0)
    test, test_labels = blobs(10, seed=1)
    first = probe_accuracies(train, train_labels, test, test_labels, 3, seed=3)
    assert probe_accuracies(train, train_labels, test, test_labels, 3, seed=3) == first


def test_stratified_split_keeps_class_proportions():
    labels = torch.tensor([0] * 40 + [1] * 20 + [2] * 8 + [3] * 1)
    train, test = stratified_split(labels, 0.25, seed=0)
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(len(labels)))  # a partition
    assert torch.bincount(labels[test], minlength=4).tolist() == [10, 5, 2, 0]  # a lone instance stays in training
    assert torch.equal(stratified_split(labels, 0.25, seed=0)[1], test)
    assert not torch.equal(stratified_split(labels, 0.25, seed=1)[1], test)
    with pytest.raises(ValueError, match="--test-fraction"):
        stratified_split(labels, 1.0, seed=0)


def test_pca_reconstructs_data_of_its_rank_and_refuses_too_many_components():
    generator = torch.Generator().manual_seed(0)
    low_rank = torch.randn(50, 3, generator=generator) @ torch.randn(3, 12, generator=generator) + 5
    pca = PCA.fit(low_rank, 3)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(pca.inverse(pca(low_rank)), low_rank, atol=1e-4, rtol=0)
    one = PCA.fit(low_rank, 1)
    assert (one.inverse(one(low_rank)) - low_rank).abs().max() > 0.1  # one component is not enough
    with pytest.raises(ValueError, match="--pca 13"):
        PCA.fit(low_rank, 13)


def test_standardiser_uses_the_fitted_statistics_and_zeroes_constant_dimensions():
    features = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    scale = Standardiser.fit(features)
    assert scale(features).tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    assert scale(torch.tensor([[5.0, 6.0]])).tolist() == [[3.0, 1.0]]


def test_nearest_neighbour_votes_for_the_nearest_label():
    bank, labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]]), torch.tensor([0, 1, 1])
    query = torch.tensor([[0.9, 0.1], [0.2, 1.0]])
    assert nearest_neighbour(bank, labels, 2)(query).argmax(1).tolist() == [0, 1]
    assert nearest_neighbour(bank, labels, 2, k=3, metric="euclidean")(query).argmax(1).tolist() == [1, 1]


# ---- the recipe on a tiny export ------------------------------------------------------------------------------------


def write_export(folder: Path, images: Path, eval_labels: list[int] | None = None) -> Path:
    """An export in the format of recipes/encode.py --out DIR, of a random tiny model on ``images`` (labels: the
    instance's parity; ``eval_labels`` replaces the validation split's)."""
    base = tiny_meta_config()
    config = dataclasses.replace(
        base, data=dataclasses.replace(base.data, source="imagefolder", path=str(images), resolution=8)
    )
    model = models.build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(1))
    splits, layers = {}, {}
    for split in ("train", "validation"):
        dataset = eval_dataset(config.data, split)
        signal = torch.stack([dataset[i] for i in range(len(dataset))])
        modulation = flatten(inference.encode(model, params, signal, config.data.coord_range).modulation)
        layers = {name: list(value.shape[1:]) for name, value in modulation.items()}
        labels = [i % 2 for i in range(len(dataset))] if split == "train" or eval_labels is None else eval_labels
        splits[split] = datasets.Dataset.from_dict(
            {
                "index": list(range(len(dataset))),
                "split": [split] * len(dataset),
                "source": [f"{split}/{i}.png" for i in range(len(dataset))],
                "label": labels,
                "modulation": torch.cat([v.flatten(1) for v in modulation.values()], 1).tolist(),
                "psnr": [20.0] * len(dataset),
            },
            features=datasets.Features(
                {
                    "index": datasets.Value("int64"),
                    "split": datasets.Value("string"),
                    "source": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["class0", "class1", "other"]),
                    "modulation": datasets.Sequence(datasets.Value("float32")),
                    "psnr": datasets.Value("float32"),
                }
            ),
        )
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    meta = {
        "model": "tiny",
        "config": config_lib.to_dict(config),
        "layers": layers,
        "label_names": ["class0", "class1", "other"],
        "label_source": "class folders",
        "splits": list(splits),
    }
    (folder / META_FILE).write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def probe_main():
    spec = importlib.util.spec_from_file_location("probe_recipe", Path(__file__).parents[1] / "recipes" / "probe.py")
    recipe = sys.modules["probe_recipe"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return lambda *argv: recipe.main(recipe.tyro.cli(recipe.Args, args=list(argv)))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), n_train=24, n_eval=8, size=8)


def test_recipe_probes_the_held_out_split_when_its_labels_are_known(probe_main, images, tmp_path, capsys):
    export = write_export(tmp_path / "export", images)
    probe_main(str(export), "--pca", "4")
    report = json.loads((export / "probe.json").read_text())
    assert (report["test"], report["train_instances"], report["test_instances"]) == (
        "the export's 'validation' split",
        24,
        8,
    )
    assert set(report["accuracy"]) == {"modulations", "pixels", "random-init modulations"}
    assert all(set(acc) == set(PROBES) for acc in report["accuracy"].values())
    assert "| modulations |" in capsys.readouterr().out


def test_recipe_splits_the_training_instances_when_the_held_out_labels_are_new(probe_main, images, tmp_path):
    export = write_export(tmp_path / "export", images, eval_labels=[2] * 8)  # a class the training split never has
    probe_main(str(export), "--out", str(tmp_path / "probe.json"), "--seed", "1")
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["test"].startswith("a stratified 0.25 of 'train' (seed 1;")
    assert (report["train_instances"], report["test_instances"]) == (18, 6)


def test_recipe_refuses_an_export_without_labels(probe_main, images, tmp_path, capsys):
    export = write_export(tmp_path / "export", images)
    meta = json.loads((export / META_FILE).read_text())
    (export / META_FILE).write_text(json.dumps({**meta, "label_names": None, "label_source": None}))
    with pytest.raises(SystemExit) as exit_info:
        probe_main(str(export))
    assert exit_info.value.code == 2
    assert "has no labels" in capsys.readouterr().err


def test_the_training_span_gives_the_linear_probe_the_same_predictions_with_fewer_dimensions():
    """More dimensions than training instances: the L2-penalised linear probe's weights lie in the training
    instances' span, so fitting it there (what probe_accuracies does) predicts as on the full features."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (120,), generator=generator)
    features = torch.randn(3, 3000, generator=generator)[labels] * 0.05 + torch.randn(120, 3000, generator=generator)
    scale = Standardiser.fit(features[:90])
    train, test = scale(features[:90]), scale(features[90:])
    span = PCA.fit(train, 90)
    assert span(train).shape == (90, 90)
    full = train_linear(train, labels[:90], 3)(test)
    small = train_linear(span(train), labels[:90], 3)(span(test))
    assert torch.equal(full.argmax(1), small.argmax(1))
    torch.testing.assert_close(full, small, atol=2e-2, rtol=0)
