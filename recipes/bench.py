"""Training-step benchmark: img/s, step time, peak memory and GFLOP per image, beside the reference's figures.

    python recipes/bench.py --model ipc-meta --data imagenette178 --batch 2
    python recipes/bench.py --model ipc-meta --data imagenette178 --batch 16 --precision bf16   # on a GPU

One full training step (encode + decode + loss + backward + Adam) of the preset's model, with the preset's training
options (coordinate subsampling and noise), on random signals of the preset's shape, so no dataset is needed. Warm-up steps are excluded; the step time is the median of the timed
steps. FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import dataclasses
import functools
import resource
import statistics
import time
from typing import Literal

import torch
import tyro
from torch.utils.flop_counter import FlopCounterMode

from ginr import models, presets
from ginr.data import signal_shape
from ginr.module import ParamsModule
from ginr.train.logger import table
from ginr.train.objective import reconstruction_objective

# ../shared/ANCHORS.md: the reference (kakaobrain/ginr-ipc), fp32, img/s per device.
REFERENCE = {
    ("ipc-meta", "imagenette178", "cuda", 4): 79.7,
    ("ipc-meta", "imagenette178", "cuda", 16): 106.7,
    ("ipc-meta", "imagenette178", "cuda", 48): 121.1,
    ("ipc-meta", "ffhq256", "cuda", 16): 52.7,
    ("learned-init", "imagenette178", "cuda", 16): 74.8,
    ("ipc-transinr", "celeba178", "cuda", 4): 112.4,
    ("ipc-transinr", "celeba178", "cuda", 16): 141.3,
    ("ipc-transinr", "celeba178", "cuda", 64): 154.4,
    ("transinr", "celeba178", "cuda", 16): 141.1,
    ("ipc-transinr", "librispeech1s", "cuda", 16): 190.3,
    ("transinr", "librispeech1s", "cuda", 16): 187.2,
    ("ipc-meta", "imagenette178", "cpu", 2): 0.27,
    ("ipc-transinr", "celeba178", "cpu", 2): 0.43,
}
REFERENCE_GFLOP = {
    ("ipc-meta", "imagenette178"): 214.0,
    ("ipc-transinr", "celeba178"): 238.0,
    ("ipc-meta", "ffhq256"): 442.0,
}


@dataclasses.dataclass
class Args:
    model: str = "ipc-meta"
    """Model name."""
    data: str = "imagenette178"
    """Data preset (sets the resolution and the model's preset)."""
    batch: int = 2
    """Batch per step."""
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    """Arithmetic (bf16 = autocast with fp32 weights)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device to run on."""
    warmup: int = 2
    """Untimed steps first."""
    steps: int = 5
    """Timed steps (median reported)."""


def main(args: Args) -> None:
    config = presets.resolve(args.model, args.data)
    model = models.build(config.model_name, config.model)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    objective = functools.partial(
        reconstruction_objective,
        coord_range=config.data.coord_range,
        coord_noise=config.train.coord_noise,
        coord_subsample=config.train.coord_subsample,
    )
    module = ParamsModule(model, model.init(torch.Generator().manual_seed(0)), objective=objective).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.optim.lr)
    shape, channels = signal_shape(config.data)
    signal = torch.rand(args.batch, *shape, channels, device=device) * (2 if channels == 1 else 1) - (channels == 1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        with autocast:
            loss = module(signal)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        tick = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - tick)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = statistics.median(times)
    reference = REFERENCE.get((args.model, args.data, device.type, args.batch))
    row = {
        "model": args.model,
        "data": args.data,
        "device": device.type,
        "batch": args.batch,
        "precision": args.precision,
        "step s": seconds,
        "img/s": args.batch / seconds,
        "reference img/s": "-" if reference is None else reference,
        "speed-up": "-" if reference is None else f"{args.batch / seconds / reference:.2f}x",
        "peak memory": peak,
        "GFLOP/img": counter.get_total_flops() / args.batch / 1e9,
        "reference GFLOP/img": REFERENCE_GFLOP.get((args.model, args.data), "-"),
    }
    print(table([row], list(row)))


if __name__ == "__main__":
    main(tyro.cli(Args))
