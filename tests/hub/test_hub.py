"""The hub end to end in one process, on the real embedded transport, SQLite and a real PKI.

Submissions go to `axis.intake` as the gateway (or anyone who can write to the broker) puts them
there; outcomes and deliveries are read from the store, as the gateway serves them.
"""
from __future__ import annotations

import asyncio

from axis import wire
from axis.edxml import Organization, StatusCode, packet_to_bytes
from axis.edxml.compose import new_status
from axis.edxml.model import ResponseFor
from axis.gateway import Conflict, Invalid
from axis.receipt import Receipt, build_receipt, now_utc
from axis.refusals import RefusalCode
from axis.store import NewSubmission
from axis.transport import OutgoingMessage
from tests.hub.conftest import World, sha256

G22, H41, H14, G17, H99 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17", "000.00.00.H99"


async def _waiting(world: World) -> dict[str, int]:
    return {code: len((await world.service.inbox(world.caller(code)))[0]) for code in (H41, H14, G17, G22)}


async def _refused(world: World, body: bytes, sender: str, code: RefusalCode) -> None:
    before = await _waiting(world)
    submission = await world.submit(body, sender)
    outcome, receipt, signer = await world.outcome(submission)
    assert signer == wire.HUB_IDENTITY and receipt is not None and receipt.submission == submission
    assert (receipt.outcome, receipt.refusal_code, receipt.refusal_name) == ("refused", code.number, code.name)
    assert (outcome.outcome, outcome.code) == ("refused", f"AX{code.number}")
    assert await _waiting(world) == before  # nothing was delivered


def _delivery_receipt(world: World, recipient: str, axis_id: str, body: bytes) -> bytes:
    return world.signers[recipient].sign_receipt(build_receipt(Receipt(
        kind="delivery", outcome="delivered", issuer=recipient, time=now_utc(), axis_id=axis_id,
        sender=G22, recipient=recipient, digest=sha256(body))))


async def test_document_reaches_three_recipients_byte_identical(world: World) -> None:
    body = world.document(G22, [H41, H14, G17])
    submission = await world.submit(body, G22)
    outcome, receipt, signer = await world.outcome(submission)
    assert signer == wire.HUB_IDENTITY and outcome.outcome == "accepted" and outcome.axis_id == receipt.axis_id
    assert receipt.outcome == "accepted" and receipt.submission == submission and receipt.digest == sha256(body)
    for recipient in (H41, H14, G17):
        [delivery] = await world.inbox(recipient, 1)
        assert delivery.body == body
        assert delivery.headers[wire.H_AXIS_ID] == receipt.axis_id
        assert delivery.headers[wire.H_DIGEST] == sha256(body)
        assert delivery.headers[wire.H_SEAL_TO] == ",".join(sorted((H41, H14, G17)))
    assert world.store.document_body(receipt.axis_id) == body
    assert {d.recipient_code for d in world.store.deliveries(receipt.axis_id)} == {H41, H14, G17}
    assert world.store.verify_audit().ok


async def test_duplicate_is_answered_with_the_first_receipt_and_delivered_once(world: World) -> None:
    body = world.document(G22, [H41])
    first, _, _ = await world.outcome(await world.submit(body, G22))
    again, _, _ = await world.outcome(await world.submit(body, G22))
    assert again.outcome == "duplicate" and again.axis_id == first.axis_id
    assert again.receipt == first.receipt  # the first receipt, as first signed
    assert len(await world.inbox(H41, 1)) == 1
    await asyncio.sleep(0.3)
    assert len((await world.service.inbox(world.caller(H41)))[0]) == 1


async def test_refusals_each_with_their_code(world: World) -> None:
    await _refused(world, world.document(G22, [H41, H99]), G22, RefusalCode.UNKNOWN_RECIPIENT)
    await _refused(world, world.document(G22, [H41], signer=H41), G22, RefusalCode.SIGNER_NOT_SENDER)
    tampered = world.document(G22, [H41]).replace("thử nghiệm".encode(), "thử nghiện".encode())
    await _refused(world, tampered, G22, RefusalCode.SIGNATURE_INVALID)
    # An unregistered sender has nobody to read its outcome: the refusal is in the audit log.
    await world.submit(world.document(H99, [H41]), H99)
    for _ in range(100):
        refused = [e.data for e in world.store.audit_entries() if e.action == "refused"]
        if any(d["code"] == RefusalCode.UNKNOWN_SENDER.number for d in refused):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the unknown sender's submission was not refused")
    with world.store.write() as tx:
        tx.set_agency_state(H14, "suspended")
    await _refused(world, world.document(G22, [H41, H14]), G22, RefusalCode.RECIPIENT_SUSPENDED)
    await _refused(world, world.document(H14, [H41]), H14, RefusalCode.SENDER_SUSPENDED)
    # Bytes nobody can be told about (no sender to read, no submissions row) get no outcome: the
    # refusal is in the audit log and the submission in axis.intake's dead letters (with H99's).
    await world.submit(b"<edXML", G22)
    for _ in range(100):
        letters = await world.transport.dead_letters(wire.INTAKE_QUEUE)
        if len(letters) == 2:
            break
        await asyncio.sleep(0.1)
    assert [letter.reason.split()[0] for letter in letters] == ["AX414", "AX414"]
    actions = [e.action for e in world.store.audit_entries()]
    assert actions.count("refused") == 7 and world.store.verify_audit().ok


async def test_statuses_flow_back_and_move_the_state(world: World) -> None:
    body = world.document(G22, [H41, H14])
    accepted, _, _ = await world.outcome(await world.submit(body, G22))
    [delivery] = await world.inbox(H41, 1)
    await world.inbox(H14, 1)
    document_id = world.store.get_document(accepted.axis_id).document_id
    answered = ResponseFor(organ_id=G22, document_id=document_id)
    # H14 took the document but never said it stored it (no delivery receipt): its statuses do not count.
    early = world.signers[H14].sign(packet_to_bytes(new_status(Organization(H14), answered, "06")))
    await _refused(world, early, H14, RefusalCode.STATUS_BEFORE_RECEIPT)
    await world.service.ack(world.caller(H41), accepted.axis_id,
                            _delivery_receipt(world, H41, accepted.axis_id, delivery.body))
    for code in ("01", "03", "06"):
        status = world.signers[H41].sign(packet_to_bytes(new_status(Organization(H41), answered, code)))
        outcome, _, _ = await world.outcome(await world.submit(status, H41))
        assert outcome.outcome == "accepted"
        [delivered] = await world.inbox(G22, 1)
        assert delivered.body == status and delivered.headers[wire.H_KIND] == "status"
        await world.service.ack(world.caller(G22), delivered.axis_id, None)
    states = {d.recipient_code: d.state for d in world.store.deliveries(accepted.axis_id)}
    assert states[H41] == "done" and states[H14] == "queued"
    codes = [r.code for r in world.store.timeline(accepted.axis_id)[H41] if r.kind == "status"]
    assert codes == ["01", "03", "06"]
    # A late "arrived" never moves "done" back.
    late = world.signers[H41].sign(packet_to_bytes(new_status(Organization(H41), answered, "01",
                                                              description="late")))
    await world.outcome(await world.submit(late, H41))
    assert {d.recipient_code: d.state for d in world.store.deliveries(accepted.axis_id)}[H41] == "done"
    # Someone the document never reached cannot answer it.
    outsider = world.signers[G17].sign(packet_to_bytes(new_status(Organization(G17), answered, "03")))
    await _refused(world, outsider, G17, RefusalCode.NOT_A_RECIPIENT)


async def test_recall_reaches_every_recipient(world: World) -> None:
    body = world.document(G22, [H41, H14, G17])
    accepted, _, _ = await world.outcome(await world.submit(body, G22))
    document_id = world.store.get_document(accepted.axis_id).document_id
    for code in (H41, H14, G17):
        [delivery] = await world.inbox(code, 1)
        await world.service.ack(world.caller(code), delivery.axis_id, None)
    recall = world.signers[G22].sign(packet_to_bytes(new_status(
        Organization(G22), ResponseFor(organ_id=G22, document_id=document_id), StatusCode.RECALL_REQUEST)))
    outcome, _, _ = await world.outcome(await world.submit(recall, G22))
    assert outcome.outcome == "accepted"
    for code in (H41, H14, G17):
        [delivery] = await world.inbox(code, 1)
        assert delivery.body == recall
        await world.service.ack(world.caller(code), delivery.axis_id, None)
    # A recall document (BussinessDocType 1) addressed to one recipient still reaches all three.
    recall_doc = world.document(G22, [H41], business=1, business_document_id=document_id)
    await world.outcome(await world.submit(recall_doc, G22))
    for code in (H41, H14, G17):
        [delivery] = await world.inbox(code, 1)
        assert delivery.body == recall_doc


async def test_urgent_overtakes_a_backlog(world: World) -> None:
    for _ in range(1000):
        await world.submit(world.document(G22, [H41]), G22)
    urgent = world.document(G22, [H41], priority=3)
    await world.outcome(await world.submit(urgent, G22), timeout=120)
    for _ in range(1200):
        if len(world.store.list_deliveries(recipient=H41, limit=2000)) == 1001:
            break
        await asyncio.sleep(0.1)
    [first] = await world.inbox(H41, 1)
    assert first.body == urgent
    # Pages follow the same order: 1,001 waiting, the urgent one first, each exactly once.
    seen, cursor = [], None
    while True:
        items, cursor = await world.service.inbox(world.caller(H41), after=cursor, limit=300)
        seen += [item.axis_id for item in items]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 1001 and seen[0] == first.axis_id


async def test_delivery_receipt_marks_delivered_once_and_shows_on_the_timeline(world: World) -> None:
    body = world.document(G22, [H41])
    accepted, _, _ = await world.outcome(await world.submit(body, G22))
    [delivery] = await world.inbox(H41, 1)
    receipt = _delivery_receipt(world, H41, accepted.axis_id, delivery.body)
    for _ in range(2):  # a re-sent receipt is recorded once
        answer = await world.service.ack(world.caller(H41), accepted.axis_id, receipt)
        assert answer["state"] == "delivered" and answer["receipt"] == receipt
    assert [d.state for d in world.store.deliveries(accepted.axis_id)] == ["delivered"]
    assert [r.kind for r in world.store.timeline(accepted.axis_id)[H41]].count("delivery") == 1
    assert await world.service.inbox(world.caller(H41)) == ([], None)
    sent, _ = await world.service.sent(world.caller(G22))
    assert [item["recipients"] for item in sent] == [{H41: "delivered"}]


async def test_a_delivery_the_recipient_cannot_take_is_parked_with_an_error_receipt_for_the_sender(
        world: World) -> None:
    body = world.document(G22, [H41])
    accepted, _, _ = await world.outcome(await world.submit(body, G22))
    await world.inbox(H41, 1)
    answer = await world.service.fail(world.caller(H41), accepted.axis_id, "disk full")
    assert answer["state"] == "parked"
    [error] = [r for r in world.store.timeline(accepted.axis_id)[H41] if r.kind == "error"]
    assert error.code == str(RefusalCode.DELIVERY_FAILED.number) and error.detail == "disk full"
    result = world.verifier.verify_receipt(error.body)
    assert result.signer_code == wire.HUB_IDENTITY
    assert [d.state for d in world.store.deliveries(accepted.axis_id)] == ["parked"]
    assert world.store.verify_audit().ok


async def test_duplicates_within_one_batch_each_get_the_first_receipt(world: World) -> None:
    body = world.document(G22, [H41])
    submissions = [wire.new_submission_id() for _ in range(3)]
    await world.transport.publish_many([
        OutgoingMessage(queue=wire.INTAKE_QUEUE, body=body, message_id=s, headers={wire.H_SUBMISSION: s})
        for s in submissions])
    got = [await world.outcome(s) for s in submissions]
    assert len({o.axis_id for o, _, _ in got}) == 1
    assert sorted(o.outcome for o, _, _ in got) == ["accepted", "duplicate", "duplicate"]
    assert len({o.receipt for o, _, _ in got}) == 1
    assert len(await world.inbox(H41, 1)) == 1
    await asyncio.sleep(0.3)
    assert len((await world.service.inbox(world.caller(H41)))[0]) == 1


async def test_a_packet_signed_by_another_agency_than_the_submitting_credential_is_refused(world: World) -> None:
    """The gateway checks the claimed sender before publishing; the hub checks the verified signer
    against the row the gateway wrote, whatever the message's headers say."""
    body = world.document(G22, [H41])
    submission = wire.new_submission_id()
    with world.store.write() as tx:
        tx.add_submissions([NewSubmission(submission, H41, "cred-of-H41", sha256(body))])
    await world.transport.publish(wire.INTAKE_QUEUE, body, message_id=submission,
                                  headers={wire.H_SUBMISSION: submission, wire.H_AGENCY: G22})
    outcome, _receipt, _ = await world.outcome(submission)
    assert (outcome.outcome, outcome.code) == ("refused", f"AX{RefusalCode.CALLER_NOT_SENDER.number}")
    assert world.store.submissions([submission])[submission].agency_code == H41
    assert await world.service.inbox(world.caller(H41)) == ([], None)


async def test_a_submission_repeated_with_its_id_is_the_same_submission(world: World) -> None:
    """A caller that lost the answer sends again with the id it chose: one submission, one outcome."""
    body = world.document(G22, [H41])
    chosen = "0123456789abcdef0123456789abcdef"
    assert await world.service.submit(world.caller(G22), body, chosen) == chosen
    first = await world.service.outcome(world.caller(G22), chosen, wait=20)
    assert await world.service.submit(world.caller(G22), body, chosen) == chosen
    await asyncio.sleep(0.5)  # the repeat was published and decided again: the first outcome stays
    again = await world.service.outcome(world.caller(G22), chosen)
    assert (again.outcome, again.axis_id, again.receipt) == ("accepted", first.axis_id, first.receipt)
    assert len(await world.inbox(H41, 1)) == 1
    other = world.document(G22, [H41])
    for caller, packet in ((G22, other), (H41, world.document(H41, [G22]))):
        try:
            await world.service.submit(world.caller(caller), packet, chosen)
        except Conflict as exc:
            assert exc.status == 409
        else:
            raise AssertionError(f"{caller} reused submission id {chosen} for other bytes")
    try:
        await world.service.submit(world.caller(G22), body, "not-an-id")
    except Invalid as exc:
        assert exc.status == 422
    else:
        raise AssertionError("a malformed submission id was accepted")
