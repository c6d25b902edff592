"""The hub end to end in one process, on the real embedded transport, SQLite and a real PKI."""
from __future__ import annotations

import asyncio

from axis import wire
from axis.edxml import Organization, StatusCode, packet_to_bytes
from axis.edxml.compose import new_status
from axis.edxml.model import ResponseFor
from axis.receipt import Receipt, build_receipt, now_utc
from axis.refusals import RefusalCode
from tests.hub.conftest import World, sha256
from tests.transport.support import take

G22, H41, H14, G17, H99 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17", "000.00.00.H99"


async def _refused(world: World, body: bytes, sender: str, code: RefusalCode) -> None:
    submission = await world.submit(body, sender)
    [(headers, receipt, signer)] = await world.receipts(sender, 1)
    assert signer == wire.HUB_IDENTITY and headers[wire.H_SUBMISSION] == submission
    assert (receipt.outcome, receipt.refusal_code, receipt.refusal_name) == ("refused", code.number, code.name)
    for recipient in (H41, H14, G17):
        assert await world.transport.depth(wire.inbox_queue(recipient)) == 0


async def test_document_reaches_three_recipients_byte_identical(world: World) -> None:
    body = world.document(G22, [H41, H14, G17])
    submission = await world.submit(body, G22)
    [(headers, receipt, signer)] = await world.receipts(G22, 1)
    assert signer == wire.HUB_IDENTITY
    assert receipt.outcome == "accepted" and receipt.submission == submission and receipt.digest == sha256(body)
    for recipient in (H41, H14, G17):
        [delivery] = await world.inbox(recipient, 1)
        assert delivery.body == body
        assert delivery.headers[wire.H_AXIS_ID] == receipt.axis_id
        assert delivery.headers[wire.H_DIGEST] == sha256(body)
    assert world.store.document_body(receipt.axis_id) == body
    assert {d.recipient_code for d in world.store.deliveries(receipt.axis_id)} == {H41, H14, G17}
    assert world.store.verify_audit().ok


async def test_duplicate_is_answered_with_the_first_receipt_and_delivered_once(world: World) -> None:
    body = world.document(G22, [H41])
    await world.submit(body, G22)
    [(_, first, _)] = await world.receipts(G22, 1)
    second_submission = await world.submit(body, G22)
    [(headers, again, _)] = await world.receipts(G22, 1)
    assert headers[wire.H_SUBMISSION] == second_submission
    assert again == first  # the first receipt, as first signed
    assert len(await world.inbox(H41, 1)) == 1
    await asyncio.sleep(0.3)
    assert await world.transport.depth(wire.inbox_queue(H41)) == 0


async def test_refusals_each_with_their_code(world: World) -> None:
    await _refused(world, world.document(G22, [H41, H99]), G22, RefusalCode.UNKNOWN_RECIPIENT)
    await _refused(world, world.document(G22, [H41], signer=H41), G22, RefusalCode.SIGNER_NOT_SENDER)
    tampered = world.document(G22, [H41]).replace("thử nghiệm".encode(), "thử nghiện".encode())
    await _refused(world, tampered, G22, RefusalCode.SIGNATURE_INVALID)
    # An unregistered sender has no receipts queue: the refusal is in the audit log.
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
    # Bytes nobody can be told about (no sender to read) get no receipt, whatever their reply-to says:
    # the refusal is in the audit log and the submission in axis.intake's dead letters (with H99's).
    await world.submit(b"<edXML", G22)
    for _ in range(100):
        letters = await world.transport.dead_letters(wire.INTAKE_QUEUE)
        if len(letters) == 2:
            break
        await asyncio.sleep(0.1)
    assert [letter.reason.split()[0] for letter in letters] == ["AX414", "AX414"]
    assert await world.transport.depth(wire.receipts_queue(G22)) == 0
    actions = [e.action for e in world.store.audit_entries()]
    assert actions.count("refused") == 7 and world.store.verify_audit().ok


async def test_statuses_flow_back_and_move_the_state(world: World) -> None:
    body = world.document(G22, [H41, H14])
    await world.submit(body, G22)
    [(_, accepted, _)] = await world.receipts(G22, 1)
    [delivery] = await world.inbox(H41, 1)
    await world.inbox(H14, 1)
    document_id = world.store.get_document(accepted.axis_id).document_id
    answered = ResponseFor(organ_id=G22, document_id=document_id)
    # H14 took the document but never said it stored it (no delivery receipt): its statuses do not count.
    early = world.signers[H14].sign(packet_to_bytes(new_status(Organization(H14), answered, "06")))
    await _refused(world, early, H14, RefusalCode.STATUS_BEFORE_RECEIPT)
    receipt = world.signers[H41].sign_receipt(build_receipt(Receipt(
        kind="delivery", outcome="delivered", issuer=H41, time=now_utc(), axis_id=accepted.axis_id,
        sender=G22, recipient=H41, digest=sha256(delivery.body))))
    await world.transport.publish(wire.RECEIPTS_QUEUE, receipt, message_id=wire.new_submission_id())
    await world.receipts(G22, 1)  # H41's delivery receipt, forwarded: it is recorded
    for code in ("01", "03", "06"):
        status = world.signers[H41].sign(packet_to_bytes(new_status(Organization(H41), answered, code)))
        await world.submit(status, H41)
        [(_, receipt, _)] = await world.receipts(H41, 1)
        assert receipt.outcome == "accepted"
        [delivered] = await world.inbox(G22, 1)
        assert delivered.body == status and delivered.headers[wire.H_KIND] == "status"
    states = {d.recipient_code: d.state for d in world.store.deliveries(accepted.axis_id)}
    assert states[H41] == "done" and states[H14] == "published"
    codes = [r.code for r in world.store.timeline(accepted.axis_id)[H41] if r.kind == "status"]
    assert codes == ["01", "03", "06"]
    # A late "arrived" never moves "done" back.
    late = world.signers[H41].sign(packet_to_bytes(new_status(Organization(H41), answered, "01",
                                                              description="late")))
    await world.submit(late, H41)
    await world.receipts(H41, 1)
    assert {d.recipient_code: d.state for d in world.store.deliveries(accepted.axis_id)}[H41] == "done"
    # Someone the document never reached cannot answer it.
    outsider = world.signers[G17].sign(packet_to_bytes(new_status(Organization(G17), answered, "03")))
    await _refused(world, outsider, G17, RefusalCode.NOT_A_RECIPIENT)


async def test_recall_reaches_every_recipient(world: World) -> None:
    body = world.document(G22, [H41, H14, G17])
    await world.submit(body, G22)
    [(_, accepted, _)] = await world.receipts(G22, 1)
    document_id = world.store.get_document(accepted.axis_id).document_id
    for code in (H41, H14, G17):
        await world.inbox(code, 1)
    recall = world.signers[G22].sign(packet_to_bytes(new_status(
        Organization(G22), ResponseFor(organ_id=G22, document_id=document_id), StatusCode.RECALL_REQUEST)))
    await world.submit(recall, G22)
    [(_, receipt, _)] = await world.receipts(G22, 1)
    assert receipt.outcome == "accepted"
    for code in (H41, H14, G17):
        [delivery] = await world.inbox(code, 1)
        assert delivery.body == recall
    # A recall document (BussinessDocType 1) addressed to one recipient still reaches all three.
    recall_doc = world.document(G22, [H41], business=1, business_document_id=document_id)
    await world.submit(recall_doc, G22)
    await world.receipts(G22, 1)
    for code in (H41, H14, G17):
        [delivery] = await world.inbox(code, 1)
        assert delivery.body == recall_doc


async def test_urgent_overtakes_a_backlog(world: World) -> None:
    for _ in range(1000):
        await world.submit(world.document(G22, [H41]), G22)
    urgent = world.document(G22, [H41], priority=3)
    await world.submit(urgent, G22)
    await world.receipts(G22, 1001, timeout=120)
    for _ in range(100):
        if await world.transport.depth(wire.inbox_queue(H41)) == 1001:
            break
        await asyncio.sleep(0.1)
    [first] = await world.inbox(H41, 1)
    assert first.body == urgent


async def test_delivery_receipt_marks_delivered_and_reaches_the_sender(world: World) -> None:
    body = world.document(G22, [H41])
    await world.submit(body, G22)
    [(_, accepted, _)] = await world.receipts(G22, 1)
    [delivery] = await world.inbox(H41, 1)
    receipt = world.signers[H41].sign_receipt(build_receipt(Receipt(
        kind="delivery", outcome="delivered", issuer=H41, time=now_utc(), axis_id=accepted.axis_id,
        sender=G22, recipient=H41, digest=sha256(delivery.body))))
    for _ in range(2):  # a re-sent receipt is recorded once
        await world.transport.publish(wire.RECEIPTS_QUEUE, receipt, message_id=wire.new_submission_id())
    [(headers, forwarded, signer)] = await world.receipts(G22, 1)
    assert signer == H41 and forwarded.kind == "delivery" and forwarded.axis_id == accepted.axis_id
    assert [d.state for d in world.store.deliveries(accepted.axis_id)] == ["delivered"]
    assert [r.kind for r in world.store.timeline(accepted.axis_id)[H41]].count("delivery") == 1


async def test_delivery_that_keeps_failing_ends_in_dead_letters_with_an_error_receipt(world: World) -> None:
    body = world.document(G22, [H41])
    await world.submit(body, G22)
    [(_, accepted, _)] = await world.receipts(G22, 1)
    async with world.transport.consume(wire.inbox_queue(H41), prefetch=1) as deliveries:
        for attempt in (1, 2, 3):
            [delivery] = await take(deliveries, 1, 20)
            assert delivery.attempt == attempt
            await delivery.retry("disk full")
    [(headers, error, signer)] = await world.receipts(G22, 1)
    assert signer == wire.HUB_IDENTITY and error.kind == "error" and error.outcome == "failed"
    assert error.refusal_code == RefusalCode.DELIVERY_FAILED.number and error.recipient == H41
    assert [d.state for d in world.store.deliveries(accepted.axis_id)] == ["failed"]
    assert len(await world.transport.dead_letters(wire.inbox_queue(H41))) == 1
    assert world.store.verify_audit().ok


async def test_duplicates_within_one_batch_each_get_the_first_receipt(world: World) -> None:
    body = world.document(G22, [H41])
    submissions = [wire.new_submission_id() for _ in range(3)]
    from axis.transport import OutgoingMessage
    await world.transport.publish_many([
        OutgoingMessage(queue=wire.INTAKE_QUEUE, body=body, message_id=s,
                        headers={wire.H_SUBMISSION: s, wire.H_REPLY_TO: wire.receipts_queue(G22)})
        for s in submissions])
    got = await world.receipts(G22, 3)
    assert sorted(h[wire.H_SUBMISSION] for h, _, _ in got) == sorted(submissions)
    assert len({r.axis_id for _, r, _ in got}) == 1 and all(r.outcome == "accepted" for _, r, _ in got)
    assert len(await world.inbox(H41, 1)) == 1
    await asyncio.sleep(0.3)
    assert await world.transport.depth(wire.inbox_queue(H41)) == 0
