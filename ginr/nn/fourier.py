"""Fourier feature mappings of coordinates (fidelity 1.4)."""

from __future__ import annotations

import math

import torch

from ginr.config import FourierConfig


def n_frequencies(config: FourierConfig, input_dim: int) -> int:
    """Frequencies per input dimension of a deterministic mapping (``dim // input_dim``)."""
    return config.dim // input_dim


def feature_dim(config: FourierConfig, input_dim: int) -> int:
    """Width of the features fed to the first layer: ``2 * dim`` when the mapping is on, else ``input_dim``."""
    return 2 * config.dim if config.enabled else input_dim


def init_frequencies(config: FourierConfig, input_dim: int, generator: torch.Generator | None) -> torch.Tensor:
    """The frequency tensor (the reference's ``ff_linear``).

    - deterministic_transinr: ``exp(linspace(0, ln sigma, F))``, F = dim // input_dim, geometric from 1 to sigma.
    - deterministic_transinr_nerf: ``2 ** linspace(0, sigma, F)``.
    - random_gaussian: ``randn(input_dim, dim) * sigma``.
    """
    count = n_frequencies(config, input_dim)
    if config.type == "deterministic_transinr":
        return torch.exp(torch.linspace(0.0, math.log(config.sigma), count))
    if config.type == "deterministic_transinr_nerf":
        return 2.0 ** torch.linspace(0.0, config.sigma, count)
    if config.type == "random_gaussian":
        return torch.randn(input_dim, config.dim, generator=generator) * config.sigma
    raise ValueError(f"unknown hyponet.fourier.type {config.type!r}")


def fourier_features(coords: torch.Tensor, frequencies: torch.Tensor, config: FourierConfig) -> torch.Tensor:
    """``[cos z, sin z]`` of coordinates ``(..., D)``.

    Deterministic mappings use ``z[..., d*F + k] = x[..., d] * f[k]`` (input-dim-major); random_gaussian uses
    ``z = x @ B``. Both multiply z by pi except deterministic_transinr_nerf.
    """
    if config.type == "random_gaussian":
        z = coords @ frequencies
    else:
        z = (coords.unsqueeze(-1) * frequencies).flatten(-2)
    if config.type != "deterministic_transinr_nerf":
        z = z * math.pi
    return torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
