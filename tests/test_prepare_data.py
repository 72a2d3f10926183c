"""recipes/prepare_data.py: archives, extracted folders and (offline) Hub copies into the layouts ginr reads, then
verification of counts, image sizes and split membership."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import tarfile
import zipfile
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from conftest import (
    IMAGENETTE_FILES,
    LIBRISPEECH,
    coded_image,
    red,
    write_celeba,
    write_ffhq,
    write_imagenette,
    write_imagenette_parquet,
    write_librispeech,
    write_librispeech_parquet,
)

from ginr.config import DataConfig
from ginr.data import catalog, eval_dataset, layouts, prepare, train_dataset

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "recipes" / "prepare_data.py")
recipe = sys.modules["prepare_data"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)


@pytest.fixture(autouse=True)
def tiny_datasets(tmp_path, monkeypatch):
    """The fixtures' counts and sizes in place of the real datasets' (and private datasets/Hub caches)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(layouts, "CELEBA_IDS", {"train": (1, 6), "validation": (7, 8), "test": (9, 10)})
    facts = catalog.DATASETS
    tiny = {
        "celeba": dataclasses.replace(
            facts["celeba"], counts={"train": 6, "validation": 2, "test": 2}, image_size="18x22"
        ),
        "ffhq": dataclasses.replace(facts["ffhq"], counts={"train": 4, "validation": 2}),
        "imagenette": dataclasses.replace(
            facts["imagenette"],
            counts={"train": 5, "validation": 2},
            image_size="short24",
            classes=("n01440764", "n03000684"),
        ),
        "librispeech": dataclasses.replace(facts["librispeech"], counts={"train-clean-100": 3, "test-clean": 2}),
    }
    for name, value in tiny.items():
        monkeypatch.setitem(catalog.DATASETS, name, value)


def _run(*argv: str) -> None:
    import tyro

    recipe.main(tyro.cli(recipe.Args, args=list(argv)))


def _tar(source: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return archive


def test_imagenette_from_the_official_archive(tmp_path, capsys):
    source = write_imagenette(tmp_path / "src")
    (source / "noisy_imagenette.csv").write_text("path,noisy_labels_1\n")  # in the archive, not in the layout
    archive = _tar(source, tmp_path / "imagenette2-320.tgz", "imagenette2-320")
    _run("imagenette", "--to", str(tmp_path / "out"), "--from", str(archive))
    out = capsys.readouterr().out
    assert (
        "wrote 7 files" in out and "train: 5 instances (expected 5)" in out and "is a complete imagenette folder" in out
    )
    config = dataclasses.replace(catalog.IMAGENETTE178, path=str(tmp_path / "out"), resolution=8, num_workers=0)
    assert [red(eval_dataset(config)[i]) for i in range(2)] == [20, 40]
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == sorted(IMAGENETTE_FILES["train"])


def test_imagenette_from_a_hub_copy_offline(tmp_path, capsys, monkeypatch):
    repo = tmp_path / "hub-cache" / "datasets--frgfm--imagenette"
    commit = "0123456789abcdef0123456789abcdef01234567"
    write_imagenette_parquet(repo / "snapshots" / commit)
    (repo / "refs" / "refs" / "convert").mkdir(parents=True)
    (repo / "refs" / "refs" / "convert" / "parquet").write_text(commit)
    tiny = dataclasses.replace(
        catalog.DATASETS["imagenette"], counts={"train": 4, "validation": 2}, image_size="short20"
    )
    tiny = dataclasses.replace(tiny, classes=("n01440764", "n02102040", "n03000684"))
    monkeypatch.setitem(catalog.DATASETS, "imagenette", tiny)
    with pytest.raises(SystemExit):  # the tiny validation split lacks one class: verification says so
        _run("imagenette", "--to", str(tmp_path / "out"))
    assert "validation: classes ['n01440764', 'n03000684'], expected" in capsys.readouterr().err
    train = tmp_path / "out" / "train"
    assert sorted(p.name for p in train.iterdir()) == ["n01440764", "n02102040", "n03000684"]  # names -> wnids
    assert sorted(p.name for p in (train / "n03000684").iterdir()) == ["train_01.JPEG"]  # the copy's file names
    assert (train / "n01440764" / "train_03.JPEG").read_bytes()[:4] == b"\x89PNG"  # bytes copied as they are


def test_librispeech_from_archives_and_from_a_hub_copy(tmp_path, capsys):
    source = write_librispeech(tmp_path / "src") / "LibriSpeech"
    archives = [_tar(source / subset, tmp_path / f"{subset}.tar.gz", f"LibriSpeech/{subset}") for subset in LIBRISPEECH]
    _run("librispeech", "--to", str(tmp_path / "a"), "--from", *map(str, archives))
    assert "test-clean: 2 instances (expected 2)" in capsys.readouterr().out
    _run("librispeech", "--to", str(tmp_path / "b"), "--from", str(write_librispeech_parquet(tmp_path / "parquet")))
    for out in ("a", "b"):
        config = dataclasses.replace(catalog.DATA["librispeech1s"], path=str(tmp_path / out), num_workers=0)
        names = [Path(e["path"]).name for e in train_dataset(config).split["audio"]]
        assert names == ["103-1240-0000.flac", "19-198-0000.flac", "19-198-0001.flac"]
    original = source / "test-clean" / "121" / "121726" / "121-121726-0000.flac"
    assert (tmp_path / "a" / "LibriSpeech" / "test-clean" / "121" / "121726" / original.name).read_bytes() == (
        original.read_bytes()
    )


def test_celeba_from_the_zip_and_size_check(tmp_path, capsys, monkeypatch):
    source = write_celeba(tmp_path / "img_align_celeba")
    archive = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(source.iterdir()):
            zipped.write(path, f"img_align_celeba/{path.name}")
        zipped.writestr("list_eval_partition.txt", "not an image")
    monkeypatch.setenv("HOME", str(tmp_path))
    _run("celeba", "--to", str(tmp_path / "out"), "--from", "~/img_align_celeba.zip")  # as --from=~/... leaves it
    assert "test: 2 instances (expected 2)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:2] == ["000001.jpg", "000002.jpg"]
    coded_image(1, (20, 22)).save(tmp_path / "out" / "000003.jpg")
    (tmp_path / "out" / "000009.jpg").unlink()
    with pytest.raises(SystemExit) as exit_info:
        _run("celeba", "--to", str(tmp_path / "out"), "--verify-only")
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "is not a complete celeba folder" in err
    assert "test: 1 of the 2 CelebA test files" in err and "1 image(s) do not have 18x22 px (first: " in err


def test_ffhq_flattened_with_the_lists_and_membership_check(tmp_path, capsys):
    source = write_ffhq(tmp_path / "images1024x1024", nested=True)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "ffhqtrain.txt").write_text("00004.png\n00001.png\n00002.png\n00000.png\n")
    (lists / "ffhqvalidation.txt").write_text("00005.png\n00003.png\n")
    _run("ffhq", "--to", str(tmp_path / "out"), "--from", str(source), "--split-lists", str(lists))
    assert "validation: 2 instances" in capsys.readouterr().out
    assert not any(p.is_dir() for p in (tmp_path / "out").iterdir())  # flat
    out = str(tmp_path / "out")
    _run("ffhq", "--to", out, "--from", out, "--split-lists", out)  # in place: nothing is truncated
    held_out = eval_dataset(DataConfig(source="ffhq", path=out, resolution=4))
    assert [red(held_out[i]) for i in range(2)] == [150, 90]
    (tmp_path / "out" / "ffhqvalidation.txt").write_text("00005.png\n00004.png\n")
    with pytest.raises(prepare.VerificationError, match=r"1 file\(s\) are in both FFHQ lists \(first: 00004.png\)"):
        prepare.verify("ffhq", catalog.DATASETS["ffhq"], tmp_path / "out")


def test_no_files_and_no_hub_copy_are_explained(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        _run("celeba", "--to", str(tmp_path / "out"), "--from", str(tmp_path / "empty"))
    assert "no celeba files found in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run("celeba", "--to", str(tmp_path / "out"))
    assert "celeba has no known Hub copy that keeps the reference's file ids; pass --from" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["{tmp}/typo.zip", "./nowhere", "img_align_celeba.zip"])
def test_a_from_path_that_does_not_exist_is_named_and_nothing_is_made(tmp_path, capsys, source):
    """A local-looking --from (a path or an archive name) that is not there is not taken for a Hub id."""
    source = source.format(tmp=tmp_path)
    with pytest.raises(SystemExit):
        _run("celeba", "--to", str(tmp_path / "out"), "--from", source)
    assert f"--from {source}: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
