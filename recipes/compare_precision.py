"""The precision protocol: the same preset, initial weights and data order, N steps in each precision, and the held-out
PSNR of each beside fp32's.

    python recipes/compare_precision.py                                      # ipc-meta on the embedded photos, CPU
    python recipes/compare_precision.py --model ipc-transinr --data celeba178 --steps 2000 \
        --precisions fp32 tf32 bf16 --extra --data.path /data/celeba        # on a GPU

Each precision is a real ``accelerate launch recipes/train.py`` run (seeded identically, so weights and data order
match, and eager, ``--train.compile off``, so that only the arithmetic differs; ``--extra --train.compile default``
overrides it); the table reads their ``eval_metrics.json``. The fidelity policy keeps fp32 the default until a
measurement shows another precision keeps the PSNR trajectory; the README reports what this protocol has measured
(bf16 on a par with fp32 for ipc-meta).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tyro

from ginr.train.logger import table

RECIPE = Path(__file__).with_name("train.py")


@dataclasses.dataclass
class Args:
    model: str = "ipc-meta"
    """Model name."""
    data: str = "photos"
    """Data preset."""
    steps: int = 60
    """Optimizer steps per precision."""
    precisions: tuple[str, ...] = ("fp32", "bf16")
    """Precisions to compare; the first is the baseline (tf32 only differs from fp32 on GPUs)."""
    extra: tuple[str, ...] = ()
    """More flags for every run (e.g. --data.path DIR)."""
    out_dir: str | None = None
    """Where the runs go; None: a temporary folder."""


def run(args: Args, precision: str, out_dir: Path) -> dict:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", str(RECIPE),
        "--model", args.model, "--data", args.data, "--train.precision", precision,
        "--train.max-steps", str(args.steps), "--train.no-eval-at-start", "--train.out-dir", str(out_dir),
        "--train.run-name", precision, "--train.overwrite", "--train.compile", "off", *args.extra,
    ]  # fmt: skip
    tick = time.perf_counter()
    subprocess.run(command, check=True)
    history = json.loads((out_dir / precision / "eval_metrics.json").read_text())
    history = [entry for entry in history if entry["weights"] == "raw"]  # not an EMA's (--train.ema)
    return {"precision": precision, "steps": args.steps, "run s": time.perf_counter() - tick, "history": history}


def trajectory(rows: list[dict]) -> list[dict]:
    """Each run's final held-out PSNR, its mean over the later half of the evaluations (less sensitive to where one
    step lands in a noisy curve) and the differences from the first run's, including the largest gap at any
    evaluation both made."""

    def late_mean(history):
        late = history[len(history) // 2 :]
        return sum(entry["psnr"] for entry in late) / len(late)

    base = rows[0]
    base_psnr = {entry["step"]: entry["psnr"] for entry in base["history"]}
    summary = []
    for row in rows:
        history = row["history"]
        gaps = [entry["psnr"] - base_psnr[entry["step"]] for entry in history if entry["step"] in base_psnr]
        summary.append({
            "precision": row["precision"],
            "steps": row["steps"],
            "evals": len(history),
            "psnr": history[-1]["psnr"],
            "late mean psnr": late_mean(history),
            f"vs {base['precision']}": f"{history[-1]['psnr'] - base['history'][-1]['psnr']:+.3f} dB",
            "late mean vs": f"{late_mean(history) - late_mean(base['history']):+.3f} dB",
            "largest gap": f"{max(gaps, key=abs):+.3f} dB",
            "run s": row["run s"],
        })  # fmt: skip
    return summary


def main(args: Args) -> None:
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="ginr-precision-"))
    rows = trajectory([run(args, precision, out_dir) for precision in args.precisions])
    print(f"\n{args.model} on {args.data}, {args.steps} steps from the same weights and data order:")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main(tyro.cli(Args))
