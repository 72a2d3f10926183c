"""recipes/bench.py times real training steps and prints a line per preset, its profile and one table, whose stored
reference figures are labelled as such."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench", ROOT / "recipes" / "bench.py")
bench = sys.modules["bench"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def summary_rows(out: str) -> list[dict[str, str]]:
    """The summary table (after the ``summary:`` line, up to the blank line before its footnote) as dicts, columns cut
    where its dashed rule says."""
    header, rule, *rows = out[out.index("summary:") :].split("\n\n")[0].splitlines()[1:]
    spans = [(match.start(), match.end()) for match in re.finditer(r"-+", rule)]
    cells = lambda line: [line[start:end].strip() for start, end in spans]  # noqa: E731
    return [dict(zip(cells(header), cells(row), strict=True)) for row in rows]


def test_bench_rows_profile_and_summary(capsys):
    bench.main(
        bench.Args(only=("ipc-meta:photos", "transinr:photos"), batch=2, warmup=1, steps=1, profile=3, device="cpu")
    )
    out = capsys.readouterr().out
    assert out.count("profile of one step") == 2 and "aten::" in out
    rows = summary_rows(out)
    assert [row["model"] for row in rows] == ["ipc-meta", "transinr"]
    for row in rows:
        assert row["batch"] == "2" and float(row["img/s"]) > 0 and float(row["GFLOP/img"]) > 0
    # a line per row while it runs, the table once; the reference's figures were not timed in this run, so their
    # columns say 'stored' and the footnote says where, when and on what they were measured
    assert out.count("micro-batches") == 1 and "ipc-meta:photos: " in out and "transinr:photos: " in out
    assert {"stored ref img/s", "vs stored", "stored ref memory", "stored ref GFLOP/img"} <= rows[0].keys()
    assert not [name for name in rows[0] if name.startswith("ref ")]
    footnote = out.split("\n\n")[-1]
    assert footnote.startswith("stored ref:") and "ANCHORS.md" in footnote and "not timed in this run" in footnote
    assert "2026-11-28" in footnote and "H200" in footnote


def test_bench_accumulation_splits_the_batch(capsys):
    bench.main(bench.Args(only=("ipc-meta:photos",), batch=4, accumulation=2, warmup=0, steps=1, device="cpu"))
    (row,) = summary_rows(capsys.readouterr().out)
    assert row["micro-batches"] == "2" and row["batch"] == "4"
    # splitting costs a little more work per image (the shared prefix is computed once per micro-batch), never less
    bench.main(bench.Args(only=("ipc-meta:photos",), batch=4, warmup=0, steps=1, device="cpu"))
    (whole,) = summary_rows(capsys.readouterr().out)
    assert 1.0 < float(row["GFLOP/img"]) / float(whole["GFLOP/img"]) < 1.2


def test_bad_rows_are_refused_before_any_measurement(capsys, monkeypatch):
    monkeypatch.setattr(bench, "matmul_ceiling", lambda *args: pytest.fail("measured before checking --only"))
    for only, message in (
        ("ipcmeta", "--only ipcmeta: give model:data or model:data:views"),
        ("ipc-meta:photos:x", "--only ipc-meta:photos:x: give model:data"),
        ("ipc-meta:foo", "no preset for --model ipc-meta --data foo"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(bench.Args(only=("ipc-meta:photos", only), device="cpu"))
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert bench.parse_rows(("ipc-transinr:shapenet-cars:5", "transinr:photos")) == [
        ("ipc-transinr", "shapenet-cars", 5),
        ("transinr", "photos", None),
    ]
