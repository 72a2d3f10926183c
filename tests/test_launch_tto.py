"""Test-time optimisation end to end on a tiny NeRF (the spheres of conftest.write_shapenet): ``accelerate launch
recipes/eval.py RUN --tto-steps 0 2 --per-instance FILE.csv`` on one and two processes, and reconstruct.py
--tto-steps."""

from __future__ import annotations

import csv

import pytest
from test_launch import launch
from test_launch_nerf import TINY_NERF, run


@pytest.fixture(scope="module")
def nerf_run(tmp_path_factory, shapenet_folder):
    out = tmp_path_factory.mktemp("nerf_tto")
    flags = [*TINY_NERF, "--train.epochs", "1", "--train.checkpoint-every", "1", "--train.eval-every", "1"]
    launch([*flags, "--data.path", str(shapenet_folder), "--train.out-dir", str(out), "--train.run-name", "run"])
    return out / "run"


def eval_table(output: str) -> list[dict[str, str]]:
    """The rows of eval.py's table (the lines under its header, the line whose first word is ``model``)."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    start = next(i for i, words in enumerate(lines) if words[0] == "model")
    return [dict(zip(lines[start], words)) for words in lines[start + 2 :]]


def test_eval_prints_a_row_per_count_and_writes_every_instance(nerf_run, tmp_path):
    """2 test objects x 2 draws = 4 instances; step 0 is the plain evaluation; one row per instance and count, the
    same numbers on one process and on two (each instance counted once, the rays seeded)."""
    plain = launch([str(nerf_run), "--batch-size", "2"], recipe="eval.py").stdout
    tables = {}
    for config in ("cpu.yaml", "cpu_2proc.yaml"):
        csv_path = tmp_path / f"{config}.csv"
        output = launch(
            [str(nerf_run), "--batch-size", "2", "--tto-steps", "0", "2", "--tto-lr", "0.01", "--per-instance",
             str(csv_path)],
            config=config, recipe="eval.py",
        ).stdout  # fmt: skip
        rows = list(csv.DictReader(csv_path.open()))
        assert [(row["instance"], row["tto_steps"]) for row in rows] == [
            (str(i), str(n)) for i in range(4) for n in (0, 2)
        ]
        tables[config] = (output, rows)
    (output, rows), (_, two) = tables["cpu.yaml"], tables["cpu_2proc.yaml"]
    for one_row, two_row in zip(rows, two):
        assert float(one_row["psnr"]) == pytest.approx(float(two_row["psnr"]), rel=1e-4)
    table = eval_table(output)
    assert [row["tto_steps"] for row in table] == ["0", "2"] and all(row["count"] == "4" for row in table)
    assert float(table[0]["psnr"]) == pytest.approx(float(eval_table(plain)[0]["psnr"]), abs=1e-3)
    mean = sum(float(row["psnr"]) for row in rows if row["tto_steps"] == "2") / 4
    assert float(table[1]["psnr"]) == pytest.approx(mean, abs=1e-3)


def test_reconstruct_refines_a_nerf_on_its_support_views(nerf_run, shapenet_folder, tmp_path):
    folder = shapenet_folder / "cars" / "e1"
    args = [str(nerf_run), str(folder), "--support", "2", "4", "--views", "0", "--out", str(tmp_path)]
    plain = run("reconstruct.py", args)
    refined = run("reconstruct.py", [*args, "--tto-steps", "3", "--tto-lr", "0.01"])
    psnr = lambda out: float(out.split("view 0: psnr ")[1].split()[0])  # noqa: E731
    assert psnr(refined) != psnr(plain)
    assert psnr(run("reconstruct.py", [*args, "--steps", "3", "--tto-lr", "0.01"])) == psnr(refined)  # one meaning
