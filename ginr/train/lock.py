"""The lock on a run folder: one run (a new one, ``--train.overwrite`` or ``--resume``) at a time writes into it.

An exclusive ``flock`` on ``<run>/.lock``, held by the main process until it exits. The kernel drops it when the
process ends however it ends (SIGKILL included), so a killed run never leaves its folder locked; the file itself stays
and only names the last holder. ``flock`` works across the machines of an NFS mount on Linux (>= 2.6.12).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

LOCK = ".lock"
_HELD: dict[Path, IO] = {}
"""The lock file this process holds for each folder: a run started again in the same process (``main`` called once
more, as the in-process tests and a library user do, after a run that ended or was refused) replaces it."""


class RunInUseError(FileExistsError):
    """Another process holds the run folder's lock."""


def lock_run(folder: Path) -> IO:
    """Take ``folder``'s lock (creating the folder and its lock file) and write who holds it; keep the returned file
    open for as long as the lock must last. Raises :class:`RunInUseError` naming the holder when another process
    holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    earlier = _HELD.pop(folder.resolve(), None)
    if earlier is not None:  # this process's earlier run of the folder has ended: one run at a time per process
        earlier.close()
    file = open(folder / LOCK, "a+")  # not truncated: a refused run still reads the holder
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "a process that has not named itself yet"
        file.close()
        raise RunInUseError(
            f"{folder} is in use by another run ({holder}); wait for it to end or stop it, or pick another "
            "--train.run-name"
        ) from None
    file.truncate(0)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    file.write(f"pid {os.getpid()} on {socket.gethostname()}, started {stamp}\n")
    file.flush()
    _HELD[folder.resolve()] = file
    return file
