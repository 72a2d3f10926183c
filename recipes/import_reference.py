"""Import a checkpoint trained by the reference implementation (kakaobrain/ginr-ipc) as a ginr model folder.

    python recipes/import_reference.py epoch300_model.pt --to imported/ --model ipc-transinr --data celeba178
    python recipes/import_reference.py epoch200_model.pt --to imported/ --model ipc-meta --data ffhq256 --ema

``--model``/``--data`` and any config flag (as for train.py) describe the reference config the checkpoint was trained
with; every tensor is mapped by name through :mod:`ginr.reference` and checked strictly. This is the one place ginr
reads a pickled file, with ``torch.load(weights_only=True)``: no code in the file can run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ginr import cli, models, save_pretrained
from ginr.pytree import flatten, unflatten
from ginr.reference import from_reference


def load_failure(error: Exception) -> str:
    """The cause of a refused ``torch.load``, in one line, without PyTorch's advice to retry with
    ``weights_only=False`` or to allow-list the file's classes: either would run the file's pickled code, which ginr
    never does. A pickle that needs more than tensors is named as such; other failures keep their first line."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].strip().split(". ", 1)[0].splitlines()[0]
        return f"it holds pickled objects other than tensors ({cause}); ginr reads only tensors and never runs them"
    lines = text.strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def main(argv: list[str] | None = None) -> None:
    pre = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    pre.add_argument("checkpoint", help="the reference's epoch<N>_model.pt")
    pre.add_argument("--to", required=True, help="model folder to write")
    pre.add_argument("--ema", action="store_true", help="import state_dict_ema instead of state_dict")
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    config, _ = cli.parse_train_args(rest, prog="import_reference.py")
    model = models.build(config.model_name, config.model)
    try:
        saved = torch.load(known.checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused or a corrupt file: name it and stop
        cli.fail(
            f"cannot read {known.checkpoint} as a weights-only checkpoint (a PyTorch file of tensors, opened without "
            f"running pickled code): {load_failure(error)}"
        )
    key = "state_dict_ema" if known.ema else "state_dict"
    state = saved.get(key, saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        cli.fail(f"{known.checkpoint} holds no {key} mapping of tensors")
    try:
        flat = from_reference(state, model)
    except ValueError as error:
        cli.fail(f"{known.checkpoint}: {error}; check --model/--data and the flags describe its config")
    expected = flatten(model.init(torch.Generator().manual_seed(0)))  # from_reference checked names and shapes
    params = unflatten(
        {name: flat[name].float().requires_grad_(value.requires_grad) for name, value in expected.items()}
    )
    folder = save_pretrained(Path(known.to), config, params)
    print(f"imported {known.checkpoint} ({key}) -> {folder}")


if __name__ == "__main__":
    main()
