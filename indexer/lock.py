"""The single-writer lock of an index directory, across processes and across threads.

* Between processes: an fcntl lock on INDEX_DIR/write.lock, released by the OS when the process
  dies (so kill -9 never leaves a stale lock behind). A second writer fails at once with an
  `IndexLockedError` naming the holder's pid, or waits up to `wait` seconds for it.
* Within a process: `Indexer` serialises its own methods with a re-entrant thread lock, so one
  `Indexer` may be shared by threads, executor tasks and `asyncio.gather`ed LangChain calls.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import IndexLockedError

_POLL_SECONDS = 0.05


class WriteLock:
    """Exclusive; the holder's pid is written into the file for the error message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to `wait` seconds for another process to release it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(_POLL_SECONDS)
                    continue
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if wait > 0:
                    raise IndexLockedError(f"{self.path.parent} is still being written by another process (pid "
                                           f"{holder}) after waiting {wait:g}s; try again later") from None
                raise IndexLockedError(f"{self.path.parent} is being written by another process (pid {holder}); "
                                       "wait for it to finish, or pass --wait SECONDS (wait= in Python) "
                                       "to queue behind it") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
