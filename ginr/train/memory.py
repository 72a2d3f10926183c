"""A training step's memory, estimated before the run starts, so that a run that cannot fit is refused with the
flags that shrink it instead of running until the kernel (or CUDA) kills it.

The estimate is deliberately simple: the hyponet's activations at every point of a micro-batch (the Fourier features
and :data:`FLOATS_PER_UNIT` float per hidden unit), times ``n_inner_steps + 2`` for the meta-learned models (every
inner step is differentiated through); the hypernetwork transformer's activations per token and its attention maps;
and the weights with their gradient and two Adam moments. Everything is counted in float32, however the run computes
(bf16 autocast keeps fp32 master copies). ``--model.vmap-chunk-size`` is not counted: the outer backward pass keeps
every chunk's graph.
"""

from __future__ import annotations

import os

import torch

from ginr.config import Config, HypernetINRConfig, MetaINRConfig
from ginr.data import is_views, signal_shape

FLOATS_PER_UNIT = 1
"""Floats kept per hidden unit and point. Calibrated on the CPU by the growth of the peak resident memory
(``ru_maxrss``) over one objective and its backward pass at 64 px, batch 16, on the photos presets: the estimates are
1.20x (ipc-meta), 1.37x (ipc-transinr) and 1.48x (transinr) the measured peaks (1070, 970, 1033 MiB). At their own
batch every paper preset estimates under 22 GiB (ffhq1024's transinr the largest, 21.6 GiB)."""
BYTES = 4


def hyponet_floats_per_point(config: Config) -> int:
    """Floats the hyponet keeps per point in one forward pass (input features, hidden units, output)."""
    hyponet = config.model.hyponet
    features = 2 * hyponet.fourier.dim if hyponet.fourier.enabled else hyponet.input_dim
    return features + FLOATS_PER_UNIT * sum(hyponet.hidden_dims()) + hyponet.output_dim


def points_per_instance(config: Config) -> int:
    """Points the hyponet is evaluated at per training instance: every pixel or sample of the signal (a hypernetwork's
    ``--train.coord-subsample`` of them), or a NeRF's training rays times points per ray. A Hub dataset's kind is
    known only once loaded: it is counted as resolution x resolution images."""
    if is_views(config.data):
        return config.render.train_rays * config.render.points_per_ray
    layout = signal_shape(config.data)
    points = 1
    for size in layout[0] if layout else (config.data.resolution, config.data.resolution):
        points *= size
    if not isinstance(config.model, MetaINRConfig) and config.train.coord_subsample:
        points = max(1, int(points * config.train.coord_subsample))
    return points


def transformer_floats(config: Config) -> int:
    """Floats the hypernetwork transformer keeps per instance: per block and token, 6 widths plus the MLP's two
    hidden widths, and one attention map per head; zero for the meta-learned models."""
    model = config.model
    transformer = getattr(model, "transformer", None)
    if transformer is None:
        return 0
    layers = model.hyponet.n_layer if model.modulated_layers is None else len(model.modulated_layers)
    weight_tokens = model.n_weight_tokens * layers if len(model.n_weight_tokens) == 1 else model.n_weight_tokens
    tokens = model.tokenizer.n_tokens + sum(weight_tokens)
    width = transformer.embed_dim
    per_block = tokens * (6 + 2 * transformer.mlp_ratio) * width + transformer.n_head * tokens * tokens
    return transformer.n_layer * per_block


def parameter_floats(config: Config) -> int:
    """About the number of weights (the hyponet's layers and the transformer's blocks)."""
    hyponet = config.model.hyponet
    widths = [2 * hyponet.fourier.dim if hyponet.fourier.enabled else hyponet.input_dim, *hyponet.hidden_dims()]
    count = sum(a * b for a, b in zip(widths, [*hyponet.hidden_dims(), hyponet.output_dim]))
    transformer = getattr(config.model, "transformer", None)
    if transformer is not None:
        count += transformer.n_layer * (4 + 2 * transformer.mlp_ratio) * transformer.embed_dim**2
    return count


def step_bytes(config: Config, micro_batch: int) -> int:
    """The estimated peak memory of one training step on one process, in bytes (see the module's docstring)."""
    model = config.model
    repeats = 1
    if isinstance(model, MetaINRConfig):
        repeats = model.n_inner_steps + 2
    per_instance = points_per_instance(config) * hyponet_floats_per_point(config) * repeats
    per_instance += transformer_floats(config)
    return BYTES * (micro_batch * per_instance + 4 * parameter_floats(config))


def device_memory(device: torch.device) -> int:
    """The memory a process can use on ``device``: a CUDA device's total, or the machine's physical memory shared
    by the processes of this machine (``LOCAL_WORLD_SIZE``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def check_fits(config: Config, micro_batch: int, device: torch.device) -> None:
    """Refuse (a ValueError naming the levers) a run whose step (:func:`step_bytes`) exceeds :func:`device_memory`.
    A model of your own (``ginr.models.register``) is not estimated."""
    if not isinstance(config.model, MetaINRConfig | HypernetINRConfig):
        return
    need, have = step_bytes(config, micro_batch), device_memory(device)
    if need > have:
        raise ValueError(
            f"one training step needs about {need / 2**30:.1f} GiB ({micro_batch} instance(s) per micro-batch at "
            f"--data.resolution {config.data.resolution}), more than the {have / 2**30:.1f} GiB of this "
            f"{device.type} device; raise --train.grad-accumulation (fewer instances at once) or lower "
            "--data.resolution (or --train.batch-size)"
        )
