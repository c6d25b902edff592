"""AgencyClient against the real transports, with the test playing the hub's part of `axis.wire`."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from adapters.client import AgencyClient, Rejection, receipt_outcome, summarize_packet
from axis import wire
from axis.edxml import StatusPacket, load_packet, read_packet
from axis.receipt import read_receipt
from axis.refusals import PacketError
from axis.transport import Transport
from tests.adapters.support import G22, H14, H41, HUB, DevPKI, HubSide, document, signed_document, signed_status


def client(code: str, transport: Transport, pki: DevPKI, state: Path, **options) -> AgencyClient:
    return AgencyClient(code, transport, signer=pki.signers[code], verifier=pki.verifier, state_dir=state,
                        **options)


# ---------------------------------------------------------------- submitting

async def test_submit_publishes_the_exact_packet_with_wire_headers_and_its_priority(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    urgent = signed_document(dev_pki, G22, [H41], 1, priority=3)
    status = signed_status(dev_pki, G22, document(H41, [G22], 9), "03")
    sender = client(G22, transport, dev_pki, tmp_path / "g22")
    first = await sender.submit(urgent)
    second = await sender.submit(status)

    messages = {m.message_id: m for m in await hub.take(wire.INTAKE_QUEUE, 2)}
    assert set(messages) == {first, second} and first != second
    assert messages[first].body == urgent
    assert messages[first].priority == 3
    assert messages[second].priority == 0
    for submission, message in messages.items():
        assert message.headers[wire.H_SUBMISSION] == submission
        assert message.headers[wire.H_REPLY_TO] == wire.receipts_queue(G22)
        assert message.headers[wire.H_DIGEST] == hashlib.sha256(message.body).hexdigest()


async def test_submit_refuses_bytes_that_are_not_edxml_and_packets_of_another_sender(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    sender = client(G22, transport, dev_pki, tmp_path / "g22")
    with pytest.raises(PacketError):
        await sender.submit(b"<not-edxml/>")
    with pytest.raises(ValueError, match="000.00.00.H41"):
        await sender.submit(signed_document(dev_pki, H41, [G22], 2))
    assert await transport.depth(wire.INTAKE_QUEUE) == 0


async def test_submit_many_publishes_two_thousand_packets_once_each(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    packets = [document(G22, [H41], n, priority=n % 5) for n in range(2000)]
    ids = await client(G22, transport, dev_pki, tmp_path / "g22").submit_many(packets)
    assert len(set(ids)) == 2000
    messages = await hub.take(wire.INTAKE_QUEUE, 2000)
    by_id = {m.message_id: m for m in messages}
    assert set(by_id) == set(ids)
    for submission, packet in zip(ids, packets):
        assert by_id[submission].body == packet
        assert by_id[submission].priority == summarize_packet(packet).priority
    assert await transport.depth(wire.INTAKE_QUEUE) == 0


# ---------------------------------------------------------------- receipts

async def test_collect_receipts_verifies_and_stores_the_signed_bytes(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    body = hub.receipt(submission="s1", axis_id="0190-a", sender=G22)
    await hub.send_receipt(G22, body, submission="s1")
    sender = client(G22, transport, dev_pki, tmp_path / "g22")

    got = await sender.collect_receipts(wait=0.5)

    assert len(got) == 1 and got[0].signer_code == HUB and got[0].outcome == "accepted"
    assert got[0].path == tmp_path / "g22" / "receipts" / "intake_s1.xml"
    assert got[0].path.read_bytes() == body
    assert dev_pki.verifier.verify_receipt(got[0].path.read_bytes()).signer_code == HUB
    assert [r.axis_id for r in sender.list_receipts()] == ["0190-a"]
    assert await transport.depth(wire.receipts_queue(G22)) == 0


async def test_a_receipt_that_cannot_be_stored_is_not_acknowledged(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    body = hub.receipt(submission="s1", axis_id="0190-b")
    await hub.send_receipt(G22, body, submission="s1")
    state = tmp_path / "g22"
    state.mkdir()
    (state / "receipts").write_bytes(b"a file where the receipts folder should be")
    rejected: list[Rejection] = []
    sender = client(G22, transport, dev_pki, state)

    assert await sender.collect_receipts(wait=0.3, max_messages=1, on_rejected=rejected.append) == []
    assert [r.action for r in rejected] == ["retry"]

    (state / "receipts").unlink()
    got = await sender.collect_receipts(wait=1.0)
    assert [r.path.read_bytes() for r in got] == [body]
    assert await transport.depth(wire.receipts_queue(G22)) == 0


async def test_receipts_failing_verification_are_dead_lettered_not_dropped(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    # An intake receipt signed by an agency instead of the hub, and a tampered one.
    forged = hub.receipt(submission="s1", axis_id="0190-c", issuer=H14, signer=H14)
    tampered = hub.receipt(submission="s2", axis_id="0190-d").replace(b"accepted", b"refused ")
    await hub.send_receipt(G22, forged, submission="s1")
    await hub.send_receipt(G22, tampered, submission="s2")
    sender = client(G22, transport, dev_pki, tmp_path / "g22")

    assert await sender.collect_receipts(wait=0.5) == []

    letters = await transport.dead_letters(wire.receipts_queue(G22))
    assert sorted(letter.body for letter in letters) == sorted([forged, tampered])
    reasons = " | ".join(letter.reason for letter in letters)
    assert "AX316 SIGNER_NOT_SENDER" in reasons and "AX301 SIGNATURE_INVALID" in reasons
    assert sender.list_receipts() == []


async def test_wait_for_intake_matches_submissions_including_a_duplicates_resent_first_receipt(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    packet = signed_document(dev_pki, G22, [H41], 3)
    sender = client(G22, transport, dev_pki, tmp_path / "g22")
    first, again, bad = await sender.submit_many([packet, packet, packet.replace(b"3/VPCP", b"4/VPCP")])
    await hub.take(wire.INTAKE_QUEUE, 3)
    accepted = hub.receipt(submission=first, axis_id="0190-e")
    await hub.send_receipt(G22, hub.receipt(submission=bad, outcome="refused",
                                            refusal=(301, "SIGNATURE_INVALID", "digest mismatch")), submission=bad)
    await hub.send_receipt(G22, accepted, submission=again, axis_id="0190-e")   # the first receipt, re-sent
    await hub.send_receipt(G22, accepted, submission=first, axis_id="0190-e")

    receipts = await sender.wait_for_intake([first, again, bad], timeout=10)

    assert set(receipts) == {first, again, bad}
    assert receipts[first] == receipts[again] and receipts[first].axis_id == "0190-e"
    assert receipt_outcome(receipts[first], first) == "accepted"
    assert receipt_outcome(receipts[again], again) == "duplicate"
    assert receipt_outcome(receipts[bad], bad) == "refused" and receipts[bad].refusal_code == 301
    stored = sorted(p.name for p in (tmp_path / "g22" / "receipts").iterdir())
    assert stored == sorted(f"intake_{s}.xml" for s in (first, again, bad))


async def test_wait_for_intake_sees_receipts_another_process_collected(
        hub: HubSide, open_tr, dev_pki: DevPKI, tmp_path: Path) -> None:
    state = tmp_path / "g22"
    other = client(G22, await open_tr(), dev_pki, state)
    await hub.send_receipt(G22, hub.receipt(submission="s9", axis_id="0190-f"), submission="s9")
    assert len(await other.collect_receipts(wait=0.5)) == 1

    this = client(G22, await open_tr(), dev_pki, state)
    receipts = await this.wait_for_intake(["s9", "s10"], timeout=0.5)
    assert list(receipts) == ["s9"]  # s10 never got one: missing, after the timeout


# ---------------------------------------------------------------- receiving

async def test_pull_stores_exact_bytes_and_publishes_a_verifiable_delivery_receipt(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    packet = signed_document(dev_pki, G22, [H41, H14], 5)
    status = signed_status(dev_pki, G22, document(H41, [G22], 6), "13")
    doc_id = await hub.deliver(packet, H41)
    status_id = await hub.deliver(status, H41, kind="status")
    out = tmp_path / "inbox"

    got = {r.axis_id: r for r in await client(H41, transport, dev_pki, tmp_path / "h41").pull(out, wait=0.5)}

    assert set(got) == {doc_id, status_id}
    assert (out / f"{doc_id}.edxml").read_bytes() == packet
    assert (out / f"{status_id}.edxml").read_bytes() == status
    assert got[doc_id].kind == "document" and got[status_id].kind == "status"
    assert got[status_id].status_code == "13" and not got[doc_id].duplicate
    receipts = {m.message_id: m for m in await hub.take(wire.RECEIPTS_QUEUE, 2)}
    assert set(receipts) == {wire.receipt_message_id("delivery", a, H41) for a in (doc_id, status_id)}
    for axis_id, body in ((doc_id, packet), (status_id, status)):
        message = receipts[wire.receipt_message_id("delivery", axis_id, H41)]
        result = dev_pki.verifier.verify_receipt(message.body)
        receipt = read_receipt(result.signed_root)
        assert result.signer_code == H41
        assert (receipt.kind, receipt.outcome, receipt.issuer, receipt.recipient) == ("delivery", "delivered", H41, H41)
        assert receipt.axis_id == axis_id and receipt.sender == G22
        assert receipt.digest == hashlib.sha256(body).hexdigest()
        assert receipt.document_id == read_packet(dev_pki.verifier.verify(body).signed_root).document_id
    assert await transport.depth(wire.inbox_queue(H41)) == 0


async def test_a_redelivered_axis_id_is_stored_once_and_its_receipt_sent_again(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    packet = signed_document(dev_pki, G22, [H41], 7)
    axis_id = await hub.deliver(packet, H41)
    out = tmp_path / "inbox"
    receiver = client(H41, transport, dev_pki, tmp_path / "h41")
    [first] = await receiver.pull(out, wait=0.3)
    (out / f"{axis_id}.edxml").rename(tmp_path / "taken-by-the-application.edxml")

    await hub.deliver(packet, H41, axis_id=axis_id)
    [again] = await receiver.pull(out, wait=0.3)

    assert not first.duplicate and again.duplicate and again.axis_id == axis_id
    assert list(out.iterdir()) == []  # not stored a second time, although the application took the first
    receipts = await hub.take(wire.RECEIPTS_QUEUE, 2)
    assert receipts[0].body == receipts[1].body  # the same signed receipt, re-sent
    assert {m.message_id for m in receipts} == {wire.receipt_message_id("delivery", axis_id, H41)}


async def test_tampered_and_badly_signed_deliveries_are_retried_then_dead_lettered_never_stored(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    good = signed_document(dev_pki, G22, [H41], 8)
    tampered = good.replace("thử nghiệm".encode(), b"thu nghiem")
    outsider = dev_pki.outsider.sign(document(G22, [H41], 9))
    not_sender = dev_pki.signers[H14].sign(document(G22, [H41], 10))
    bad = {await hub.deliver(tampered, H41, digest=hashlib.sha256(good).hexdigest()): "ax-digest",
           await hub.deliver(tampered, H41): "AX301 SIGNATURE_INVALID",
           await hub.deliver(outsider, H41): "AX311 CERT_UNTRUSTED",
           await hub.deliver(not_sender, H41): "AX316 SIGNER_NOT_SENDER"}
    out = tmp_path / "inbox"
    rejected: list[Rejection] = []

    stored = await client(H41, transport, dev_pki, tmp_path / "h41").pull(out, wait=1.0, on_rejected=rejected.append)

    assert stored == [] and list(out.iterdir()) == []
    assert len(rejected) == 3 * len(bad) and {r.action for r in rejected} == {"retry"}  # max_attempts = 3
    letters = {letter.headers[wire.H_AXIS_ID]: letter for letter in await transport.dead_letters(wire.inbox_queue(H41))}
    assert set(letters) == set(bad)
    for axis_id, expected in bad.items():
        assert expected in letters[axis_id].reason
        assert letters[axis_id].attempts == 3
    assert await transport.depth(wire.RECEIPTS_QUEUE) == 0


async def test_pull_takes_at_most_max_messages_and_leaves_the_rest(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    for n in range(5):
        await hub.deliver(signed_document(dev_pki, G22, [H41], 20 + n), H41)
    receiver = client(H41, transport, dev_pki, tmp_path / "h41", concurrency=1)
    assert len(await receiver.pull(tmp_path / "inbox", wait=2.0, max_messages=2)) == 2
    assert len(list((tmp_path / "inbox").glob("*.edxml"))) == 2
    assert len(await receiver.pull(tmp_path / "inbox", wait=0.3)) == 3
    assert len(receiver.received()) == 5


# ---------------------------------------------------------------- status packets

async def test_send_status_signs_and_submits_a_status_about_a_standard_document_id(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    receiver = client(H41, transport, dev_pki, tmp_path / "h41")
    submission = await receiver.send_status("000.00.00.G22,2026/03/02,12/VPCP-TTĐT", "03",
                                            description="Đã tiếp nhận")
    [message] = await hub.take(wire.INTAKE_QUEUE, 1)
    assert message.message_id == submission and message.priority == 0
    status = read_packet(dev_pki.verifier.verify(message.body).signed_root)
    assert isinstance(status, StatusPacket) and status.sender == H41
    assert status.status_code.value == "03" and status.description == "Đã tiếp nhận"
    assert (status.response_for.organ_id, status.response_for.code) == (G22, "12/VPCP-TTĐT")
    assert str(status.response_for.promulgation_date) == "2026-03-02"


async def test_send_status_looks_up_a_received_document_whose_id_is_not_in_the_standard_form(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    odd_id = "9fbfbad2-f1f8-4256-a2eb-50fb1061cddb"
    unsigned = document(G22, [H41], 30)
    original = load_packet(unsigned).document_id
    packet = dev_pki.signers[G22].sign(unsigned.replace(original.encode(), odd_id.encode()))
    await hub.deliver(packet, H41)
    receiver = client(H41, transport, dev_pki, tmp_path / "h41")
    await receiver.pull(tmp_path / "inbox", wait=0.3)

    await receiver.send_status(odd_id, "01")
    [message] = await hub.take(wire.INTAKE_QUEUE, 1)
    status = read_packet(dev_pki.verifier.verify(message.body).signed_root)
    assert status.response_for.document_id == odd_id and status.response_for.organ_id == G22
    assert status.response_for.code == "30/VPCP-TTĐT"

    with pytest.raises(PacketError, match="no stored document has it"):
        await receiver.send_status("no-such-document", "01")


async def test_a_replayed_hub_receipt_cannot_answer_another_submission(
        hub: HubSide, transport: Transport, dev_pki: DevPKI, tmp_path: Path) -> None:
    """Genuine hub-signed receipts, replayed under another submission's header, change nothing: a
    refusal names the submission it answers, a receipt must be about the DocumentId submitted, and the
    first receipt stored for a submission stands."""
    sender = client(G22, transport, dev_pki, tmp_path / "g22")
    packet = signed_document(dev_pki, G22, [H41], 5)
    submission = await sender.submit(packet)
    first = hub.receipt(submission=submission, axis_id=wire.new_axis_id(),
                        document_id=summarize_packet(packet).document_id)
    replays = {
        "refusal-of-another": hub.receipt(submission="someone-else", outcome="refused",
                                          refusal=(301, "SIGNATURE_INVALID", "x")),
        "other-document": hub.receipt(submission="someone-else", axis_id=wire.new_axis_id(), document_id="other"),
    }
    for body in replays.values():
        await hub.send_receipt(G22, body, submission=submission)
    await hub.send_receipt(G22, first, submission=submission)
    rejected: list[Rejection] = []
    taken = await sender.collect_receipts(0.5, on_rejected=rejected.append)
    assert [t.outcome for t in taken] == ["accepted"]
    assert [r.action for r in rejected] == ["dead-letter", "dead-letter"]
    assert all("AX412 RECEIPT_MISMATCH" in r.reason for r in rejected), rejected

    # A later, different receipt for the same submission does not replace the first one stored.
    late = hub.receipt(submission=submission, outcome="refused", refusal=(301, "SIGNATURE_INVALID", "x"))
    await hub.send_receipt(G22, late, submission=submission)
    await sender.collect_receipts(0.5)
    assert sender.receipts.intake(submission).outcome == "accepted"
