"""ginr.tasks: the one choice between a NeRF and a signal model, the refusals of the kind a recipe does not apply to,
and random batches of the shape each trains on."""

from __future__ import annotations

import pytest
import torch

from ginr import presets, tasks

NERF = presets.resolve("ipc-transinr", "shapenet-cars", 3)
IMAGES = presets.resolve("ipc-meta", "photos")
AUDIO = presets.resolve("ipc-transinr", "librispeech1s")


def test_nerf_or_signals_tells_multi_view_data_from_signals():
    assert tasks.nerf_or_signals(NERF, nerf="n", signals="s") == "n"
    assert [tasks.nerf_or_signals(c, nerf="n", signals="s") for c in (IMAGES, AUDIO)] == ["s", "s"]


def test_a_recipe_refuses_the_kind_it_does_not_apply_to():
    tasks.require_nerf(NERF, "runs/a")
    tasks.require_signals(IMAGES, "runs/b")
    with pytest.raises(ValueError, match=r"^runs/b is not a NeRF \(it was trained on photos\); see reconstruct.py$"):
        tasks.require_nerf(IMAGES, "runs/b")
    with pytest.raises(ValueError, match=r"^runs/a is a NeRF; its modulations come from support views: use recipes/"):
        tasks.require_signals(NERF, "runs/a")


def test_random_signals_have_the_shape_and_range_of_the_data():
    images = tasks.random_batch(IMAGES, 2, torch.device("cpu"))
    size = IMAGES.data.resolution
    assert images.shape == (2, size, size, 3) and 0 <= images.min() and images.max() <= 1
    audio = tasks.random_batch(AUDIO, 2, torch.device("cpu"))
    assert audio.shape == (2, 16000, 1) and audio.min() < 0 and -1 <= audio.min() and audio.max() <= 1


def test_random_views_are_support_and_query_views_from_cameras_looking_at_the_origin():
    batch = tasks.random_batch(NERF, 2, torch.device("cpu"))
    size = NERF.data.resolution
    assert batch["support"]["images"].shape == (2, 3, size, size, 3)
    assert batch["query"]["images"].shape == (2, 1, size, size, 3)
    poses = batch["support"]["poses"]
    assert poses.shape == (2, 3, 3, 4) and batch["support"]["focals"].shape == (2, 3, 2)
    rotation, eye = poses[..., :3], poses[..., 3]
    assert torch.allclose(rotation.transpose(-1, -2) @ rotation, torch.eye(3).expand_as(rotation), atol=1e-5)
    assert torch.allclose(eye.norm(dim=-1), torch.full((2, 3), 4.0))
    looking = -rotation[..., 2]  # a camera looks along its -z axis
    assert torch.allclose(eye + 4 * looking, torch.zeros_like(eye), atol=1e-5)
