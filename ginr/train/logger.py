"""Run output: TensorBoard scalars and images, console lines, the progress bar and plain-text tables (main process
only)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm


class RunLogger:
    """Writes ``<run>/tensorboard`` event files; a no-op on processes other than the main one. As a context manager
    it closes (flushes) them however the block ends."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def images(self, prefix: str, images: dict[str, torch.Tensor], step: int) -> None:
        if self.writer:
            for name, image in images.items():
                self.writer.add_image(f"{prefix}/{name}", image, step)

    def audio(self, prefix: str, clips: dict[str, tuple[torch.Tensor, int]], step: int) -> None:
        if self.writer:
            for name, (samples, rate) in clips.items():
                self.writer.add_audio(f"{prefix}/{name}", samples.reshape(1, -1), step, sample_rate=rate)

    def text(self, tag: str, text: str, step: int | None = None) -> None:
        if self.writer:
            self.writer.add_text(tag, f"```\n{text}\n```", step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def say(accelerator, message: str) -> None:
    """Print on the main process without breaking the progress bar."""
    if accelerator.is_main_process:
        tqdm.write(message)


def progress_bar(total: int, initial: int, accelerator) -> tqdm:
    """The run's progress bar in steps, on the first process of each machine; redrawn at most every 30 s when
    stderr is not a terminal, so log files stay readable."""
    return tqdm(
        total=total,
        initial=initial,
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """A fixed-width text table (floats with up to 4 decimals)."""

    def cell(value):
        return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
