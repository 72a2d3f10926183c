"""Evaluate a trained model on a held-out split and print the metrics table.

    accelerate launch recipes/eval.py runs/<run>                     # newest complete checkpoint of a run
    accelerate launch recipes/eval.py runs/<run>/checkpoints/step-00000500 --n-steps 5
    accelerate launch recipes/eval.py user/ginr-model --data-path /data/imagenette2-320    # a Hub repo id
    accelerate launch recipes/eval.py --init-from user/ginr-model --revision v1.0

The model's config.json says which data it was trained on; ``--data-path`` and ``--split`` point elsewhere.
A NeRF is evaluated by full renders of its query views (fidelity 5.6), on the fixed list of seeded view draws
(``--redraw-eval`` for the reference's new random draws every time, quirk 24).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import tyro
from accelerate import Accelerator

from ginr import cli, from_pretrained
from ginr.data import BadFileError, EvalBatchSampler, eval_dataset, make_loader
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


def main(args: Args) -> None:
    source = args.model or args.init_from
    if (args.model is None) == (args.init_from is None):
        cli.fail("give the model to evaluate once: as MODEL or as --init-from")
    accelerator = Accelerator()
    with cli.refusals():
        loaded = from_pretrained(source, revision=args.revision)
        cli.check_inner_steps(loaded.config, args.n_steps)
        data = cli.with_data_path(loaded.config.data, args.data_path)
        if args.redraw_eval:
            data = dataclasses.replace(data, redraw_eval=True)
        dataset = eval_dataset(data, args.split)
        batch = max(1, args.batch_size // accelerator.num_processes)
        sampler = EvalBatchSampler(len(dataset), batch, accelerator.num_processes, accelerator.process_index)
    loader = make_loader(dataset, sampler, data.num_workers)
    params = tree_map(lambda t: t.detach().to(accelerator.device), loaded.params)
    config = dataclasses.replace(loaded.config, data=data)
    if args.out and accelerator.is_main_process:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with cli.refusals(1, (BadFileError,)):  # a data file that cannot be read, found while measuring
        result = evaluate_config(config, loaded.model, params, loader, accelerator=accelerator, n_steps=args.n_steps)
    row = {"model": source, "split": args.split or data.eval_split, **result.metrics}
    accelerator.print(table([row], list(row)))
    if args.out and accelerator.is_main_process:
        Path(args.out).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
