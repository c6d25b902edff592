"""The client's journal: what an agency's SDK still has to learn from Axis, kept across restarts.

`state_dir/client.db` (SQLite, WAL), shared by every process of one agency:

| table | a row means | removed when |
|---|---|---|
| `pending` | a submission whose outcome is not stored yet (not decided) | its intake receipt is stored |
| `tracked` | an accepted document whose recipients' receipts are still to collect | each recipient has one |
| `attempts` | a delivery that failed verification n times (for `fail` after `max_attempts`) | it is stored or failed |
| `seen` | a delivery this agency started to store (so a later try sweeps what a crash left) | it is acknowledged |

Callers may rely on: every method returns once its change is committed (WAL,
synchronous=NORMAL: a process crash loses nothing; a power cut may lose the
last few rows, which costs a later question to Axis, never a document: the
inbox ledger, `adapters.inbox`, is the one that must survive power cuts).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from axis.private import private_directory, private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (submission TEXT PRIMARY KEY, document_id TEXT, recipients TEXT NOT NULL,
                                    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tracked (axis_id TEXT PRIMARY KEY, recipients TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (axis_id TEXT PRIMARY KEY, count INTEGER NOT NULL, reason TEXT,
                                     last_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen (axis_id TEXT PRIMARY KEY)
"""


class Journal:
    """One agency's journal; safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_directory(self.path.parent)
        private_file(self.path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, rows: Iterable[tuple[object, ...]]) -> int:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.executemany(sql, list(rows))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return cursor.rowcount

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # ---- submissions without an outcome
    def add_pending(self, items: Iterable[tuple[str, str | None, Iterable[str]]]) -> None:
        """(submission id, DocumentId or None, recipients) of submissions still queued."""
        now = time.time()
        self._write("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?)",
                    ((s, d, ",".join(r), now) for s, d, r in items))

    def pending(self) -> dict[str, str | None]:
        """Submission id -> DocumentId, oldest first."""
        return dict(self._read("SELECT submission, document_id FROM pending ORDER BY created_at, submission"))

    def document_of(self, submission: str) -> tuple[str | None, list[str]]:
        """The DocumentId and recipients of a pending submission (None, [] when it is not pending)."""
        rows = self._read("SELECT document_id, recipients FROM pending WHERE submission=?", (submission,))
        return (rows[0][0], [r for r in rows[0][1].split(",") if r]) if rows else (None, [])

    def drop_pending(self, submissions: Iterable[str]) -> None:
        self._write("DELETE FROM pending WHERE submission=?", ((s,) for s in submissions))

    # ---- accepted documents whose timeline is still being collected
    def track(self, items: Iterable[tuple[str, Iterable[str]]]) -> None:
        """(axis id, recipients) of accepted documents."""
        now = time.time()
        self._write("INSERT OR IGNORE INTO tracked VALUES (?, ?, ?)",
                    ((axis_id, ",".join(sorted(set(recipients))), now) for axis_id, recipients in items))

    def tracked(self) -> dict[str, list[str]]:
        """Axis id -> recipients still expected to answer, oldest first."""
        rows = self._read("SELECT axis_id, recipients FROM tracked ORDER BY created_at, axis_id")
        return {axis_id: [r for r in recipients.split(",") if r] for axis_id, recipients in rows}

    def oldest_tracked(self) -> float | None:
        """When the oldest tracked document was accepted (this machine's clock), or None."""
        rows = self._read("SELECT min(created_at) FROM tracked")
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def untrack(self, axis_ids: Iterable[str]) -> None:
        self._write("DELETE FROM tracked WHERE axis_id=?", ((a,) for a in axis_ids))

    # ---- deliveries that failed verification
    def attempt(self, axis_id: str, reason: str) -> int:
        """Count one more failed attempt at `axis_id`; the count so far."""
        self._write("INSERT INTO attempts VALUES (?, 1, ?, ?) ON CONFLICT(axis_id) DO UPDATE SET"
                    " count=count+1, reason=excluded.reason, last_at=excluded.last_at",
                    [(axis_id, reason, time.time())])
        return int(self._read("SELECT count FROM attempts WHERE axis_id=?", (axis_id,))[0][0])

    def attempts(self, axis_id: str) -> int:
        rows = self._read("SELECT count FROM attempts WHERE axis_id=?", (axis_id,))
        return int(rows[0][0]) if rows else 0

    def first_sight(self, axis_id: str) -> bool:
        """Note that storing `axis_id` starts; False if a try started before (it may have left files)."""
        return self._write("INSERT OR IGNORE INTO seen VALUES (?)", [(axis_id,)]) > 0

    def settled(self, axis_ids: Iterable[str]) -> None:
        """These were acknowledged or failed: forget their attempts (one transaction)."""
        rows = [(a,) for a in axis_ids]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("DELETE FROM attempts WHERE axis_id=?", rows)
            self._conn.executemany("DELETE FROM seen WHERE axis_id=?", rows)
            self._conn.execute("COMMIT")
