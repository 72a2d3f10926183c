"""Partial observations (ginr.masks): the masks, what each family sees of a masked signal, and the split PSNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from test_inference import reconstruct, saved_model, tiny
from test_tto import tiny_signal_model

from ginr import masks
from ginr.config import DataConfig
from ginr.coords import grid


def test_random_masks_are_seeded_with_the_kept_count():
    first = masks.random_mask((10, 10), 0.25, seed=3)
    assert first.dtype == torch.bool and first.shape == (10, 10) and int(first.sum()) == 25
    assert torch.equal(first, masks.random_mask((10, 10), 0.25, seed=3))
    assert not torch.equal(first, masks.random_mask((10, 10), 0.25, seed=4))
    assert int(masks.random_mask((10,), 0.001, seed=0).sum()) == 1  # at least one position


def test_an_image_mask_is_white_observed_and_resized(tmp_path):
    pixels = Image.new("L", (4, 2), 0)
    pixels.putpixel((0, 0), 255)
    pixels.putpixel((3, 1), 200)
    pixels.save(tmp_path / "mask.png")
    observed = masks.image_mask(tmp_path / "mask.png", (4, 8))  # twice the size, nearest
    assert observed.shape == (4, 8) and int(observed.sum()) == 8
    assert observed[:2, :2].all() and observed[2:, 6:].all()


def test_an_audio_gap_hides_its_seconds():
    observed = masks.gap_mask(10, 10, 0.2, 0.5)
    assert observed.tolist() == [True, True, False, False, False, True, True, True, True, True]


@pytest.mark.parametrize(
    ("observation", "audio", "message"),
    [
        (masks.Observation(keep_fraction=0.5, mask="m.png"), False, "give one of --keep-fraction and --mask"),
        (masks.Observation(keep_fraction=0.0), False, "--keep-fraction 0.0 must be in"),
        (masks.Observation(mask="m.png"), True, "--mask is an image mask"),
        (masks.Observation(gap=(0.1, 0.2)), False, "--gap START END is a time gap in audio"),
        (masks.Observation(gap=(0.3, 0.2)), True, "give 0 <= START < END"),
    ],
)
def test_observations_that_do_not_apply_are_refused(observation, audio, message):
    with pytest.raises(ValueError, match=message):
        observation.check(audio)


def test_the_split_psnr_against_a_hand_computation():
    target = torch.zeros(1, 2, 2, 1)
    pred = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 2, 2, 1)
    observed = torch.tensor([[True, False], [False, True]])
    split = masks.split_psnr(pred, target, observed)
    assert float(split["psnr_observed"]) == pytest.approx(-10 * math.log10((0.01 + 0.16) / 2), rel=1e-6)
    assert float(split["psnr_unobserved"]) == pytest.approx(-10 * math.log10((0.04 + 0.09) / 2), rel=1e-6)


def test_a_hypernetwork_reads_unobserved_pixels_as_the_mean_of_the_observed_ones():
    signal = torch.arange(8.0).view(1, 2, 2, 2)
    observed = torch.tensor([[True, False], [False, True]])
    filled = masks.fill_unobserved(signal, observed)
    mean = (signal[0, 0, 0] + signal[0, 1, 1]) / 2
    assert torch.equal(filled[0, 0, 1], mean) and torch.equal(filled[0, 1, 0], mean)
    assert torch.equal(filled[0, 0, 0], signal[0, 0, 0]) and torch.equal(filled[0, 1, 1], signal[0, 1, 1])
    assert torch.equal(masks.hidden(signal, observed)[0, 0, 1], torch.zeros(2))


@pytest.mark.parametrize("model_name", ["ipc-meta", "ipc-transinr"])
def test_unobserved_targets_do_not_change_the_modulation(model_name):
    """The gradient of the modulation with respect to the signal is zero at every unobserved position: a meta model
    adapts on the observed coordinates only; a hypernetwork reads them through the observed mean only."""
    model, params = tiny_signal_model(model_name)
    signal = torch.rand(2, 6, 6, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    observed = masks.random_mask((6, 6), 0.5, seed=1)
    coords = grid((6, 6), (-1, 1))
    modulation = masks.encode_observed(model, params, signal, coords, observed).modulation
    (gradient,) = torch.autograd.grad(sum(t.sum() for t in modulation.values()), signal)
    assert gradient[:, ~observed].abs().max() == 0 and gradient[:, observed].abs().max() > 0


def test_reconstruct_fits_the_kept_pixels_and_measures_the_rest(tmp_path, capsys):
    folder = saved_model(tmp_path, tiny("ipc-meta", DataConfig(resolution=8)))
    image = tmp_path / "photo.png"
    smooth_image(np.random.default_rng(3), 12).save(image)
    args = dict(model=str(folder), input=str(image), scale=1, out=str(tmp_path / "out"), keep_fraction=0.5)
    reconstruct.main(reconstruct.Args(**args, steps=2))
    printed = capsys.readouterr().out
    assert "dB on the 32 observed positions" in printed and "dB on the 32 unobserved ones" in printed
    with pytest.raises(SystemExit) as exit_info:
        reconstruct.main(reconstruct.Args(**{**args, "gap": (0.1, 0.2)}))
    assert exit_info.value.code == 2 and "give one of --keep-fraction and --gap" in capsys.readouterr().err
