"""The pre-resized cache: bit-identical to decoding the originals, built once, shared, strict about bad files."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from conftest import write_image_folder

from ginr.config import DataConfig
from ginr.data import BadFileError, cache, eval_dataset, train_dataset


def test_cache_is_exact_and_built_once(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "images", n_train=8, n_eval=3, size=40)
    plain = DataConfig(source="imagefolder", path=str(root), resolution=12)
    cached = dataclasses.replace(plain, cache_dir=str(tmp_path / "cache"), num_workers=2)
    for load in (train_dataset, eval_dataset):
        reference, fast = load(plain), load(cached)
        assert len(reference) == len(fast)
        assert all(torch.equal(reference[i], fast[i]) for i in range(len(fast)))
        assert fast.split[0]["image"]["bytes"][:4] == b"\x89PNG" and fast.split[0]["image"]["path"] is None
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert len(folders) == 2 and all(name.startswith("imagefolder-") and "-12px-" in name for name in folders)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(cache, "_probe", no_rebuild)
    assert len(train_dataset(cached)) == 8  # read back, not rebuilt
    with pytest.raises(AssertionError, match="rebuilt"):
        train_dataset(dataclasses.replace(cached, resolution=10))  # another resolution is another cache
    changed = sorted((root / "train").rglob("*.png"))[0]
    changed.write_bytes(changed.read_bytes())  # rewritten on disk: a new modification time
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="rebuilt"):
        train_dataset(cached)  # a file changed since the cache was built: not served from it


def test_random_crop_splits_are_not_cached(tmp_path):
    root = write_image_folder(tmp_path / "images", n_train=4, n_eval=2, size=40)
    config = DataConfig(
        source="imagefolder",
        path=str(root),
        resolution=12,
        train_transform="random_crop_flip",
        cache_dir=str(tmp_path / "cache"),
    )
    assert train_dataset(config).split[0]["image"]["path"].endswith(".png")  # the original file
    assert eval_dataset(config).split[0]["image"]["path"] is None  # the cached PNG


def test_cache_build_stops_on_a_bad_file_unless_skipping(tmp_path):
    root = write_image_folder(tmp_path / "images", n_train=4, n_eval=3, size=20)
    bad = sorted((root / "validation").rglob("*.png"))[1]
    bad.write_bytes(b"garbage")
    config = DataConfig(source="imagefolder", path=str(root), resolution=8, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(BadFileError, match=rf"cannot use {bad}: .*\(1 unusable file\(s\) in imagefolder-validation\)"):
        eval_dataset(config)
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())  # nothing half-written is left
    assert len(eval_dataset(dataclasses.replace(config, skip_bad_files=True))) == 2


def test_the_cache_key_follows_files_on_disk_not_rows_that_carry_their_bytes(tmp_path):
    """Hub copies carry each image's bytes beside a file name that need not exist here: only rows read from files
    enter the key, with their size and modification time."""
    import datasets

    carried = datasets.Dataset.from_dict(
        {"image": [{"bytes": b"\x89PNG...", "path": "n01440764_10026.JPEG"}]},
        features=datasets.Features({"image": datasets.Image(decode=False)}),
    )
    assert cache.files_state(carried) == cache.files_state(carried.select([]))  # nothing on disk to follow
    image = tmp_path / "a.png"
    image.write_bytes(b"one")
    on_disk = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": str(image)}]})
    before = cache.files_state(on_disk)
    image.write_bytes(b"longer")
    assert cache.files_state(on_disk) != before
