"""One thread that owns one SQLite connection and commits jobs in groups.

Used by the embedded transport so that SQLite never blocks the event loop, and
so that many concurrent small writes (publishes, acks) share one transaction and
one fsync ("group commit"), which is what makes single-message publishes cheap.

Callers may rely on:
- `write(fn)` runs `fn(connection)` inside a `BEGIN IMMEDIATE` transaction and
  resolves only after that transaction has COMMITTED (so the change is durable
  at the configured `synchronous` level); several queued jobs may share one
  transaction, each under its own SAVEPOINT, so one job raising rolls back only
  its own changes and the exception is re-raised to that job's caller alone;
- `write_nowait(fn)` is `write` without waiting: the job is queued at once, so
  any job queued afterwards by anyone runs after it;
- `read(fn)` runs `fn(connection)` in its own read transaction (a consistent
  snapshot);
- a failure of the database itself (locked longer than `busy_timeout`, disk full,
  corrupt file) reaches every affected caller as `TransportError`;
- jobs run one at a time, in submission order within a group of writes.
"""
from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from axis.private import private_file

from .errors import TransportError

T = TypeVar("T")

_MAX_GROUP = 512  # bounds one transaction's duration, so another process's writer is not starved


class _Job:
    __slots__ = ("fn", "future", "loop", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], write: bool,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future = future


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteWorker:
    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000, synchronous: str = "FULL",
                 init: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous
        self._init = init
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=f"axis-sqlite:{path.name}", daemon=True)

    async def start(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._startup_error is not None:
            raise TransportError(f"cannot open the embedded transport database {self.path}: "
                                 f"{self._startup_error}. Check that the directory exists and is writable "
                                 "and that the file is an Axis transport database.") from self._startup_error

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, write=True)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, write=False)

    def write_nowait(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue a write and return its future without waiting: jobs queued later run after it."""
        return self._enqueue(fn, write=True)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        return await self._enqueue(fn, write=write)

    def _enqueue(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> asyncio.Future[T]:
        if self._closed:
            raise TransportError(f"the embedded transport on {self.path} is closed; open a new one")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, write, loop, future))
        return future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    # --- the worker thread -------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, because the sqlite3
        # module's implicit deferred BEGIN would upgrade to a write lock late and
        # fail with SQLITE_BUSY despite busy_timeout.
        private_file(self.path)  # before SQLite creates it: its -wal and -shm files take its mode
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL (got {mode!r}); "
                                           "is it on a network filesystem?")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return conn

    def _main(self) -> None:
        try:
            conn = self._connect()
            if self._init is not None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._init(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException as exc:  # noqa: BLE001 - reported to start(); the thread has nothing else to do
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stop = False
            while not stop:
                job = self._jobs.get()
                if job is None:
                    break
                group = [job]
                while len(group) < _MAX_GROUP:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    group.append(nxt)
                writes = [j for j in group if j.write]
                if writes:
                    self._run_writes(conn, writes)
                for j in group:
                    if not j.write:
                        self._run_read(conn, j)
        finally:
            conn.close()
            # Anything still queued after close() gets a clear error rather than hanging forever.
            while True:
                try:
                    late = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if late is not None:
                    late.loop.call_soon_threadsafe(_resolve, late.future, None,
                                                   TransportError("the embedded transport was closed"))

    def _run_read(self, conn: sqlite3.Connection, job: _Job) -> None:
        try:
            conn.execute("BEGIN")
            try:
                result = job.fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._done(job, None, TransportError(f"embedded transport database {self.path}: {exc}"))
        except BaseException as exc:  # noqa: BLE001 - the job's own error, handed to its caller
            self._done(job, None, exc)
        else:
            self._done(job, result, None)

    def _run_writes(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = TransportError(f"cannot start a write on {self.path}: {exc} (another process holds the "
                                   f"write lock longer than {self._busy_timeout_ms} ms?); retry")
            for job in jobs:
                self._done(job, None, error)
            return
        try:
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except BaseException as exc:  # noqa: BLE001 - the job's own error, handed to its caller
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    failure: BaseException = exc
                    if isinstance(exc, sqlite3.Error):
                        failure = TransportError(f"embedded transport database {self.path}: {exc}")
                    outcomes.append((None, failure))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction may already be gone; the error below is what matters
            error = TransportError(f"commit failed on {self.path}: {exc}; nothing in this group was stored, retry")
            for job in jobs:
                self._done(job, None, error)
            return
        for job, (result, outcome) in zip(jobs, outcomes, strict=True):
            self._done(job, result, outcome)

    @staticmethod
    def _done(job: _Job, result: Any, error: BaseException | None) -> None:
        try:
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
        except RuntimeError:
            pass  # the caller's event loop is closed; nobody is waiting any more
