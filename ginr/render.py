"""Rays, points along rays and volume rendering for novel-view synthesis, as pure functions (fidelity 5.1-5.5).

Camera convention (OpenGL / Blender, as TransINR and learnit): x right, y up, looking along -z; ``poses`` are
camera-to-world (..., 3, 4). Directions are not normalised and the step lengths are not scaled by them (quirk 13,
kept as the preset default).

A radiance field is any function ``field(points (B, N, 3)) -> raw (B, N, 4)`` (a model's ``decode`` with one
modulation per instance); :func:`render_rays` and :func:`render_views` render it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Field = Callable[[torch.Tensor], torch.Tensor]


def rays(poses: torch.Tensor, focals: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and directions (..., H, W, 3) through every pixel centre of (..., 3, 4) poses with focal lengths
    (..., 2) = (fx, fy): ``d = R ((x - W/2) / fx, -(y - H/2) / fy, -1)`` with x = column + 0.5, y = row + 0.5."""
    dtype, device = poses.dtype, poses.device
    x = torch.arange(width, dtype=dtype, device=device) + 0.5
    y = torch.arange(height, dtype=dtype, device=device) + 0.5
    y, x = torch.meshgrid(y, x, indexing="ij")
    fx = focals[..., 0, None, None]
    fy = focals[..., 1, None, None]
    camera = torch.stack([(x - width / 2) / fx, -(y - height / 2) / fy, -torch.ones_like(x / fx)], dim=-1)
    directions = torch.einsum("...ij,...hwj->...hwi", poses[..., :3, :3], camera)
    origins = poses[..., None, None, :3, 3].expand_as(directions)
    return origins, directions


def depths(
    n_rays: int, n_points: int, near: float, far: float, jitter: bool, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Depths (n_rays, P): ``linspace(near, far, P)`` per ray, plus, with ``jitter``, U[0, 1) x (far - near)/(P - 1)
    per point (one draw shared by the whole batch; the last point may pass ``far``, quirk 13)."""
    z = torch.linspace(near, far, n_points, device=device, dtype=dtype).expand(n_rays, n_points)
    if jitter:
        z = z + torch.rand(n_rays, n_points, device=device, dtype=dtype) * (far - near) / (n_points - 1)
    return z


def points(origins: torch.Tensor, directions: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Points ``o + d z``: origins/directions (..., R, 3), depths (R, P) -> (..., R, P, 3)."""
    return origins[..., None, :] + directions[..., None, :] * z[..., None]


def composite(raw: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Volume rendering onto a white background (fidelity 5.4): raw (..., R, P, 4), depths (R, P) -> rgb (..., R, 3).

    ``rgb = sigmoid(raw[:3])``, ``sigma = relu(raw[3])``, ``delta_i = z_{i+1} - z_i`` (the last 1e-3),
    ``alpha = 1 - exp(-sigma delta)``, ``T_i = prod_{j<i} min(1, 1 - alpha_j + 1e-10)``, ``w = alpha T``,
    ``rgb_map = sum w rgb + (1 - sum w)``. Not clamped.
    """
    colour = torch.sigmoid(raw[..., :3])
    density = torch.relu(raw[..., 3])
    delta = torch.cat([z[..., 1:] - z[..., :-1], torch.full_like(z[..., :1], 1e-3)], dim=-1)
    alpha = 1.0 - torch.exp(-density * delta)
    transmittance = torch.cumprod(torch.clamp(1.0 - alpha + 1e-10, max=1.0), dim=-1)
    transmittance = torch.cat([torch.ones_like(transmittance[..., :1]), transmittance[..., :-1]], dim=-1)
    weights = alpha * transmittance
    return (weights[..., None] * colour).sum(dim=-2) + (1.0 - weights.sum(dim=-1, keepdim=True))


def render_rays(
    field: Field,
    origins: torch.Tensor,
    directions: torch.Tensor,
    n_points: int,
    depth_range: tuple[float, float],
    jitter: bool,
) -> torch.Tensor:
    """Colours (B, R, 3) of rays (B, R, 3): :func:`depths` (one jitter shared by the batch), :func:`points`, the
    field at every point, :func:`composite` (in at least fp32)."""
    batch, count = origins.shape[:2]
    near, far = depth_range
    z = depths(count, n_points, near, far, jitter, device=origins.device, dtype=origins.dtype)
    raw = field(points(origins, directions, z).flatten(1, 2))
    return composite(raw.view(batch, count, n_points, -1).to(torch.promote_types(raw.dtype, torch.float32)), z)


def render_views(
    field: Field,
    poses: torch.Tensor,
    focals: torch.Tensor,
    height: int,
    width: int,
    n_points: int,
    depth_range: tuple[float, float],
    chunk: int,
) -> torch.Tensor:
    """Whole views (B, n, H, W, 3) of poses (B, n, 3, 4) and focals (B, n, 2), without jitter, ``chunk`` rays of each
    instance at a time (so memory is bounded by B x chunk x n_points whatever the view size)."""
    batch, views = poses.shape[:2]
    origins, directions = rays(poses, focals, height, width)
    origins, directions = origins.reshape(batch, -1, 3), directions.reshape(batch, -1, 3)
    parts = [
        render_rays(field, origins[:, i : i + chunk], directions[:, i : i + chunk], n_points, depth_range, False)
        for i in range(0, origins.shape[1], chunk)
    ]
    return torch.cat(parts, dim=1).view(batch, views, height, width, 3)


def view_tokens(images: torch.Tensor, poses: torch.Tensor, focals: torch.Tensor, patch: int) -> torch.Tensor:
    """Support views to tokens (fidelity 5.3): images (B, n, H, W, 3), poses (B, n, 3, 4), focals (B, n, 2) ->
    (B, n H W / p^2, 9 p^2). Per pixel [r, g, b, o_x, o_y, o_z, d_x, d_y, d_z] (d unnormalised), each view cut into
    p x p patches (channel-major features, row-major patches), views one after another."""
    batch, views, height, width, _ = images.shape
    origins, directions = rays(poses, focals, height, width)
    pixels = torch.cat([images, origins, directions], dim=-1)  # (B, n, H, W, 9)
    pixels = pixels.flatten(0, 1).permute(0, 3, 1, 2)
    tokens = torch.nn.functional.unfold(pixels, patch, stride=patch).transpose(1, 2)  # (B n, L, 9 p p)
    return tokens.reshape(batch, views * tokens.shape[1], tokens.shape[2])


def random_rays(n_total: int, count: int, batch: int, device=None) -> torch.Tensor:
    """(B, count) distinct ray indices per instance, uniformly at random."""
    return torch.rand(batch, n_total, device=device).argsort(dim=1)[:, :count]


def foreground_first_rays(pixels: torch.Tensor, count: int) -> torch.Tensor:
    """Adaptive sampling (fidelity 5.5, quirk 14): for each instance of pixels (B, N, 3), ``count // 2`` distinct
    foreground (non-white: min over RGB < 1) pixels at random (all of them, topped up with replacement, when there
    are fewer), then ``count - count // 2`` distinct uniformly random pixels of the whole view (foreground or not).
    An instance with no foreground pixel takes all ``count`` uniformly at random (quirk 30 guarded).

    Vectorised over the batch (no per-instance loop, no host sync): one random order that puts the foreground first
    gives the distinct foreground draws, and uniform positions within the foreground the top-up."""
    batch, n_total = pixels.shape[:2]
    half = count // 2
    foreground = pixels.min(dim=-1).values < 1
    n_foreground = foreground.sum(dim=1, keepdim=True)  # (B, 1)
    keys = torch.rand(batch, n_total, device=pixels.device)
    order = torch.where(foreground, keys, keys + 1).argsort(dim=1)  # foreground first, both parts shuffled
    slot = torch.arange(half, device=pixels.device)[None]
    top_up = (torch.rand(batch, half, device=pixels.device) * n_foreground).long()
    chosen = torch.gather(order, 1, torch.where(slot < n_foreground, slot, top_up))
    out = torch.cat([chosen, random_rays(n_total, count - half, batch, device=pixels.device)], dim=1)
    return torch.where(n_foreground == 0, order[:, :count], out)


def up_axis(poses: torch.Tensor) -> torch.Tensor:
    """The signed world axis (3,) closest to the cameras' mean up vector (their rotations' second column): the axis
    an orbit turns around."""
    up = poses[..., :3, 1].reshape(-1, 3).mean(dim=0)
    axis = torch.zeros(3, dtype=poses.dtype, device=poses.device)
    k = int(up.abs().argmax())
    axis[k] = 1.0 if up[k] >= 0 else -1.0
    return axis


def orbit_poses(pose: torch.Tensor, axis: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(n_frames, 3, 4) camera-to-world poses: ``pose`` (3, 4) turned about ``axis`` (3,) through the origin by
    ``360 k / n_frames`` degrees, so the camera keeps its distance to the object and its elevation."""
    axis = axis / axis.norm()
    angles = torch.arange(n_frames, dtype=pose.dtype, device=pose.device) * (2 * math.pi / n_frames)
    cos, sin = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    cross = torch.zeros(3, 3, dtype=pose.dtype, device=pose.device)
    cross[0, 1], cross[0, 2], cross[1, 2] = -axis[2], axis[1], -axis[0]
    cross = cross - cross.T
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    turns = cos * eye + sin * cross + (1 - cos) * torch.outer(axis, axis)  # Rodrigues
    return turns @ pose
