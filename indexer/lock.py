"""The single-writer lock: an fcntl lock on INDEX_DIR/write.lock, released by the OS when the
process dies (so kill -9 never leaves a stale lock behind)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import IndexLockedError


class WriteLock:
    """Exclusive, non-blocking; the holder's pid is written into the file for the error message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(f"{self.path.parent} is being written by another process (pid {holder}); "
                                   "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
