"""Training-step benchmark: one table of img/s, step time, peak memory, GFLOP per image and model FLOP utilisation,
beside the reference's figures (../shared/ANCHORS.md).

    python recipes/bench.py                                             # every preset of the table, this device
    python recipes/bench.py --only ipc-meta:imagenette178 --batch 2     # one row
    python recipes/bench.py --precision bf16 --batch 16                 # on a GPU

A row times full training steps (encode + decode + loss + backward + Adam) of the preset's model, with the preset's
training options (coordinate subsampling and noise), on random signals of the preset's shape, so no dataset is
needed. Warm-up steps are excluded and the step time is the median of the timed steps. FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode``; utilisation is achieved FLOP/s over a matrix-product ceiling measured
on the same device and precision. Batch defaults: 2 on a CPU, the preset's global batch (16) on a GPU.
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

TABLE = (
    "ipc-meta:imagenette178",
    "ipc-meta:ffhq256",
    "learned-init:imagenette178",
    "ipc-transinr:celeba178",
    "transinr:celeba178",
    "ipc-transinr:librispeech1s",
    "transinr:librispeech1s",
)

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
REFERENCE_MEMORY_GIB = {
    ("ipc-meta", "imagenette178", 16): 16.8,
    ("ipc-meta", "ffhq256", 16): 34.5,
    ("learned-init", "imagenette178", 16): 16.9,
    ("ipc-transinr", "celeba178", 16): 10.6,
    ("transinr", "celeba178", 16): 10.7,
    ("ipc-transinr", "librispeech1s", 16): 10.7,
    ("transinr", "librispeech1s", 16): 10.7,
}
REFERENCE_GFLOP = {
    ("ipc-meta", "imagenette178"): 214.0,
    ("ipc-transinr", "celeba178"): 238.0,
    ("ipc-meta", "ffhq256"): 442.0,
}
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass
class Args:
    only: tuple[str, ...] = TABLE
    """Rows as model:data."""
    batch: int | None = None
    """Batch per step; None: 2 on a CPU, 16 (the global batch) on a GPU."""
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    """Arithmetic (bf16 = autocast with fp32 weights and fp32 loss)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device to run on."""
    compile: bool = False
    """Compile the objective with torch.compile (compilation happens in the warm-up steps)."""
    warmup: int = 2
    """Untimed steps first."""
    steps: int = 5
    """Timed steps (median reported)."""


def matmul_ceiling(device: torch.device, precision: str) -> float:
    """FLOP/s of a large square matrix product in ``precision`` on ``device`` (the utilisation denominator)."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    b = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    for _ in range(3):
        a @ b
    synchronize(device)
    tick, repeats = time.perf_counter(), 10
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - tick)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_row(model_name: str, data: str, batch: int, args: Args, device: torch.device, ceiling: float) -> dict:
    config = presets.resolve(model_name, data)
    model = models.build(config.model_name, config.model)
    objective = functools.partial(
        reconstruction_objective,
        coord_range=config.data.coord_range,
        coord_noise=config.train.coord_noise,
        coord_subsample=config.train.coord_subsample,
    )
    module = ParamsModule(model, model.init(torch.Generator().manual_seed(0)), objective=objective).to(device)
    if args.compile:
        module.objective = torch.compile(objective)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.optim.lr)
    shape, channels = signal_shape(config.data)
    signal = torch.rand(batch, *shape, channels, device=device)
    if channels == 1:  # audio in [-1, 1]
        signal = signal * 2 - 1
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        with autocast:
            loss = module(signal)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        tick = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - tick)
    if device.type == "cuda":
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"
    module.objective = objective  # FLOPs are counted on the eager path (compiled kernels are opaque to the counter)
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = statistics.median(times)
    flops = counter.get_total_flops()
    reference = REFERENCE.get((model_name, data, device.type, batch))
    reference_memory = REFERENCE_MEMORY_GIB.get((model_name, data, batch)) if device.type == "cuda" else None
    return {
        "model": model_name,
        "data": data,
        "batch": batch,
        "precision": args.precision + (" compiled" if args.compile else ""),
        "step ms": round(seconds * 1000, 1),
        "img/s": batch / seconds,
        "ref img/s": "-" if reference is None else reference,
        "speed-up": "-" if reference is None else f"{batch / seconds / reference:.2f}x",
        "peak memory": memory,
        "ref memory": "-" if reference_memory is None else f"{reference_memory} GiB",
        "GFLOP/img": flops / batch / 1e9,
        "ref GFLOP/img": REFERENCE_GFLOP.get((model_name, data), "-"),
        "TFLOP/s": flops / seconds / 1e12,
        "MFU": f"{flops / seconds / ceiling:.0%}",
    }


def main(args: Args) -> None:
    device = torch.device(args.device)
    batch = args.batch or (16 if device.type == "cuda" else 2)
    ceiling = matmul_ceiling(device, args.precision)
    print(
        f"{device.type} ({torch.get_num_threads()} threads), {args.precision} matmul ceiling {ceiling / 1e12:.2f} TFLOP/s"
    )
    rows = []
    for entry in args.only:
        model_name, data = entry.split(":")
        rows.append(bench_row(model_name, data, batch, args, device, ceiling))
        print(table(rows[-1:], list(rows[-1])), flush=True)
    print("\n" + table(rows, list(rows[0])))


if __name__ == "__main__":
    main(tyro.cli(Args))
