"""An exclusive, process-lifetime lock on a file (``fcntl.flock``), holding the pid of its holder (Not in the paper).

The lock belongs to the open file, not to its content: it is taken atomically
and held until released or until the process ends (killed or not), so there is
no window in which a second process can take it and no stale lock to clean up.
The pid written into the file is only for the message another process prints.
Used for a training run's directory (:mod:`mlpvae.training.rundir`) and for
``vaetheory reproduce``'s queue (:mod:`mlpvae.experiments.run_queue`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

ATTEMPTS = 10  # a holder that removes the file as we open it makes us lock again; more means something is wrong


def take(path: Path) -> tuple[int | None, str]:
    """Lock ``path`` (created if missing): ``(fd, "")``, or ``(None, holder's pid)`` when another process holds it."""
    for _ in range(ATTEMPTS):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return None, holder
        except BaseException:
            os.close(fd)
            raise
        # the holder before us may have removed the file after we opened it: then lock the file that is there
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd, ""
        os.close(fd)
    raise RuntimeError(f"could not take the lock {path}")


def release(path: Path, fd: int) -> None:
    """Remove the lock file, then drop the lock: a waiter then finds the file gone and locks the new one."""
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)
