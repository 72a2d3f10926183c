"""Training-step benchmark: one table of img/s, step time, peak memory, GFLOP per image and model FLOP utilisation,
beside the reference's figures (measured for this project: the reference on an H200 and on the CPU).

    python recipes/bench.py                                             # every preset of the table, this device
    python recipes/bench.py --only ipc-meta:imagenette178 --batch 2     # one row
    python recipes/bench.py --precision bf16 --batch 16                 # on a GPU
    python recipes/bench.py --only ipc-transinr:shapenet-cars:5 --batch 8   # NeRF, 5 support views

A row times full training steps (encode + decode + loss + backward + Adam) of the preset's model, with the preset's
training options (coordinate subsampling and noise), on random signals of the preset's shape, so no dataset is
needed. NeRF rows (``model:shapenet-<category>[:views]``) train on random 128-px views seen from cameras around the
origin (128 random rays per object, 128 points per ray, jittered) and report objects/s (in the img/s column), rays/s
and the rate of full 128x128 renders in evaluation (``render img/s``, 1024 rays per object at a time). Warm-up steps
are excluded from the times (the step time is the median of the timed steps) but not from the peak memory (CUDA
graphs allocate their pool while warming up). FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode``; utilisation is achieved FLOP/s over a matrix-product ceiling measured
on the same device and precision. Batch defaults: 2 on a CPU, the preset's global batch on a GPU (16; 32 for NeRF).
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from typing import Literal

import torch
import tyro
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ginr import cli, models, presets
from ginr.data import is_views, signal_shape
from ginr.inference import novel_views
from ginr.module import ParamsModule
from ginr.pytree import tree_map
from ginr.train import setup
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


def matmul_ceiling(device: torch.device, precision: str) -> float:
    """FLOP/s of a large square matrix product in ``precision`` on ``device`` (the utilisation denominator): the best
    of 5 timed rounds, so a busy moment on a shared machine does not lower the ceiling."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    b = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats, fastest = 10, float("inf")
    for _ in range(5):
        tick = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - tick)
    return 2 * size**3 * repeats / fastest


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_views(batch: int, views: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random images seen from cameras 4 units from the origin, looking at it (so rays cross the depth range)."""
    eye = torch.nn.functional.normalize(torch.randn(batch * views, 3), dim=1) * 4
    back = eye / eye.norm(dim=1, keepdim=True)
    right = torch.nn.functional.normalize(
        torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]).expand_as(back), back), dim=1
    )
    poses = torch.stack([right, torch.linalg.cross(back, right), back, eye], dim=2).view(batch, views, 3, 4)
    return {
        "images": torch.rand(batch, views, size, size, 3, device=device),
        "poses": poses.to(device),
        "focals": torch.full((batch, views, 2), 131.25, device=device),  # learnit's 128 px at ~52 degrees
    }


def bench_row(model_name: str, data: str, views: int | None, args: Args, device: torch.device, ceiling: float) -> dict:
    config = presets.resolve(model_name, data, views)
    batch = args.batch or (config.train.batch_size if device.type == "cuda" else 2)
    model = models.build(config.model_name, config.model)
    objective = objective_for(config)
    module = ParamsModule(model, model.init(torch.Generator().manual_seed(0)), objective=objective).to(device)
    if args.compile:
        module.objective = objective_for(config, args.compile_mode)
    optimizer = setup.adam(module.parameters(), config.optim)
    if is_views(config.data):
        size, views = config.data.resolution, config.data.support_views
        signal = {"support": random_views(batch, views, size, device), "query": random_views(batch, 1, size, device)}
        epoch = config.render.foreground_first_epochs  # the preset's random rays after its first epochs
    else:
        shape, channels = signal_shape(config.data)
        signal = torch.rand(batch, *shape, channels, device=device)
        if channels == 1:  # audio in [-1, 1]
            signal = signal * 2 - 1
        epoch = 0
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    if batch % args.accumulation:
        raise SystemExit(f"error: --accumulation {args.accumulation} must divide the batch {batch}")
    micro = batch // args.accumulation

    parts = [
        tree_map(lambda t, i=i: t[i : i + micro], signal) if isinstance(signal, dict) else signal[i : i + micro]
        for i in range(0, batch, micro)
    ]

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
    if is_views(config.data):
        views = config.data.support_views
        label = f"{data}:{views}"
        reference, reference_rays, reference_memory = None, None, None
        if device.type == "cuda" and (model_name, data, views, batch) in REFERENCE_VIEWS:
            reference, reference_rays, reference_memory = REFERENCE_VIEWS[(model_name, data, views, batch)]
        extra = {
            "rays/s": batch * config.render.train_rays / seconds,
            "ref rays/s": "-" if reference_rays is None else reference_rays,
            "render img/s": render_rate(module, config, signal, autocast, device),
        }
    else:
        label, extra = data, {}
        reference = REFERENCE.get((model_name, data, device.type, batch))
        reference_memory = REFERENCE_MEMORY_GIB.get((model_name, data, batch)) if device.type == "cuda" else None
    return {
        "model": model_name,
        "data": label,
        "batch": batch,
        "precision": args.precision + (f" compiled ({args.compile_mode})" if args.compile else ""),
        "micro-batches": args.accumulation,
        "step ms": round(seconds * 1000, 1),
        "img/s": batch / seconds,
        "ref img/s": "-" if reference is None else reference,
        "speed-up": "-" if reference is None else f"{batch / seconds / reference:.2f}x",
        **extra,
        "peak memory": memory,
        "ref memory": "-" if reference_memory is None else f"{reference_memory} GiB",
        "GFLOP/img": flops / batch / 1e9,
        "ref GFLOP/img": REFERENCE_GFLOP.get((model_name, data), "-"),
        "TFLOP/s": flops / seconds / 1e12,
        "MFU": f"{flops / seconds / ceiling:.0%}",
    }


def count_flops(step) -> int:
    """FLOPs of one call of ``step``, attention counted as its matrix products (run through the math backend: the
    counter does not see the CPU's fused attention kernel and would leave attention out)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


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
        print(table(rows[-1:], list(rows[-1])), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    columns = list(dict.fromkeys(name for row in rows for name in row))
    print(f"\nsummary: {device.type}, {args.precision}{f' compiled ({args.compile_mode})' if args.compile else ''}")
    print(table(rows, columns))


if __name__ == "__main__":
    main(tyro.cli(Args))
