"""The inbox ledger at each instant a crash can hit, on real files and a real SQLite ledger."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import adapters.inbox
from adapters.files import write_temporary
from adapters.inbox import InboxLedger, PacketFacts

FACTS = PacketFacts("document", "000.00.00.G22", "000.00.00.G22,2026/03/02,1/VPCP-TTĐT")
DATA = b"<edXML>the exact signed bytes</edXML>"


def store(ledger: InboxLedger, out: Path, axis_id: str = "a1", receipt: bytes = b"r1"):
    return ledger.store(axis_id, DATA, out / f"{axis_id}.edxml", FACTS, "d1", receipt)


def pending_row(ledger: InboxLedger, out: Path, axis_id: str = "a1") -> Path:
    """The state a crash between steps 2 and 3 leaves: a pending row naming an fsynced temporary file."""
    tmp = write_temporary(out / f"{axis_id}.edxml", DATA)
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("INSERT INTO received (axis_id, state, path, tmp, kind, sender, document_id, digest)"
                     " VALUES (?, 'pending', ?, ?, 'document', ?, ?, 'd1')",
                     (axis_id, str(out / f"{axis_id}.edxml"), str(tmp), FACTS.sender, FACTS.document_id))
    return tmp


def test_store_places_the_bytes_once_and_a_repeat_is_a_duplicate(tmp_path: Path) -> None:
    ledger = InboxLedger(tmp_path / "inbox.db")
    entry, duplicate = store(ledger, tmp_path)
    assert not duplicate and entry.path.read_bytes() == DATA and entry.receipt == b"r1"
    entry.path.unlink()  # the application took it
    again, duplicate = store(ledger, tmp_path, receipt=b"r2")
    assert duplicate and again.receipt == b"r1" and not entry.path.exists()
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_crash_before_the_rename_is_completed_by_the_next_delivery(tmp_path: Path) -> None:
    ledger = InboxLedger(tmp_path / "inbox.db")
    old_tmp = pending_row(ledger, tmp_path)
    entry, duplicate = store(ledger, tmp_path)
    assert not duplicate and entry.path.read_bytes() == DATA
    assert not old_tmp.exists() and list(tmp_path.glob(".*.tmp")) == []


def test_a_crash_after_the_rename_never_places_the_file_again(tmp_path: Path) -> None:
    ledger = InboxLedger(tmp_path / "inbox.db")
    tmp = pending_row(ledger, tmp_path)
    tmp.rename(tmp_path / "a1.edxml")          # the rename happened, then the crash
    (tmp_path / "a1.edxml").unlink()            # and the application took the file meanwhile
    entry, duplicate = store(ledger, tmp_path)
    assert duplicate and entry.receipt == b"r1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox.db", "inbox.db-shm", "inbox.db-wal"]
    assert ledger.stored("a1") is not None


def test_temporary_files_of_a_crash_before_the_ledger_row_are_swept(tmp_path: Path) -> None:
    ledger = InboxLedger(tmp_path / "inbox.db")
    stray = write_temporary(tmp_path / "a1.edxml", b"<partial")
    entry, _ = store(ledger, tmp_path)
    assert entry.path.read_bytes() == DATA and not stray.exists()


def test_a_temporary_file_swept_by_a_concurrent_attempt_is_never_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process sweeps our temporary file between our write and our ledger
    # transaction: recording it as pending would later read as "already renamed".
    ledger = InboxLedger(tmp_path / "inbox.db")

    def write_then_lose(path: Path, data: bytes) -> Path:
        tmp = write_temporary(path, data)
        tmp.unlink()
        return tmp

    monkeypatch.setattr(adapters.inbox, "write_temporary", write_then_lose)
    with pytest.raises(FileNotFoundError, match="concurrent attempt"):
        store(ledger, tmp_path)
    monkeypatch.undo()
    with sqlite3.connect(ledger.path) as conn:
        assert conn.execute("SELECT count(*) FROM received").fetchone() == (0,)
    entry, duplicate = store(ledger, tmp_path)
    assert not duplicate and entry.path.read_bytes() == DATA
