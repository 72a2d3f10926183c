"""How well an export's modulations predict its labels, beside the raw signals and a random model's modulations.

    python recipes/encode.py runs/<run> --out exports/photos
    python recipes/probe.py exports/photos --pca 64 --out probe.json

Trains the probes of :mod:`ginr.probe` (logistic regression, a one-hidden-layer MLP, a nearest-neighbour vote) on the
training split's instances and scores them on held-out instances, for three feature sets measured the same way: the
export's modulations, the raw pixels (or samples) of the same instances and the modulations of a randomly initialised
model of the same config. The held-out instances are the export's held-out split when it has labels the training
split knows; otherwise (the embedded photos hold out other photographs) a seeded, stratified split of the training
instances. Prints one table and writes one JSON.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import torch
import tyro

from ginr import cli, inference, models, paths
from ginr import config as config_lib
from ginr.data import eval_dataset
from ginr.downstream import flatten_modulation, read_export
from ginr.probe import PROBES, probe_accuracies, stratified_split


@dataclasses.dataclass
class Args:
    export: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="EXPORT")]
    """An export folder written by ``recipes/encode.py RUN --out DIR``."""
    out: str | None = None
    """The JSON file to write; None: EXPORT/probe.json."""
    pca: int | None = None
    """Project the standardised features on their first K principal components (fitted on the training instances)."""
    seed: int = 0
    """Seed of the stratified split, the MLP's initialisation and the random model."""
    test_fraction: float = 0.25
    """Held-out fraction of each class when the test instances come from the training split."""
    knn: int = 1
    """Neighbours that vote in the nearest-neighbour probe."""
    knn_metric: str = "cosine"
    """cosine or euclidean (on the standardised features)."""
    data_path: str | None = None
    """Where the data lives, if not where the export's config says (for the baselines' signals)."""
    batch_size: int = 64
    """Instances per batch when the random model encodes them."""


@dataclasses.dataclass(frozen=True)
class Part:
    """Instances of one export split used as the training or the test part: their rows and labels."""

    split: str
    rows: torch.Tensor
    labels: torch.Tensor


def split_parts(exported, train_split: str, eval_split: str, test_fraction: float, seed: int) -> tuple[Part, Part, str]:
    """The (train, test) parts and how the test part was chosen: the export's ``eval_split`` when it is there with
    labels the training split has, else a seeded, stratified split of ``train_split``."""
    train_labels = torch.tensor(exported[train_split]["label"])
    if eval_split in exported and eval_split != train_split:
        eval_labels = torch.tensor(exported[eval_split]["label"])
        if set(eval_labels.tolist()) <= set(train_labels.tolist()):
            everything = torch.arange(len(train_labels))
            test = Part(eval_split, torch.arange(len(eval_labels)), eval_labels)
            return Part(train_split, everything, train_labels), test, f"the export's {eval_split!r} split"
    train_rows, test_rows = stratified_split(train_labels, test_fraction, seed)
    how = f"a stratified {test_fraction:g} of {train_split!r} (seed {seed}; {eval_split!r} holds classes {train_split!r} lacks)"
    return (
        Part(train_split, train_rows, train_labels[train_rows]),
        Part(train_split, test_rows, train_labels[test_rows]),
        how,
    )


def modulations(exported, part: Part) -> torch.Tensor:
    """The exported flat modulations (N, D) of ``part``'s rows."""
    column = exported[part.split].with_format("torch", columns=["modulation"])
    return column[part.rows]["modulation"].float()


def signals(exported, part: Part, dataset) -> torch.Tensor:
    """The signals (N, *S, C) of ``part``'s instances in ``dataset`` (the evaluation dataset of ``part.split``), where
    the export's ``index`` column places them."""
    indices = exported[part.split][part.rows.tolist()]["index"]
    return torch.stack([dataset[i] for i in indices])


def random_modulations(config: config_lib.Config, signal: torch.Tensor, seed: int, batch_size: int) -> torch.Tensor:
    """Flat modulations (N, D) of ``signal`` encoded by a model of ``config`` initialised from ``seed`` (untrained)."""
    model = models.build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(seed))
    flat = []
    for batch in signal.split(batch_size):
        modulation = inference.encode(model, params, batch, config.data.coord_range).modulation
        flat.append(flatten_modulation(modulation))
    return torch.cat(flat)


def table(results: dict[str, dict[str, float]], chance: float) -> str:
    """The accuracies as a Markdown table, one row per feature set, one column per probe."""
    lines = ["| features | " + " | ".join(PROBES) + " |", "|---" * (len(PROBES) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{acc[p]:.3f}" for p in PROBES) + " |" for name, acc in results.items()]
    return "\n".join(lines + [f"(chance: {chance:.3f})"])


def main(args: Args) -> None:
    with cli.refusals():
        exported, meta = read_export(args.export)
        if not meta.get("label_names"):
            raise ValueError(f"{args.export} has no labels to probe (its data has none: label_source is null)")
        config = config_lib.from_dict(meta["config"], models.model_config_type)
        data = cli.with_data_path(config.data, args.data_path)
        out = args.out or str(Path(args.export) / "probe.json")
        paths.writable_file(out, "--out")
        train, test, test_source = split_parts(
            exported, data.train_split, data.eval_split, args.test_fraction, args.seed
        )
        datasets = {split: eval_dataset(data, split) for split in {train.split, test.split}}
        train_signal, test_signal = (signals(exported, part, datasets[part.split]) for part in (train, test))
    n_classes = len(meta["label_names"])
    features = {
        "modulations": (modulations(exported, train), modulations(exported, test)),
        "pixels": (train_signal.flatten(1), test_signal.flatten(1)),
        "random-init modulations": tuple(
            random_modulations(config, s, args.seed, args.batch_size) for s in (train_signal, test_signal)
        ),
    }
    results = {}
    with cli.refusals():
        for name, (train_x, test_x) in features.items():
            results[name] = probe_accuracies(
                train_x, train.labels, test_x, test.labels, n_classes,
                pca=args.pca, seed=args.seed, knn=args.knn, knn_metric=args.knn_metric,
            )  # fmt: skip
    chance = float(torch.bincount(test.labels, minlength=n_classes).max()) / len(test.labels)
    classes = len(torch.unique(train.labels))
    print(f"{len(train.rows)} training and {len(test.rows)} test instances of {classes} classes; test: {test_source}")
    print(table(results, chance))
    report = {
        "export": args.export,
        "label_source": meta.get("label_source"),
        "test": test_source,
        "train_instances": len(train.rows),
        "test_instances": len(test.rows),
        "classes": classes,
        "majority_class_accuracy": chance,
        "pca": args.pca,
        "seed": args.seed,
        "accuracy": results,
    }
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main(tyro.cli(Args))
