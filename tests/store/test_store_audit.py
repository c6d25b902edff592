"""The audit log: hash chain, append-only in the database, tamper detection, concurrency."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from axis.store import GENESIS_HASH, NewAuditEntry, Store, verify_chain
from axis.store.audit import canonical_json, compute_hash, entry_body, entry_hash
from axis.store.schema import audit_checkpoints, audit_log, audit_signers, audit_timestamps
from tests.store.store_helpers import accept, drop_audit_guard


def _write(store: Store, n: int, actor: str = "hub") -> None:
    for i in range(n):
        with store.write() as tx:
            tx.audit(actor, "test.event", f"subject-{i}", {"i": i, "text": "Văn bản", "nested": {"b": [1, 2.5]}})


def test_chain_verifies_and_records_what_was_written(store: Store) -> None:
    assert store.audit_head() == (0, GENESIS_HASH)
    assert store.verify_audit().ok and store.verify_audit().entries == 0
    _write(store, 5)
    with store.write() as tx:
        tx.audit_many([NewAuditEntry("operator", "agency.suspend", "H01", {"why": "test"}),
                       NewAuditEntry("operator", "agency.resume", "H01")])
    assert tx.audit_seqs == (6, 7)
    report = store.verify_audit()
    assert report.ok and report.entries == 7 and report.first_bad_seq is None
    entries = list(store.audit_entries())
    assert [e.seq for e in entries] == list(range(1, 8))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert store.audit_head() == (7, entries[-1].hash) and report.head_hash == entries[-1].hash
    assert entries[1].data == {"i": 1, "text": "Văn bản", "nested": {"b": [1, 2.5]}}
    assert entries[1].at.tzinfo is not None
    assert [e.seq for e in store.audit_entries(from_seq=6)] == [6, 7]


def test_hash_is_the_documented_formula() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    body = entry_body(1, at, "hub", "x", None, {"b": 1, "a": "ắ"}, GENESIS_HASH)
    text = '{"action":"x","actor":"hub","at":"2026-01-02T03:04:05.000006Z","data":{"a":"ắ","b":1},' \
           f'"prev_hash":"{GENESIS_HASH}","seq":1,"subject":null}}'
    assert canonical_json(body) == text
    assert entry_hash(GENESIS_HASH, body) == hashlib.sha256(bytes(32) + text.encode()).hexdigest()


def test_rolled_back_work_writes_no_audit_entry(store: Store) -> None:
    _write(store, 2)
    with pytest.raises(RuntimeError):
        with store.write() as tx:
            tx.audit("hub", "never", None, {})
            raise RuntimeError("boom")
    assert store.audit_head()[0] == 2 and store.verify_audit().ok


def test_audit_data_must_be_plain_json(store: Store) -> None:
    with store.write() as tx:
        with pytest.raises(TypeError, match="plain JSON"):
            tx.audit("hub", "x", None, {"when": datetime.now(UTC)})
        with pytest.raises(ValueError, match="plain JSON"):
            tx.audit("hub", "x", None, {"n": float("nan")})
        with pytest.raises(TypeError, match="mapping"):
            tx.audit("hub", "x", None, ["not", "an", "object"])  # type: ignore[arg-type]
    assert store.audit_head()[0] == 0


def test_database_refuses_update_delete_and_truncate(store: Store) -> None:
    _write(store, 3)
    with store.engine.begin() as conn:  # any row: the guard, not the content, is under test
        conn.execute(sa.insert(audit_checkpoints).values(size=3, root="0" * 64, head_hash=store.audit_head()[1],
                                                         at=datetime.now(UTC), note="n", signature=b"sig",
                                                         signer="0" * 64, frontier=[]))
        conn.execute(sa.insert(audit_timestamps).values(size=3, token=b"t", tsa="x", stamped_at=datetime.now(UTC)))
        conn.execute(sa.insert(audit_signers).values(fingerprint="0" * 64, certificates="c",
                                                     added_at=datetime.now(UTC)))
    statements = ["UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 3"]
    for table in ("audit_checkpoints", "audit_timestamps", "audit_signers"):
        statements += [f"DELETE FROM {table}", f"UPDATE {table} SET added_at = added_at" if table == "audit_signers"
                       else f"UPDATE {table} SET size = size"]
    if store.dialect == "postgresql":
        statements += ["TRUNCATE audit_log", "TRUNCATE audit_checkpoints CASCADE"]
    for sql in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.exec_driver_sql(sql)
    assert store.verify_audit().ok and store.verify_audit().entries == 3


def _exec(store: Store, *sql: str, params: dict | None = None) -> None:
    with store.engine.begin() as conn:
        for statement in sql:
            conn.execute(sa.text(statement), params or {})


def _forge(store: Store, **values: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.insert(audit_log).values(actor="mallory", action="document.accepted", data={}, **values))


def test_changed_entry_is_named(store: Store) -> None:
    _write(store, 6)
    drop_audit_guard(store)
    _exec(store, "UPDATE audit_log SET data = :d WHERE seq = 4", params={"d": json.dumps({"i": 99})})
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq, report.entries) == (False, 4, 3)
    assert "changed" in report.reason


def test_changed_and_rehashed_entry_is_named(store: Store) -> None:
    """An attacker who recomputes the edited entry's hash is still caught at that entry."""
    _write(store, 6)
    entries = {e.seq: e for e in store.audit_entries()}
    forged = entry_body(3, entries[3].at, "mallory", entries[3].action, entries[3].subject, {}, entries[3].prev_hash)
    drop_audit_guard(store)
    _exec(store, "UPDATE audit_log SET actor = 'mallory', data = '{}', hash = :h WHERE seq = 3",
          params={"h": entry_hash(entries[3].prev_hash, forged)})
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_removed_entry_is_named(store: Store) -> None:
    _write(store, 6)
    drop_audit_guard(store)
    _exec(store, "DELETE FROM audit_log WHERE seq = 3")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "missing" in report.reason


def test_removed_and_renumbered_entry_is_named(store: Store) -> None:
    _write(store, 6)
    drop_audit_guard(store)
    _exec(store, "DELETE FROM audit_log WHERE seq = 3",
          "UPDATE audit_log SET seq = seq + 1000000 WHERE seq > 3",
          "UPDATE audit_log SET seq = seq - 1000001 WHERE seq > 1000000")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_forged_entry_inserted_at_the_end_is_named(store: Store) -> None:
    _write(store, 4)
    drop_audit_guard(store)  # not even needed for INSERT; the guard only stops UPDATE/DELETE
    _forge(store, seq=5, at=datetime.now(UTC), subject="x", prev_hash="ab" * 32, hash="cd" * 32)
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq, report.entries) == (False, 5, 4)


def test_forged_entry_inserted_in_the_middle_is_named(store: Store) -> None:
    """Shift entries 3.. up by one and insert a correctly chained forgery at 3."""
    _write(store, 6)
    entries = {e.seq: e for e in store.audit_entries()}
    at = entries[2].at
    forged = entry_body(3, at, "mallory", "document.accepted", "forged", {}, entries[2].hash)
    drop_audit_guard(store)
    _exec(store, "UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= 3",
          "UPDATE audit_log SET seq = seq - 999999 WHERE seq > 1000000")
    _forge(store, seq=3, at=at, subject="forged", prev_hash=entries[2].hash,
           hash=entry_hash(entries[2].hash, forged))
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "inserted" in report.reason


def test_reordered_entries_are_named(store: Store) -> None:
    _write(store, 6)
    drop_audit_guard(store)
    _exec(store, "UPDATE audit_log SET seq = 1000 WHERE seq = 4", "UPDATE audit_log SET seq = 4 WHERE seq = 5",
          "UPDATE audit_log SET seq = 5 WHERE seq = 1000")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_truncated_tail_needs_a_checkpoint(store: Store) -> None:
    _write(store, 6)
    seq, head = store.audit_head()
    drop_audit_guard(store)
    _exec(store, "DELETE FROM audit_log WHERE seq >= 5")
    assert store.verify_audit().ok  # a chain alone cannot see a cut tail...
    report = verify_chain(store.audit_entries(), [(seq, head)])
    assert (report.ok, report.first_bad_seq) == (False, 5)  # ...a head kept elsewhere can


def test_chain_rewritten_from_scratch_is_caught_by_an_anchor(store: Store) -> None:
    _write(store, 3)
    anchor = store.audit_head()
    entries = list(store.audit_entries())
    drop_audit_guard(store)
    # recompute a fully consistent chain with entry 2 changed
    prev = GENESIS_HASH
    with store.engine.begin() as conn:
        for e in entries:
            data = {"i": -1} if e.seq == 2 else e.data
            body = entry_body(e.seq, e.at, e.actor, e.action, e.subject, data, prev)
            digest = entry_hash(prev, body)
            conn.execute(sa.text("UPDATE audit_log SET data = :d, prev_hash = :p, hash = :h WHERE seq = :s"),
                         {"d": canonical_json(data), "p": prev, "h": digest, "s": e.seq})
            prev = digest
    assert store.verify_audit().ok  # internally consistent...
    report = verify_chain(store.audit_entries(), [anchor])
    assert (report.ok, report.first_bad_seq) == (False, 3)  # ...but not the head that was signed


def test_offline_verification_of_an_export(store: Store) -> None:
    _write(store, 4)
    exported = json.dumps([{"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                            "subject": e.subject, "data": e.data, "prev_hash": e.prev_hash, "hash": e.hash,
                                "bound": e.bound}
                           for e in store.audit_entries()])
    from axis.store import AuditEntry
    rows = [AuditEntry(**{**r, "at": datetime.fromisoformat(r["at"])}) for r in json.loads(exported)]
    assert all(compute_hash(r) == r.hash for r in rows)
    assert verify_chain(rows).ok
    rows[1] = dataclasses.replace(rows[1], actor="x")
    assert verify_chain(rows).first_bad_seq == 2


def test_concurrent_writers_keep_the_chain(seeded: Store) -> None:
    threads_n, per_thread = 6, 15
    seeding = seeded.audit_head()[0]  # the registry's own entries
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            barrier.wait(10)
            for i in range(per_thread):
                if i % 5 == 0:
                    accept(seeded, f"t{t}-{i}")  # document + audit in one unit of work
                else:
                    with seeded.write() as tx:
                        tx.audit(f"worker-{t}", "tick", None, {"i": i})
                        tx.audit(f"worker-{t}", "tock", None, {"i": i})
        except BaseException as exc:  # noqa: BLE001 - anything a thread raises fails the test in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    expected = seeding + threads_n * (per_thread // 5 + (per_thread - per_thread // 5) * 2)
    report = seeded.verify_audit()
    assert report.ok and report.entries == expected
    assert [e.seq for e in seeded.audit_entries()] == list(range(1, expected + 1))
