"""Bad input: each case gets its documented handling (convert, pad, skip with a count) or an error naming the file or
folder and the fix, also from inside a loader worker."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import tyro
from conftest import coded_image, write_image_folder, write_librispeech
from PIL import Image

from ginr.config import DataConfig
from ginr.data import (
    BadFileError,
    EvalBatchSampler,
    Signals,
    catalog,
    eval_dataset,
    make_loader,
    signal_transform,
    train_dataset,
)
from ginr.data.loader import failure_message
from ginr.data.sources import load_split


@pytest.mark.parametrize("source", ["imagefolder", "audiofolder", "celeba", "ffhq", "librispeech"])
def test_missing_or_unset_folder_is_named(source, tmp_path):
    split = "train-clean-100" if source == "librispeech" else "train"
    config = DataConfig(source=source, path=str(tmp_path / "nope"), train_split=split)
    with pytest.raises(FileNotFoundError, match=r"--data.path=.*nope: no such folder"):
        train_dataset(config)
    with pytest.raises(ValueError, match="--data.path is not set"):
        train_dataset(dataclasses.replace(config, path=None))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "imagefolder",
            r"no image files .* <path>/<split>/\[<class>/\]\*; for ImageNette, `python recipes/prepare_data.py "
            r"imagenette --to DIR` makes it$",
        ),
        ("audiofolder", r"no audio files"),
        ("celeba", r"no 000001.jpg there .*prepare_data.py celeba"),
        ("ffhq", r"ffhqtrain.txt is missing"),
        (
            "librispeech",
            r"no LibriSpeech subset 'train-clean-100' .*prepare_data.py librispeech --from train-clean-100.tar.gz",
        ),
    ],
)
def test_empty_folder_says_what_is_missing(source, message, tmp_path):
    split = "train-clean-100" if source == "librispeech" else "train"
    with pytest.raises(FileNotFoundError, match=message):
        train_dataset(DataConfig(source=source, path=str(tmp_path), train_split=split))


def test_wrong_layouts_are_explained(tmp_path):
    coded_image(10, (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match=r"found 1 file\(s\) directly in it \(first: a.png\): move them"):
        train_dataset(DataConfig(source="imagefolder", path=str(tmp_path)))
    flat = tmp_path / "LibriSpeech" / "test-clean"
    flat.mkdir(parents=True)
    soundfile.write(flat / "1-2-0000.flac", np.zeros(100, np.float32), 16000)
    with pytest.raises(FileNotFoundError, match=r"test-clean: no FLAC files in the layout <speaker>/<chapter>/"):
        eval_dataset(DataConfig(source="librispeech", path=str(tmp_path), eval_split="test-clean"))
    folder = write_image_folder(tmp_path / "f", 2, 1)
    with pytest.raises(
        ValueError,
        match=rf"split 'test' not found in --data.source=imagefolder at --data.path={folder} "
        r"\(expected a folder test/ there\); it has \['train', 'validation'\]",
    ):
        eval_dataset(DataConfig(source="imagefolder", path=str(folder), eval_split="test"))
    assert len(eval_dataset(DataConfig(source="imagefolder", path=str(folder), eval_split="val"))) == 1  # val/ folder
    (folder / "validation").rename(folder / "other")
    with pytest.raises(ValueError, match=r"expected a folder validation/, val/, valid/, dev/ there"):
        eval_dataset(DataConfig(source="imagefolder", path=str(folder)))


def _corrupt(path, keep: int | None = None):
    """Truncate a file to ``keep`` bytes, or overwrite it with garbage."""
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep is not None else b"not an image or a sound" * 10)


def test_corrupt_and_truncated_images_name_the_file_even_from_a_worker(tmp_path):
    root = write_image_folder(tmp_path / "images", n_train=4, n_eval=4, size=32)
    files = sorted((root / "validation").rglob("*.png"))
    _corrupt(files[1])
    jpeg = files[2].with_suffix(".jpg")
    Image.open(files[2]).save(jpeg, quality=95)
    files[2].unlink()
    _corrupt(jpeg, keep=len(jpeg.read_bytes()) // 2)
    config = DataConfig(source="imagefolder", path=str(root), resolution=8)
    with pytest.raises(BadFileError, match=rf"cannot use {files[1]}: .*\(2 unusable file\(s\) in"):
        eval_dataset(config)  # the header pass finds both before any work
    held_out = Signals(load_split(config, "validation"), signal_transform(config, "image", False), "image")
    paths = [entry["path"] for entry in held_out.split["image"]]
    bad = paths.index(str(files[1]))
    with pytest.raises(BadFileError, match=rf"cannot use {files[1]}: UnidentifiedImageError.*--data.skip-bad-files"):
        held_out[bad]
    with pytest.raises(BadFileError, match=rf"cannot use {jpeg}: OSError: .*[Tt]runcated"):
        held_out[paths.index(str(jpeg))]
    loader = make_loader(held_out, EvalBatchSampler(len(held_out), 4, 1, 0), num_workers=1)
    with pytest.raises(BadFileError, match=rf"^cannot use {files[1]}: UnidentifiedImageError") as error:
        list(loader)  # the worker's error, re-raised here with its message alone (no worker traceback)
    assert "Traceback" not in str(error.value) and "\n" not in str(error.value)


def test_a_bad_file_message_gives_a_prepare_data_command_that_parses(tmp_path, capsys):
    message = failure_message({"path": "x.png"}, 0, OSError("broken"))
    command = re.search(r"`python (recipes/prepare_data.py [^`]*)`", message).group(1).split()
    assert command[0] == "recipes/prepare_data.py" and "NAME" in message and "celeba, ffhq, imagenette or" in message
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("prepare_data_recipe", root / command[0])
    recipe = sys.modules["prepare_data_recipe"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv = ["celeba" if arg == "NAME" else str(tmp_path) if arg == "DIR" else arg for arg in command[1:]]
    args = tyro.cli(recipe.Args, args=argv)
    assert args.name == "celeba" and args.to == tmp_path and args.verify_only and not args.sources


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    folder = tmp_path / "validation"
    folder.mkdir()
    coded_image(100, (10, 12), "L").save(folder / "gray.png")
    coded_image(200, (10, 12), "RGBA").save(folder / "rgba.png")
    Image.new("P", (10, 12)).save(folder / "palette.png")
    held_out = eval_dataset(DataConfig(source="imagefolder", path=str(tmp_path), resolution=6))
    gray, palette, rgba = (held_out[i] for i in range(3))
    assert gray.shape == rgba.shape == palette.shape == (6, 6, 3)
    assert round(float(gray.mean()) * 255) == 100 and round(float(rgba[..., 0].mean()) * 255) == 200


def test_image_smaller_than_the_crop_is_named(tmp_path):
    folder = tmp_path / "train" / "n01440764"
    folder.mkdir(parents=True)
    coded_image(1, (20, 16)).save(folder / "small.JPEG", "PNG")
    train = train_dataset(dataclasses.replace(catalog.IMAGENETTE178, path=str(tmp_path), num_workers=0))
    with pytest.raises(BadFileError, match=r"small.JPEG: ValueError: image of 20x16 px is smaller than the 178-px"):
        train[(0, 0)]


def test_corrupt_audio_is_named(tmp_path):
    root = write_librispeech(tmp_path)
    clip = next((root / "LibriSpeech" / "test-clean").rglob("1089-*.flac"))
    _corrupt(clip, keep=60)
    with pytest.raises(BadFileError, match=rf"cannot use {clip}: .*--data.skip-bad-files"):  # by the header pass
        eval_dataset(dataclasses.replace(catalog.DATA["librispeech1s"], path=str(root), num_workers=0))


def test_skip_bad_files_drops_them_with_a_count(tmp_path, caplog):
    root = write_image_folder(tmp_path / "images", n_train=6, n_eval=2, size=32)
    files = sorted((root / "train").rglob("*.png"))
    _corrupt(files[0])
    _corrupt(files[3], keep=100)
    coded_image(5, (8, 8)).save(files[4])  # smaller than the 16-px random crop
    config = DataConfig(
        source="imagefolder", path=str(root), resolution=16, train_transform="random_crop_flip", skip_bad_files=True
    )
    with caplog.at_level(logging.WARNING, logger="ginr.data.cache"):
        train = train_dataset(config)
    assert len(train) == 3 and train[(2, 1)].shape == (16, 16, 3)
    assert f"skipped 3 of 6 files of imagefolder-train that cannot be used (first: cannot use {files[0]}" in caplog.text
    kept = {entry["path"] for entry in train.split["image"]}
    assert kept == {str(files[i]) for i in (1, 2, 5)}
    audio = write_librispeech(tmp_path / "audio")
    _corrupt(next((audio / "LibriSpeech" / "test-clean").rglob("121-*.flac")))
    librispeech = dataclasses.replace(
        catalog.DATA["librispeech1s"], path=str(audio), skip_bad_files=True, num_workers=0
    )
    assert len(eval_dataset(librispeech)) == 1
