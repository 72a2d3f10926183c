"""Put a paper dataset into the layout ginr reads, then verify it (counts, image sizes, split membership).

    python recipes/prepare_data.py imagenette --to data/imagenette                  # from the Hugging Face Hub
    python recipes/prepare_data.py imagenette --to data/imagenette --from imagenette2-320.tgz
    python recipes/prepare_data.py librispeech --to data/librispeech                # from the Hub
    python recipes/prepare_data.py librispeech --to data/librispeech --from train-clean-100.tar.gz test-clean.tar.gz
    python recipes/prepare_data.py celeba --to data/celeba --from img_align_celeba.zip
    python recipes/prepare_data.py ffhq --to data/ffhq --from images1024x1024/ --split-lists ginr-ipc/src/datasets/assets
    python recipes/prepare_data.py ffhq --to data/ffhq --verify-only                # check a folder, write nothing

Then train with ``--data.path DIR`` (fidelity 7 lists the layouts, splits and transforms).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ginr.data import prepare
from ginr.data.catalog import DATASETS


@dataclasses.dataclass
class Args:
    name: tyro.conf.Positional[Literal["celeba", "ffhq", "imagenette", "librispeech"]]
    """Dataset to prepare."""
    to: Path
    """Folder to write (the --data.path of training)."""
    sources: Annotated[tuple[str, ...], tyro.conf.arg(name="from")] = ()
    """Official archives (zip/tar) or extracted folders; for imagenette/librispeech also a Hub id or local parquet
    folder. Empty: the Hub copy (imagenette, librispeech)."""
    split_lists: Path | None = None
    """FFHQ: folder with the reference's ffhqtrain.txt and ffhqvalidation.txt, copied next to the images."""
    verify_only: bool = False
    """Only verify an existing folder."""


def main(args: Args) -> None:
    facts = DATASETS[args.name]
    try:
        if not args.verify_only:
            written = prepare.materialise(args.name, facts, list(args.sources), args.to)
            print(f"wrote {written} files into {args.to}")
            if args.split_lists is not None:
                prepare.copy_split_lists(args.split_lists, args.to)
        report = prepare.verify(args.name, facts, args.to)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(report) + f"\n{args.to} is a complete {args.name} folder: train with --data.path {args.to}")


if __name__ == "__main__":
    main(tyro.cli(Args))
