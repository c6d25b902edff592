"""Every tampering issue 10 lists, done as an attacker with database access would, is named by the verifier.

Each test builds a real log (documents, deliveries, receipts, submissions, registry rows, each bound to its
entry by the store), signs checkpoints with Axis's key, then drops the append-only guard and tampers. On
SQLite and PostgreSQL.
"""
from __future__ import annotations

import base64
import json
import time

import pytest
import sqlalchemy as sa

from axis.audit import checkpoints as cps
from axis.audit.checkpoints import CheckpointWriter, LogBroken
from axis.audit.verify import Report, verify_store
from axis.store import Decision, NewSubmission, Store
from axis.store import audit as chain
from tests.audit.conftest import Pki, key_signer
from tests.store.store_helpers import R1, R2, SENDER, accept, drop_audit_guard


def _log(store: Store, writer: CheckpointWriter, documents: int = 6) -> list[str]:
    """Documents accepted, delivered and answered; a checkpoint after every other document."""
    with store.write() as tx:
        tx.add_credential("cred_1", "agency", SENDER, "a" * 64, "the sender's system")
    ids = []
    for n in range(documents):
        axis_id = accept(store, n)
        ids.append(axis_id)
        with store.write() as tx:
            tx.add_submissions([NewSubmission(f"sub-{n}", SENDER, "cred_1", "b" * 64)])
            tx.decide_submissions([Decision(f"sub-{n}", SENDER, "accepted", axis_id, None, None, b"<r/>")])
            tx.transition(axis_id, R1, "delivered")
            tx.add_receipt(axis_id, "delivery", b"<delivered/>", R1, "delivered")
            tx.audit("hub", "delivered", axis_id, {"recipient": R1})
        with store.write() as tx:
            tx.transition(axis_id, R1, "accepted")
            tx.add_receipt(axis_id, "status", b"<status 03/>", R1, "03")
        if n % 2:
            assert writer.write() is not None
    return ids


def _exec(store: Store, sql: str, **params: object) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET session_replication_role = replica")  # what an owner can do: no triggers
        else:
            for table in ("audit_log", "audit_checkpoints", "audit_timestamps", "audit_signers"):
                for verb in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        conn.execute(sa.text(sql), params)


def _verify(store: Store, audit_pki: Pki, **kw) -> Report:
    return verify_store(store, audit_pki.trust, **kw)


def _bad(report: Report, where: str, *words: str) -> None:
    assert not report.ok, report
    assert report.where == where, report
    for word in words:
        assert word in report.reason, report


def test_an_untouched_log_verifies(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    report = _verify(seeded, audit_pki)
    assert report.ok, report
    assert report.checkpoints == 3 and report.entries == seeded.audit_head()[0]
    assert report.rows >= 6 * 4  # documents, deliveries, receipts, submissions, registry


def test_a_cut_tail_is_named(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    size = seeded.audit_head()[0]
    drop_audit_guard(seeded)
    _exec(seeded, "DELETE FROM audit_log WHERE seq > :n", n=size - 5)
    _bad(_verify(seeded, audit_pki), f"entry {size - 4}", "missing", f"checkpoint {size}")


def test_a_cut_tail_with_its_checkpoints_is_named_against_the_auditors_copy(
        seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    saved = cps.read_saved(cps.saved_form(seeded.latest_checkpoint()))
    size = saved.note.size
    drop_audit_guard(seeded)
    _exec(seeded, "DELETE FROM audit_log WHERE seq > :n", n=size - 5)
    _exec(seeded, "DELETE FROM audit_timestamps")
    _exec(seeded, "DELETE FROM audit_checkpoints WHERE size > :n", n=size - 5)
    # The log alone looks whole; the rows its lost entries bound still give it away ...
    _bad(_verify(seeded, audit_pki), "documents row ax-5-document", "behind")
    # ... and the auditor's copy names the cut itself.
    _bad(_verify(seeded, audit_pki, against=saved), f"entry {size - 4}", "cut")


def test_a_changed_entry_is_named(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    drop_audit_guard(seeded)
    _exec(seeded, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 7")
    _bad(_verify(seeded, audit_pki), "entry 7", "changed")


def test_an_entry_rewritten_with_every_later_hash_recomputed_is_caught_by_the_checkpoint(
        seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    _rewrite_from(seeded, 7, lambda e: {**e, "actor": "mallory"})
    report = _verify(seeded, audit_pki)
    first = min(c.size for c in seeded.checkpoints() if c.size >= 7)
    previous = max((c.size for c in seeded.checkpoints() if c.size < 7), default=0)
    _bad(report, f"entries {previous + 1}..{first}", "root")


def test_an_inserted_entry_is_caught_against_the_auditors_copy_even_with_new_checkpoints(
        seeded: Store, writer: CheckpointWriter, audit_pki: Pki, tmp_path) -> None:
    """The attacker rebuilds the whole log with a forged entry inside, and re-signs no checkpoint (they
    cannot): they delete them all. Only the auditor's copy can tell; it does."""
    _log(seeded, writer)
    saved = cps.read_saved(cps.saved_form(seeded.latest_checkpoint()))
    entries = list(seeded.audit_entries())
    forged = {**_plain(entries[4]), "action": "accepted", "subject": "ax-forged", "data": {}, "bound": None}
    rebuilt = [_plain(e) for e in entries[:4]] + [forged] + [_plain(e) for e in entries[4:]]
    drop_audit_guard(seeded)
    _exec(seeded, "DELETE FROM audit_timestamps")
    _exec(seeded, "DELETE FROM audit_checkpoints")
    _exec(seeded, "DELETE FROM audit_log")
    _insert_chain(seeded, rebuilt)
    assert _verify(seeded, audit_pki).ok
    _bad(_verify(seeded, audit_pki, against=saved), f"entries 1..{saved.note.size}", "another root")


def test_a_delivery_changed_to_done_is_named(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    ids = _log(seeded, writer)
    _exec(seeded, "UPDATE deliveries SET state = 'done' WHERE axis_id = :a AND recipient_code = :r", a=ids[2], r=R2)
    _bad(_verify(seeded, audit_pki), f"deliveries row {ids[2]}/{R2}", "changed")


def test_a_delivery_refused_behind_axiss_back_is_named(seeded: Store, writer, audit_pki: Pki) -> None:
    ids = _log(seeded, writer)
    _exec(seeded, "UPDATE deliveries SET state = 'refused' WHERE axis_id = :a AND recipient_code = :r",
          a=ids[0], r=R1)
    _bad(_verify(seeded, audit_pki), f"deliveries row {ids[0]}/{R1}", "changed")


@pytest.mark.parametrize("kind", ["status", "delivery"])
def test_a_deleted_receipt_is_named(seeded: Store, writer, audit_pki: Pki, kind: str) -> None:
    ids = _log(seeded, writer)
    _exec(seeded, "DELETE FROM receipts WHERE axis_id = :a AND kind = :k", a=ids[3], k=kind)
    code = "03" if kind == "status" else "delivered"
    _bad(_verify(seeded, audit_pki), f"receipts row {ids[3]}/{R1}/{kind}/{code}", "removed")


def test_a_rewritten_body_is_named(seeded: Store, writer, audit_pki: Pki) -> None:
    ids = _log(seeded, writer)
    _exec(seeded, "UPDATE document_bodies SET body = :b WHERE axis_id = :a", b=b"<edXML>forged</edXML>", a=ids[1])
    _bad(_verify(seeded, audit_pki), f"document_bodies row {ids[1]}", "digest")


def test_a_rewritten_body_and_digest_are_named(seeded: Store, writer, audit_pki: Pki) -> None:
    ids = _log(seeded, writer)
    import hashlib
    forged = b"<edXML>forged</edXML>"
    _exec(seeded, "UPDATE document_bodies SET body = :b WHERE axis_id = :a", b=forged, a=ids[1])
    _exec(seeded, "UPDATE documents SET digest = :d WHERE axis_id = :a", d=hashlib.sha256(forged).hexdigest(),
          a=ids[1])
    _bad(_verify(seeded, audit_pki), f"documents row {ids[1]}", "changed")


def test_a_row_added_behind_axiss_back_is_named(seeded: Store, writer, audit_pki: Pki) -> None:
    ids = _log(seeded, writer)
    _exec(seeded, "INSERT INTO receipts (axis_id, recipient_code, kind, code, detail, body, digest, created_at) "
                  "VALUES (:a, :r, 'status', '03', NULL, :b, :d, :t)", a=ids[0], r=R2, b=b"x", d="0" * 64,
          t=seeded.clock())
    _bad(_verify(seeded, audit_pki), f"receipts row {ids[0]}/{R2}/status/03", "behind")


def test_an_undecided_submission_is_named(seeded: Store, writer, audit_pki: Pki) -> None:
    _log(seeded, writer)
    _exec(seeded, "UPDATE submissions SET outcome = NULL, receipt = NULL WHERE id = 'sub-2'")
    assert not _verify(seeded, audit_pki).ok


def test_a_checkpoint_removed_from_the_middle_is_named(seeded: Store, writer, audit_pki: Pki) -> None:
    _log(seeded, writer)
    sizes = [c.size for c in seeded.checkpoints()]
    _exec(seeded, "DELETE FROM audit_checkpoints WHERE size = :s", s=sizes[1])
    _bad(_verify(seeded, audit_pki), f"checkpoint {sizes[2]}", "removed")


def test_the_last_checkpoint_removed_is_named_against_the_auditors_copy(seeded: Store, writer,
                                                                        audit_pki: Pki) -> None:
    _log(seeded, writer)
    saved = cps.read_saved(cps.saved_form(seeded.latest_checkpoint()))
    _exec(seeded, "DELETE FROM audit_checkpoints WHERE size = :s", s=saved.note.size)
    assert _verify(seeded, audit_pki).ok
    _bad(_verify(seeded, audit_pki, against=saved), f"the saved checkpoint {saved.note.size}", "removed")


def test_a_checkpoint_forged_with_another_key_is_named(seeded: Store, writer, audit_pki: Pki, clock) -> None:
    _log(seeded, writer)
    accept(seeded, "late")
    rogue = CheckpointWriter(seeded, key_signer(audit_pki.rogue_key, audit_pki.rogue_cert),
                             clock=clock)
    forged = rogue.write()
    assert forged is not None
    _bad(_verify(seeded, audit_pki), f"checkpoint {forged.size}", "not acceptable")


def test_a_checkpoint_with_a_changed_root_and_the_same_signature_is_named(seeded: Store, writer,
                                                                          audit_pki: Pki) -> None:
    _log(seeded, writer)
    cp = seeded.latest_checkpoint()
    note = cp.note.replace(cp.note.split("\n")[2], base64.b64encode(b"\x00" * 32).decode())
    _exec(seeded, "UPDATE audit_checkpoints SET note = :n, root = :r WHERE size = :s", n=note, r="00" * 32,
          s=cp.size)
    _bad(_verify(seeded, audit_pki), f"checkpoint {cp.size}", "signature")


def test_the_writer_refuses_to_sign_a_broken_chain(seeded: Store, writer, audit_pki: Pki) -> None:
    _log(seeded, writer)
    accept(seeded, "after")
    accept(seeded, "after that")
    drop_audit_guard(seeded)
    _exec(seeded, "DELETE FROM audit_log WHERE seq = :s", s=seeded.audit_head()[0] - 1)
    with pytest.raises(LogBroken, match="does not chain"):
        writer.write()


def test_an_entry_changed_before_its_checkpoint_is_still_named_after_it(seeded: Store, writer,
                                                                        audit_pki: Pki) -> None:
    """The writer checks links, not content: the checkpoint then covers the changed entry, whose content no
    longer gives the hash the checkpoint signed."""
    _log(seeded, writer)
    accept(seeded, "after")
    drop_audit_guard(seeded)
    _exec(seeded, "UPDATE audit_log SET actor = 'mallory' WHERE seq = :s", s=seeded.audit_head()[0])
    assert writer.write() is not None
    _bad(_verify(seeded, audit_pki), f"entry {seeded.audit_head()[0]}", "changed")


def test_the_saved_checkpoint_round_trips_and_a_changed_one_is_refused(seeded: Store, writer) -> None:
    _log(seeded, writer)
    text = cps.saved_form(seeded.latest_checkpoint())
    assert cps.read_saved(text).note.size == seeded.latest_checkpoint().size
    with pytest.raises(cps.CheckpointError):
        cps.read_saved(text.replace("head ", "head  "))
    with pytest.raises(cps.CheckpointError):
        cps.read_saved("hello\n")


# ------------------------------------------------------------------ an attacker's tools

def _plain(entry) -> dict:
    return {"seq": entry.seq, "at": entry.at, "actor": entry.actor, "action": entry.action,
            "subject": entry.subject, "data": entry.data, "bound": entry.bound}


def _insert_chain(store: Store, entries: list[dict]) -> None:
    prev = chain.GENESIS_HASH
    rows = []
    for seq, e in enumerate(entries, start=1):
        body = chain.entry_body(seq, e["at"], e["actor"], e["action"], e["subject"], e["data"], prev, e["bound"])
        digest = chain.entry_hash(prev, body)
        rows.append({**e, "seq": seq, "prev_hash": prev, "hash": digest, "data": json.dumps(e["data"]),
                     "bound": None if e["bound"] is None else json.dumps(e["bound"])})
        prev = digest
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log (seq, at, actor, action, subject, data, prev_hash, hash, bound) "
                             "VALUES (:seq, :at, :actor, :action, :subject, :data, :prev_hash, :hash, :bound)"),
                     [{**r, "at": r["at"].replace(tzinfo=None) if store.dialect == "sqlite" else r["at"]}
                      for r in rows])


def _rewrite_from(store: Store, seq: int, change) -> None:
    entries = [_plain(e) for e in store.audit_entries()]
    entries[seq - 1] = change(entries[seq - 1])
    drop_audit_guard(store)
    _exec(store, "DELETE FROM audit_log")
    _insert_chain(store, entries)


def test_two_writers_at_once_never_fork_the_checkpoints(seeded: Store, audit_pki: Pki, clock) -> None:
    """Two hubs' writers race while documents keep coming: the database lock lets one append each
    checkpoint, the other's is dropped, and the chain of checkpoints stays one line."""
    import threading

    writers = [CheckpointWriter(seeded, key_signer(audit_pki.axis_key, audit_pki.axis_cert),
                                every_entries=1, clock=clock) for _ in range(2)]
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def race(writer: CheckpointWriter) -> None:
        try:
            while not stop.is_set():
                checkpoint = writer.write()
                if checkpoint is not None:
                    written.append(checkpoint.size)
        except BaseException as exc:  # noqa: BLE001 - anything a thread raises fails the test in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    n, deadline = 0, time.monotonic() + 30
    while n < 30 or (len(written) < 4 and time.monotonic() < deadline):  # until they have raced a while
        accept(seeded, f"race-{n}")
        n += 1
        time.sleep(0.001)  # a breath for the writers' threads (SQLite: one writer at a time)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(written) == len(set(written)) >= 2
    report = _verify(seeded, audit_pki)
    assert report.ok and report.checkpoints == len(list(seeded.checkpoints())), report
