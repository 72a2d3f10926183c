"""Signals to data tokens (fidelity 2.3, 5.3), as pure functions of channels-last batches.

A signal is a tensor (B, *S, C), or for NeRF the support views ``{"images": (B, n, H, W, 3), "poses": (B, n, 3, 4),
"focals": (B, n, 2)}``, whose spatial shape is (n, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ginr import render
from ginr.config import TokenizerConfig

VIEW_CHANNELS = 9
"""Per-pixel channels of a support view: rgb, ray origin, ray direction."""


def image_patches(images: torch.Tensor, patch: int, padding: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, L, C p p): ``nn.Unfold(p, stride=p, padding)`` with zero padding; features channel-major,
    then kernel row, then kernel column; patches row-major over the grid."""
    return F.unfold(images.permute(0, 3, 1, 2), patch, padding=padding, stride=patch).transpose(1, 2)


def audio_patches(audio: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, T, 1) -> (B, ceil(T / p), p): windows of p samples, reflect-padded on the right when p does not divide T."""
    samples = audio[..., 0]
    remainder = samples.shape[-1] % patch
    if remainder:
        samples = F.pad(samples.unsqueeze(1), (0, patch - remainder), mode="reflect").squeeze(1)
    return samples.reshape(samples.shape[0], -1, patch)


def layout(signal: torch.Tensor | dict) -> tuple[tuple[int, ...], int]:
    """The spatial shape and channel count of a batch: (*S), C of a tensor; (n, H, W), 3 of support views."""
    values = signal["images"] if isinstance(signal, dict) else signal
    return tuple(values.shape[1:-1]), values.shape[-1]


def tokenize(config: TokenizerConfig, signal: torch.Tensor | dict) -> torch.Tensor:
    """The data tokens of a channels-last batch (or of support views, :func:`ginr.render.view_tokens`)."""
    if config.type == "image_patches":
        return image_patches(signal, config.patch_size, config.padding)
    if config.type == "audio_patches":
        return audio_patches(signal, config.patch_size)
    if config.type == "nerf_views":
        if not isinstance(signal, dict):
            raise ValueError("--model.tokenizer.type nerf_views reads support views (images, poses, focals)")
        return render.view_tokens(signal["images"], signal["poses"], signal["focals"], config.patch_size)
    raise ValueError(
        f"unknown --model.tokenizer.type {config.type!r}; choose image_patches, audio_patches or nerf_views"
    )


def token_dim(config: TokenizerConfig, channels: int) -> int:
    """Width of one data token for a signal with ``channels`` channels (NeRF views: 9 per pixel, whatever the
    hyponet's channels)."""
    if config.type == "nerf_views":
        return VIEW_CHANNELS * config.patch_size**2
    return channels * config.patch_size**2 if config.type == "image_patches" else config.patch_size


def n_tokens(config: TokenizerConfig, shape: tuple[int, ...]) -> int:
    """Number of data tokens for a signal of spatial ``shape`` ((n, H, W) for NeRF views); refuses a patch size that
    does not tile it."""
    p = config.patch_size
    if config.type == "audio_patches":
        if shape[0] < p:
            raise ValueError(f"clips of {shape[0]} samples are shorter than --model.tokenizer.patch-size={p}")
        return -(-shape[0] // p)
    if config.type == "nerf_views":
        if config.padding:
            raise ValueError(
                "--model.tokenizer.type nerf_views cuts views without padding: set --model.tokenizer.padding 0"
            )
        views, *shape = shape
        return views * n_tokens(TokenizerConfig(patch_size=p, padding=0), tuple(shape))
    sides = [size + 2 * config.padding for size in shape]
    if any(side % p for side in sides):
        raise ValueError(
            f"--model.tokenizer.patch-size={p} with --model.tokenizer.padding={config.padding} does not tile "
            f"{'x'.join(map(str, shape))} images: each side + 2 x padding must be a multiple of the patch size"
        )
    count = 1
    for side in sides:
        count *= side // p
    return count
