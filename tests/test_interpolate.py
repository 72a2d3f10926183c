"""The straight path between two modulations (ginr.interpolation) and recipes/interpolate.py on tiny models."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import smooth_image
from PIL import Image
from test_inference import saved_model, tiny
from test_nerf import tiny_config

import ginr
from ginr import inference, interpolation
from ginr.config import DataConfig
from ginr.data import eval_dataset, signal_transform
from ginr.data.shapenet import ViewsObject
from ginr.models import build
from ginr.pytree import tree_map

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import interpolate  # noqa: E402
from reconstruct import read_signal  # noqa: E402


def own_reconstruction(loaded, signal: torch.Tensor) -> torch.Tensor:
    """The decode of the instance's own modulation (1, *S, C) -> (*S, C)."""
    coord_range = loaded.config.data.coord_range
    modulation = inference.encode(loaded.model, loaded.params, signal, coord_range).modulation
    with torch.no_grad():
        return inference.decode(loaded.model, loaded.params, modulation, signal.shape[1:-1], coord_range)[0]


def test_the_path_runs_from_one_reconstruction_to_the_other_through_the_average():
    config = tiny("ipc-meta", DataConfig(resolution=8))
    model = build(config.model_name, config.model)
    params = model.init(torch.Generator().manual_seed(0))
    signals = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    start, end = (inference.encode(model, params, s[None], (-1, 1)).modulation for s in signals)
    path = interpolation.straight_path(start, end, 3)  # t = 0, 1/4, 1/2, 3/4, 1
    assert torch.equal(path["1"][0], start["1"][0]) and torch.equal(path["1"][-1], end["1"][0])
    frames = interpolation.decode_path(model, params, start, end, 3, (8, 8), (-1, 1))
    assert frames.shape == (5, 8, 8, 3)
    own = lambda m: inference.decode(model, params, m, (8, 8), (-1, 1))[0]  # noqa: E731
    average = tree_map(lambda a, b: (a + b) / 2, start, end)
    for frame, expected in ((frames[0], own(start)), (frames[-1], own(end)), (frames[2], own(average))):
        torch.testing.assert_close(frame, expected)
    assert not torch.allclose(frames[1], frames[2])


def test_images_strip_from_a_file_to_a_held_out_index(tmp_path, capsys):
    folder = saved_model(tmp_path, tiny("ipc-transinr", DataConfig(resolution=8)))
    photo = tmp_path / "photo.png"
    smooth_image(np.random.default_rng(3), 12).save(photo)
    out = tmp_path / "strips" / "strip.png"
    interpolate.main(interpolate.Args(model=str(folder), a=str(photo), b="5", steps=2, out=str(out)))
    assert "4 points from" in capsys.readouterr().out
    strip = torch.from_numpy(np.asarray(Image.open(out), dtype=np.float32) / 255)
    assert strip.shape == (8, 4 * 8, 3)  # A, 2 steps, B left to right at the model's resolution
    loaded = ginr.from_pretrained(folder)
    a = read_signal(signal_transform(loaded.config.data, "image", training=False), photo)
    b = eval_dataset(loaded.config.data)[5][None]
    for columns, signal in ((slice(0, 8), a), (slice(24, 32), b)):
        expected = own_reconstruction(loaded, signal).clamp(0, 1)
        torch.testing.assert_close(strip[:, columns], expected, atol=1 / 255 + 1e-4, rtol=0)


def test_audio_writes_one_wav_per_point(tmp_path, capsys):
    data = DataConfig(source="audiofolder", clip_seconds=0.01, sample_rate=16000)
    folder = saved_model(tmp_path, tiny("transinr", data, input_dim=1, output_dim=1, output_bias=0.0))
    clips = []
    for k in range(2):
        clips.append(tmp_path / f"clip{k}.wav")
        soundfile.write(clips[-1], (0.5 * np.sin(np.arange(160) / (3 + k))).astype(np.float32), 16000)
    out = tmp_path / "path.png"
    interpolate.main(interpolate.Args(model=str(folder), a=str(clips[0]), b=str(clips[1]), steps=3, out=str(out)))
    written = sorted(p.name for p in tmp_path.glob("path_*.wav"))
    assert written == [f"path_{k:02d}.wav" for k in range(5)]
    samples, rate = soundfile.read(tmp_path / "path_00.wav", dtype="float32")
    assert rate == 16000 and samples.shape == (160,)
    loaded = ginr.from_pretrained(folder)
    a = read_signal(signal_transform(loaded.config.data, "audio", training=False), clips[0])
    np.testing.assert_allclose(samples, own_reconstruction(loaded, a)[:, 0].clamp(-1, 1).numpy(), atol=1e-4)


def test_nerf_renders_one_view_per_point_from_a_query_camera(tmp_path, shapenet_folder, capsys):
    config = tiny_config(shapenet_folder)
    folder = saved_model(tmp_path, config)
    obj = shapenet_folder / "cars" / "e0"
    out = tmp_path / "views.png"
    interpolate.main(interpolate.Args(model=str(folder), a=str(obj), b="1", steps=1, out=str(out), device="cpu"))
    strip = torch.from_numpy(np.asarray(Image.open(out), dtype=np.float32) / 255)
    assert strip.shape == (16, 3 * 16, 3)
    loaded = ginr.from_pretrained(folder)
    views = ViewsObject(obj)
    support, camera = views.views([0, 1], 16), views.views([2], 16)  # two support views: the camera is frame 2
    batch = lambda v: {k: t[None] for k, t in v.items()}  # noqa: E731
    own = inference.novel_views(
        loaded.model, loaded.params, batch(support), camera["poses"][None], camera["focals"][None], (16, 16),
        loaded.config.render, loaded.config.data.depth_range,
    )[0, 0]  # fmt: skip
    torch.testing.assert_close(strip[:, :16], own.clamp(0, 1), atol=1 / 255 + 1e-4, rtol=0)


@pytest.mark.parametrize(
    ("b", "steps", "expected"),
    [("nope", 2, "nope is neither a file nor an index"), ("999", 2, "has instances 0 .. 227"), ("1", -1, "--steps")],
)
def test_bad_ends_and_steps_are_refused_by_name(tmp_path, capsys, b, steps, expected):
    folder = saved_model(tmp_path, tiny("ipc-meta", DataConfig(resolution=8)))
    with pytest.raises(SystemExit) as exit_info:
        interpolate.main(interpolate.Args(model=str(folder), a="0", b=b, steps=steps, out=str(tmp_path / "s.png")))
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err
