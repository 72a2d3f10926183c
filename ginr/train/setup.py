"""Run set-up: the Accelerator with the chosen precision and seeds, and the run folder."""

from __future__ import annotations

import datetime
import random
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ginr import config as config_lib

MIXED = {"fp32": "no", "tf32": "no", "bf16": "bf16", "fp16": "fp16"}


def make_accelerator(train: config_lib.TrainConfig) -> Accelerator:
    """An Accelerator for ``train.precision``; TF32 matmuls only for ``tf32`` (fp32 is the reference's arithmetic).
    Without an accelerator (or with ``train.cpu``) it runs on the CPU, several processes over gloo.

    Every process seeds torch, numpy and Python with ``seed + process index`` (weights and data order are seeded
    separately from ``seed`` alone, so they are the same on every process).
    """
    cpu = train.cpu or not torch.accelerator.is_available()  # a torchrun-started CPU process joins gloo DDP
    accelerator = Accelerator(mixed_precision=MIXED[train.precision], cpu=cpu)
    allow_tf32 = train.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    seed = train.seed + accelerator.process_index
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return accelerator


def run_folder(config: config_lib.Config, resume: Path | None, accelerator: Accelerator) -> Path:
    """The run folder: the resumed one, or ``out_dir/run_name`` (default ``<model>_<data>_<date-time>``).

    A folder that already holds a run is refused unless ``--train.overwrite`` (or ``--resume``).
    """
    if resume is not None:
        if accelerator.is_main_process:
            (resume / "config.json").write_text(config_lib.dumps(config))  # flags may have extended the run
        return resume
    train = config.train
    name = train.run_name
    if name is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{config.model_name}_{config.data_name}_{stamp}"
        name = broadcast_object_list([name])[0]  # the main process's clock names the run
    folder = Path(train.out_dir) / name
    if (folder / "config.json").exists() and not train.overwrite:
        raise FileExistsError(
            f"{folder} already holds a run; continue it with --resume {folder}, pick another --train.run-name, "
            "or pass --train.overwrite True"
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(config_lib.dumps(config))
    accelerator.wait_for_everyone()
    return folder
