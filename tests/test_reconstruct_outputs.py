"""What reconstruct.py leaves for a person to look at: one output per input, a side-by-side image, a line saying how
an input was fitted to the model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import smooth_image
from PIL import Image

import ginr
from ginr import inference, panels
from ginr.config import DataConfig
from ginr.data import signal_transform
from ginr.models import build
from ginr.train.plots import waveform_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import reconstruct  # noqa: E402
from test_inference import tiny  # noqa: E402


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    """A tiny untrained ipc-meta model at 8x8 pixels, saved as a model folder."""
    config = tiny("ipc-meta", DataConfig(resolution=8))
    params = build(config.model_name, config.model).init(torch.Generator().manual_seed(0))
    return ginr.save_pretrained(tmp_path_factory.mktemp("model") / "model", config, params)


def run(model: Path, source: Path, out: Path, scale: float = 3.0) -> None:
    reconstruct.main(reconstruct.Args(model=str(model), input=str(source), scale=scale, out=str(out)))


def panel(image: np.ndarray, k: int, size: tuple[int, int], vertical: bool = False) -> np.ndarray:
    """The k-th panel of a :func:`ginr.panels.side_by_side` image, found from its documented layout."""
    height, width = size
    if vertical:
        top = k * (panels.LABEL_HEIGHT + height + panels.GAP) + panels.LABEL_HEIGHT
        return image[top : top + height, :width]
    left = k * (width + panels.GAP)
    return image[panels.LABEL_HEIGHT : panels.LABEL_HEIGHT + height, left : left + width]


def test_inputs_that_share_a_stem_write_apart_and_never_over_an_input(tmp_path, image_model, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    smooth_image(rng, 8).save(folder / "c.bmp")
    smooth_image(rng, 8).save(folder / "c.webp", lossless=True)
    run(image_model, folder, tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["c.bmp_compare.png", "c.bmp_x3.png", "c.webp_compare.png", "c.webp_x3.png"]
    assert not np.array_equal(*(np.asarray(Image.open(tmp_path / "out" / n)) for n in written[1::2]))

    # Written into the input folder, whose earlier output is now an input: that input is read intact, not replaced.
    earlier = folder / "c.bmp_x3.png"
    smooth_image(rng, 8).save(earlier)
    before = earlier.read_bytes()
    run(image_model, folder, folder)
    assert earlier.read_bytes() == before and (folder / "c.bmp_x3-2.png").is_file()
    assert f"-> {folder / 'c.bmp_x3-2.png'} (24x24)" in capsys.readouterr().out


def test_side_by_side_holds_input_prediction_and_truth_at_one_scale(tmp_path, image_model):
    photo = tmp_path / "photo.png"
    smooth_image(np.random.default_rng(1), 8).save(photo)
    run(image_model, photo, tmp_path, scale=3)
    loaded = ginr.from_pretrained(image_model)
    truth = signal_transform(loaded.config.data, "image", training=False)({"path": str(photo), "bytes": None}, None)
    modulation = inference.encode(loaded.model, loaded.params, truth[None], (-1, 1)).modulation
    prediction = inference.decode(loaded.model, loaded.params, modulation, (24, 24), (-1, 1))[0]

    with Image.open(tmp_path / "photo.png_compare.png") as image:
        compare = np.asarray(image.convert("RGB")).astype(int)
    factor = 3  # 24 px is under MIN_PANEL_WIDTH: panels are enlarged 3 times, to 72 px
    assert 24 * factor >= panels.MIN_PANEL_WIDTH > 24 * (factor - 1)
    size = (24 * factor, 24 * factor)
    assert compare.shape == (panels.LABEL_HEIGHT + size[0], 3 * size[1] + 2 * panels.GAP, 3)
    blocks = lambda image, k: image.repeat_interleave(k, 0).repeat_interleave(k, 1)  # noqa: E731
    expected = [blocks(truth, 3 * factor), blocks(prediction, factor), blocks(truth, 3 * factor)]
    for k, image in enumerate(expected):  # input (unmasked: the transformed input), prediction, ground truth
        assert np.abs(panel(compare, k, size) - panels.to_uint8(image).astype(int)).max() <= 1
    assert (compare[: panels.LABEL_HEIGHT] < 128).any()  # labels are drawn


def test_audio_side_by_side_stacks_waveforms_on_one_time_axis(tmp_path, capsys):
    data = DataConfig(source="audiofolder", clip_seconds=0.01, sample_rate=16000)
    config = tiny("transinr", data, input_dim=1, output_dim=1, output_bias=0.0)
    params = build(config.model_name, config.model).init(torch.Generator().manual_seed(0))
    model = ginr.save_pretrained(tmp_path / "model", config, params)
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, (0.5 * np.sin(np.arange(320) / 3)).astype(np.float32), 16000)
    run(model, clip, tmp_path / "out", scale=2)
    printed = capsys.readouterr().out
    assert "clip.wav: 0.02 s at 16000 Hz cut to 0.01 s (the model's rate and clip length)" in printed
    with Image.open(tmp_path / "out" / "clip.wav_compare.png") as image:
        compare = np.asarray(image.convert("RGB")).astype(int)
    assert compare.shape == (3 * (panels.LABEL_HEIGHT + 96) + 2 * panels.GAP, 512, 3)
    truth = torch.from_numpy(0.5 * np.sin(np.arange(160) / 3)).float()[:, None]  # the clip cut to 0.01 s
    modulation = inference.encode(build(config.model_name, config.model), params, truth[None], (-1, 1)).modulation
    prediction, _ = soundfile.read(tmp_path / "out" / "clip.wav_x2.wav", dtype="float32")
    assert prediction.shape == (320,)
    decoded = inference.decode(build(config.model_name, config.model), params, modulation, (320,), (-1, 1))[0, :, 0]
    assert np.abs(prediction - decoded.clamp(-1, 1).numpy()).max() < 1e-4  # the WAV holds the decoded prediction
    for k, clip in enumerate((truth[:, 0], decoded, truth[:, 0])):  # input, prediction, ground truth
        expected = waveform_image(clip[None], clip[None]).permute(1, 2, 0)
        assert np.array_equal(panel(compare, k, (96, 512), vertical=True), panels.to_uint8(expected))


@pytest.mark.parametrize(
    ("size", "line"),
    [
        ((12, 10), "12x10 resized and centre-cropped to 8x8"),
        ((16, 16), "16x16 resized to 8x8"),
        ((8, 11), "8x11 centre-cropped to 8x8"),
        ((8, 8), None),
    ],
)
def test_a_line_says_how_an_image_was_fitted_to_the_model(tmp_path, image_model, capsys, size, line):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", size, (200, 30, 30)).save(photo)
    run(image_model, photo, tmp_path / "out")
    printed = capsys.readouterr().out
    if line is None:
        assert "photo.jpg: 8x8" not in printed and "resized" not in printed
    else:
        assert f"photo.jpg: {line} (the model's resolution)\n" in printed
