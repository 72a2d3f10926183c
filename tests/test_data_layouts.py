"""The reference's layouts (fidelity 7) on generated fixtures: split sizes, order, item shapes and ranges,
transforms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import IMAGENETTE_FILES, LIBRISPEECH, red, utterance, write_celeba, write_ffhq, write_imagenette
from conftest import write_librispeech as write_libri

from ginr.config import DataConfig
from ginr.data import catalog, eval_dataset, layouts, train_dataset

TINY_CELEBA_IDS = {"train": (1, 6), "validation": (7, 8), "test": (9, 10)}


@pytest.fixture
def celeba(tmp_path, monkeypatch):
    monkeypatch.setattr(layouts, "CELEBA_IDS", TINY_CELEBA_IDS)
    return write_celeba(tmp_path / "img_align_celeba" / "img_align_celeba")


def test_catalog_matches_the_reference():
    """Fidelity 7, 9.1, 9.2, 9.4, 4.1: splits, resolutions, transforms, 16 kHz clips with the last second dropped,
    ShapeNet's views."""
    data = catalog.DATA
    assert set(data) == {
        "photos",
        "celeba178",
        "ffhq178",
        "ffhq256",
        "ffhq512",
        "ffhq1024",
        "imagenette178",
        "librispeech1s",
        "librispeech3s",
        "shapenet-cars",
        "shapenet-chairs",
        "shapenet-lamps",
    }
    assert (data["celeba178"].source, data["celeba178"].train_split, data["celeba178"].eval_split) == (
        "celeba",
        "train",
        "test",
    )
    assert [data[f"ffhq{r}"].resolution for r in (178, 256, 512, 1024)] == [178, 256, 512, 1024]
    assert data["imagenette178"].train_transform == "random_crop_flip" and data["ffhq256"].source == "ffhq"
    for name, seconds in (("librispeech1s", 1.0), ("librispeech3s", 3.0)):
        config = data[name]
        assert (config.train_split, config.eval_split) == ("train-clean-100", "test-clean")
        assert (config.sample_rate, config.clip_seconds, config.audio_trim_seconds) == (16000, seconds, 1.0)
        assert config.coord_range == (-seconds, seconds)
    assert all(c.coord_range == (-1.0, 1.0) for n, c in data.items() if not n.startswith("librispeech"))
    for name, category, repeat in (("cars", "cars", 2), ("chairs", "chairs", 1), ("lamps", "lamps", 3)):
        config = data[f"shapenet-{name}"]
        assert (config.source, config.category, config.train_repeat) == ("shapenet", category, repeat)
        assert (config.train_split, config.eval_split, config.resolution) == ("train", "test", 128)
        assert (config.train_views, config.eval_draws, config.depth_range) == (25, 100, (2.0, 6.0))
        assert (config.support_views, config.query_views, config.redraw_eval) == (1, 1, False)
    ids = layouts.CELEBA_IDS
    assert (ids["train"], ids["test"]) == ((1, 162770), (182638, 202599))
    assert catalog.DATASETS["celeba"].counts == {"train": 162770, "validation": 19867, "test": 19962}


def test_celeba_splits_by_id_from_the_nested_kaggle_folder(celeba, tmp_path):
    config = dataclasses.replace(catalog.CELEBA178, path=str(tmp_path), resolution=6, num_workers=0)
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (6, 2)
    assert [red(held_out[i]) for i in range(2)] == pytest.approx([180, 200], abs=2)  # ids 9, 10: the test split
    assert [red(train[(i, 0)]) for i in range(6)] == pytest.approx([20, 40, 60, 80, 100, 120], abs=2)
    image = held_out[0]
    assert image.shape == (6, 6, 3) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    (celeba / "000008.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 CelebA validation files .* \(first: 000008.jpg\)"):
        eval_dataset(dataclasses.replace(config, eval_split="validation"))
    with pytest.raises(FileNotFoundError, match="no 000001.jpg there or in img_align_celeba/"):
        train_dataset(dataclasses.replace(config, path=str(celeba.parent.parent.parent)))


def test_celeba_grayscale_and_rgba_are_converted(celeba, tmp_path):
    from conftest import coded_image

    coded_image(90, (18, 22), "L").save(celeba / "000009.jpg")
    image = eval_dataset(DataConfig(source="celeba", path=str(celeba), eval_split="test", resolution=4))[0]
    assert image.shape == (4, 4, 3) and torch.allclose(image[..., 0], image[..., 1], atol=0.02)


def test_ffhq_nested_folder_with_lists_beside_it(tmp_path):
    root = write_ffhq(tmp_path / "ffhq", nested=True)
    (root / "ffhqtrain.txt").write_text("00004.png\n00001.png\n00002.png\n00000.png\n")
    (root / "ffhqvalidation.txt").write_text("00005.png\n00003.png\n")
    config = dataclasses.replace(catalog.DATA["ffhq256"], path=str(root), resolution=4, num_workers=0)
    train, held_out = train_dataset(config), eval_dataset(config)
    assert [red(train[i]) for i in range(4)] == [120, 30, 60, 0]  # the list's order (quirk 29)
    assert [red(held_out[i]) for i in range(2)] == [150, 90] and held_out[0].shape == (4, 4, 3)
    (root / "ffhqvalidation.txt").unlink()
    with pytest.raises(FileNotFoundError, match="ffhqvalidation.txt is missing.*--data.split-lists"):
        eval_dataset(config)


def test_imagenette_order_and_transforms(tmp_path):
    """Classes sorted, files sorted within each (torchvision ImageFolder); random crop at native scale for training,
    resize + centre crop for evaluation (quirk 16)."""
    root = write_imagenette(tmp_path / "imagenette2-320")
    config = dataclasses.replace(catalog.IMAGENETTE178, path=str(root), resolution=12, num_workers=0)
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (sum(map(len, IMAGENETTE_FILES["train"].values())), 2)
    assert [red(train[(i, 3)]) for i in range(len(train))] == [20, 40, 60, 80, 100]  # the fixture's sorted order
    assert [red(held_out[i]) for i in range(2)] == [20, 40]  # "val" is read as the validation split
    crop = train[(0, 5)]
    assert crop.shape == (12, 12, 3) and torch.equal(crop, train[(0, 5)])  # seeded per sample


def test_random_crop_is_a_native_scale_window(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    (tmp_path / "train" / "c").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "train" / "c" / "x.png")
    config = DataConfig(source="imagefolder", path=str(tmp_path), resolution=10, train_transform="random_crop_flip")
    crops = [(train_dataset(config)[(0, seed)] * 255).round().byte().numpy() for seed in range(6)]
    windows = {
        pixels[y : y + 10, x : x + 10, :][:, ::flip].tobytes() for y in range(15) for x in range(21) for flip in (1, -1)
    }
    assert all(crop.tobytes() in windows for crop in crops) and len({c.tobytes() for c in crops}) > 1


def test_librispeech_order_trim_crop_and_padding(tmp_path):
    """torchaudio's order (sorted utterance ids); CropAudio(total_secs=-1): drop the last second, first N samples in
    evaluation, a random window in training, zero padding (quirk 15)."""
    root = write_libri(tmp_path)
    config = dataclasses.replace(catalog.DATA["librispeech1s"], path=str(root), num_workers=0)
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (3, 2)
    assert [e["path"].rsplit("/", 1)[1] for e in train.split["audio"]] == [
        "103-1240-0000.flac",
        "19-198-0000.flac",
        "19-198-0001.flac",
    ]
    clip = held_out[0]  # 1089-134686-0000: 2 s, trimmed to 1 s, first 16000 samples
    expected = torch.from_numpy(utterance("1089-134686-0000", 2.0)[:16000])
    assert clip.shape == (16000, 1) and torch.allclose(clip[:, 0], expected, atol=1e-4)
    assert not held_out[1].any()  # 0.5 s: nothing is left after dropping a second, all padding
    whole = torch.from_numpy(utterance("103-1240-0000", 1.5))
    for seed in range(5):  # 1.5 s -> 0.5 s kept: a window into the first half second, padded
        window = train[(0, seed)][:, 0]
        assert torch.allclose(window[:8000], whole[:8000], atol=1e-4) and not window[8000:].any()
    untrimmed = eval_dataset(dataclasses.replace(config, audio_trim_seconds=0.0))[0][:, 0]
    assert torch.equal(untrimmed, clip[:, 0])  # a 2 s clip's first second is the same either way
    three = eval_dataset(dataclasses.replace(catalog.DATA["librispeech3s"], path=str(root), num_workers=0))[0]
    assert three.shape == (48000, 1) and not three[16000:].any() and three.abs().max() <= 1
    assert LIBRISPEECH["test-clean"]["1089-134686-0000"] == 2.0


def test_librispeech_random_window_never_reaches_the_dropped_second(tmp_path):
    root = write_libri(tmp_path)
    config = dataclasses.replace(catalog.DATA["librispeech1s"], path=str(root), clip_seconds=0.25, num_workers=0)
    train = train_dataset(config)
    whole = torch.from_numpy(utterance("19-198-0000", 3.0))  # index 1 in sorted order; 2 s remain after the trim
    starts = set()
    for seed in range(16):
        window = train[(1, seed)][:, 0]
        start = int(torch.argmin((whole[:32000].unfold(0, 64, 1) - window[:64]).abs().sum(1)))
        assert torch.allclose(whole[start : start + 4000], window, atol=1e-4)
        starts.add(start)
    assert len(starts) > 8 and max(starts) <= 28000


def test_librispeech_resamples_other_rates(tmp_path):
    root = write_libri(tmp_path, rate=8000)
    config = dataclasses.replace(catalog.DATA["librispeech1s"], path=str(root), audio_trim_seconds=0.0, num_workers=0)
    clip = eval_dataset(config)[0][:, 0]
    expected = torch.from_numpy(utterance("1089-134686-0000", 2.0)[:16000])
    assert clip.shape == (16000,) and float((clip - expected).abs()[100:-100].mean()) < 0.02
