"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (what Slurm and Kubernetes send before they kill): the step under way
finishes, every process agrees to stop after the same step, the run writes a checkpoint and exits 128 + the signal
(130, 143).

What the launcher does with a signal decides how long the save may take (measured for torch 2.14):

- ``accelerate launch`` of one process, accelerate 1.16: a SIGINT or SIGTERM to the launcher is passed on to the
  trainer as SIGTERM, which is SIGKILLed 5 s later. A Ctrl-C in a terminal reaches the trainer directly too (it is in
  the terminal's process group), so the trainer gets SIGINT and SIGTERM within milliseconds: one request.
- Several processes (accelerate starts them with torchrun): the agent passes the signal it got to every worker and
  SIGKILLs them ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` (30) s later.
- accelerate 1.0 to 1.15, one process: the launcher passes nothing on, so a SIGTERM to the launcher alone leaves the
  trainer running; hence pyproject's lower bound.

A signal that comes more than :data:`SAME_REQUEST_S` after the first stops the process at once, without a checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch

SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAME_REQUEST_S = 1.0
"""Signals within this long of the first are the same request delivered twice (a terminal's Ctrl-C reaches the
launcher and the trainer, and the launcher passes it on); a later one is a second request: stop at once."""


class StopRequests:
    """While entered, SIGINT and SIGTERM are recorded instead of interrupting; :meth:`agreed` tells every process
    whether any of them got one. Outside the ``with``, Python's default handling is back."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.signal: int | None = None
        self.first_at = 0.0
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        self.previous = {s: signal.signal(s, self._record) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _record(self, signum: int, frame) -> None:
        if self.signal is None:
            self.signal, self.first_at = signum, time.monotonic()
        elif time.monotonic() - self.first_at > SAME_REQUEST_S:
            print(f"\n{signal.Signals(signum).name} again: stopped at once, without a checkpoint", file=sys.stderr)
            os._exit(128 + signum)

    def agreed(self) -> int | None:
        """The signal to stop for (the highest number any process got, so all exit alike), or None to go on.
        Collective under several processes: one all-reduce of one number, called once per step next to the step's
        own all-reduce (no measurable cost); one process asks nobody."""
        if self.accelerator.num_processes == 1:
            return self.signal
        got = torch.tensor(self.signal or 0, device=self.accelerator.device)
        torch.distributed.all_reduce(got, op=torch.distributed.ReduceOp.MAX)
        return int(got) or None
