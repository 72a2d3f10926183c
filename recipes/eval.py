"""Evaluate a trained model on a held-out split and print the metrics table.

    accelerate launch -q recipes/eval.py runs/<run>                     # newest complete checkpoint of a run
    accelerate launch -q recipes/eval.py runs/<run>/checkpoints/step-00000500 --n-steps 5
    accelerate launch -q recipes/eval.py user/ginr-model --data-path /data/imagenette2-320    # a Hub repo id
    accelerate launch -q recipes/eval.py --init-from user/ginr-model --revision v1.0
    accelerate launch -q recipes/eval.py runs/<run> --tto-steps 0 5 20 --per-instance out/instances.csv
    accelerate launch -q recipes/eval.py runs/<run> --keep-fraction 0.25 --tto-steps 0 20   # inpainting

The model's config.json says which data it was trained on; ``--data-path`` and ``--split`` point elsewhere.
A NeRF is evaluated by full renders of its query views (fidelity 5.6), on the fixed list of seeded view draws
(``--redraw-eval`` for the reference's new random draws every time, quirk 24).

``--tto-steps 0 5 20`` prints one row per count of test-time optimisation steps (:mod:`ginr.tto`; a NeRF refines on
its support views and is measured on its query views); ``--keep-fraction``, ``--mask`` or ``--gap`` give the model part
of each signal (one seeded mask for every instance, :mod:`ginr.masks`) and add the PSNR on the observed and unobserved
positions. ``--per-instance FILE.csv`` writes every instance's numbers, one row per instance and count.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Annotated

import torch
import tyro
from accelerate import Accelerator

from ginr import cli, from_pretrained, masks, paths, tasks, tto
from ginr.data import BadFileError, EvalBatchSampler, eval_dataset, make_loader, signal_shape
from ginr.pytree import tree_map
from ginr.train.evaluate import evaluate_config
from ginr.train.logger import table


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str | None], tyro.conf.arg(metavar="[MODEL]")] = None
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id."""
    init_from: str | None = None
    """The same as MODEL, spelled as in train.py (give one of the two)."""
    split: str | None = None
    """Split to evaluate; None: the config's held-out split."""
    data_path: str | None = None
    """Where the data lives, if not where the model was trained from."""
    n_steps: int | None = None
    """Inner steps (meta-learned models; hypernetwork models take none); None: the config's eval_inner_steps or
    n_inner_steps."""
    batch_size: int = 16
    """Global evaluation batch."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when MODEL is a repo id."""
    out: str | None = None
    """Also write the metrics to this JSON file."""
    redraw_eval: bool = False
    """Multi-view data: new random support/query draws instead of the fixed seeded list (the reference's way)."""
    tto_steps: tuple[int, ...] = ()
    """Measure after each of these numbers of test-time optimisation steps (Adam on the modulation after the
    model's own encoding; 0: the encoding itself), one row each."""
    tto_lr: float = 1e-3
    """Adam learning rate of test-time optimisation."""
    per_instance: str | None = None
    """Write every instance's numbers to this CSV file (one row per instance and test-time step count)."""
    keep_fraction: float | None = None
    """Give the model only this fraction of each signal's pixels (or samples), drawn at random with --mask-seed."""
    mask: str | None = None
    """Images: give the model only the pixels that are white in this mask image (resized to the model's size)."""
    gap: tuple[float, float] | None = None
    """Audio: hide the seconds START to END from the model."""
    mask_seed: int = 0
    """Seed of --keep-fraction's random positions (one mask for every instance)."""


def observed_positions(config, data, args: Args) -> torch.Tensor | None:
    """The observation mask of ``--keep-fraction``, ``--mask`` or ``--gap`` for the signals of ``data`` (None: all of
    each signal); refused for a NeRF."""
    observation = masks.Observation(args.keep_fraction, args.mask, args.gap, args.mask_seed)
    if not observation.partial:
        return None
    tasks.require_signals(config, "--keep-fraction, --mask and --gap: the model")
    shape, channels = signal_shape(data)
    observation.check(audio=len(shape) == 1)
    return observation.mask_for(shape, data.sample_rate)


def write_instances(path: Path, instances: list[dict]) -> None:
    """Every instance's numbers as a long CSV: one row per instance and test-time step count (per instance without
    --tto-steps)."""
    rows = [row for values in instances for row in tto.by_steps(values) or [values]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["instance"])
        writer.writeheader()
        writer.writerows(rows)


def main(args: Args) -> None:
    source = args.model or args.init_from
    if (args.model is None) == (args.init_from is None):
        cli.fail("give the model to evaluate once: as MODEL or as --init-from")
    accelerator = Accelerator()
    with cli.refusals():
        loaded = from_pretrained(source, revision=args.revision)
        cli.check_inner_steps(loaded.config, args.n_steps)
        if args.out:
            paths.writable_file(args.out, "--out")
        data = cli.with_data_path(loaded.config.data, args.data_path)
        if args.redraw_eval:
            data = dataclasses.replace(data, redraw_eval=True)
        dataset = eval_dataset(data, args.split)
        batch = max(1, args.batch_size // accelerator.num_processes)
        sampler = EvalBatchSampler(len(dataset), batch, accelerator.num_processes, accelerator.process_index)
        observed = observed_positions(loaded.config, data, args)
        test_time = tto.TestTime(args.tto_steps, args.tto_lr) if args.tto_steps else None
        if args.per_instance:
            paths.writable_file(args.per_instance, "--per-instance")
    loader = make_loader(dataset, sampler, data.num_workers)
    params = tree_map(lambda t: t.detach().to(accelerator.device), loaded.params)
    config = dataclasses.replace(loaded.config, data=data)
    if args.out and accelerator.is_main_process:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with cli.refusals(1, (BadFileError,)):  # a data file that cannot be read, found while measuring
        result = evaluate_config(
            config, loaded.model, params, loader, accelerator=accelerator, n_steps=args.n_steps,
            test_time=test_time, observed=observed, keep_instances=args.per_instance is not None,
        )  # fmt: skip
    row = {"model": source, "split": args.split or data.eval_split, **result.metrics}
    rows = tto.by_steps(row) if test_time is not None or observed is not None else [row]
    accelerator.print(table(rows, list(rows[0])))
    if args.per_instance and accelerator.is_main_process:
        write_instances(Path(args.per_instance), result.instances)
    if args.out and accelerator.is_main_process:
        Path(args.out).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
