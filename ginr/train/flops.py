"""Model FLOP utilisation: the FLOPs of a training step over the matrix-product ceiling of the device.

The FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and attention;
elementwise work is not counted). The ceiling is the FLOP/s of a large square matrix product in the run's precision;
``recipes/bench.py`` measures it live; a training run reads it from a cache filled once per device, torch version
and precision (:func:`cached_matmul_ceiling`), so only the first run of each waits for the measurement. A training
run counts its FLOPs once, on fake copies of its first micro-batch (:func:`step_flops`: no arithmetic), and logs
``train/mfu`` = FLOPs per instance x img/s / the ceiling of all its devices.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ginr.pytree import batch_size, flatten, tree_map

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The matrix products' operand type per precision (tf32: float32 with TF32 matmuls; bf16/fp16: autocast's)."""
CACHE_FILE = "matmul_ceiling.json"


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step``, attention counted as its matrix products (run through the math backend: the
    counter does not see the CPU's fused attention kernel and would leave attention out)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def step_flops(model, params: dict, objective: Callable, batch, epoch: int = 0) -> int:
    """FLOPs of the forward and backward pass of ``objective(model, params, batch, epoch=epoch)`` (an eager one: a
    compiled function's kernels are opaque to the counter), counted on fake CPU copies of ``params`` and ``batch``:
    shapes only, no arithmetic, the same count whatever device the run is on, and the weights, their gradients and
    the random streams untouched."""
    mode = FakeTensorMode()

    def fake(tensor: torch.Tensor) -> torch.Tensor:
        return mode.from_tensor(tensor.detach().cpu()).requires_grad_(tensor.requires_grad)

    params = tree_map(fake, params)
    batch = fake(batch) if isinstance(batch, torch.Tensor) else tree_map(fake, batch)
    trainable = [leaf for leaf in flatten(params).values() if leaf.requires_grad]
    with mode:
        return count_flops(
            lambda: torch.autograd.grad(
                objective(model, params, batch, epoch=epoch)["loss"], trainable, allow_unused=True
            )
        )


def per_instance(model, params: dict, objective: Callable, batches: Iterator) -> tuple[float, Iterator]:
    """FLOPs per instance of a training step (:func:`step_flops` of the first micro-batch of ``batches``, over its
    size), and an iterator that still yields that micro-batch first, so the step trains on the batch it was counted
    on."""
    first = next(batches)
    count = step_flops(model, params, objective, first)
    return count / batch_size(first), itertools.chain([first], batches)


def utilisation(flops_per_instance: float, instances_per_s: float, ceiling: float) -> float:
    """Model FLOP utilisation: the achieved FLOP/s over ``ceiling`` (FLOP/s of every device the step ran on)."""
    return flops_per_instance * instances_per_s / ceiling


def matmul_ceiling(device: torch.device, precision: str) -> float:
    """FLOP/s of a large square matrix product in ``precision`` on ``device`` (the utilisation denominator): the best
    of 5 timed rounds, so a busy moment on a shared machine does not lower the ceiling. TF32 matmuls are on for
    ``tf32`` only while it measures."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    b = torch.randn(size, size, device=device, dtype=DTYPES[precision])
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
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
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
    return 2 * size**3 * repeats / fastest


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_dir() -> Path:
    """ginr's folder in the user's cache: ``$XDG_CACHE_HOME/ginr``, else ``~/.cache/ginr``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ginr"


def device_name(device: torch.device) -> str:
    """What the ceiling depends on besides torch and the precision: the GPU's name, or the CPU's model and the
    threads this process computes with."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def cached_matmul_ceiling(device: torch.device, precision: str, folder: Path | None = None) -> float:
    """:func:`matmul_ceiling`, measured once per device, torch version and precision and kept in
    ``folder/matmul_ceiling.json`` (default :func:`cache_dir`); a cache that cannot be read or written is measured
    around."""
    path = (folder or cache_dir()) / CACHE_FILE
    key = f"{device_name(device)} | torch {torch.__version__} | {precision}"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = matmul_ceiling(device, precision)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(known, indent=2))
            os.replace(partial, path)
        except OSError:
            pass
    return known[key]


def run_ceiling(accelerator, precision: str) -> float:
    """The ceiling of every device of a run together (collective): :func:`cached_matmul_ceiling` of the main
    process's device, read or measured there while the others wait (on a CPU they would share its cores), times the
    process count."""
    ceiling = cached_matmul_ceiling(accelerator.device, precision) if accelerator.is_main_process else None
    return broadcast_object_list([ceiling])[0] * accelerator.num_processes
