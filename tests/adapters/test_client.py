"""AgencyClient against a whole axis (hub, store, broker, service, gateway), on every road (see conftest)."""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.client import AgencyClient, Rejection, receipt_outcome, summarize_packet
from adapters.edge import Answer, Edge, EdgeNotFound, EdgeRefused, EdgeUnavailable, Waiting
from axis import wire
from axis.edxml import StatusPacket, load_packet, read_packet
from axis.receipt import read_receipt
from axis.refusals import PacketError
from axis.store.parked import replay
from tests.adapters.support import G22, H14, H41, HUB, Axis, DevPKI, Relay, document, sha256, signed_document


def client(axis: Axis, code: str, state: Path, **options) -> AgencyClient:
    return AgencyClient(code, axis.edge(code), signer=axis.pki.signers[code], verifier=axis.pki.verifier,
                        state_dir=state, **options)


# ---------------------------------------------------------------- submitting

async def test_submit_hands_the_packet_to_the_hub_and_stores_the_verified_intake_receipt(
        axis: Axis, tmp_path: Path) -> None:
    packet = signed_document(axis.pki, G22, [H41], 1)
    sender = client(axis, G22, tmp_path / "g22")

    submission = await sender.submit(packet, wait=10)

    stored = sender.receipts.intake(submission)
    assert stored is not None and stored.outcome == "accepted" and stored.axis_id
    assert stored.document_id == summarize_packet(packet).document_id
    body = (tmp_path / "g22" / "receipts" / f"intake_{submission}.xml").read_bytes()
    assert axis.pki.verifier.verify_receipt(body).signer_code == HUB
    assert axis.store.document_body(stored.axis_id) == packet
    assert sender.journal.pending() == {}  # decided: nothing left to learn
    assert list(sender.journal.tracked()) == [stored.axis_id]


async def test_submit_refuses_bytes_that_are_not_edxml_and_packets_of_another_sender(
        axis: Axis, tmp_path: Path) -> None:
    sender = client(axis, G22, tmp_path / "g22")
    with pytest.raises(PacketError):
        await sender.submit(b"<not-edxml/>")
    with pytest.raises(ValueError, match=r"000\.00\.00\.H41"):
        await sender.submit(signed_document(axis.pki, H41, [G22], 2))
    assert axis.store.sent(G22) == [] and axis.store.sent(H41) == []


async def test_with_the_hub_down_a_submission_is_queued_and_a_restarted_client_learns_its_outcome(
        axis: Axis, tmp_path: Path) -> None:
    await axis.stop_hub()
    packet = signed_document(axis.pki, G22, [H41], 3)
    sender = client(axis, G22, tmp_path / "g22")
    [done] = await sender.submit_each([packet], wait=0.3)
    assert done.error is None and done.intake is None and done.submission
    assert (await sender.intake([done.submission], 0.2))[done.submission].outcome == "queued"
    assert list(sender.journal.pending()) == [done.submission]
    sender.close()

    await axis.start_hub()
    again = client(axis, G22, tmp_path / "g22")  # a new process: it knows the submission from the journal
    got = await again.collect_receipts(wait=10)
    assert [(r.submission, r.outcome) for r in got] == [(done.submission, "accepted")]
    assert again.journal.pending() == {}


async def test_submit_many_hands_over_three_hundred_packets_once_each(axis: Axis, tmp_path: Path) -> None:
    packets = [document(G22, [H41], n, priority=n % 4) for n in range(300)]   # unsigned: refused, cheaply
    sender = client(axis, G22, tmp_path / "g22")
    ids = await sender.submit_many(packets)
    assert len(set(ids)) == 300
    intakes = await sender.intake(ids, timeout=60)
    assert {i.outcome for i in intakes.values()} == {"refused"}
    assert {i.code for i in intakes.values()} == {"AX300"} or all(i.refusal for i in intakes.values())
    rows = axis.store.submissions(ids)
    assert set(rows) == set(ids) and {r.agency_code for r in rows.values()} == {G22}


async def test_intake_tells_accepted_duplicate_and_refused_apart(axis: Axis, tmp_path: Path) -> None:
    packet = signed_document(axis.pki, G22, [H41], 4)
    tampered = packet.replace("thử nghiệm".encode(), b"thu nghiem")
    sender = client(axis, G22, tmp_path / "g22")
    first = await sender.submit(packet, wait=10)
    again, bad = await sender.submit_many([packet, tampered])

    intakes = await sender.intake([first, again, bad], timeout=20)

    assert intakes[first].outcome == "accepted" and intakes[again].outcome == "duplicate"
    assert intakes[first].axis_id == intakes[again].axis_id
    assert intakes[bad].outcome == "refused" and intakes[bad].refusal.startswith("AX301 SIGNATURE_INVALID")
    receipts = await sender.wait_for_intake([first, again, bad], timeout=1)
    assert receipts[first] == receipts[again]  # the duplicate is answered with the first receipt itself
    assert receipt_outcome(receipts[again], again) == "duplicate"
    stored = sorted(p.name for p in (tmp_path / "g22" / "receipts").iterdir())
    assert stored == sorted(f"intake_{s}.xml" for s in (first, again, bad))


async def test_wait_for_intake_sees_receipts_another_process_stored(axis: Axis, tmp_path: Path) -> None:
    state = tmp_path / "g22"
    submission = await client(axis, G22, state).submit(signed_document(axis.pki, G22, [H41], 5), wait=10)
    this = AgencyClient(G22, _Unreachable(), verifier=axis.pki.verifier, state_dir=state)
    receipts = await this.wait_for_intake([submission], timeout=0.5)
    assert receipts[submission].outcome == "accepted"  # from the shared folder: Axis was not asked


async def test_a_replayed_hub_receipt_cannot_answer_another_submission(axis: Axis, tmp_path: Path) -> None:
    """Genuine hub-signed receipts of other submissions, presented as the answer to ours, change nothing."""
    sender = client(axis, G22, tmp_path / "g22")
    other = await sender.submit(signed_document(axis.pki, G22, [H41], 6), wait=10)
    refused = await sender.submit(document(G22, [H41], 7), wait=10)   # unsigned: refused
    other_receipt = (tmp_path / "g22" / "receipts" / f"intake_{other}.xml").read_bytes()
    refusal = (tmp_path / "g22" / "receipts" / f"intake_{refused}.xml").read_bytes()
    mine = "f" * 32
    replays = [Answer(mine, "refused", None, "AX301", "x", refusal),
               Answer(mine, "accepted", "x", None, None, other_receipt)]
    for answer in replays:
        intake = await sender._settle_answer(answer, "000.00.00.G22,2026/01/01,8/VPCP-TTĐT")
        assert intake.receipt is None and "AX412 RECEIPT_MISMATCH" in (intake.problem or ""), intake
    assert sender.receipts.intake(mine) is None


# ---------------------------------------------------------------- receiving

async def send(axis: Axis, pki: DevPKI, sender: str, recipients: list[str], number: int, state: Path,
               **options) -> tuple[bytes, str]:
    """Submit a signed document through the sender's client; (bytes, axis id)."""
    packet = signed_document(pki, sender, recipients, number, **options)
    submitter = client(axis, sender, state)
    submission = await submitter.submit(packet, wait=15)
    intake = (await submitter.intake([submission], 15))[submission]
    assert intake.outcome == "accepted", intake
    submitter.close()
    return packet, intake.axis_id


async def test_pull_stores_exact_bytes_and_acknowledges_with_a_verifiable_delivery_receipt(
        axis: Axis, tmp_path: Path) -> None:
    packet, axis_id = await send(axis, axis.pki, G22, [H41, H14], 10, tmp_path / "g22")
    out = tmp_path / "inbox"

    [got] = await client(axis, H41, tmp_path / "h41").pull(out, wait=0.5)

    assert (got.axis_id, got.kind, got.sender, got.duplicate) == (axis_id, "document", G22, False)
    assert (out / f"{axis_id}.edxml").read_bytes() == packet
    states = {d.recipient_code: d.state for d in axis.store.deliveries(axis_id)}
    assert states == {H41: "delivered", H14: "queued"}
    [receipt] = [r for r in axis.store.timeline(axis_id)[H41] if r.kind == "delivery"]
    result = axis.pki.verifier.verify_receipt(receipt.body)
    parsed = read_receipt(result.signed_root)
    assert result.signer_code == H41 and (parsed.kind, parsed.outcome, parsed.issuer) == ("delivery", "delivered", H41)
    assert parsed.axis_id == axis_id and parsed.digest == sha256(packet) and parsed.sender == G22
    assert await client(axis, H41, tmp_path / "h41").pull(out, wait=0.2) == []  # nothing waits any more


async def test_urgent_documents_are_taken_first(axis: Axis, tmp_path: Path) -> None:
    for n in range(3):
        await send(axis, axis.pki, G22, [H41], 20 + n, tmp_path / "g22")
    _, urgent = await send(axis, axis.pki, G22, [H41], 30, tmp_path / "g22", priority=3)
    receiver = client(axis, H41, tmp_path / "h41", concurrency=1)
    [first] = await receiver.pull(tmp_path / "inbox", wait=0.5, max_messages=1)
    assert first.axis_id == urgent
    assert len(await receiver.pull(tmp_path / "inbox", wait=0.3)) == 3


class _LosesAcks(Relay):
    """The first `lose` acknowledgement requests never arrive (the connection drops)."""

    def __init__(self, inner: Edge, lose: int) -> None:
        super().__init__(inner)
        self.lose = lose

    async def ack_many(self, items: Sequence[tuple[str, bytes | None]]) -> list:
        if self.lose > 0:
            self.lose -= 1
            raise EdgeUnavailable(0, "GW000", "connection reset (injected)")
        return await self.inner.ack_many(items)


class _Unreachable(Relay):
    """Any call fails the test: the answer must come from disk."""

    def __init__(self) -> None:
        super().__init__(self)

    def __getattribute__(self, name: str):
        if name in ("submit", "outcome", "inbox", "fetch", "fetch_many", "ack", "ack_many", "fail", "sent",
                    "receipts", "agencies"):
            raise AssertionError(f"Axis was asked ({name}) although the answer was on disk")
        return object.__getattribute__(self, name)


class _Tampering(Relay):
    """Serves what Axis served, changed by `change(body, headers)`."""

    def __init__(self, inner: Edge, change) -> None:
        super().__init__(inner)
        self.change = change

    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        body, headers = await self.inner.fetch(axis_id)
        return self.change(body, dict(headers))


class _Counts(Relay):
    """Counts the calls to the inner edge; `refuse_batches`: every batch of fetches is answered 413 per item."""

    def __init__(self, inner: Edge, *, refuse_batches: bool = False) -> None:
        super().__init__(inner)
        self.calls: collections.Counter[str] = collections.Counter()
        self.refuse_batches = refuse_batches

    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        self.calls["fetch"] += 1
        return await self.inner.fetch(axis_id)

    async def fetch_many(self, axis_ids: Sequence[str]) -> list:
        self.calls["fetch_many"] += 1
        if self.refuse_batches:
            return [EdgeRefused(413, "GW413", "does not fit (injected)") for _ in axis_ids]
        return await self.inner.fetch_many(axis_ids)

    async def ack_many(self, items: Sequence[tuple[str, bytes | None]]) -> list:
        self.calls["ack_many"] += 1
        return await self.inner.ack_many(items)


@pytest.mark.parametrize("refuse_batches", [False, True], ids=["batched", "each-alone-after-413"])
async def test_a_page_of_small_deliveries_is_fetched_and_acknowledged_in_one_request_each(
        axis: Axis, tmp_path: Path, refuse_batches: bool) -> None:
    sent = dict([await send(axis, axis.pki, G22, [H41], 60 + n, tmp_path / "g22") for n in range(5)][::-1])
    counting = _Counts(axis.edge(H41), refuse_batches=refuse_batches)
    receiver = AgencyClient(H41, counting, signer=axis.pki.signers[H41], verifier=axis.pki.verifier,
                            state_dir=tmp_path / "h41")
    got = await receiver.pull(tmp_path / "inbox", wait=0.3)
    assert sorted(r.axis_id for r in got) == sorted(sent.values())
    for packet, axis_id in sent.items():
        assert (tmp_path / "inbox" / f"{axis_id}.edxml").read_bytes() == packet
        assert {d.state for d in axis.store.deliveries(axis_id)} == {"delivered"}
    expected = {"fetch_many": 1, "fetch": 5 if refuse_batches else 0, "ack_many": 1}
    assert {k: counting.calls[k] for k in expected} == expected


class _Unavailable(Relay):
    """Fetching `axis_id` fails as an unreachable gateway does; everything else goes through."""

    def __init__(self, inner: Edge, axis_id: str) -> None:
        super().__init__(inner)
        self.axis_id = axis_id

    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        if axis_id == self.axis_id:
            raise EdgeUnavailable(0, "GW000", "connection refused (injected)")
        return await self.inner.fetch(axis_id)


async def test_what_a_page_stored_before_it_ended_on_an_error_is_acknowledged(axis: Axis, tmp_path: Path) -> None:
    first = [(await send(axis, axis.pki, G22, [H41], 80 + n, tmp_path / "g22"))[1] for n in range(2)]
    _, last = await send(axis, axis.pki, G22, [H41], 82, tmp_path / "g22")
    receiver = AgencyClient(H41, _Unavailable(axis.edge(H41), last), signer=axis.pki.signers[H41],
                            verifier=axis.pki.verifier, state_dir=tmp_path / "h41", concurrency=1)
    with pytest.raises(EdgeUnavailable):
        await receiver.pull(tmp_path / "inbox", wait=0.3)
    for axis_id in first:  # stored before the error, and acknowledged although the pull failed
        assert {d.state for d in axis.store.deliveries(axis_id)} == {"delivered"}
    assert {d.state for d in axis.store.deliveries(last)} == {"queued"}


async def test_a_packet_stored_but_not_acknowledged_is_stored_once_and_acknowledged_again(
        axis: Axis, tmp_path: Path) -> None:
    _, axis_id = await send(axis, axis.pki, G22, [H41], 40, tmp_path / "g22")
    out = tmp_path / "inbox"
    rejected: list[Rejection] = []
    losing = AgencyClient(H41, _LosesAcks(axis.edge(H41), 1), signer=axis.pki.signers[H41],
                          verifier=axis.pki.verifier, state_dir=tmp_path / "h41")
    [first] = await losing.pull(out, wait=0.3, on_rejected=rejected.append)
    assert not first.duplicate and [r.action for r in rejected] == ["retry"]
    assert "acknowledgement was not recorded" in rejected[0].reason
    assert {d.state for d in axis.store.deliveries(axis_id)} == {"queued"}
    (out / f"{axis_id}.edxml").rename(tmp_path / "taken-by-the-application.edxml")

    [again] = await client(axis, H41, tmp_path / "h41").pull(out, wait=0.3)

    assert again.duplicate and again.axis_id == axis_id
    assert list(out.iterdir()) == []  # not stored a second time, although the application took the first
    assert {d.state for d in axis.store.deliveries(axis_id)} == {"delivered"}
    [receipt] = [r for r in axis.store.timeline(axis_id)[H41] if r.kind == "delivery"]
    assert receipt.body == losing.ledger.stored(axis_id).receipt  # the same signed receipt, sent again


@pytest.mark.parametrize("change, expected", [
    (lambda body, headers: (body.replace(b"VPCP", b"VPCX"), headers), "ax-digest"),
    (lambda body, headers: (body, {**headers, wire.H_SEAL_TO: H14}), "sealed for 000.00.00.H14"),
    (lambda body, headers: (body, {k: v for k, v in headers.items() if k != wire.H_SEAL}), "carries no seal"),
], ids=["bytes-changed", "sealed-for-another", "no-seal"])
async def test_a_delivery_without_axis_seal_over_these_bytes_is_failed_at_once_and_never_stored(
        axis: Axis, tmp_path: Path, change, expected: str) -> None:
    _, axis_id = await send(axis, axis.pki, G22, [H41], 50, tmp_path / "g22")
    rejected: list[Rejection] = []
    receiver = AgencyClient(H41, _Tampering(axis.edge(H41), change), signer=axis.pki.signers[H41],
                            verifier=axis.pki.verifier, state_dir=tmp_path / "h41")
    assert await receiver.pull(tmp_path / "inbox", wait=0.3, on_rejected=rejected.append) == []
    assert [r.action for r in rejected] == ["fail"] and expected in rejected[0].reason
    assert "AX411 UNSEALED_DELIVERY" in rejected[0].reason
    assert list((tmp_path / "inbox").iterdir()) == []
    assert {d.state for d in axis.store.deliveries(axis_id)} == {"parked"}


async def test_a_delivery_that_keeps_failing_verification_is_parked_and_its_sender_gets_the_error_receipt(
        axis: Axis, tmp_path: Path) -> None:
    packet, axis_id = await send(axis, axis.pki, G22, [H41], 60, tmp_path / "g22")
    rejected: list[Rejection] = []
    receiver = client(axis, H41, tmp_path / "h41", max_attempts=3, retry_delay=0.05)
    receiver.verifier = axis.pki.other_roots  # its identity checked out; every packet signature now fails

    assert await receiver.pull(tmp_path / "inbox", wait=2.0, on_rejected=rejected.append) == []

    assert [r.action for r in rejected] == ["retry", "retry", "fail"]
    assert all("AX311 CERT_UNTRUSTED" in r.reason for r in rejected), rejected
    assert {d.state for d in axis.store.deliveries(axis_id)} == {"parked"}
    sender = client(axis, G22, tmp_path / "g22")
    [error] = await sender.collect_receipts()
    assert (error.signer_code, error.outcome, error.receipt.kind) == (HUB, "failed", "error")
    assert (error.receipt.axis_id, error.receipt.recipient, error.receipt.digest) == (axis_id, H41, sha256(packet))
    assert error.receipt.refusal_code == 500
    # Parked, not failed: the operator may replay it, so the sender keeps waiting for H41's answer.
    assert list(sender.journal.tracked()) == [axis_id]
    assert await sender.collect_receipts() == []

    # The operator replays it once H41 trusts the right root; H41 takes it; the sender gets its delivery receipt.
    with axis.store.write() as tx:
        assert replay(tx, axis_id, H41, actor="operator")
    receiver.verifier = axis.pki.verifier
    [received] = await receiver.pull(tmp_path / "inbox", wait=0.3)
    assert received.axis_id == axis_id and (tmp_path / "inbox" / f"{axis_id}.edxml").read_bytes() == packet
    [delivery] = await sender.collect_receipts()
    assert (delivery.receipt.kind, delivery.receipt.recipient, delivery.signer_code) == ("delivery", H41, H41)
    assert sender.journal.tracked() == {}  # every recipient answered
    [d] = axis.store.deliveries(axis_id)
    assert (d.state, d.attempts) == ("delivered", 1)


class _CountsTimelines(Relay):
    def __init__(self, inner: Edge) -> None:
        super().__init__(inner)
        self.timelines = 0

    async def receipts(self, axis_id: str) -> list[dict]:
        self.timelines += 1
        return await self.inner.receipts(axis_id)


async def test_collect_receipts_stores_each_recipients_delivery_receipt_once(axis: Axis, tmp_path: Path) -> None:
    _, axis_id = await send(axis, axis.pki, G22, [H41, H14], 70, tmp_path / "g22")
    counting = _CountsTimelines(axis.edge(G22))
    sender = AgencyClient(G22, counting, verifier=axis.pki.verifier, state_dir=tmp_path / "g22")
    assert await sender.collect_receipts() == []
    assert counting.timelines == 0  # nobody answered yet: `sent` said so, no timeline was asked for
    await client(axis, H41, tmp_path / "h41").pull(tmp_path / "h41-inbox", wait=0.3)
    got = await sender.collect_receipts()
    assert [(r.receipt.kind, r.receipt.recipient, r.signer_code) for r in got] == [("delivery", H41, H41)]
    assert list(sender.journal.tracked()) == [axis_id]
    await client(axis, H14, tmp_path / "h14").pull(tmp_path / "h14-inbox", wait=0.3)
    got = await sender.collect_receipts()
    assert [(r.receipt.kind, r.receipt.recipient) for r in got] == [("delivery", H14)]
    assert sender.journal.tracked() == {} and await sender.collect_receipts() == []
    assert sorted(p.name for p in (tmp_path / "g22" / "receipts").glob("delivery_*")) == sorted(
        f"delivery_{axis_id}_{code}.xml" for code in (H14, H41))


async def test_pull_takes_at_most_max_messages_and_leaves_the_rest(axis: Axis, tmp_path: Path) -> None:
    for n in range(5):
        await send(axis, axis.pki, G22, [H41], 80 + n, tmp_path / "g22")
    receiver = client(axis, H41, tmp_path / "h41", concurrency=1)
    assert len(await receiver.pull(tmp_path / "inbox", wait=2.0, max_messages=2)) == 2
    assert len(list((tmp_path / "inbox").glob("*.edxml"))) == 2
    assert len(await receiver.pull(tmp_path / "inbox", wait=0.3)) == 3
    assert len(receiver.received()) == 5


async def test_another_agency_cannot_see_fetch_or_acknowledge_a_delivery(axis: Axis, tmp_path: Path) -> None:
    _, axis_id = await send(axis, axis.pki, G22, [H41], 90, tmp_path / "g22")
    bystander = axis.edge(H14)
    assert (await bystander.inbox())[0] == []
    for call in (bystander.fetch(axis_id), bystander.ack(axis_id, None), bystander.fail(axis_id, "no"),
                 bystander.receipts(axis_id)):
        with pytest.raises(EdgeNotFound):
            await call
    assert {d.state for d in axis.store.deliveries(axis_id)} == {"queued"}


# ---------------------------------------------------------------- status packets

async def test_a_recipients_status_reaches_the_sender_right_after_its_pull(axis: Axis, tmp_path: Path) -> None:
    packet, axis_id = await send(axis, axis.pki, G22, [H41], 100, tmp_path / "g22")
    receiver = client(axis, H41, tmp_path / "h41")
    await receiver.pull(tmp_path / "inbox", wait=0.3)
    doc_id = load_packet(packet).document_id

    submission = await receiver.send_status(doc_id, "03", description="Đã tiếp nhận", wait=10)

    assert (await receiver.intake([submission], 10))[submission].outcome == "accepted"
    [status] = await client(axis, G22, tmp_path / "g22").pull(tmp_path / "g22-inbox", wait=0.5)
    assert (status.kind, status.status_code, status.sender, status.document_id) == ("status", "03", H41, doc_id)
    parsed = read_packet(axis.pki.verifier.verify(status.path.read_bytes()).signed_root)
    assert isinstance(parsed, StatusPacket) and parsed.description == "Đã tiếp nhận"
    assert {d.state for d in axis.store.deliveries(axis_id)} == {"accepted"}


async def test_send_status_looks_up_a_received_document_whose_id_is_not_in_the_standard_form(
        axis: Axis, tmp_path: Path) -> None:
    odd_id = "9fbfbad2-f1f8-4256-a2eb-50fb1061cddb"
    unsigned = document(G22, [H41], 110)
    original = load_packet(unsigned).document_id
    packet = axis.pki.signers[G22].sign(unsigned.replace(original.encode(), odd_id.encode()))
    submitter = client(axis, G22, tmp_path / "g22")
    sub = await submitter.submit(packet, wait=10)
    assert (await submitter.intake([sub], 10))[sub].outcome == "accepted"
    receiver = client(axis, H41, tmp_path / "h41")
    await receiver.pull(tmp_path / "inbox", wait=0.3)

    submission = await receiver.send_status(odd_id, "01", wait=10)
    assert (await receiver.intake([submission], 10))[submission].outcome == "accepted"
    [status] = await submitter.pull(tmp_path / "g22-inbox", wait=0.5)
    parsed = read_packet(axis.pki.verifier.verify(status.path.read_bytes()).signed_root)
    assert parsed.response_for.document_id == odd_id and parsed.response_for.organ_id == G22
    assert parsed.response_for.code == "110/VPCP-TTĐT"

    with pytest.raises(PacketError, match="no stored document has it"):
        await receiver.send_status("no-such-document", "01")


async def test_the_edge_answers_the_same_on_both_roads(axis: Axis, tmp_path: Path) -> None:
    """sent, receipts and agencies as the SDK sees them: plain values, bodies as bytes."""
    _, axis_id = await send(axis, axis.pki, G22, [H41], 120, tmp_path / "g22")
    edge = axis.edge(G22)
    items, following = await edge.sent()
    assert following is None and [i["axis_id"] for i in items] == [axis_id]
    assert items[0]["recipients"] == {H41: "queued"} and isinstance(items[0]["received_at"], str)
    [intake] = await edge.receipts(axis_id)
    assert intake["kind"] == "intake" and isinstance(intake["body"], bytes)
    assert read_receipt(intake["body"]).axis_id == axis_id
    assert {a["code"] for a in await edge.agencies()} >= {G22, H41, H14}
    listing, _ = await axis.edge(H41).inbox(wait=0)
    assert listing == [Waiting(axis_id, "document", G22, listing[0].document_id, 0, listing[0].size,
                               listing[0].digest, listing[0].received_at)]
    body, headers = await axis.edge(H41).fetch(axis_id)
    assert headers[wire.H_DIGEST] == sha256(body) == listing[0].digest
    assert {wire.H_SEAL, wire.H_SEAL_TO, wire.H_SEAL_CERT, wire.H_AXIS_ID} <= set(headers)


async def test_inbox_long_poll_returns_when_something_arrives(axis: Axis, tmp_path: Path) -> None:
    receiver = axis.edge(H41)
    waiting = asyncio.create_task(receiver.inbox(wait=15))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    _, axis_id = await send(axis, axis.pki, G22, [H41], 130, tmp_path / "g22")
    items, _ = await asyncio.wait_for(waiting, 10)
    assert [i.axis_id for i in items] == [axis_id]
