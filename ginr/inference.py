"""Inference with a trained model: encode signals to modulations, decode them at any resolution, and refine them by
test-time optimisation.

    loaded = ginr.from_pretrained("user/ginr-celeba")            # or a local folder
    images = torch.stack([torchvision.io.read_image(p).permute(1, 2, 0) / 255 for p in paths])  # (B, H, W, 3) in [0, 1]
    modulation = encode(loaded.model, loaded.params, images, loaded.config.data.coord_range).modulation
    big = decode(loaded.model, loaded.params, modulation, (3 * 178, 3 * 178), loaded.config.data.coord_range)

Every family refines the same way (:func:`refine`, ``--tto-steps``): Adam steps on the modulation after the model's own
encoding (a meta model's inner steps, a hypernetwork's prediction), batched over instances; a meta model can also run
its inner loop longer (``n_steps``). A NeRF renders novel views of an object from its support views
(:func:`novel_views`) and refines on them (:func:`ginr.tto.refine_views`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ginr import metrics, render
from ginr.config import Config, RenderConfig
from ginr.coords import grid
from ginr.data.shapenet import ViewsObject
from ginr.models.base import Encoding, Model
from ginr.pytree import leaves, tree_map

RefineCallback = Callable[[int, dict, torch.Tensor], None]
"""``callback(step, modulation, psnr)`` of a test-time optimisation."""


def detached(params: dict) -> dict:
    """The params without autograd history (inference never trains them)."""
    return tree_map(lambda t: t.detach(), params)


@torch.no_grad()
def encode(
    model: Model, params: dict, signal: torch.Tensor, coord_range: tuple[float, float], n_steps: int | None = None
) -> Encoding:
    """The modulation of every instance of ``signal`` (B, *S, C) (the meta inner loop runs ``n_steps`` if given)."""
    coords = grid(tuple(signal.shape[1:-1]), coord_range, device=signal.device)
    return model.encode(detached(params), signal, coords, training=False, n_steps=n_steps)


def decode(
    model: Model, params: dict, modulation: dict, shape: tuple[int, ...], coord_range: tuple[float, float]
) -> torch.Tensor:
    """Values (B, *shape, C) on the pixel-centre grid of ``shape`` over ``coord_range`` (any resolution).

    Differentiable in ``modulation`` (with autograd or ``torch.func``: for guidance, compression or latent
    optimisation); the shared params are detached, so a modulation from :func:`encode` builds no graph at all."""
    coords = grid(shape, coord_range, device=leaves(modulation)[0].device)
    values = model.decode(detached(params), modulation, coords.flatten(0, -2))
    return values.view(values.shape[0], *shape, -1)


def refine_modulation(
    fit_mse: Callable[[dict], torch.Tensor],
    modulation: dict,
    steps: int,
    lr: float = 1e-3,
    callback: RefineCallback | None = None,
) -> tuple[dict, torch.Tensor]:
    """Test-time optimisation, batched over instances: ``steps`` Adam steps on ``modulation`` (leaves (B, ...))
    minimising ``fit_mse(modulation)``, each instance's MSE on what it was given (B,). One optimiser over the batched
    leaves is each instance's own Adam: its update is elementwise and the gradient of the summed MSE is each
    instance's own, so an instance is refined as it would be alone. Returns the refined modulation and the PSNR
    on the fitted data before each step and after the last, (steps + 1, B); ``callback(step, modulation, psnr)``
    sees the (detached) modulation and its PSNR before each step and after the last."""
    modulation = tree_map(lambda t: t.detach().clone().requires_grad_(), modulation)
    optimizer = torch.optim.Adam(leaves(modulation), lr=lr)
    history = []
    for step in range(steps + 1):
        with torch.enable_grad():  # also under an evaluation's torch.no_grad
            mse = fit_mse(modulation)
            total = mse.sum()  # instances are independent: each gets the gradient of its own MSE
        psnr = metrics.psnr(mse.detach())
        history.append(psnr)
        if callback is not None:
            callback(step, tree_map(torch.Tensor.detach, modulation), psnr)
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    return tree_map(torch.Tensor.detach, modulation), torch.stack(history)


def refine(
    model: Model,
    params: dict,
    signal: torch.Tensor,
    modulation: dict,
    coord_range: tuple[float, float],
    steps: int,
    lr: float = 1e-3,
    callback: RefineCallback | None = None,
    observed: torch.Tensor | None = None,
) -> tuple[dict, torch.Tensor]:
    """Test-time optimisation of signals (B, *S, C) (:func:`refine_modulation`): each instance's MSE on its grid, or
    only on the ``observed`` positions (a boolean (*S) mask shared by the batch, :mod:`ginr.masks`); the shared params
    stay fixed. The same for every family: after a meta model's inner steps or a hypernetwork's prediction."""
    params = detached(params)
    coords = grid(tuple(signal.shape[1:-1]), coord_range, device=signal.device)
    if observed is None:
        coords, target = coords.flatten(0, -2), signal.flatten(1, -2)
    else:
        coords, target = coords[observed], signal[:, observed]
    fit_mse = lambda m: metrics.mse_per_sample(model.decode(params, m, coords), target)  # noqa: E731
    return refine_modulation(fit_mse, modulation, steps, lr, callback)


def radiance_field(model: Model, params: dict, modulation: dict) -> render.Field:
    """The radiance fields of a batch of modulations: points (B, N, 3) -> raw rgb + density (B, N, 4)."""
    return lambda points: model.decode(params, modulation, points)


@torch.no_grad()
def novel_views(
    model: Model,
    params: dict,
    support: dict | None,
    poses: torch.Tensor,
    focals: torch.Tensor,
    size: tuple[int, int],
    render_config: RenderConfig,
    depth_range: tuple[float, float],
    modulation: dict | None = None,
) -> torch.Tensor:
    """Views (B, n, H, W, 3) from the cameras ``poses`` (B, n, 3, 4), ``focals`` (B, n, 2) of the objects whose
    support views are ``support`` (``{"images", "poses", "focals"}``, leading dims (B, k)), or of their given
    ``modulation`` (a refined one; ``support`` is then unused and may be None); full renders without jitter,
    ``render_config.chunk_rays`` rays per object at a time."""
    params = detached(params)
    if modulation is None:
        modulation = model.encode(params, support, None, training=False).modulation
    return render.render_views(
        radiance_field(model, params, modulation), poses, focals, *size, render_config.points_per_ray, depth_range,
        render_config.chunk_rays,
    )  # fmt: skip


def support_frames(obj: ViewsObject, given: tuple[int, ...] | None, count: int) -> list[int]:
    """The frames of ``obj`` given to a NeRF as support views: ``given``, or frames 0 .. count - 1; refused (naming
    ``--support``) when there are not ``count`` of them or one does not exist."""
    frames = list(range(count)) if given is None else list(given)
    if len(frames) != count:
        raise ValueError(
            f"--support: the model reads {count} support view(s) (it was trained with --data.support-views {count}); "
            f"give {count} frame number(s), not {len(frames)}"
        )
    return check_frames(obj, frames, "--support")


def check_frames(obj: ViewsObject, frames: list[int], flag: str) -> list[int]:
    """``frames`` if ``obj`` has them all; else a ValueError naming ``flag``."""
    missing = [k for k in frames if not 0 <= k < len(obj)]
    if missing:
        raise ValueError(f"{flag}: {obj.folder} has frames 0 .. {len(obj) - 1}; {missing} do not exist")
    return frames


def render_frames(
    config: Config,
    model: Model,
    params: dict,
    obj: ViewsObject,
    support: list[int],
    frames: list[int],
    device,
    refine_support: Callable[[dict, dict], dict] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Renders of ``frames`` of ``obj`` from its ``support`` frames, their ground truth (both (n, H, W, 3)) and the
    PSNR of each render (n,). ``refine_support(support views, modulation)``, if given, returns the modulation to
    render (test-time optimisation, :func:`ginr.tto.refine_views`)."""
    batch = lambda views: {k: v[None].to(device) for k, v in views.items()}  # noqa: E731
    given = batch(obj.views(support, config.data.resolution))
    truth = batch(obj.views(frames, config.data.resolution))
    size = tuple(truth["images"].shape[2:4])
    modulation = None
    if refine_support is not None:
        with torch.no_grad():
            modulation = refine_support(given, model.encode(detached(params), given, None, training=False).modulation)
    renders = novel_views(
        model, params, given, truth["poses"], truth["focals"], size, config.render, config.data.depth_range, modulation
    )[0]
    truths = truth["images"][0]
    psnr = metrics.psnr((renders - truths).square().flatten(1).mean(dim=1))
    return renders, truths, psnr
