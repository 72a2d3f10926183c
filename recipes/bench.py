"""Training-step benchmark: one table of img/s, step time, peak memory, GFLOP per image and model FLOP utilisation,
beside stored figures of the reference (measured for this project on an H200 and on two CPU cores, listed in
../shared/ANCHORS.md with the date and machine; not timed in the same run, so the table's footnote says so).

    python recipes/bench.py                                             # every preset of the table, this device
    python recipes/bench.py --only ipc-meta:imagenette178 --batch 2     # one row
    python recipes/bench.py --precision bf16 --batch 16                 # on a GPU
    python recipes/bench.py --only ipc-transinr:shapenet-cars:5 --batch 8   # NeRF, 5 support views

A row times full training steps (encode + decode + loss + backward + Adam) of the preset's model, with the preset's
training options (coordinate subsampling and noise), on random signals of the preset's shape, so no dataset is
needed. NeRF rows (``model:shapenet-<category>[:views]``) train on random 128-px views seen from cameras around the
origin (128 random rays per object, 128 points per ray, jittered) and report objects/s (in the img/s column), rays/s
and the rate of full 128x128 renders in evaluation (``render img/s``, 1024 rays per object at a time). Every row also
times an evaluation with test-time optimisation (``tto20 inst/s``: instances measured per second with
``--tto-steps 20``, :mod:`ginr.tto`: encode, 20 batched Adam steps on the modulation, measure). Warm-up steps
are excluded from the times (the step time is the median of the timed steps) but not from the peak memory (CUDA
graphs allocate their pool while warming up). FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode``; utilisation is achieved FLOP/s over a matrix-product ceiling measured
in this run on the same device and precision (both from :mod:`ginr.train.flops`, as training's ``train/mfu``).
Batch defaults: 2 on a CPU, the preset's global batch on a GPU (16; 32 for NeRF).
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

from ginr import cli, models, presets, tasks, tto
from ginr.inference import novel_views
from ginr.module import ParamsModule
from ginr.pytree import batch_size, batch_slice
from ginr.train import setup
from ginr.train.flops import count_flops, matmul_ceiling, synchronize
from ginr.train.logger import table
from ginr.train.objective import objective_for

TABLE = (
    "ipc-meta:imagenette178",
    "ipc-meta:ffhq256",
    "learned-init:imagenette178",
    "ipc-transinr:celeba178",
    "transinr:celeba178",
    "ipc-transinr:librispeech1s",
    "transinr:librispeech1s",
    "ipc-transinr:shapenet-cars",
    "ipc-transinr:shapenet-cars:5",
    "transinr:shapenet-cars",
)

# Measured for this project: the reference (kakaobrain/ginr-ipc), fp32, img/s per device.
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
# Measured for this project: the reference's NeRF, (model, data, support views, batch) -> (objects/s, rays/s,
# peak GiB) on an H200, fp32.
REFERENCE_VIEWS = {
    ("ipc-transinr", "shapenet-cars", 1, 8): (168.9, 21620, 3.9),
    ("ipc-transinr", "shapenet-cars", 1, 32): (209.4, 26809, 13.9),
    ("ipc-transinr", "shapenet-cars", 5, 8): (60.4, 7734, 11.6),
    ("transinr", "shapenet-cars", 1, 32): (234.3, 29991, 12.2),
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
STORED = (
    "stored ref: the reference's (kakaobrain/ginr-ipc) figures from ../shared/ANCHORS.md, not timed in this run:\n"
    "measured 2026-11-28 in fp32 on one NVIDIA H200 (torch 2.11, CUDA 13) and on two cores of this project's CPU\n"
    "machines (torch 2.14.1); GFLOP/img counted with FlopCounterMode. 'vs stored' divides this run's img/s by the\n"
    "stored figure: a ratio across runs, machines and loads, not a same-run comparison."
)
"""The footnote of the table, under its columns named ``stored ...``."""
REFERENCE_GFLOP = {
    ("ipc-meta", "imagenette178"): 214.0,
    ("ipc-transinr", "celeba178"): 238.0,
    ("ipc-meta", "ffhq256"): 442.0,
}


@dataclasses.dataclass
class Args:
    only: tuple[str, ...] = TABLE
    """Rows as model:data."""
    batch: int | None = None
    """Batch per step; None: 2 on a CPU, the preset's global batch on a GPU (16 for images and audio, 32 for NeRF)."""
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    """Arithmetic (bf16 = autocast with fp32 weights and fp32 loss)."""
    accumulation: int = 1
    """Split each step's batch into this many micro-batches, backward after each (the same gradients, since
    instances are independent; the memory/speed trade of --train.grad-accumulation)."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device to run on."""
    compile: bool = False
    """Compile the objective with torch.compile (compilation happens in the warm-up steps)."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    """torch.compile's mode with --compile ('reduce-overhead' and 'max-autotune' replay CUDA graphs on a GPU)."""
    warmup: int = 2
    """Untimed steps first."""
    steps: int = 5
    """Timed steps (median reported)."""
    profile: int = 0
    """After timing, profile one step and print its N most expensive operators (0: no profile)."""


def bench_row(model_name: str, data: str, views: int | None, args: Args, device: torch.device, ceiling: float) -> dict:
    config = presets.resolve(model_name, data, views)
    batch = args.batch or (config.train.batch_size if device.type == "cuda" else 2)
    model = models.build(config.model_name, config.model)
    objective = objective_for(config)
    module = ParamsModule(model, model.init(torch.Generator().manual_seed(0)), objective=objective).to(device)
    if args.compile:
        module.objective = objective_for(config, args.compile_mode)
    optimizer = setup.adam(module.parameters(), config.optim)
    signal = tasks.random_batch(config, batch, device)
    epoch = config.render.foreground_first_epochs  # a NeRF's random rays after its first epochs (signals ignore it)
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    if batch % args.accumulation:
        raise SystemExit(f"error: --accumulation {args.accumulation} must divide the batch {batch}")
    micro = batch // args.accumulation

    parts = [batch_slice(signal, i, i + micro) for i in range(0, batch, micro)]

    def step():
        for part in parts:
            with autocast:
                loss = module(part, epoch=epoch)["loss"] / args.accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":  # the peak from here on: weights, Adam state and every step's work, warm-up included
        torch.cuda.reset_peak_memory_stats()  # (CUDA graphs allocate their memory pool while warming up)
    for _ in range(args.warmup):
        step()
    synchronize(device)
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
    if args.profile:
        print_profile(step, device, args.profile, f"{model_name}:{data} batch {batch} {args.precision}")
    module.objective = objective  # FLOPs are counted on the eager path (compiled kernels are opaque to the counter)
    flops = count_flops(step)
    seconds = statistics.median(times)
    renders = functools.partial(render_rate, module, config, signal, autocast, device)
    label, reference, reference_memory, extra = tasks.nerf_or_signals(
        config,
        nerf=lambda: views_columns(model_name, data, config, batch, seconds, device, renders),
        signals=lambda: signal_columns(model_name, data, batch, device),
    )()
    return {
        "model": model_name,
        "data": label,
        "batch": batch,
        "precision": args.precision + (f" compiled ({args.compile_mode})" if args.compile else ""),
        "micro-batches": args.accumulation,
        "step ms": round(seconds * 1000, 1),
        "img/s": batch / seconds,
        "stored ref img/s": "-" if reference is None else reference,
        "vs stored": "-" if reference is None else f"{batch / seconds / reference:.2f}x",
        **extra,
        "peak memory": memory,
        "stored ref memory": "-" if reference_memory is None else f"{reference_memory} GiB",
        "GFLOP/img": flops / batch / 1e9,
        "stored ref GFLOP/img": REFERENCE_GFLOP.get((model_name, data), "-"),
        "TFLOP/s": flops / seconds / 1e12,
        "MFU": f"{flops / seconds / ceiling:.0%}",
        "tto20 inst/s": tto_rate(module, config, signal, autocast, device),
    }


def tto_rate(module: ParamsModule, config, signal, autocast, device: torch.device, steps: int = 20) -> float:
    """Instances per second of an evaluation with ``steps`` test-time steps (:mod:`ginr.tto`, as ``eval.py
    --tto-steps``) on the random batch; one untimed run first."""
    test_time = tto.TestTime((steps,))
    params = module.tree()
    measure = tasks.nerf_or_signals(
        config,
        nerf=lambda: tto.measure_views(
            module.model, params, signal, config.render, config.data.depth_range, test_time, lambda: autocast
        ),
        signals=lambda: tto.measure_signals(
            module.model, params, signal, config.data.coord_range, test_time, autocast=lambda: autocast
        ),
    )
    times = []
    for _ in range(2):
        tick = time.perf_counter()
        with torch.no_grad():
            measure()
        synchronize(device)
        times.append(time.perf_counter() - tick)
    return batch_size(signal) / times[-1]


def print_profile(step, device: torch.device, count: int, title: str) -> None:
    """One step under torch.profiler: its ``count`` most expensive operators by device (else CPU) time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        step()
        synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"profile of one step, {title}:")
    print(profiler.key_averages().table(sort_by=key, row_limit=count), flush=True)


def signal_columns(model_name: str, data: str, batch: int, device: torch.device) -> tuple:
    """A signal row's data label, stored reference img/s and peak GiB (None where none was measured), and no columns
    of its own."""
    reference = REFERENCE.get((model_name, data, device.type, batch))
    reference_memory = REFERENCE_MEMORY_GIB.get((model_name, data, batch)) if device.type == "cuda" else None
    return data, reference, reference_memory, {}


def views_columns(
    model_name: str, data: str, config, batch: int, seconds: float, device: torch.device, renders
) -> tuple:
    """A NeRF row's data label (with its support views), stored reference objects/s and peak GiB (None where none was
    measured), and its own columns: rays/s and ``renders()``, the rate of full renders."""
    views = config.data.support_views
    reference, reference_rays, reference_memory = None, None, None
    if device.type == "cuda" and (model_name, data, views, batch) in REFERENCE_VIEWS:
        reference, reference_rays, reference_memory = REFERENCE_VIEWS[(model_name, data, views, batch)]
    extra = {
        "rays/s": batch * config.render.train_rays / seconds,
        "stored ref rays/s": "-" if reference_rays is None else reference_rays,
        "render img/s": renders(),
    }
    return f"{data}:{views}", reference, reference_memory, extra


def render_rate(module: ParamsModule, config, signal: dict, autocast, device: torch.device) -> float:
    """Full query views rendered per second (one untimed render first), as evaluation renders them."""
    query = signal["query"]
    size = tuple(query["images"].shape[2:4])
    args = (module.tree(), signal["support"], query["poses"], query["focals"], size, config.render)
    times = []
    for _ in range(2):
        tick = time.perf_counter()
        with autocast:
            novel_views(module.model, *args, config.data.depth_range)
        synchronize(device)
        times.append(time.perf_counter() - tick)
    return query["images"].shape[0] * query["images"].shape[1] / times[-1]


def parse_rows(only: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
    """``model:data[:views]`` entries as (model, data, support views), each checked against the presets (a
    ValueError naming the entry), so a typo is refused before the slow ceiling measurement."""
    rows = []
    for entry in only:
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not all(parts) or (len(parts) == 3 and not parts[2].isdigit()):
            raise ValueError(f"--only {entry}: give model:data or model:data:views, e.g. ipc-meta:imagenette178")
        model_name, data = parts[:2]
        views = int(parts[2]) if len(parts) == 3 else None
        presets.resolve(model_name, data, views)
        rows.append((model_name, data, views))
    return rows


def main(args: Args) -> None:
    with cli.refusals():
        entries = parse_rows(args.only)
    device = torch.device(args.device)
    ceiling = matmul_ceiling(device, args.precision)
    print(
        f"{device.type} ({torch.get_num_threads()} threads), {args.precision} matmul ceiling {ceiling / 1e12:.2f} TFLOP/s"
    )
    rows = []
    for (model_name, data, views), entry in zip(entries, args.only):
        try:
            rows.append(bench_row(model_name, data, views, args, device, ceiling))
        except torch.OutOfMemoryError as error:  # a row that does not fit is reported, the table goes on
            rows.append({"model": model_name, "data": entry, "precision": args.precision, "error": str(error)[:80]})
        done = rows[-1]  # a line per row as it is measured; the table once, at the end
        status = done["error"] if "error" in done else f"{done['img/s']:.3g} img/s, MFU {done['MFU']}"
        print(f"{entry}: {status}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    columns = list(dict.fromkeys(name for row in rows for name in row))
    print(f"\nsummary: {device.type}, {args.precision}{f' compiled ({args.compile_mode})' if args.compile else ''}")
    print(table(rows, columns))
    print(f"\n{STORED}")


if __name__ == "__main__":
    main(tyro.cli(Args))
