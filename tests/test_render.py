"""Rays, points along rays, volume rendering, view tokens and ray sampling (ginr.render, fidelity 5) against
straightforward implementations written here: a known camera, loops over pixels, points and patches, and volumes
with an analytic answer (constant density, a slab, an opaque point)."""

from __future__ import annotations

import math

import oracles
import pytest
import torch

from ginr import render

# ----------------------------------------------------------------------------------------------------------------------
# Rays (fidelity 5.1)
# ----------------------------------------------------------------------------------------------------------------------


def rotation_z(degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def pose(rotation: torch.Tensor, origin) -> torch.Tensor:
    return torch.cat([rotation, torch.tensor(origin, dtype=torch.float32)[:, None]], dim=1)


def test_rays_of_a_known_camera_at_specific_pixels():
    """Identity rotation at (1, 2, 3), fx 2, fy 4, a 4 x 6 view: the pixel centre of row r, column c looks along
    ((c + 0.5 - 3) / 2, -(r + 0.5 - 2) / 4, -1), unnormalised."""
    origins, directions = render.rays(pose(torch.eye(3), [1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0]), 4, 6)
    assert origins.shape == directions.shape == (4, 6, 3)
    assert torch.equal(origins, torch.tensor([1.0, 2.0, 3.0]).expand(4, 6, 3))
    assert torch.allclose(directions[0, 0], torch.tensor([-1.25, 0.375, -1.0]))  # top left: left and up
    assert torch.allclose(directions[3, 5], torch.tensor([1.25, -0.375, -1.0]))  # bottom right: right and down
    assert torch.allclose(directions[1, 2], torch.tensor([-0.25, 0.125, -1.0]))
    assert directions[..., 2].eq(-1).all()  # not normalised: every camera-space z is -1


def test_rays_turn_with_the_camera_and_match_a_pixel_loop():
    """A camera turned 90 degrees about z: its -z axis is unchanged and its x axis becomes the world's y; every pixel
    against a loop over rows and columns, with a batch of two poses and two focal pairs."""
    poses = torch.stack([pose(rotation_z(90), [0.0, 0.0, 4.0]), pose(rotation_z(-30), [1.0, -1.0, 2.0])])
    focals = torch.tensor([[3.0, 3.0], [2.5, 5.0]])
    origins, directions = render.rays(poses, focals, 3, 5)
    assert torch.allclose(directions[0, 1, 3], torch.tensor([0.0, 1 / 3, -1.0]), atol=1e-6)  # right of centre: +y
    for b in range(2):
        for r in range(3):
            for c in range(5):
                camera = torch.tensor([(c + 0.5 - 2.5) / focals[b, 0], -(r + 0.5 - 1.5) / focals[b, 1], -1.0])
                assert torch.allclose(directions[b, r, c], poses[b, :, :3] @ camera, atol=1e-6)
                assert torch.equal(origins[b, r, c], poses[b, :, 3])


# ----------------------------------------------------------------------------------------------------------------------
# Points along rays (fidelity 5.2)
# ----------------------------------------------------------------------------------------------------------------------


def test_depths_are_evenly_spaced_and_jitter_stays_within_one_spacing():
    z = render.depths(3, 5, 2.0, 6.0, jitter=False)
    assert torch.equal(z, torch.linspace(2.0, 6.0, 5).expand(3, 5))
    torch.manual_seed(0)
    jittered = render.depths(1000, 5, 2.0, 6.0, jitter=True)
    offset = jittered - z[:1]
    assert offset.min() >= 0 and offset.max() < 1.0  # U[0, 1) x (6 - 2) / 4
    assert jittered[:, -1].max() > 6.0  # the last point may pass far (quirk 13)
    torch.manual_seed(0)
    assert torch.equal(render.depths(1000, 5, 2.0, 6.0, jitter=True), jittered)  # seeded by the torch RNG


def test_points_are_origin_plus_depth_times_direction():
    origins, directions = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    z = torch.rand(4, 6) * 4 + 2
    pts = render.points(origins, directions, z)
    assert pts.shape == (2, 4, 6, 3)
    for b in range(2):
        for r in range(4):
            for p in range(6):
                assert torch.allclose(pts[b, r, p], origins[b, r] + z[r, p] * directions[b, r])


# ----------------------------------------------------------------------------------------------------------------------
# Volume rendering (fidelity 5.4)
# ----------------------------------------------------------------------------------------------------------------------


def test_composite_matches_a_loop_over_points():
    torch.manual_seed(0)
    raw = torch.randn(2, 5, 16, 4) * 3
    z = torch.sort(torch.rand(5, 16) * 4 + 2, dim=-1).values
    assert torch.allclose(render.composite(raw, z).double(), oracles.volume_composite(raw, z), atol=1e-5)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("sigma", [0.0, 0.1, 1.0, 50.0])
def test_constant_density_gives_the_analytic_transmittance(sigma):
    """Constant density sigma and colour c over [2, 6] with the last step 1e-3: the light left after the ray is
    T = exp(-sigma (4 + 1e-3)), so rgb = c (1 - T) + T (white behind)."""
    colour = torch.tensor([0.2, 0.5, 0.9])
    z = torch.linspace(2.0, 6.0, 128).expand(1, 128)
    raw = torch.cat([torch.logit(colour).expand(1, 128, 3), torch.full((1, 128, 1), sigma)], dim=-1)
    left = math.exp(-sigma * (4.0 + 1e-3))
    assert torch.allclose(render.composite(raw, z)[0], colour * (1 - left) + left, atol=1e-5)


def test_a_slab_absorbs_by_its_thickness_and_empty_space_is_white():
    """Density 2 only at the points inside [3, 4) (step 4/127): rgb = c (1 - e^{-2 L}) + e^{-2 L} with L the sum of
    those points' steps; zero or negative raw density (relu) renders white."""
    z = torch.linspace(2.0, 6.0, 128).expand(1, 128)
    inside = (z[0] >= 3) & (z[0] < 4)
    density = torch.where(inside, 2.0, -5.0)  # relu(-5) = 0 outside
    raw = torch.cat([torch.full((1, 128, 3), logit(0.25)), density[None, :, None]], dim=-1)
    thickness = inside.sum().item() * 4.0 / 127
    left = math.exp(-2.0 * thickness)
    assert torch.allclose(render.composite(raw, z)[0], torch.full((3,), 0.25 * (1 - left) + left), atol=1e-5)
    raw[..., 3] = -1.0
    assert torch.allclose(render.composite(raw, z), torch.ones(1, 3))


@pytest.mark.parametrize("k", [0, 7, 15])
def test_transmittance_is_the_exclusive_product(k):
    """One opaque point k (alpha ~ 1) and nothing else: its own alpha must not dim it (T_k is the product over the
    points before k only), so the ray takes point k's colour."""
    z = torch.linspace(2.0, 6.0, 16).expand(1, 16)
    raw = torch.zeros(1, 16, 4)
    raw[0, :, :3] = torch.randn(16, 3)
    raw[0, k, 3] = 1e6
    raw[0, :k, 3] = 0.0
    assert torch.allclose(render.composite(raw, z)[0], torch.sigmoid(raw[0, k, :3]), atol=1e-5)


def test_render_rays_ignores_the_length_of_the_direction():
    """Steps are depth differences, not scaled by |d| (quirk 13): a constant field renders the same colour along a
    direction of any length."""
    colour = torch.tensor([0.3, 0.6, 0.1])

    def field(pts: torch.Tensor) -> torch.Tensor:
        raw = torch.cat([torch.logit(colour), torch.tensor([0.5])])
        return raw.expand(*pts.shape[:-1], 4)

    origins = torch.zeros(1, 3, 3)
    directions = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, -3.0], [1.0, 1.0, 1.0]]])
    out = render.render_rays(field, origins, directions, 64, (2.0, 6.0), jitter=False)
    left = math.exp(-0.5 * (4.0 + 1e-3))
    assert torch.allclose(out[0], (colour * (1 - left) + left).expand(3, 3), atol=1e-5)


def sphere_field(pts: torch.Tensor) -> torch.Tensor:
    """A red unit sphere at the origin (density 30 inside, 0 outside)."""
    inside = pts.norm(dim=-1, keepdim=True) < 1
    return torch.cat([torch.tensor([3.0, -3.0, -3.0]).expand(*pts.shape[:-1], 3), inside * 30.0], dim=-1)


def test_render_views_in_chunks_equals_rendering_every_ray_at_once():
    poses = torch.stack([pose(torch.eye(3), [0.0, 0.0, 4.0]), pose(rotation_z(45), [0.0, 0.0, 3.5])])[None]
    focals = torch.full((1, 2, 2), 10.0)
    whole = render.render_views(sphere_field, poses, focals, 9, 7, 32, (2.0, 6.0), chunk=10_000)
    chunked = render.render_views(sphere_field, poses, focals, 9, 7, 32, (2.0, 6.0), chunk=5)
    assert whole.shape == (1, 2, 9, 7, 3)
    assert torch.allclose(whole, chunked)
    origins, directions = render.rays(poses[0, 0], focals[0, 0], 9, 7)
    one = render.render_rays(
        sphere_field, origins.reshape(1, -1, 3), directions.reshape(1, -1, 3), 32, (2.0, 6.0), False
    )
    assert torch.allclose(whole[0, 0], one.view(9, 7, 3))
    assert torch.allclose(whole[0, 0, 4, 3], torch.sigmoid(torch.tensor([3.0, -3.0, -3.0])), atol=1e-3)  # centre: red
    assert torch.allclose(whole[0, 0, 0, 0], torch.ones(3))  # corner misses the sphere: white


# ----------------------------------------------------------------------------------------------------------------------
# Support-view tokens (fidelity 5.3)
# ----------------------------------------------------------------------------------------------------------------------


def test_view_tokens_channel_and_token_order():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 4, 6, 3)
    poses = torch.stack(
        [torch.stack([pose(rotation_z(30 * (b + v)), [b, v, 4.0]) for v in range(3)]) for b in range(2)]
    )
    focals = torch.rand(2, 3, 2) * 5 + 1
    tokens = render.view_tokens(images, poses, focals, 2)
    assert tokens.shape == (2, 3 * 2 * 3, 9 * 4)  # views x (4/2 x 6/2) patches, 9 channels x 2 x 2
    assert torch.allclose(tokens, oracles.view_tokens(images, poses, focals, 2), atol=1e-6)
    # the first 4 features of the first token are its red channel at (0, 0), (0, 1), (1, 0), (1, 1)
    assert torch.equal(tokens[0, 0, :4], images[0, 0, :2, :2, 0].flatten())
    # token 6 starts the second view
    assert torch.equal(tokens[1, 6, :4], images[1, 1, :2, :2, 0].flatten())


# ----------------------------------------------------------------------------------------------------------------------
# Ray sampling (fidelity 5.5; quirks 14, 30)
# ----------------------------------------------------------------------------------------------------------------------


def views_with_foreground(counts: list[int], n: int = 64) -> tuple[torch.Tensor, list[set[int]]]:
    """(B, n, 3) white pixels with ``counts[b]`` non-white ones at random positions, and those positions."""
    pixels = torch.ones(len(counts), n, 3)
    where = []
    for b, count in enumerate(counts):
        index = torch.randperm(n)[:count]
        pixels[b, index] = torch.rand(count, 3) * 0.9
        pixels[b, index, 1] = 0.5  # surely non-white
        where.append(set(index.tolist()))
    return pixels, where


def test_random_rays_are_distinct_and_in_range():
    torch.manual_seed(0)
    index = render.random_rays(50, 20, 4)
    assert index.shape == (4, 20) and index.min() >= 0 and index.max() < 50
    assert all(len(set(row.tolist())) == 20 for row in index)


def test_foreground_first_takes_half_from_the_foreground():
    torch.manual_seed(0)
    pixels, where = views_with_foreground([30, 10])
    index = render.foreground_first_rays(pixels, 16)
    assert index.shape == (2, 16)
    first, rest = index[:, :8], index[:, 8:]
    assert set(first[0].tolist()) <= where[0] and len(set(first[0].tolist())) == 8  # distinct foreground
    assert set(first[1].tolist()) <= where[1] and len(set(first[1].tolist())) == 8
    for row in rest:  # the other half: distinct, uniform over the whole view
        assert len(set(row.tolist())) == 8


def test_foreground_first_tops_up_a_small_foreground_with_replacement():
    """3 foreground pixels for 8 foreground rays: all 3 are taken, then 5 more drawn from them with replacement."""
    torch.manual_seed(1)
    pixels, where = views_with_foreground([3])
    index = render.foreground_first_rays(pixels, 17)  # odd: 8 foreground, 9 uniform
    first = index[0, :8].tolist()
    assert set(first) == where[0]
    assert index.shape == (1, 17) and len(set(index[0, 8:].tolist())) == 9


def test_foreground_first_guards_views_without_foreground():
    """An all-white view (quirk 30: the reference's randint(0, 0) fails) draws every ray uniformly instead."""
    torch.manual_seed(2)
    pixels, where = views_with_foreground([0, 12])
    index = render.foreground_first_rays(pixels, 16)
    assert len(set(index[0].tolist())) == 16  # distinct, anywhere
    assert set(index[1, :8].tolist()) <= where[1]


# ----------------------------------------------------------------------------------------------------------------------
# Orbits
# ----------------------------------------------------------------------------------------------------------------------


def look_at(eye: torch.Tensor) -> torch.Tensor:
    back = eye / eye.norm()
    right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back)
    right = right / right.norm()
    return torch.stack([right, torch.linalg.cross(back, right), back, eye], dim=1)


def test_an_orbit_keeps_distance_and_elevation_and_looks_at_the_object():
    start = look_at(torch.tensor([3.0, 1.0, 2.0]))
    assert torch.equal(render.up_axis(start[None]), torch.tensor([0.0, 0.0, 1.0]))
    frames = render.orbit_poses(start, render.up_axis(start[None]), 8)
    assert frames.shape == (8, 3, 4)
    assert torch.allclose(frames[0], start, atol=1e-6)
    centres = frames[:, :, 3]
    assert torch.allclose(centres.norm(dim=1), start[:, 3].norm().expand(8), atol=1e-5)  # distance
    assert torch.allclose(centres[:, 2], torch.full((8,), 2.0), atol=1e-5)  # elevation (height above the object)
    assert torch.allclose(frames[2, :, 3], torch.tensor([-1.0, 3.0, 2.0]), atol=1e-5)  # a quarter turn about +z
    for frame in frames:  # still looking at the origin: -z of the camera points from the centre to the object
        assert torch.allclose(-frame[:, 2], -frame[:, 3] / frame[:, 3].norm(), atol=1e-5)
        assert torch.allclose(frame[:, :3].T @ frame[:, :3], torch.eye(3), atol=1e-5)


def test_foreground_first_draws_are_uniform_over_the_foreground():
    """Over many instances, each foreground pixel is among the distinct foreground draws equally often, and the
    top-up of a small foreground picks each of its pixels equally often."""
    torch.manual_seed(3)
    pixels, where = views_with_foreground([30])
    index = render.foreground_first_rays(pixels.expand(4000, -1, -1), 16)[:, :8]
    counts = torch.bincount(index.flatten(), minlength=64)[sorted(where[0])].float()
    assert counts.sum() == 4000 * 8 and (counts / counts.mean() - 1).abs().max() < 0.1
    small, where = views_with_foreground([3])
    extra = render.foreground_first_rays(small.expand(6000, -1, -1), 16)[:, 3:8]
    counts = torch.bincount(extra.flatten(), minlength=64)[sorted(where[0])].float()
    assert counts.sum() == 6000 * 5 and (counts / counts.mean() - 1).abs().max() < 0.05
