"""Test-time optimisation measured at several step counts (``--tto-steps 0 5 20``), for every family and task.

``--tto-steps N`` is N Adam steps on the modulation after the model's own encoding (:func:`ginr.inference.refine`):
a hypernetwork's predicted factors, a meta model's factors after its inner steps, a NeRF's modulation refined on
seeded random rays of its support views (:func:`refine_views`) and measured on its held-out query views. One
refinement runs to the largest count and is measured at every count on the way, batched over instances. The
evaluation's metrics of count N are named ``tto<N>/<metric>`` (:func:`by_steps` splits them into rows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable

import torch

from ginr import metrics, render
from ginr.config import RenderConfig
from ginr.coords import grid
from ginr.inference import RefineCallback, detached, novel_views, radiance_field, refine, refine_modulation
from ginr.masks import encode_observed, split_psnr
from ginr.models.base import Model
from ginr.train.objective import sample_rays


@dataclasses.dataclass(frozen=True)
class TestTime:
    """What a test-time optimisation does and where it is measured."""

    __test__ = False  # not a pytest class

    steps: tuple[int, ...] = (0,)
    """Measure after each of these numbers of Adam steps (0: the model's own encoding)."""
    lr: float = 1e-3
    """Adam's learning rate."""
    seed: int = 0
    """NeRF: seed of the random rays of the support views."""

    def __post_init__(self):
        if not self.steps or min(self.steps) < 0:
            raise ValueError(f"--tto-steps {' '.join(map(str, self.steps))}: give step counts >= 0")
        if not self.lr > 0:
            raise ValueError(f"--tto-lr {self.lr} must be > 0")


def key(steps: int, name: str) -> str:
    """The name of metric ``name`` after ``steps`` test-time steps."""
    return f"tto{steps}/{name}"


def by_steps(values: dict) -> list[dict]:
    """Rows ``{"tto_steps": N, metric: value, ...}``, one per count in ``values`` (names from :func:`key`), in
    increasing N; the other entries of ``values`` (count, inner_psnr/<t>, an instance number) go into every row."""
    rows: dict[int, dict] = {}
    common = {}
    for name, value in values.items():
        match = re.fullmatch(r"tto(\d+)/(.+)", name)
        if match:
            rows.setdefault(int(match[1]), {})[match[2]] = value
        else:
            common[name] = value
    return [{**common, "tto_steps": steps, **rows[steps]} for steps in sorted(rows)]


def signal_metrics(pred: torch.Tensor, signal: torch.Tensor, observed: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-instance mse, psnr (all positions), ssim (images) and, given a mask, psnr_observed and psnr_unobserved."""
    mse = metrics.mse_per_sample(pred, signal)
    values = {"mse": mse, "psnr": metrics.psnr(mse)}
    if signal.dim() == 4:
        values["ssim"] = metrics.ssim_per_sample(pred, signal)
    if observed is not None:
        values.update(split_psnr(pred, signal, observed))
    return values


def view_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-object mse and psnr over all the query pixels of views (B, q, H, W, 3), and the mean ssim of its views."""
    mse = metrics.mse_per_sample(pred, target)
    views = target.shape[1]
    ssim = metrics.ssim_per_sample(pred.flatten(0, 1), target.flatten(0, 1)).view(-1, views).mean(dim=1)
    return {"mse": mse, "psnr": metrics.psnr(mse), "ssim": ssim}


def measure_signals(
    model: Model,
    params: dict,
    signal: torch.Tensor,
    coord_range: tuple[float, float],
    test_time: TestTime,
    observed: torch.Tensor | None = None,
    n_steps: int | None = None,
    autocast: Callable = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """Per-instance values of signals (B, *S, C) after each count of ``test_time``: the model's encoding from the
    ``observed`` positions (:func:`ginr.masks.encode_observed`), refined on them, measured on every position
    (:func:`signal_metrics`); ``inner_psnr`` of meta models and ``count``. Encoding and measuring run under
    ``autocast`` (the evaluation's mixed precision), the refinement in the params' precision."""
    coords = grid(tuple(signal.shape[1:-1]), coord_range, device=signal.device)
    with autocast():
        encoding = encode_observed(model, params, signal, coords, observed, n_steps)
    values = {"count": torch.ones(signal.shape[0], device=signal.device)}
    if encoding.inner_mse is not None and encoding.inner_mse.shape[1]:
        values["inner_psnr"] = metrics.psnr(encoding.inner_mse)

    def measure(step: int, modulation: dict, _: torch.Tensor) -> None:
        if step in test_time.steps:
            with autocast():
                pred = model.decode(params, modulation, coords.flatten(0, -2)).view_as(signal)
            values.update({key(step, name): value for name, value in signal_metrics(pred, signal, observed).items()})

    refine(
        model, params, signal, encoding.modulation, coord_range, max(test_time.steps), test_time.lr, measure, observed
    )
    return values


def refine_views(
    model: Model,
    params: dict,
    support: dict,
    modulation: dict,
    render_config: RenderConfig,
    depth_range: tuple[float, float],
    test_time: TestTime,
    callback: RefineCallback | None = None,
) -> tuple[dict, torch.Tensor]:
    """Test-time optimisation of NeRFs (:func:`ginr.inference.refine_modulation`) on their support views
    (``{"images", "poses", "focals"}``, leading dims (B, k)) to the largest count of ``test_time``: each step fits
    ``render_config.train_rays`` rays per object drawn uniformly from all its support views, rendered without
    jitter. The draws are seeded (``test_time.seed``) on a fork of the torch RNG, so the same call refines the same
    way and leaves the caller's random streams as they were."""
    params = detached(params)

    def fit_mse(m: dict) -> torch.Tensor:
        origins, directions, target = sample_rays(support, render_config.train_rays, False, "--render.train-rays")
        field = radiance_field(model, params, m)
        pred = render.render_rays(field, origins, directions, render_config.points_per_ray, depth_range, False)
        return metrics.mse_per_sample(pred, target)

    device = support["images"].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(test_time.seed)
        return refine_modulation(fit_mse, modulation, max(test_time.steps), test_time.lr, callback)


def measure_views(
    model: Model,
    params: dict,
    batch: dict,
    render_config: RenderConfig,
    depth_range: tuple[float, float],
    test_time: TestTime,
    autocast: Callable = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """Per-instance values of NeRF instances (``{"support", "query"}``) after each count of ``test_time``: the
    modulation from the support views, refined on them (:func:`refine_views`), measured by full renders of the query
    views (mse, psnr, ssim) and ``count``."""
    query = batch["query"]
    target = query["images"]
    size = tuple(target.shape[2:4])
    with autocast():
        modulation = model.encode(params, batch["support"], None, training=False).modulation
    values = {"count": torch.ones(target.shape[0], device=target.device)}

    def measure(step: int, refined: dict, _: torch.Tensor) -> None:
        if step not in test_time.steps:
            return
        with autocast():
            pred = novel_views(
                model, params, batch["support"], query["poses"], query["focals"], size, render_config, depth_range,
                refined,
            )  # fmt: skip
        values.update({key(step, name): value for name, value in view_metrics(pred, target).items()})

    refine_views(model, params, batch["support"], modulation, render_config, depth_range, test_time, measure)
    return values
