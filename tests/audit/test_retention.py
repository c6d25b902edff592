"""Retention: what it removes and keeps, each removal an entry the verifier accepts, and nothing else missing.

A real sealed log on SQLite and PostgreSQL: documents delivered (or not), submissions decided, inbox keys;
the clock moved past the policy's ages; then `run_retention`, and `verify_store` (and the export) on what
is left (tests/evidence/test_retention.py: an evidence bundle). The attacks: a row deleted, changed or
written back behind Axis's back.
"""
from __future__ import annotations

import sqlalchemy as sa

from axis.audit.checkpoints import CheckpointWriter
from axis.audit.export import export_log
from axis.audit.verify import verify_export, verify_store
from axis.store import Decision, NewSubmission, Store
from axis.store.retention import RetentionPolicy, run_retention
from tests.audit.conftest import Pki
from tests.audit.test_verify import _bad, _exec
from tests.store.store_helpers import R1, R2, R3, SENDER, accept, body_of

DAY = 86_400
POLICY = RetentionPolicy(bodies_days=90, submissions_days=30, inbox_days=30)


def _traffic(store: Store) -> dict[str, str]:
    """Five documents: done (every recipient has it), one still queued for R3, one a recipient refused and
    another was dead-lettered for, one parked (a dead letter waiting for an operator); each submitted."""
    ids = {name: accept(store, name) for name in ("done", "waiting", "refused", "parked")}
    with store.write() as tx:
        for name, axis_id in ids.items():
            tx.add_submissions([NewSubmission(f"sub-{name}", SENDER, None, "b" * 64)])
            tx.decide_submissions([Decision(f"sub-{name}", SENDER, "accepted", axis_id, None, None, b"<r/>")])
        for recipient in (R1, R2, R3):
            tx.transition(ids["done"], recipient, "delivered")
        tx.transition(ids["done"], R1, "done")
        tx.transition(ids["waiting"], R1, "delivered")
        tx.transition(ids["refused"], R1, "refused")
        tx.transition(ids["refused"], R2, "parked")
        tx.transition(ids["refused"], R2, "failed")  # purged
        tx.transition(ids["refused"], R3, "accepted")
        tx.mark_seen("hub.delivery-receipts", f"{ids['done']}:{R1}")
    with store.write() as tx:
        tx.transition(ids["parked"], R2, "parked")
        for recipient in (R1, R3):
            tx.transition(ids["parked"], recipient, "delivered")
    return ids


def _bodies(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT axis_id FROM document_bodies")).scalars())


def test_retention_removes_what_nobody_needs_and_the_log_still_verifies(
        seeded: Store, writer: CheckpointWriter, audit_pki: Pki, clock, tmp_path) -> None:
    ids = _traffic(seeded)
    kept = tmp_path / "kept.edxml"
    kept.write_bytes(b"<queued-and-decided/>")
    with seeded.write() as tx:
        tx.add_submission_body("sub-done", kept)  # left by a hub killed between settling and forgetting it
    clock.advance(91 * DAY)
    young = accept(seeded, "young")  # delivered, but received today
    with seeded.write() as tx:
        for recipient in (R1, R2, R3):
            tx.transition(young, recipient, "delivered")
        tx.add_submissions([NewSubmission("sub-young", SENDER, None, "c" * 64)])
        tx.decide_submissions([Decision("sub-young", SENDER, "accepted", young, None, None, b"<r/>")])
        tx.add_submission_body("sub-young", kept)
        tx.mark_seen("hub.dead-letters", "k-young")

    dry = run_retention(seeded, POLICY, dry_run=True)
    assert (dry.bodies, dry.submissions, dry.inbox) == (2, 4, 1)
    assert dry.body_bytes == len(body_of("done")) + len(body_of("refused"))
    assert _bodies(seeded) == {*ids.values(), young}  # a dry run removes nothing

    head = seeded.audit_head()[0]
    report = run_retention(seeded, POLICY)
    assert (report.bodies, report.submissions, report.inbox) == (2, 4, 1)
    assert _bodies(seeded) == {ids["waiting"], ids["parked"], young}
    assert set(seeded.submissions([f"sub-{n}" for n in (*ids, "young")])) == {"sub-young"}
    # A kept body goes with its submission, and not before.
    assert seeded.submission_body_to("sub-done", tmp_path / "back") is None
    assert seeded.submission_body_to("sub-young", tmp_path / "back") is not None
    with seeded.write() as tx:
        assert tx.mark_seen("hub.dead-letters", "k-young") is False  # a young key still de-duplicates
    entries = list(seeded.audit_entries(head + 1))
    assert {e.action for e in entries} == {"retention-removed"}
    assert sorted(e.subject for e in entries if e.data.get("retention") == "bodies") == sorted(
        [ids["done"], ids["refused"]])
    removal = next(e for e in entries if e.subject == ids["done"] and e.data["retention"] == "bodies")
    assert removal.bound == [["document_bodies", ids["done"], None]]
    assert removal.data["removed"][0][2] == seeded.get_document(ids["done"]).digest
    assert next(e for e in entries if e.subject is None).data["inbox"] == {"hub.delivery-receipts": 1}
    assert run_retention(seeded, POLICY).bodies == 0  # nothing twice

    writer.write()
    report = verify_store(seeded, audit_pki.trust)
    assert report.ok, report
    assert report.removed == 2 + 4 and any("removed" in note for note in report.notes)
    export_log(seeded, tmp_path / "export")
    assert verify_export(tmp_path / "export", audit_pki.trust).ok


def test_a_body_deleted_behind_axiss_back_is_named_and_one_retention_removed_is_not(
        seeded: Store, writer: CheckpointWriter, audit_pki: Pki, clock) -> None:
    ids = _traffic(seeded)
    clock.advance(91 * DAY)
    run_retention(seeded, POLICY)
    writer.write()
    assert verify_store(seeded, audit_pki.trust).ok
    _exec(seeded, "DELETE FROM document_bodies WHERE axis_id = :a", a=ids["waiting"])
    _bad(verify_store(seeded, audit_pki.trust), f"document_bodies row {ids['waiting']}", "behind Axis's back")


def test_a_submission_deleted_behind_axiss_back_is_named(seeded: Store, writer, audit_pki: Pki, clock) -> None:
    _traffic(seeded)
    writer.write()
    _exec(seeded, "DELETE FROM submissions WHERE id = 'sub-done'")
    _bad(verify_store(seeded, audit_pki.trust), "submissions row sub-done", "behind Axis's back")


def test_a_row_changed_then_removed_by_retention_is_still_named(seeded: Store, writer, audit_pki: Pki,
                                                                clock) -> None:
    """Retention names the digest of the row it deleted: laundering a forged outcome through it shows."""
    _traffic(seeded)
    _exec(seeded, "UPDATE submissions SET outcome = 'refused', code = 301 WHERE id = 'sub-done'")
    clock.advance(91 * DAY)
    run_retention(seeded, POLICY)
    writer.write()
    report = verify_store(seeded, audit_pki.trust)
    assert not report.ok and report.where.startswith("entry ")
    assert "submissions row sub-done" in report.reason and "changed before it was removed" in report.reason


def test_a_forged_body_is_kept_for_the_verifier_to_name(seeded: Store, writer, audit_pki: Pki, clock) -> None:
    ids = _traffic(seeded)
    _exec(seeded, "UPDATE document_bodies SET body = :b WHERE axis_id = :a", b=b"<edXML>forged</edXML>",
          a=ids["done"])
    clock.advance(91 * DAY)
    report = run_retention(seeded, POLICY)
    assert report.kept_differing == [ids["done"]] and report.bodies == 1
    writer.write()
    _bad(verify_store(seeded, audit_pki.trust), f"document_bodies row {ids['done']}", "digest")


def test_a_removed_body_written_back_is_named(seeded: Store, writer, audit_pki: Pki, clock) -> None:
    ids = _traffic(seeded)
    clock.advance(91 * DAY)
    run_retention(seeded, POLICY)
    writer.write()
    _exec(seeded, "INSERT INTO document_bodies (axis_id, body) VALUES (:a, :b)", a=ids["done"], b=body_of("done"))
    _bad(verify_store(seeded, audit_pki.trust), f"document_bodies row {ids['done']}", "written back")


def test_a_policy_of_zero_days_keeps_everything(seeded: Store, clock) -> None:
    _traffic(seeded)
    clock.advance(3650 * DAY)
    report = run_retention(seeded, RetentionPolicy(bodies_days=0, submissions_days=0, inbox_days=0))
    assert (report.bodies, report.submissions, report.inbox) == (0, 0, 0)
    assert len(_bodies(seeded)) == 4
