"""recipes/bench_data.py runs offline on generated originals and reports loader beside training throughput."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_data", ROOT / "recipes" / "bench_data.py")
bench = sys.modules["bench_data"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize(("data", "variants"), [("celeba178", 2), ("librispeech1s", 1)])
def test_bench_reports_loader_throughput(data, variants, capsys):
    bench.main(bench.Args(data=data, workers=(0,), batches=1, files=2, cached=True))
    lines = capsys.readouterr().out.splitlines()
    assert "loader img/s" in lines[0] and "train img/s (reference)" in lines[0] and len(lines) == 2 + variants
    assert all(float(line.split()[-3]) > 0 for line in lines[2:])  # loader img/s
    assert "pre-resized cache" in lines[-1] if variants == 2 else "originals" in lines[-1]
