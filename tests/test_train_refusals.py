"""The train recipe in-process: bad data, a taken run folder and checkpoints that do not fit are refused before the
run folder is written to, and leave every file of an existing run as it was."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import tiny_train_flags, write_image_folder

import ginr.data


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_lock(found: dict[str, bytes]) -> dict[str, bytes]:
    """``found`` less the run folder's ``.lock``, which names the newest process that held the folder."""
    return {name: content for name, content in found.items() if name != ".lock"}


def refused(train, argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "data, extra, message",
    [
        ("nowhere", [], "--data.path={tmp}/nowhere: no such folder"),
        (
            "images",
            ["--train.grad-accumulation", "3"],
            "--train.batch-size=4 (the global batch) must be a positive multiple of processes x "
            "--train.grad-accumulation = 1 x 3 = 3",
        ),
    ],
    ids=["missing data", "global batch does not divide"],
)
def test_bad_input_is_refused_before_the_run_folder_is_written(
    tmp_path, image_folder, train, capsys, data, extra, message
):
    folder = image_folder if data == "images" else tmp_path / data
    err = refused(train, [*tiny_train_flags(folder, tmp_path / "runs", "run"), *extra], capsys)
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "runs").exists()


def test_a_run_and_its_checkpoints_survive_every_refused_command(tmp_path, image_folder, train, capsys, caplog):
    flags = [*tiny_train_flags(image_folder, tmp_path, "run"), "--train.epochs", "1", "--train.keep-checkpoints", "1"]
    train(flags)
    run = tmp_path / "run"
    before = files(run)
    assert "checkpoints/step-00000004/manifest.json" in before

    attempts = [
        (flags, f"{run} already holds a run; continue it with --resume {run}, pick another --train.run-name, or pass "
         "--train.overwrite to replace it"),  # the flag the last command below uses
        (["--resume", str(run), "--model.rank", "8"], "does not match the model built from this run's config"),
        (["--resume", str(run), "--train.batch-size", "8"], "resume with --train.batch-size 4"),
        (["--resume", str(run), "--model", "learned-init"], "--model learned-init differs from the resumed run's"),
    ]  # fmt: skip
    for argv, message in attempts:
        assert message in refused(train, argv, capsys)
        assert without_lock(files(run)) == without_lock(before), argv  # .lock names its newest holder

    weights = run / "checkpoints" / "step-00000004" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # truncated: the only checkpoint no longer verifies
    with caplog.at_level(logging.WARNING):
        err = refused(train, ["--resume", str(run), "--train.epochs", "2"], capsys)
    assert f"--resume {run}: no complete and intact checkpoint" in err and "plus --train.overwrite" in err
    err = refused(train, flags, capsys)  # the same command again: no checkpoint, so no --resume offered
    assert f"{run} holds a run with no complete and intact checkpoint to continue; pass --train.overwrite" in err
    assert (
        "passing over step-00000004: " in caplog.text and "model.safetensors does not match its checksum" in caplog.text
    )
    assert files(run).keys() == before.keys()

    train([*flags, "--train.overwrite", "--train.max-steps", "1", "--train.no-eval-at-start"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001"]  # the old run is gone


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_training_file_ends_the_run_with_its_name_and_no_traceback(
    tmp_path, train, capsys, workers, monkeypatch
):
    """Found mid-run (files are decoded as batches are drawn, here or in a loader worker): status 1, one line naming
    the file and the fix, the logs kept. (The header pass before the run finds a file this broken first: it is turned
    off here to stand for damage only a full decode shows, such as a JPEG cut short.)"""
    monkeypatch.setattr(ginr.data, "check_headers", lambda *args: None)
    root = write_image_folder(tmp_path / "images")
    bad = sorted((root / "train").rglob("*.png"))[3]
    bad.write_bytes(b"not an image")
    flags = [*tiny_train_flags(root, tmp_path / "runs", "run"), "--data.num-workers", str(workers)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert f"error: cannot use {bad}: UnidentifiedImageError" in err and "--data.skip-bad-files" in err
    assert "Traceback" not in err
    assert (tmp_path / "runs" / "run" / "tensorboard").is_dir()
