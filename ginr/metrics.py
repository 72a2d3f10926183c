"""Losses and metrics (fidelity 4.4): per-sample MSE and PSNR on unclamped predictions, and SSIM for images."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it is in a lower precision (bf16/fp16 autocast outputs); fp64 stays fp64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of ``(pred - target)^2`` over all elements, in at least fp32 (one instance's loss)."""
    return (at_least_fp32(pred) - at_least_fp32(target)).square().mean()


def mse_per_sample(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over every non-batch element of ``(pred - target)^2``, in at least fp32: shape (B,)."""
    return (at_least_fp32(pred) - at_least_fp32(target)).square().flatten(1).mean(dim=1)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR with peak 1 (also for audio in [-1, 1], as the reference): ``-10 log10(mse)``."""
    return -10.0 * torch.log10(mse)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_per_sample(
    pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of images ``(B, H, W, C)``: Gaussian window 11 / 1.5, K1 0.01, K2 0.03, population
    statistics, averaged over the valid (unpadded) positions and the channels. Shape (B,).

    Equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=-1)``. Images smaller than the window use a window of their smaller side.
    """
    x = at_least_fp32(pred).permute(0, 3, 1, 2)
    y = at_least_fp32(target).permute(0, 3, 1, 2)
    channels = x.shape[1]
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2  # odd
    g = _gaussian_window(size, sigma, x.device, x.dtype)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, size, size)

    def filt(t):
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)
