"""Exponential moving average of the weights (fidelity 6.6): ``ema <- mu ema + (1 - mu) w`` with
``mu = min(decay, (1 + s) / (10 + s))`` at optimizer step s."""

from __future__ import annotations

import torch


def init_ema(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached copy of the named tensors (parameters and buffers)."""
    return {name: value.detach().clone() for name, value in named.items()}


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], named: dict[str, torch.Tensor], decay: float, step: int) -> None:
    mu = min(decay, (1 + step) / (10 + step))
    for name, value in named.items():
        ema[name].lerp_(value.detach(), 1.0 - mu)


def named_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors the average follows: ``module``'s parameters and buffers by name."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}
