"""Evaluation on a held-out split and the reconstructions logged beside it (SPEC 4.4, 6.2).

Metrics are means over instances of per-instance values (the PSNR is the mean of per-instance PSNRs); every process
sums over its own shard and the sums are added across processes, so each instance counts exactly once (quirk 19
fixed). Predictions are not clamped for metrics (quirk 23); only the logged images are.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from ginr import metrics
from ginr.coords import grid
from ginr.models.base import Model
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
) -> EvalResult:
    """Encode and decode every instance of ``loader``; return the metrics and (main process) reconstructions.

    A batch that runs out of device memory is measured in smaller chunks (see :class:`Chunked`) and the images are
    left out if even they do not fit, so a long run is never killed by its evaluation. It runs on a fork of the torch
    RNG, so whatever it draws never shifts training's random streams (an evaluation at the end of a stopped run is
    one an uninterrupted run does not make).
    """
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _evaluate(model, params, loader, accelerator, coord_range, n_steps, n_images, upsample, sample_rate)


def _evaluate(model, params, loader, accelerator, coord_range, n_steps, n_images, upsample, sample_rate) -> EvalResult:
    """:func:`evaluate` inside its RNG fork."""
    sums: dict[str, torch.Tensor] = {}
    images: dict[str, torch.Tensor] = {}
    audio: dict[str, tuple[torch.Tensor, int]] = {}

    def per_instance(signal: torch.Tensor) -> dict[str, torch.Tensor]:
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

    measure = Chunked(per_instance)
    for batch_index, signal in enumerate(loader):
        signal = signal.to(accelerator.device)
        for name, values in measure(signal).items():
            total = values.double().sum(dim=0)
            sums[name] = sums[name] + total if name in sums else total
        if batch_index == 0 and accelerator.is_main_process:
            try:
                first = signal[:n_images]
                if signal.dim() == 4:
                    images = reconstruction_grids(model, params, first, coord_range, upsample, accelerator, n_steps)
                else:
                    images, audio = audio_reconstructions(
                        model, params, first, coord_range, upsample, sample_rate, accelerator, n_steps
                    )
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                log.warning("evaluation: out of memory drawing the reconstruction images; leaving them out this time")

    names = sorted(sums)
    device = accelerator.device
    local = [sums[name].reshape(-1).to(device) for name in names]
    sizes = [t.numel() for t in local]
    if local:
        total = accelerator.reduce(torch.cat(local), reduction="sum")
    else:
        raise ValueError(
            f"process {accelerator.process_index} got no evaluation instance: the evaluation split has fewer instances "
            f"than the {accelerator.num_processes} processes; evaluate with fewer processes"
        )
    result, offset = {}, 0
    for name, size in zip(names, sizes):
        result[name] = total[offset : offset + size]
        offset += size
    count = float(result.pop("count"))
    out = {name: float(value) / count for name, value in result.items() if value.numel() == 1}
    for step, value in enumerate(result.get("inner_psnr", torch.zeros(0)).tolist()):
        out[f"inner_psnr/{step}"] = value / count
    out["count"] = int(count)
    return EvalResult(metrics=out, images=images, audio=audio)


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

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        parts, start = [], 0
        size = min(batch.shape[0], self.limit or batch.shape[0])
        while start < batch.shape[0]:
            result, error = self._attempt(batch[start : start + size])
            if result is None:
                if size == 1:
                    raise torch.OutOfMemoryError(
                        f"evaluation ran out of memory on a single instance ({error}); lower --model.vmap-chunk-size, "
                        "the resolution or the model size"
                    )
                size = self.limit = (size + 1) // 2
                log.warning("evaluation: out of memory on a chunk; measuring %d instances at a time from now on", size)
                continue
            parts.append(result)
            start += size
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _attempt(self, chunk: torch.Tensor) -> tuple[dict[str, torch.Tensor] | None, str]:
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
