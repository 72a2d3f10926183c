"""The modulations of a data set, for downstream work (classification, generation, compression).

    python recipes/encode.py runs/<run> --out exports/<run>                  # every split, labelled, for `datasets`
    python recipes/encode.py user/ginr-celeba178 --split validation --data-path /data/celeba --out celeba.safetensors

An ``--out`` folder gets a Hugging Face ``DatasetDict`` (``datasets.load_from_disk``; read it with
:func:`ginr.downstream.read_export`): one split per data split (every split the run has, its training and evaluation
splits, or ``--split``), a row per instance with its ``index`` in :func:`ginr.data.eval_dataset`, ``split``,
``source``, ``label`` (where the data has labels, :func:`ginr.data.describe_split`), the flat ``modulation`` and the
reconstruction's ``psnr``; and ``ginr_export.json`` beside it (the model, config, layer shapes, label names). A NeRF
exports one row per object: the modulation of its support views in the first of the fixed evaluation draws (no
``psnr``: that would render every query view). Rows are streamed to disk batch by batch.

An ``--out`` ending in ``.safetensors`` writes one split (default: the held-out one) of a signal model:
``modulation.<layer>`` stacked over the split (N, ...), ``psnr`` (N,) and ``index`` (N,), with the model, split and
config as metadata.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import datasets
import torch
import tyro
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ginr import cli, downstream, from_pretrained, inference, metrics, paths, tasks
from ginr import config as config_lib
from ginr.data import (
    BadFileError,
    EvalBatchSampler,
    ShapeNetViews,
    Signals,
    SplitRows,
    describe_split,
    eval_dataset,
    is_views,
    make_loader,
)
from ginr.pytree import flatten


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL")]
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id."""
    out: str
    """The export folder to write (a ``datasets.DatasetDict``), or a file ending in .safetensors."""
    split: str | None = None
    """Split to encode; None: every split (the run's training and evaluation splits) for an export folder, the
    held-out split for a .safetensors file."""
    data_path: str | None = None
    """Where the data lives, if not where the model was trained from."""
    n_steps: int | None = None
    """Inner steps (meta-learned models); None: the config's."""
    batch_size: int = 16
    """Instances per batch."""
    revision: str | None = None
    """Hub revision when MODEL is a repo id."""


Batches = Iterator[tuple[dict, torch.Tensor | None]]
"""Each batch's modulation (leaves (B, ...)) and its instances' reconstruction PSNR (B,) (None for a NeRF)."""


def signal_batches(loaded, data: config_lib.DataConfig, dataset: Signals, args: Args, desc: str) -> Batches:
    """Every instance of ``dataset`` encoded in order, with the PSNR of its reconstruction on its own grid."""
    loader = make_loader(dataset, EvalBatchSampler(len(dataset), args.batch_size, 1, 0), data.num_workers)
    with cli.refusals(1, (BadFileError,)):  # a data file that cannot be read, found while encoding
        for signal in tqdm(loader, desc=desc):
            modulation = inference.encode(
                loaded.model, loaded.params, signal, data.coord_range, args.n_steps
            ).modulation
            shape = tuple(signal.shape[1:-1])
            pred = inference.decode(loaded.model, loaded.params, modulation, shape, data.coord_range)
            yield modulation, metrics.psnr(metrics.mse_per_sample(pred, signal))


@torch.no_grad()
def object_batches(loaded, data: config_lib.DataConfig, dataset: ShapeNetViews, args: Args, desc: str) -> Batches:
    """Every object of ``dataset`` encoded in order from the support views of its first evaluation draw (item ``i``
    of the evaluation list is object ``i``'s first draw)."""
    sampler = EvalBatchSampler(len(dataset.objects), args.batch_size, 1, 0)
    params = inference.detached(loaded.params)
    with cli.refusals(1, (BadFileError,)):
        for batch in tqdm(make_loader(dataset, sampler, data.num_workers), desc=desc):
            yield loaded.model.encode(params, batch["support"], None, training=False).modulation, None


def main(args: Args) -> None:
    if args.out.endswith(".safetensors"):
        write_safetensors(args)
    else:
        write_export(args)


def write_safetensors(args: Args) -> None:
    """One split of a signal model's modulations, stacked per layer, in a safetensors file."""
    with cli.refusals():
        loaded = from_pretrained(args.model, revision=args.revision)
        tasks.require_signals(loaded.config, args.model)
        cli.check_inner_steps(loaded.config, args.n_steps)
        paths.writable_file(args.out, "--out")
        data = cli.with_data_path(loaded.config.data, args.data_path)
        dataset = eval_dataset(data, args.split)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[torch.Tensor]] = {}
    psnrs = []
    for modulation, psnr in signal_batches(loaded, data, dataset, args, "encoding"):
        psnrs.append(psnr)
        for name, value in flatten(modulation).items():
            parts.setdefault(f"modulation.{name}", []).append(value)
    tensors = {name: torch.cat(values).contiguous() for name, values in parts.items()}
    tensors["psnr"] = torch.cat(psnrs)
    tensors["index"] = torch.arange(len(dataset))
    metadata = {"model": args.model, "split": args.split or data.eval_split, "config": config_lib.dumps(loaded.config)}
    save_file(tensors, args.out, metadata=metadata)
    print(f"{len(dataset)} modulations -> {args.out} (mean psnr {float(tensors['psnr'].mean()):.2f} dB)")
    print(json.dumps({name: list(t.shape) for name, t in tensors.items()}))


def split_rows(data: config_lib.DataConfig, split: str, dataset: Signals | ShapeNetViews) -> SplitRows:
    """The source (and label) of each instance to export: a NeRF's objects by id, else the rows of the split, which
    must be the rows ``dataset`` holds (``--data.skip-bad-files`` may have dropped some: refused)."""
    if isinstance(dataset, ShapeNetViews):
        return SplitRows([obj.folder.name for obj in dataset.objects])
    rows = describe_split(data, split)
    if len(rows.sources) != len(dataset):
        raise ValueError(
            f"{len(rows.sources) - len(dataset)} unusable file(s) of the {split} split were dropped "
            "(--data.skip-bad-files), so its rows no longer match its files; replace them to export this split"
        )
    return rows


def export_features(rows: SplitRows, nerf: bool) -> datasets.Features:
    """The columns of an exported split (``label`` only with labels, ``psnr`` only for signals)."""
    features = {"index": datasets.Value("int64"), "split": datasets.Value("string"), "source": datasets.Value("string")}
    if rows.labels is not None:
        features["label"] = datasets.ClassLabel(names=rows.label_names)
    features["modulation"] = datasets.List(datasets.Value("float32"))
    if not nerf:
        features["psnr"] = datasets.Value("float32")
    return datasets.Features(features)


def export_rows(batches: Batches, split: str, rows: SplitRows, layers: dict) -> Iterator[dict]:
    """The exported rows of a split, one per instance, as ``batches`` encode them; ``layers`` is filled with each
    modulation layer's shape (flatten key order) from the first batch."""
    index = 0
    for modulation, psnr in batches:
        layers.update({name: list(value.shape[1:]) for name, value in flatten(modulation).items()})
        vectors = downstream.flatten_modulation(modulation).float().cpu().numpy()
        for row, vector in enumerate(vectors):
            out = {"index": index, "split": split, "source": rows.sources[index], "modulation": vector}
            if rows.labels is not None:
                out["label"] = rows.labels[index]
            if psnr is not None:
                out["psnr"] = float(psnr[row])
            yield out
            index += 1


def write_export(args: Args) -> None:
    """Every split (or ``--split``) as a labelled ``datasets.DatasetDict`` in the ``--out`` folder, streamed to disk
    one batch at a time, with ``ginr_export.json`` beside it."""
    with cli.refusals():
        loaded = from_pretrained(args.model, revision=args.revision)
        cli.check_inner_steps(loaded.config, args.n_steps)
        out = paths.writable_folder(args.out, "--out")
        data = cli.with_data_path(loaded.config.data, args.data_path)
        names = [args.split] if args.split else list(dict.fromkeys([data.train_split, data.eval_split]))
        splits = {}
        for name in names:
            dataset = eval_dataset(data, name)
            splits[name] = dataset, split_rows(data, name, dataset)
    nerf = is_views(data)
    encode = object_batches if nerf else signal_batches
    layers: dict[str, list[int]] = {}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as scratch:
        exported = datasets.DatasetDict()
        for name, (dataset, rows) in splits.items():
            batches = encode(loaded, data, dataset, args, f"encoding {name}")
            exported[name] = datasets.Dataset.from_generator(
                export_rows,
                features=export_features(rows, nerf),
                cache_dir=scratch,
                gen_kwargs={"batches": batches, "split": name, "rows": rows, "layers": layers},
                fingerprint=f"ginr-export-{name}",
            )
        exported.save_to_disk(str(out))
    labelled = next((rows for _, rows in splits.values() if rows.labels is not None), SplitRows([]))
    meta = {
        "model": args.model,
        "config": config_lib.to_dict(loaded.config),
        "layers": layers,
        "label_names": labelled.label_names,
        "label_source": labelled.label_source,
        "splits": list(splits),
    }
    (out / downstream.META_FILE).write_text(json.dumps(meta, indent=1))
    counts = ", ".join(f"{name} {len(split)}" for name, split in exported.items())
    print(f"modulations of {counts} instances -> {out} (labels: {labelled.label_source or 'none'})")


if __name__ == "__main__":
    main(tyro.cli(Args))
