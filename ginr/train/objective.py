"""The training objectives (fidelity 4, 5.5, 5.6): encode, decode (and render), per-sample MSE.

:func:`objective_for` gives a run's objective, ``objective(model, params, batch, *, epoch)``, which returns ``loss``
(the batch mean), the per-instance ``mse`` (B,) and ``psnr``. Hypernetwork presets may train on jittered
coordinates (fidelity 4.2) and on a random subset of them (fidelity 4.3); the noise is drawn before the subset, on the
signal's device, in training only.
NeRFs train on a few rays of their query views, foreground first in the first epochs (fidelity 5.5).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ginr import metrics, render
from ginr.config import Config, RenderConfig
from ginr.coords import grid
from ginr.inference import radiance_field
from ginr.models.base import Model
from ginr.tasks import nerf_or_signals


def jitter(coords: torch.Tensor, batch: int, shape: tuple[int, ...], coord_range: tuple[float, float]) -> torch.Tensor:
    """(N, D) -> (B, N, D): every component of every point of every instance moves by U(-1/2, 1/2) (hi - lo) / S0,
    S0 the first axis's size, for every axis (quirk 22)."""
    lo, hi = coord_range
    noise = torch.rand(batch, *coords.shape, device=coords.device) - 0.5
    return coords + noise * (hi - lo) / shape[0]


def subsample(coords: torch.Tensor, target: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random subset of ``int(N ratio)`` points per instance: coords (N, D) or (B, N, D) and targets
    (B, N, C) -> (B, n, D), (B, n, C)."""
    batch, count = target.shape[:2]
    keep = int(count * ratio)
    index = torch.rand(batch, count, device=target.device).argsort(dim=1)[:, :keep]
    coords = coords.expand(batch, *coords.shape[-2:])
    gather = lambda t: torch.gather(t, 1, index.unsqueeze(-1).expand(-1, -1, t.shape[-1]))  # noqa: E731
    return gather(coords), gather(target)


def reconstruction_objective(
    model: Model,
    params: dict,
    signal: torch.Tensor,
    *,
    coord_range: tuple[float, float],
    coord_noise: bool = False,
    coord_subsample: float | None = None,
) -> dict[str, torch.Tensor]:
    """``loss`` = mean over the batch of each instance's MSE over its training coordinates, plus per-sample
    ``mse``/``psnr`` (detached) and, for meta-learned models, the per-sample ``inner_psnr`` (B, T) of each inner step
    (averaged over samples when logged, as the reference's meta trainer does: fidelity 4.4).

    ``signal`` is channels-last (B, *S, C). The encoder always sees the whole signal (and its full grid); signals
    train the same way in every epoch.
    """
    shape = tuple(signal.shape[1:-1])
    coords = grid(shape, coord_range, device=signal.device)
    encoding = model.encode(params, signal, coords, training=True)
    points, target = coords.flatten(0, -2), signal.flatten(1, -2)
    if coord_noise:
        points = jitter(points, signal.shape[0], shape, coord_range)
    if coord_subsample is not None and coord_subsample < 1:
        points, target = subsample(points, target, coord_subsample)
    pred = model.decode(params, encoding.modulation, points)
    mse = metrics.mse_per_sample(pred, target)
    out = {"loss": mse.mean(), "mse": mse.detach(), "psnr": metrics.psnr(mse.detach())}
    if encoding.inner_mse is not None:
        out["inner_psnr"] = metrics.psnr(encoding.inner_mse.detach())
    return out


def sample_rays(query: dict, count: int, foreground_first: bool, flag: str) -> tuple[torch.Tensor, ...]:
    """``count`` rays of each object's query views (all views together): their origins, directions and target pixels,
    each (B, count, 3), drawn foreground first (the reference's adaptive sampling) or uniformly (fidelity 5.5). ``flag``
    names the setting in the error when the views have fewer pixels than ``count``."""
    images = query["images"]
    objects, height, width = images.shape[0], images.shape[2], images.shape[3]
    pixels = images.reshape(objects, -1, 3)
    if count > pixels.shape[1]:
        raise ValueError(f"{flag}={count} is more than the {pixels.shape[1]} pixels of the query views")
    if foreground_first:
        index = render.foreground_first_rays(pixels, count)
    else:
        index = render.random_rays(pixels.shape[1], count, objects, device=pixels.device)
    origins, directions = render.rays(query["poses"], query["focals"], height, width)
    gather = lambda t: torch.gather(t.reshape(objects, -1, 3), 1, index[..., None].expand(-1, -1, 3))  # noqa: E731
    return gather(origins), gather(directions), gather(pixels)


def views_objective(
    model: Model,
    params: dict,
    batch: dict,
    *,
    render_config: RenderConfig,
    depth_range: tuple[float, float],
    foreground_first: bool,
) -> dict[str, torch.Tensor]:
    """NeRF training (fidelity 5.6): encode the support views, draw ``train_rays`` rays of the query views per object
    (foreground first in the first epochs, quirk 14), render them with jittered points, and ``loss`` = mean over
    objects of each one's MSE over its rays' colours; ``mse``/``psnr`` per object."""
    encoding = model.encode(params, batch["support"], None, training=True)
    origins, directions, target = sample_rays(
        batch["query"], render_config.train_rays, foreground_first, "--render.train-rays"
    )
    colours = render.render_rays(
        radiance_field(model, params, encoding.modulation),
        origins,
        directions,
        render_config.points_per_ray,
        depth_range,
        render_config.jitter,
    )
    mse = metrics.mse_per_sample(colours, target)
    return {"loss": mse.mean(), "mse": mse.detach(), "psnr": metrics.psnr(mse.detach())}


def objective_for(config: Config, compile_mode: str = "off") -> Callable[..., dict[str, torch.Tensor]]:
    """The training objective of a run, ``objective(model, params, batch, *, epoch)``: :func:`views_objective` for
    a NeRF (foreground-first rays while ``epoch < render.foreground_first_epochs``), :func:`reconstruction_objective`
    for a signal model, with the config's options bound.

    Unless ``compile_mode`` is "off", the objective runs through torch.compile in that mode with one graph per input
    shape (``dynamic=False``: the batch is fixed, so dynamic shapes gain nothing). The epoch enters the compiled
    function only as the NeRF's foreground-first flag: as a Python int, each new epoch would recompile it, and past
    torch._dynamo's recompile limit torch.compile falls back to eager.
    """
    first_epochs = config.render.foreground_first_epochs
    core, schedule = nerf_or_signals(
        config,
        nerf=(
            functools.partial(views_objective, render_config=config.render, depth_range=config.data.depth_range),
            lambda epoch: {"foreground_first": epoch < first_epochs},
        ),
        signals=(
            functools.partial(
                reconstruction_objective,
                coord_range=config.data.coord_range,
                coord_noise=config.train.coord_noise,
                coord_subsample=config.train.coord_subsample,
            ),
            lambda epoch: {},
        ),
    )
    if compile_mode != "off":
        core = torch.compile(core, mode=compile_mode, dynamic=False)

    def objective(model: Model, params: dict, batch, *, epoch: int = 0) -> dict[str, torch.Tensor]:
        return core(model, params, batch, **schedule(epoch))

    return objective
