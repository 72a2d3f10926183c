"""The modulations of a whole data split, for downstream work (generation, compression, classification).

    python recipes/encode.py runs/<run> --out modulations.safetensors
    python recipes/encode.py user/ginr-celeba178 --split validation --data-path /data/celeba --out celeba.safetensors

Writes a safetensors file: ``modulation.<layer>`` stacked over the split (N, ...), ``psnr`` (N,) of each instance's
reconstruction and ``index`` (N,) of its position in the split, with the model, split and config as metadata.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import torch
import tyro
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ginr import cli, from_pretrained, inference, metrics, paths, tasks
from ginr import config as config_lib
from ginr.data import BadFileError, EvalBatchSampler, eval_dataset, make_loader
from ginr.pytree import flatten


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL")]
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id."""
    out: str
    """The safetensors file to write."""
    split: str | None = None
    """Split to encode; None: the config's held-out split."""
    data_path: str | None = None
    """Where the data lives, if not where the model was trained from."""
    n_steps: int | None = None
    """Inner steps (meta-learned models); None: the config's."""
    batch_size: int = 16
    """Instances per batch."""
    revision: str | None = None
    """Hub revision when MODEL is a repo id."""


def main(args: Args) -> None:
    with cli.refusals():
        loaded = from_pretrained(args.model, revision=args.revision)
        tasks.require_signals(loaded.config, args.model)
        cli.check_inner_steps(loaded.config, args.n_steps)
        paths.writable_file(args.out, "--out")
        data = cli.with_data_path(loaded.config.data, args.data_path)
        dataset = eval_dataset(data, args.split)
        sampler = EvalBatchSampler(len(dataset), args.batch_size, 1, 0)
    loader = make_loader(dataset, sampler, data.num_workers)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[torch.Tensor]] = {}
    psnrs = []
    with cli.refusals(1, (BadFileError,)):  # a data file that cannot be read, found while encoding
        for signal in tqdm(loader, desc="encoding"):
            encoding = inference.encode(loaded.model, loaded.params, signal, data.coord_range, args.n_steps)
            modulation = encoding.modulation
            shape = tuple(signal.shape[1:-1])
            pred = inference.decode(loaded.model, loaded.params, modulation, shape, data.coord_range)
            psnrs.append(metrics.psnr(metrics.mse_per_sample(pred, signal)))
            for name, value in flatten(modulation).items():
                parts.setdefault(f"modulation.{name}", []).append(value)
    tensors = {name: torch.cat(values).contiguous() for name, values in parts.items()}
    tensors["psnr"] = torch.cat(psnrs)
    tensors["index"] = torch.arange(len(dataset))
    metadata = {"model": args.model, "split": args.split or data.eval_split, "config": config_lib.dumps(loaded.config)}
    save_file(tensors, args.out, metadata=metadata)
    print(f"{len(dataset)} modulations -> {args.out} (mean psnr {float(tensors['psnr'].mean()):.2f} dB)")
    print(json.dumps({name: list(t.shape) for name, t in tensors.items()}))


if __name__ == "__main__":
    main(tyro.cli(Args))
