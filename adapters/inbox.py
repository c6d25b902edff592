"""The inbox ledger: which deliveries an agency has stored, so each reaches its application once.

`state_dir/inbox.db` (SQLite, WAL, synchronous=FULL) has one row per axis id.
Storing a delivery is crash-safe at every instant because the packet file and
the ledger are updated in this order:

1. the bytes go to a hidden temporary file beside the target, fsynced;
2. the row is written `pending`, naming that temporary file (committed);
3. the temporary file is renamed to `<out_dir>/<axis_id>.edxml`, directory fsynced;
4. the row becomes `stored`, with the signed delivery receipt (committed).

After a crash the next delivery of the same axis id finds the row: `stored`
means "already there, just re-send the receipt"; `pending` with its temporary
file still present means the rename never happened (redo it); `pending`
without it means the rename happened and the application may already have
taken the file, so it is NOT written again. A crash before step 2 leaves only
a temporary file, which the next attempt removes.

The invariant that makes this sound: a `pending` row only ever names a
temporary file that existed when the row was committed (checked under the
write lock), and only two things remove it afterwards: its own rename, or a
takeover that rewrites the row in the same transaction.

Callers may rely on: `store` returns `(entry, duplicate)` once the packet is
durably in place and recorded, or raises (`OSError`, `sqlite3.Error`) with
nothing recorded as stored; a given axis id is placed in the output folder at
most once, however often it is delivered, by however many processes sharing
the ledger. Applications must take only `*.edxml` files and ignore hidden
`.*.tmp` files.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.files import fsync_file, publish_temporary, write_temporary
from axis.private import private_directory, private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    axis_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'stored')),
    path TEXT NOT NULL,
    tmp TEXT,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    document_id TEXT,
    status_code TEXT,
    digest TEXT NOT NULL,
    receipt BLOB,
    stored_at REAL
);
CREATE INDEX IF NOT EXISTS received_document ON received (document_id, sender);
"""


@dataclass(frozen=True)
class PacketFacts:
    """What the verified packet says about itself (read from the signed tree only)."""

    kind: str                     # "document" | "status"
    sender: str
    document_id: str | None       # a document's DocumentId; a status's ResponseFor/DocumentId
    status_code: str | None = None


@dataclass(frozen=True)
class InboxEntry:
    axis_id: str
    path: Path
    facts: PacketFacts
    digest: str
    receipt: bytes | None         # the signed delivery receipt sent for it
    stored_at: float | None


class InboxLedger:
    """The ledger of one agency; safe to share between threads and between processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_directory(self.path.parent)
        private_file(self.path)  # before SQLite creates it: its -wal and -shm files take its mode
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._write() as conn:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE: take the write lock up front, so two processes deciding
        # about the same axis id are serialised instead of failing with SQLITE_BUSY.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _row(self, conn: sqlite3.Connection, axis_id: str) -> tuple | None:
        return conn.execute(
            "SELECT axis_id, state, path, tmp, kind, sender, document_id, status_code, digest, receipt, stored_at"
            " FROM received WHERE axis_id=?", (axis_id,)).fetchone()

    @staticmethod
    def _entry(row: tuple) -> InboxEntry:
        axis_id, _state, path, _tmp, kind, sender, document_id, status_code, digest, receipt, stored_at = row
        return InboxEntry(axis_id, Path(path), PacketFacts(kind, sender, document_id, status_code), digest,
                          receipt, stored_at)

    def stored(self, axis_id: str) -> InboxEntry | None:
        """The entry if this axis id is already stored (the fast duplicate check)."""
        with self._lock:
            row = self._row(self._conn, axis_id)
        return self._entry(row) if row is not None and row[1] == "stored" else None

    def store(self, axis_id: str, data: bytes | Path, target: Path, facts: PacketFacts, digest: str,
              receipt: bytes, *, sweep: bool = True) -> tuple[InboxEntry, bool]:
        """Place `data` at `target` once and record it; `(entry, True)` if it was already placed.

        `data` is the bytes, or a file holding them named by `adapters.files.temporary_name(target)` (a large
        delivery, written there as it arrived): it is fsynced and renamed into place, or removed.
        `sweep`: look for temporary files an earlier, crashed attempt left beside
        `target` (a directory scan; pass False for a first delivery attempt).
        """
        private_directory(target.parent)
        if isinstance(data, Path):
            tmp = data
            try:
                fsync_file(tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            tmp = write_temporary(target, data)
        already: InboxEntry | None = None
        try:
            with self._write() as conn:
                row = self._row(conn, axis_id)
                if row is not None and row[1] == "pending":
                    # A crash (or a concurrent process) stopped between steps 2 and 4.
                    old_tmp = Path(row[3]) if row[3] else None
                    if old_tmp is None or not old_tmp.exists():
                        # Its rename happened; the file may already be in the application's hands.
                        conn.execute("UPDATE received SET state='stored', tmp=NULL, receipt=?, stored_at=?"
                                     " WHERE axis_id=?", (receipt, time.time(), axis_id))
                        row = self._row(conn, axis_id)
                    else:
                        old_tmp.unlink()
                if row is not None and row[1] == "stored":
                    already = self._entry(row)
                else:
                    strays = target.parent.glob(f".{target.name}.*.tmp") if sweep else ()
                    for stray in strays:
                        if stray != tmp:
                            stray.unlink(missing_ok=True)  # left by a crash before step 2
                    if not tmp.exists():
                        # Another attempt at the same axis id swept it before we held the lock.
                        # A pending row must only ever name a file that exists: its absence
                        # later means "renamed", so recording a swept one would lose the packet.
                        raise FileNotFoundError(f"{tmp} was removed by a concurrent attempt at {axis_id}; "
                                                "the delivery is retried")
                    conn.execute(
                        "INSERT OR REPLACE INTO received (axis_id, state, path, tmp, kind, sender, document_id,"
                        " status_code, digest, receipt, stored_at)"
                        " VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                        (axis_id, str(target), str(tmp), facts.kind, facts.sender, facts.document_id,
                         facts.status_code, digest))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if already is not None:
            tmp.unlink(missing_ok=True)
            return already, True
        # A concurrent process that took over the pending row removed our temporary
        # file: the rename then fails, and the caller retries the delivery.
        publish_temporary(tmp, target)
        with self._write() as conn:
            conn.execute("UPDATE received SET state='stored', tmp=NULL, receipt=?, stored_at=? WHERE axis_id=?",
                         (receipt, time.time(), axis_id))
            row = self._row(conn, axis_id)
        assert row is not None, "the row was written in this transaction"
        return self._entry(row), False

    def documents(self, document_id: str) -> list[InboxEntry]:
        """Stored documents (not status packets) with this DocumentId, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT axis_id, state, path, tmp, kind, sender, document_id, status_code, digest, receipt,"
                " stored_at FROM received WHERE document_id=? AND kind='document' AND state='stored'"
                " ORDER BY stored_at", (document_id,)).fetchall()
        return [self._entry(row) for row in rows]

    def entries(self) -> list[InboxEntry]:
        """Every stored entry, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT axis_id, state, path, tmp, kind, sender, document_id, status_code, digest, receipt,"
                " stored_at FROM received WHERE state='stored' ORDER BY stored_at").fetchall()
        return [self._entry(row) for row in rows]
