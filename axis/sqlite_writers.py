"""Writers of one SQLite file take turns on a kernel lock, so the next one starts the moment the last ends.

SQLite lets one writer in at a time and makes the others wait in its busy
handler, which sleeps and retries (1, 2, 5, 10 ... 100 ms between tries): with
several processes writing in bursts, as the hub's workers do, a writer often
sleeps long after the lock was released, and the file sits idle. Here every
writer of the file first takes an exclusive `flock` on `<file>-writer` (one
per process, behind a thread lock, because flock belongs to the open file, not
the thread); a blocked `flock` returns as soon as the holder lets go.

Callers may rely on: `hold()` is a context manager; while it is held no other
thread or process using `WriterTurns` on the same path holds it. It is only a
queue in front of SQLite's own locking, which stays in force (BEGIN IMMEDIATE
and the busy timeout still apply), so a writer that does not use it is merely
slower, never unsafe. Not for network filesystems (neither is WAL).
"""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriterTurns:
    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}-writer")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own open file
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None
