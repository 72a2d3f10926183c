"""recipes/compare_precision.py: the precision protocol's trajectory summary (final PSNR, late-half mean, gaps)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_precision", ROOT / "recipes" / "compare_precision.py")
compare_precision = sys.modules["compare_precision"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_precision)


def run(precision, psnrs, steps=(10, 20, 30, 40)):
    return {
        "precision": precision,
        "steps": steps[-1],
        "run s": 1.0,
        "history": [{"step": s, "psnr": p, "weights": "raw"} for s, p in zip(steps, psnrs, strict=True)],
    }


def test_trajectory_compares_every_run_with_the_first():
    rows = compare_precision.trajectory([run("fp32", [20.0, 22.0, 23.0, 25.0]), run("bf16", [20.5, 21.0, 23.5, 24.9])])
    fp32, bf16 = rows
    assert fp32["psnr"] == 25.0 and fp32["late mean psnr"] == pytest.approx(24.0)  # mean of evals 3 and 4
    assert fp32["vs fp32"] == "+0.000 dB" and fp32["largest gap"] == "+0.000 dB"
    assert bf16["vs fp32"] == "-0.100 dB"
    assert bf16["late mean vs"] == "+0.200 dB"  # (23.5 + 24.9) / 2 - 24
    assert bf16["largest gap"] == "-1.000 dB"  # at step 20, the largest in size whatever its sign
    assert bf16["evals"] == 4


def test_trajectory_gaps_only_at_evaluations_both_runs_made():
    rows = compare_precision.trajectory(
        [run("fp32", [20.0, 21.0], steps=(10, 40)), run("tf32", [30.0, 21.5], steps=(5, 40))]
    )
    assert rows[1]["largest gap"] == "+0.500 dB"  # step 5 has no fp32 evaluation to compare with
