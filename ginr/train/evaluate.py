"""Evaluation on a held-out split and the reconstructions logged beside it (SPEC 4.4, 6.2).

Metrics are means over instances of per-instance values (the PSNR is the mean of per-instance PSNRs); every process
sums over its own shard and the sums are added across processes, so each instance counts exactly once (quirk 19
fixed). Predictions are not clamped for metrics (quirk 23); only the logged images are.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from ginr import metrics
from ginr.coords import grid
from ginr.models.base import Model
from ginr.pytree import tree_map
from ginr.train.plots import waveform_image


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
    """Encode and decode every instance of ``loader``; return the metrics and (main process) reconstructions."""
    sums: dict[str, torch.Tensor] = {}
    images: dict[str, torch.Tensor] = {}
    audio: dict[str, tuple[torch.Tensor, int]] = {}

    def add(name: str, values: torch.Tensor) -> None:
        total = values.double().sum(dim=0)
        sums[name] = sums[name] + total if name in sums else total

    for batch_index, signal in enumerate(loader):
        signal = signal.to(accelerator.device)
        coords = grid(tuple(signal.shape[1:-1]), coord_range, device=signal.device)
        keep = batch_index == 0 and accelerator.is_main_process
        with accelerator.autocast():
            encoding = model.encode(params, signal, coords, training=False, n_steps=n_steps, keep_trajectory=keep)
            pred = model.decode(params, encoding.modulation, coords.flatten(0, -2)).view_as(signal)
        mse = metrics.mse_per_sample(pred, signal)
        add("mse", mse)
        add("psnr", metrics.psnr(mse))
        add("count", torch.ones_like(mse))
        if signal.dim() == 4:
            add("ssim", metrics.ssim_per_sample(pred, signal))
        if encoding.inner_mse is not None and encoding.inner_mse.shape[1]:
            add("inner_psnr", metrics.psnr(encoding.inner_mse))
        if keep and signal.dim() == 4:
            images = reconstruction_grids(
                model, params, signal[:n_images], encoding, coord_range, upsample, accelerator
            )
        elif keep and signal.dim() == 3:
            images, audio = audio_reconstructions(
                model, params, signal[:n_images], encoding, coord_range, upsample, sample_rate, accelerator
            )

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


def reconstruction_grids(
    model, params, signal, encoding, coord_range, upsample, accelerator
) -> dict[str, torch.Tensor]:
    """Ground truth (top row) over reconstructions (bottom row) at x1 and x``upsample``; for meta models also the
    reconstruction after each inner step."""
    count = signal.shape[0]
    shape = tuple(signal.shape[1:-1])
    modulation = tree_map(lambda v: v[:count], encoding.modulation)
    truth = signal.permute(0, 3, 1, 2)
    out = {}
    for scale in (1, upsample):
        coords = grid(shape, coord_range, upsample=scale, device=signal.device)
        with accelerator.autocast():
            pred = model.decode(params, modulation, coords.flatten(0, -2)).float()
        pred = pred.view(count, *coords.shape[:-1], -1).permute(0, 3, 1, 2).clamp(0, 1)
        big_truth = F.interpolate(truth, size=pred.shape[-2:], mode="nearest")
        out[f"reconstruction_x{scale}"] = make_grid(torch.cat([big_truth, pred]).cpu(), nrow=count)
    if encoding.trajectory:
        coords = grid(shape, coord_range, device=signal.device).flatten(0, -2)
        steps = []
        for factors in encoding.trajectory:
            with accelerator.autocast():
                pred = model.decode(params, tree_map(lambda v: v[:count], factors), coords).float()
            steps.append(pred.view_as(signal).permute(0, 3, 1, 2).clamp(0, 1))
        out["inner_steps"] = make_grid(torch.cat([truth, *steps]).cpu(), nrow=count)
    return out


def audio_reconstructions(model, params, signal, encoding, coord_range, upsample, sample_rate, accelerator):
    """Clips (ground truth, reconstruction at x1 and x``upsample`` the sampling rate) and a waveform plot."""
    count, length = signal.shape[:2]
    modulation = tree_map(lambda v: v[:count], encoding.modulation)
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
