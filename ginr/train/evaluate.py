"""Evaluation on a held-out split and the reconstructions logged beside it (fidelity 4.4, 5.6, 6.2).

Metrics are means over instances of per-instance values (the PSNR is the mean of per-instance PSNRs); every process
sums over its own shard and the sums are added across processes, so each instance counts exactly once (quirk 19
fixed). Predictions are not clamped for metrics (quirk 23); only the logged images are. Signals (images, audio) are
measured by :func:`evaluate`, NeRF views (an instance is one object with one draw of support and query views) by
:func:`evaluate_views`; both go through the same loop and reduction (:func:`measure_all`). Given a
:class:`ginr.tto.TestTime`, both measure after each of its test-time step counts (metrics ``tto<N>/<name>``), and
signals may be given only in part (an observation mask, :mod:`ginr.masks`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from torchvision.utils import make_grid

from ginr import metrics, render, tasks, tto
from ginr.config import Config, RenderConfig
from ginr.coords import grid
from ginr.inference import novel_views, radiance_field
from ginr.models.base import Model
from ginr.pytree import batch_size, batch_slice, to_device
from ginr.tasks import nerf_or_signals
from ginr.train.objective import sample_rays
from ginr.train.plots import waveform_image

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EvalResult:
    metrics: dict[str, float]
    """psnr, mse, ssim (images), inner_psnr/<t> (meta models), count."""
    images: dict[str, torch.Tensor]
    """Image grids (3, H, W) in [0, 1] of the first instances: ground truth over reconstructions (waveform plots for
    audio)."""
    audio: dict[str, tuple[torch.Tensor, int]] = dataclasses.field(default_factory=dict)
    """Audio clips (T,) of the first instances with their sampling rate: ground truth and reconstructions at x1 and
    x``upsample`` the rate."""
    text: dict[str, str] = dataclasses.field(default_factory=dict)
    """Notes about the first instances (NeRF: the PSNR of each rendered query view)."""
    instances: list[dict] | None = None
    """When asked for: every instance's values (``instance``: its index in the split), in the order of the split."""


Pictures = Callable[[object], tuple[dict, dict, dict]]
"""The first instances of a batch -> (images, audio, text) for the logs."""


@torch.no_grad()
def evaluate(
    model: Model,
    params: dict,
    loader,
    *,
    accelerator,
    coord_range: tuple[float, float],
    n_steps: int | None = None,
    n_images: int = 4,
    upsample: int = 3,
    sample_rate: int = 16000,
    test_time: tto.TestTime | None = None,
    observed: torch.Tensor | None = None,
    keep_instances: bool = False,
) -> EvalResult:
    """Encode and decode every instance of ``loader``; return the metrics and (main process) reconstructions.

    ``test_time`` or ``observed`` (a boolean mask of the signals' positions): measure with
    :func:`ginr.tto.measure_signals` instead (metrics ``tto<N>/<name>``, with the PSNR on observed and unobserved
    positions given a mask). ``keep_instances``: also return every instance's values.

    A batch that runs out of device memory is measured in smaller chunks (see :class:`Chunked`) and the images are
    left out if even they do not fit, so a long run is never killed by its evaluation.
    """

    def per_instance(signal: torch.Tensor) -> dict[str, torch.Tensor]:
        if test_time is not None or observed is not None:
            mask = None if observed is None else observed.to(signal.device)
            return tto.measure_signals(
                model, params, signal, coord_range, test_time or tto.TestTime(), mask, n_steps, accelerator.autocast
            )
        coords = grid(tuple(signal.shape[1:-1]), coord_range, device=signal.device)
        with accelerator.autocast():
            encoding = model.encode(params, signal, coords, training=False, n_steps=n_steps)
            pred = model.decode(params, encoding.modulation, coords.flatten(0, -2)).view_as(signal)
        mse = metrics.mse_per_sample(pred, signal)
        values = {"mse": mse, "psnr": metrics.psnr(mse), "count": torch.ones_like(mse)}
        if signal.dim() == 4:
            values["ssim"] = metrics.ssim_per_sample(pred, signal)
        if encoding.inner_mse is not None and encoding.inner_mse.shape[1]:
            values["inner_psnr"] = metrics.psnr(encoding.inner_mse)
        return values

    def pictures(first: torch.Tensor) -> tuple[dict, dict, dict]:
        if first.dim() == 4:
            return reconstruction_grids(model, params, first, coord_range, upsample, accelerator, n_steps), {}, {}
        images, audio = audio_reconstructions(
            model, params, first, coord_range, upsample, sample_rate, accelerator, n_steps
        )
        return images, audio, {}

    return measure_all(
        loader, per_instance, pictures, accelerator=accelerator, n_images=n_images, keep_instances=keep_instances
    )


@torch.no_grad()
def evaluate_views(
    model: Model,
    params: dict,
    loader,
    *,
    accelerator,
    render_config: RenderConfig,
    depth_range: tuple[float, float],
    estimate: bool = False,
    n_images: int = 4,
    test_time: tto.TestTime | None = None,
    keep_instances: bool = False,
) -> EvalResult:
    """NeRF evaluation (fidelity 5.6): each instance (an object with a draw of support and query views) is encoded from
    its support views and its query views are rendered in full, ``chunk_rays`` rays at a time without jitter:
    ``psnr`` is the mean over instances of the PSNR of all their query pixels, with ``mse`` and ``ssim``.

    ``estimate``: render only ``render_config.eval_rays`` random rays per instance, with jitter (the reference's cheap
    in-training evaluation, quirk 11); the metrics are then named ``mse_estimate`` and ``psnr_estimate``. The logged
    images (support views, ground truth and rendered query views of the first objects) are always full renders.

    ``test_time``: full renders after each of its step counts of refinement on the support views
    (:func:`ginr.tto.measure_views`, metrics ``tto<N>/<name>``). ``keep_instances``: also return every instance's
    values.
    """
    if estimate and render_config.eval_rays is None:
        raise ValueError("an estimate needs --render.eval-rays; None asks for full views")

    def per_instance(batch: dict) -> dict[str, torch.Tensor]:
        if test_time is not None:
            return tto.measure_views(model, params, batch, render_config, depth_range, test_time, accelerator.autocast)
        with accelerator.autocast():
            if estimate:
                modulation = model.encode(params, batch["support"], None, training=False).modulation
                origins, directions, target = sample_rays(
                    batch["query"], render_config.eval_rays, False, "--render.eval-rays"
                )
                pred = render.render_rays(
                    radiance_field(model, params, modulation), origins, directions, render_config.points_per_ray,
                    depth_range, jitter=True,
                )  # fmt: skip
            else:
                target = batch["query"]["images"]
                pred = render_query(model, params, batch, render_config, depth_range)
        count = torch.ones(target.shape[0], device=target.device)
        if estimate:
            mse = metrics.mse_per_sample(pred, target)
            return {"mse_estimate": mse, "psnr_estimate": metrics.psnr(mse), "count": count}
        return {**tto.view_metrics(pred, target), "count": count}

    def pictures(first: dict) -> tuple[dict, dict, dict]:
        return view_grids(model, params, first, render_config, depth_range, accelerator)

    return measure_all(
        loader, per_instance, pictures, accelerator=accelerator, n_images=n_images, keep_instances=keep_instances
    )


def evaluate_config(
    config: Config,
    model: Model,
    params: dict,
    loader,
    *,
    accelerator,
    estimate: bool = False,
    n_steps=None,
    test_time: tto.TestTime | None = None,
    observed: torch.Tensor | None = None,
    keep_instances: bool = False,
) -> EvalResult:
    """The evaluation a run's ``config`` asks for: :func:`evaluate_views` for a NeRF (``estimate``: the in-training
    estimate of ``--render.eval-rays``, when set), :func:`evaluate` for a signal model (``observed``: signals
    given in part); ``test_time`` and ``keep_instances`` as they say."""
    data = config.data
    if observed is not None:
        tasks.require_signals(config, "a model given part of each view")
    measure = nerf_or_signals(
        config,
        nerf=functools.partial(
            evaluate_views, render_config=config.render, depth_range=data.depth_range,
            estimate=estimate and config.render.eval_rays is not None,
        ),
        signals=functools.partial(
            evaluate, coord_range=data.coord_range, n_steps=n_steps, sample_rate=data.sample_rate, observed=observed
        ),
    )  # fmt: skip
    return measure(model, params, loader, accelerator=accelerator, test_time=test_time, keep_instances=keep_instances)


def measure_all(
    loader,
    per_instance: Callable[[object], dict[str, torch.Tensor]],
    pictures: Pictures,
    *,
    accelerator,
    n_images: int,
    keep_instances: bool = False,
) -> EvalResult:
    """Measure every batch of ``loader`` (tensors or dicts of tensors) with ``per_instance`` (a batch -> per-instance
    values, one of them ``count``), add the sums across processes and divide by the count; on the main process draw
    ``pictures`` of the first ``n_images`` instances of the first batch. ``keep_instances``: also gather every
    instance's values (B,) from every process, numbered by the indices of the loader's batch sampler (in the order
    they come from a loader without one).

    Every process's loader must give it at least one instance (:class:`ginr.data.EvalBatchSampler` refuses a split
    smaller than the process count when it is built, before any collective). It runs on a fork of the torch RNG, so
    whatever it draws never shifts training's random streams (an evaluation at the end of a stopped run is one an
    uninterrupted run does not make).
    """
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _measure_all(loader, per_instance, pictures, accelerator, n_images, keep_instances)


def _measure_all(loader, per_instance, pictures, accelerator, n_images, keep_instances) -> EvalResult:
    """:func:`measure_all` inside its RNG fork."""
    sums: dict[str, torch.Tensor] = {}
    images: dict[str, torch.Tensor] = {}
    audio: dict[str, tuple[torch.Tensor, int]] = {}
    text: dict[str, str] = {}
    rows: list[dict] = []
    sampler = getattr(loader, "batch_sampler", None)
    numbers = itertools.count() if sampler is None else (index for indices in sampler for index in indices)
    measure = Chunked(per_instance)
    for batch_index, batch in enumerate(loader):
        batch = to_device(batch, accelerator.device)
        measured = measure(batch)
        for name, values in measured.items():
            total = values.double().sum(dim=0)
            sums[name] = sums[name] + total if name in sums else total
        if keep_instances:
            columns = {name: values.tolist() for name, values in measured.items() if values.dim() == 1}
            columns.pop("count")
            rows += [{"instance": next(numbers), **dict(zip(columns, row))} for row in zip(*columns.values())]
        if batch_index == 0 and accelerator.is_main_process:
            try:
                images, audio, text = pictures(batch_slice(batch, 0, n_images))
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                log.warning("evaluation: out of memory drawing the reconstruction images; leaving them out this time")

    names = sorted(sums)
    device = accelerator.device
    local = [sums[name].reshape(-1).to(device) for name in names]
    sizes = [t.numel() for t in local]
    total = accelerator.reduce(torch.cat(local), reduction="sum")
    result, offset = {}, 0
    for name, size in zip(names, sizes):
        result[name] = total[offset : offset + size]
        offset += size
    count = float(result.pop("count"))
    out = {name: float(value) / count for name, value in result.items() if name != "inner_psnr"}
    for step, value in enumerate(result.get("inner_psnr", torch.zeros(0)).tolist()):
        out[f"inner_psnr/{step}"] = value / count
    out["count"] = int(count)
    instances = sorted(gather_object(rows), key=lambda row: row["instance"]) if keep_instances else None
    return EvalResult(metrics=out, images=images, audio=audio, text=text, instances=instances)


def render_query(model: Model, params: dict, batch: dict, render_config: RenderConfig, depth_range) -> torch.Tensor:
    """Full renders (B, q, H, W, 3) of a batch's query cameras from its support views (fidelity 5.6)."""
    query = batch["query"]
    size = tuple(query["images"].shape[2:4])
    return novel_views(
        model, params, batch["support"], query["poses"], query["focals"], size, render_config, depth_range
    )


def view_grids(
    model: Model, params: dict, batch: dict, render_config: RenderConfig, depth_range, accelerator
) -> tuple[dict, dict, dict]:
    """One row per object: its support views, then its query views' ground truth, then their renders; and the PSNR
    of each rendered view as a text table."""
    with accelerator.autocast():
        pred = render_query(model, params, batch, render_config, depth_range).float()
    support, truth = batch["support"]["images"], batch["query"]["images"]
    psnr = metrics.psnr((pred - truth).square().flatten(2).mean(dim=2))  # (B, views)
    rows = torch.cat([support, truth, pred.clamp(0, 1)], dim=1)  # (B, n + 2 q, H, W, 3)
    grid_image = make_grid(rows.flatten(0, 1).permute(0, 3, 1, 2).cpu(), nrow=rows.shape[1])
    lines = ["object  query view  psnr", *(
        f"{i:6d}  {v:10d}  {value:.2f}" for i, row in enumerate(psnr.tolist()) for v, value in enumerate(row)
    )]  # fmt: skip
    return {"views": grid_image}, {}, {"view_psnr": "\n".join(lines)}


def reconstruction_grids(model, params, signal, coord_range, upsample, accelerator, n_steps) -> dict[str, torch.Tensor]:
    """Ground truth (top row) over reconstructions (bottom row) at x1 and x``upsample``; for meta models also the
    reconstruction after each inner step."""
    count = signal.shape[0]
    shape = tuple(signal.shape[1:-1])
    base = grid(shape, coord_range, device=signal.device)
    with accelerator.autocast():
        encoding = model.encode(params, signal, base, training=False, n_steps=n_steps, keep_trajectory=True)
    truth = signal.permute(0, 3, 1, 2)
    out = {}
    for scale in (1, upsample):
        coords = grid(shape, coord_range, upsample=scale, device=signal.device)
        with accelerator.autocast():
            pred = model.decode(params, encoding.modulation, coords.flatten(0, -2)).float()
        pred = pred.view(count, *coords.shape[:-1], -1).permute(0, 3, 1, 2).clamp(0, 1)
        big_truth = F.interpolate(truth, size=pred.shape[-2:], mode="nearest")
        out[f"reconstruction_x{scale}"] = make_grid(torch.cat([big_truth, pred]).cpu(), nrow=count)
    if encoding.trajectory:
        steps = []
        for factors in encoding.trajectory:
            with accelerator.autocast():
                pred = model.decode(params, factors, base.flatten(0, -2)).float()
            steps.append(pred.view_as(signal).permute(0, 3, 1, 2).clamp(0, 1))
        out["inner_steps"] = make_grid(torch.cat([truth, *steps]).cpu(), nrow=count)
    return out


def audio_reconstructions(model, params, signal, coord_range, upsample, sample_rate, accelerator, n_steps):
    """Clips (ground truth, reconstruction at x1 and x``upsample`` the sampling rate) and a waveform plot."""
    count, length = signal.shape[:2]
    with accelerator.autocast():
        encoding = model.encode(
            params, signal, grid((length,), coord_range, device=signal.device), training=False, n_steps=n_steps
        )
    modulation = encoding.modulation
    clips = {f"truth_{i}": (signal[i, :, 0].cpu(), sample_rate) for i in range(count)}
    plots = {}
    for scale in (1, upsample):
        coords = grid((length,), coord_range, upsample=scale, device=signal.device)
        with accelerator.autocast():
            pred = model.decode(params, modulation, coords).float()[..., 0].clamp(-1, 1).cpu()
        for i in range(count):
            clips[f"reconstruction_x{scale}_{i}"] = (pred[i], sample_rate * scale)
        if scale == 1:
            plots["waveforms"] = waveform_image(signal[..., 0], pred)
    return plots, clips


def is_out_of_memory(error: BaseException) -> bool:
    """A device out-of-memory error: ``torch.OutOfMemoryError`` (CUDA's) or a RuntimeError saying so (other
    backends)."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class Chunked:
    """``fn`` (a batch -> per-instance tensors, first dim the batch) run on chunks of at most the largest size that
    fitted in memory so far: a chunk that runs out of memory is retried in halves, down to single instances, and the
    smaller size is kept for the batches after it. The results are concatenated, so the caller sees one batch."""

    def __init__(self, fn: Callable[[torch.Tensor], dict[str, torch.Tensor]]):
        self.fn = fn
        self.limit: int | None = None

    def __call__(self, batch: torch.Tensor | dict) -> dict[str, torch.Tensor]:
        parts, start, total = [], 0, batch_size(batch)
        size = min(total, self.limit or total)
        while start < total:
            result, error = self._attempt(batch_slice(batch, start, start + size))
            if result is None:
                if size == 1:
                    raise torch.OutOfMemoryError(
                        f"evaluation ran out of memory on a single instance ({error}); lower --model.vmap-chunk-size, "
                        "--render.chunk-rays, the resolution or the model size"
                    )
                size = self.limit = (size + 1) // 2
                log.warning("evaluation: out of memory on a chunk; measuring %d instances at a time from now on", size)
                continue
            parts.append(result)
            start += size
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _attempt(self, chunk: torch.Tensor | dict) -> tuple[dict[str, torch.Tensor] | None, str]:
        """``(fn(chunk), "")``, or ``(None, message)`` when the device ran out of memory; the error (and the
        tensors its traceback holds) is dropped before the retry, so its memory can be reused."""
        try:
            return self.fn(chunk), ""
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            message = str(error)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None, message
