"""Metrics (fidelity 4.4, SSIM) and the learning-rate schedule (fidelity 6.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ginr import presets
from ginr.config import OptimConfig
from ginr.coords import grid
from ginr.metrics import mse_per_sample, psnr, ssim_per_sample
from ginr.train import cadence
from ginr.train.schedule import learning_rate


def test_psnr_is_per_sample_and_unclamped():
    target = torch.zeros(2, 4, 4, 3)
    pred = torch.stack([torch.full((4, 4, 3), 0.1), torch.full((4, 4, 3), -0.01)])
    mse = mse_per_sample(pred, target)
    assert torch.allclose(mse, torch.tensor([0.01, 1e-4]))
    assert torch.allclose(psnr(mse), torch.tensor([20.0, 40.0]))
    assert float(psnr(mse).mean()) == pytest.approx(30.0)  # mean of PSNRs, not PSNR of the mean MSE


@pytest.mark.parametrize("size", [11, 16, 33])
def test_ssim_matches_scikit_image(size):
    rng = np.random.default_rng(size)
    a = rng.random((2, size, size, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape).astype(np.float32), 0, 1)
    ours = ssim_per_sample(torch.from_numpy(b), torch.from_numpy(a)).numpy()
    for i in range(2):
        theirs = structural_similarity(
            a[i],
            b[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert ours[i] == pytest.approx(theirs, abs=2e-5)


def test_ssim_of_identical_images_is_one_and_small_images_work():
    a = torch.rand(1, 5, 5, 3)
    assert float(ssim_per_sample(a, a)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim_per_sample(a, 1 - a)) < 0.5


def test_grid_is_pixel_centres_row_major():
    g = grid((2, 4))
    assert g.shape == (2, 4, 2)
    assert torch.allclose(g[:, 0, 0], torch.tensor([-0.5, 0.5]))  # rows in [..., 0]
    assert torch.allclose(g[0, :, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    audio = grid((6,), (-3.0, 3.0))
    assert torch.allclose(audio[:, 0], torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]))
    assert grid((4, 4), upsample=3).shape == (12, 12, 2)


def test_warmup_starts_at_zero_then_constant():
    optim = OptimConfig(lr=1e-3, warmup_epochs=0.5)
    lrs = [learning_rate(t, optim, steps_per_epoch=8, total_steps=80) for t in range(8)]
    assert lrs[:6] == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert learning_rate(79, optim, 8, 80) == 1e-3
    assert learning_rate(0, OptimConfig(lr=1e-4), 8, 80) == 1e-4  # no warm-up: constant from the first step


def test_cosine_to_min_lr():
    optim = OptimConfig(lr=1.0, min_lr=0.0)
    assert learning_rate(0, optim, 10, 100) == pytest.approx(1.0)
    assert learning_rate(50, optim, 10, 100) == pytest.approx(0.5)
    assert learning_rate(100, optim, 10, 100) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(25, optim, 10, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


# (test_freq, test_imlog_freq) of the reference's configs (fidelity 9.1-9.4)
REFERENCE_FREQUENCIES = {
    ("ipc-transinr", "celeba178"): (5, 5),
    ("ipc-transinr", "imagenette178"): (10, 50),
    ("ipc-transinr", "ffhq512"): (10, 50),
    ("transinr", "ffhq512"): (10, 20),
    ("ipc-transinr", "librispeech1s"): (10, 10),
    ("ipc-meta", "ffhq256"): (10, 20),
    ("learned-init", "imagenette178"): (10, 50),
    ("ipc-transinr", "shapenet-cars"): (20, 100),
}


@pytest.mark.parametrize("model, data", list(REFERENCE_FREQUENCIES))
def test_evaluations_and_their_images_fall_on_the_references_epochs(model, data):
    """Fidelity 6.2 with e = i + 1: evaluate when i == 0 or e % test_freq == 0; log that evaluation's images when
    e % 10 == 1 or e % test_imlog_freq == 0 (a NeRF: e % 10 == 0 and e % test_imlog_freq == 0). ginr adds images
    before the first step, after a NeRF's first epoch, and at the end."""
    train = presets.resolve(model, data).train
    test_freq, imlog = REFERENCE_FREQUENCIES[(model, data)]
    nerf = data.startswith("shapenet")
    for epoch in range(1, train.epochs):
        evaluates = epoch == 1 or epoch % test_freq == 0
        if nerf:
            images = evaluates and (epoch % 10 == 0 and epoch % imlog == 0 or epoch == 1)
        else:
            images = evaluates and (epoch % 10 == 1 or epoch % imlog == 0)
        assert cadence.evaluates(epoch, train) == evaluates, epoch
        assert (cadence.evaluates(epoch, train) and cadence.logs_images(epoch, train)) == images, epoch
    assert cadence.logs_images(0, train)  # the evaluation before the first step
