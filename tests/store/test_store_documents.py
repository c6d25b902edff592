"""Documents, bodies, deliveries: duplicates and all-or-nothing units of work."""
from __future__ import annotations

import hashlib
import threading
from datetime import datetime

import pytest
import sqlalchemy as sa

from axis.refusals import RefusalCode
from axis.store import BodyPieces, DuplicateDocument, NewDocument, NewSubmission, NotFound, Store
from tests.store.store_helpers import R1, R2, R3, RECIPIENTS, SENDER, accept, body_of, new_doc, table_counts


def test_insert_and_read_back(seeded: Store) -> None:
    axis_id = accept(seeded, 1)
    doc = seeded.get_document(axis_id)
    assert doc is not None
    assert (doc.sender_code, doc.document_id, doc.kind, doc.priority) == (SENDER, "1/VPCP-TTĐT", "document", 0)
    assert doc.digest == hashlib.sha256(body_of(1)).hexdigest() and doc.size == len(body_of(1))
    assert seeded.document_body(axis_id) == body_of(1)  # byte for byte
    assert seeded.find_document(SENDER, "1/VPCP-TTĐT") == doc
    assert seeded.find_document(SENDER, "1/VPCP-TTĐT", kind="status") is None
    assert [d.recipient_code for d in seeded.deliveries(axis_id)] == sorted(RECIPIENTS)
    assert {d.state for d in seeded.deliveries(axis_id)} == {"queued"}
    assert seeded.get_document("nope") is None
    with pytest.raises(NotFound):
        seeded.document_body("nope")


def test_find_by_document_id_spans_senders_and_status_packets(seeded: Store) -> None:
    first = accept(seeded, 7)
    with seeded.write() as tx:
        tx.insert_document(new_doc(7, sender=R1, axis_id="ax-7-r1"), b"<other sender, same DocumentId/>")
        tx.insert_document(new_doc(7, sender=R1, kind="status", response_for=first), b"<status 03/>")
    found = seeded.find_by_document_id("7/VPCP-TTĐT")
    assert sorted((d.sender_code, d.kind) for d in found) == [(SENDER, "document"), (R1, "document"),
                                                             (R1, "status")]
    assert [d.response_for for d in found if d.kind == "status"] == [first]


def test_duplicate_raises_and_writes_nothing(seeded: Store) -> None:
    first = accept(seeded, 1)
    before = table_counts(seeded)
    with seeded.write() as tx:
        with pytest.raises(DuplicateDocument) as caught:
            tx.insert_document(NewDocument(axis_id="ax-other", sender_code=SENDER, document_id="1/VPCP-TTĐT"),
                               b"a different body")
        # the unit of work is still usable after the refusal
        tx.audit("hub", "document.duplicate", first, {})
    assert caught.value.existing_axis_id == first
    assert caught.value.code is RefusalCode.DUPLICATE
    after = table_counts(seeded)
    assert after == {**before, "audit_log": before["audit_log"] + 1}
    assert seeded.get_document("ax-other") is None
    assert seeded.document_body(first) == body_of(1)


def test_batch_insert_reports_duplicates_in_place(seeded: Store) -> None:
    accept(seeded, 1)
    items = [(new_doc(n), body_of(n)) for n in (2, 1, 3)]
    items.append((NewDocument(axis_id="ax-2-again", sender_code=SENDER, document_id="2/VPCP-TTĐT"),
                  b"same key as item 0"))
    with seeded.write() as tx:
        results = tx.insert_documents(items)
        stored = [r.axis_id for r in results if not isinstance(r, DuplicateDocument)]
        tx.insert_deliveries_many({a: RECIPIENTS for a in stored})
    assert [type(r).__name__ for r in results] == ["Document", "DuplicateDocument", "Document",
                                                   "DuplicateDocument"]
    assert results[1].existing_axis_id == "ax-1-document"  # type: ignore[union-attr]
    assert results[3].existing_axis_id == "ax-2-document"  # type: ignore[union-attr]
    assert seeded.get_document("ax-2-again") is None
    assert seeded.document_body("ax-2-document") == body_of(2)
    assert len(seeded.deliveries("ax-3-document")) == 3


def test_failed_unit_of_work_leaves_nothing(seeded: Store) -> None:
    before = table_counts(seeded)
    with pytest.raises(RuntimeError):
        with seeded.write() as tx:
            tx.insert_document(new_doc(1), body_of(1))
            tx.insert_deliveries("ax-1-document", RECIPIENTS)
            tx.add_receipt("ax-1-document", "intake", b"<r/>")
            tx.add_submissions([NewSubmission("s1", "000.00.00.G22", "cred_1", None)])
            tx.mark_seen("hub", "k1")
            tx.audit("hub", "document.accepted", "ax-1-document", {})
            raise RuntimeError("the broker went away")
    assert table_counts(seeded) == before


def test_database_error_rolls_back_the_whole_unit(seeded: Store) -> None:
    before = table_counts(seeded)
    with pytest.raises(sa.exc.IntegrityError):
        with seeded.write() as tx:
            tx.insert_document(new_doc(1), body_of(1))
            tx.insert_deliveries("ax-1-document", [R1, "000.00.00.X99"])  # unknown recipient: FK
    assert table_counts(seeded) == before
    assert seeded.find_document(SENDER, "1/VPCP-TTĐT") is None


def test_document_without_deliveries_is_never_visible(seeded: Store) -> None:
    """A reader racing the hub sees the document with all its deliveries, or nothing."""
    inserted, looked = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hub() -> None:
        try:
            with seeded.write() as tx:
                tx.insert_document(new_doc(1), body_of(1))
                inserted.set()
                looked.wait(10)
                tx.insert_deliveries("ax-1-document", RECIPIENTS)
        except BaseException as exc:  # noqa: BLE001 - anything the thread raises is surfaced below, in the main thread
            errors.append(exc)
            inserted.set()

    worker = threading.Thread(target=hub)
    worker.start()
    inserted.wait(10)
    seen_mid_way = seeded.get_document("ax-1-document"), seeded.deliveries("ax-1-document")
    looked.set()
    worker.join(10)
    assert not errors
    assert seen_mid_way == (None, [])
    assert seeded.get_document("ax-1-document") is not None
    assert len(seeded.deliveries("ax-1-document")) == 3


def test_deliveries_insert_is_idempotent(seeded: Store) -> None:
    with seeded.write() as tx:
        tx.insert_document(new_doc(1), body_of(1))
        assert tx.insert_deliveries("ax-1-document", [R1, R2, R1]) == 2
        assert tx.insert_deliveries("ax-1-document", [R2, R3]) == 1
    assert len(seeded.deliveries("ax-1-document")) == 3


def test_list_deliveries_by_state_and_recipient(seeded: Store, clock) -> None:
    first, second = accept(seeded, 1), accept(seeded, 2)
    clock.advance(1)
    with seeded.write() as tx:
        tx.transition(second, R2, "parked", error="signature does not verify")
    assert [(d.axis_id, d.recipient_code) for d in seeded.list_deliveries(state="parked")] == [(second, R2)]
    assert {d.axis_id for d in seeded.list_deliveries(recipient=R1)} == {first, second}
    assert len(seeded.list_deliveries(state="queued")) == 5
    assert len(seeded.list_deliveries(state="queued", recipient=R2)) == 1
    assert len(seeded.list_deliveries(limit=2)) == 2
    assert seeded.list_deliveries()[0].state == "parked"  # most recently changed first


def test_bad_document_fields_are_refused_before_writing(seeded: Store) -> None:
    with seeded.write() as tx:
        with pytest.raises(ValueError, match="priority"):
            tx.insert_document(new_doc(1, priority=5), body_of(1))
        with pytest.raises(ValueError, match="kind"):
            tx.insert_document(new_doc(1, kind="memo"), body_of(1))
        with pytest.raises(ValueError, match="business_type"):
            tx.insert_document(new_doc(1, business_type=4), body_of(1))
        with pytest.raises(ValueError, match="naive"):
            tx.insert_document(new_doc(1, received_at=datetime(2026, 1, 1)), body_of(1))
        tx.insert_document(new_doc(1, priority=3, business_type=1), body_of(1))
    doc = seeded.get_document("ax-1-document")
    assert (doc.priority, doc.business_type) == (3, 1)  # type: ignore[union-attr]


def test_finished_unit_of_work_cannot_be_reused(seeded: Store) -> None:
    with seeded.write() as tx:
        pass
    with pytest.raises(Exception, match="has ended"):
        tx.insert_document(new_doc(1), body_of(1))


def test_a_body_given_as_a_file_is_stored_byte_for_byte(seeded: Store, tmp_path) -> None:
    # Over one piece of the copy (1 MiB), not a multiple of it; a small one beside it in the same batch.
    data = bytes(range(256)) * (5 * 4096 + 7)
    path = tmp_path / "upload.edxml"
    path.write_bytes(data)
    with seeded.write() as tx:
        again = NewDocument(axis_id="ax-1-again", sender_code=SENDER, document_id="1/VPCP-TTĐT")
        results = tx.insert_documents([(new_doc(1), path), (new_doc(2), body_of(2)), (again, path)])
    assert [type(r).__name__ for r in results] == ["Document", "Document", "DuplicateDocument"]
    doc = seeded.get_document("ax-1-document")
    assert doc is not None and doc.size == len(data) and doc.digest == hashlib.sha256(data).hexdigest()
    assert seeded.document_body("ax-1-document") == data
    assert seeded.document_body("ax-2-document") == body_of(2)
    assert path.read_bytes() == data  # the file is the caller's
    # Read back a piece at a time, as the gateway serves a large delivery.
    assert b"".join(seeded.body_pieces("ax-1-document", piece=64 * 1024)) == data
    assert b"".join(seeded.body_pieces("ax-1-document", piece=len(data))) == data
    assert list(seeded.body_pieces("nope")) == []
    document, _, pieces = seeded.document_and_deliveries("ax-1-document", body=True, whole_up_to=4096)
    assert document == doc and isinstance(pieces, BodyPieces) and pieces.size == len(data)
    assert b"".join(pieces) == data
    _, _, whole = seeded.document_and_deliveries("ax-2-document", body=True, whole_up_to=4096)
    assert whole == body_of(2)


def test_a_unit_of_work_that_fails_after_a_file_body_stores_nothing(seeded: Store, tmp_path) -> None:
    path = tmp_path / "upload.edxml"
    path.write_bytes(b"x" * (3 * 1024 * 1024))
    before = table_counts(seeded)
    with pytest.raises(RuntimeError):
        with seeded.write() as tx:
            tx.insert_documents([(new_doc(1), path)])
            raise RuntimeError("boom")
    assert table_counts(seeded) == before


def test_a_queued_submission_body_is_kept_read_back_and_forgotten(seeded: Store, tmp_path) -> None:
    data = bytes(range(256)) * (4096 * 5 + 3)
    path, back = tmp_path / "upload.edxml", tmp_path / "back.edxml"
    path.write_bytes(data)
    with seeded.write() as tx:
        tx.add_submissions([NewSubmission("s" * 32, SENDER, None, hashlib.sha256(data).hexdigest())])
        assert tx.add_submission_body("s" * 32, path) == (len(data), hashlib.sha256(data).hexdigest())
    assert seeded.submission_body_to("s" * 32, back) == (len(data), hashlib.sha256(data).hexdigest())
    assert back.read_bytes() == data
    assert seeded.submission_body_to("t" * 32, back) is None
    with seeded.write() as tx:
        tx.forget_submission_bodies(["s" * 32])
    assert seeded.submission_body_to("s" * 32, back) is None
    with seeded.write() as tx:  # a publish that failed forgets the row and its body
        tx.add_submission_body("s" * 32, path)
        tx.forget_submission("s" * 32)
    assert seeded.submission_body_to("s" * 32, back) is None
