"""Nothing on a queue is trusted because it is there (issue 8, item 3): forged messages written
straight onto the broker, on both transports, change no state.

- a packet published onto another agency's queue `<code>` under a made-up axis id was stored by
  that agency's adapter: every delivery now carries Axis's seal, and one without it is
  dead-lettered (AX411) and never stored;
- junk on `axis.intake` with a reply-to of another agency's receipts queue made the hub send that
  agency signed refusal receipts: receipts go only to the (claimed) sender's own queue, and junk
  nobody can be told about is recorded and dead-lettered on `axis.intake` (AX414);
- forged receipts on `<code>.receipts` (not signed by the hub, or about another agency's packet)
  are dead-lettered by the SDK and change nothing in the agency's state.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from axis import wire
from axis.receipt import Receipt, build_receipt, now_utc
from axis.seal import Sealer
from axis.transport import DeadLetter, Transport
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G22, H14, H41, H99, HUB, SUBJECT, TestPKI, unsigned_document
from tests.e2e.test_delivery import send


def publish(deployment: Deployment, queue: str, body: bytes, message_id: str, headers: dict[str, str]) -> None:
    async def action(transport: Transport) -> None:
        await transport.publish(queue, body, message_id=message_id, headers=headers)
    deployment.transport_call(action)


def dead_letters(deployment: Deployment, queue: str) -> list[DeadLetter]:
    async def action(transport: Transport) -> list[DeadLetter]:
        return await transport.dead_letters(queue)
    return deployment.transport_call(action)


def test_a_packet_published_onto_an_agencys_queue_without_axiss_seal_is_never_stored(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    packet = e2e_pki.document(G22, [H41], 1)  # genuinely signed by its sender: only the routing is forged
    digest = hashlib.sha256(packet).hexdigest()
    hub = Sealer.from_files(e2e_pki.key(HUB), e2e_pki.cert(HUB))
    agency = Sealer.from_files(e2e_pki.key(G22), e2e_pki.cert(G22))

    def sealed(sealer: Sealer, axis_id: str, to: list[str], digest: str) -> dict[str, str]:
        return sealer.certificate.attach(sealer.seal(axis_id, to, digest))  # as the relay publishes it

    seals = {
        "unsealed": lambda axis_id: {},
        "sealed-by-an-agency": lambda axis_id: sealed(agency, axis_id, [H41], digest),
        "sealed-for-another-recipient": lambda axis_id: sealed(hub, axis_id, [H14], digest),
        "recipient-added-to-the-seal": lambda axis_id: {**sealed(hub, axis_id, [H14], digest),
                                                        wire.H_SEAL_TO: f"{H14},{H41}"},
        "sealed-for-other-bytes": lambda axis_id: sealed(hub, axis_id, [H41], "0" * 64),
        "seal-of-another-delivery": lambda axis_id: sealed(hub, wire.new_axis_id(), [H41], digest),
        "certificate-named-not-attached": lambda axis_id: hub.seal(axis_id, [H41], digest),
    }
    for name, seal in seals.items():
        axis_id = wire.new_axis_id()
        publish(deployment, wire.inbox_queue(H41), packet, wire.delivery_message_id(axis_id, H41),
                {wire.H_AXIS_ID: axis_id, wire.H_KIND: "document", wire.H_SENDER: G22, wire.H_RECIPIENT: H41,
                 wire.H_DOCUMENT_ID: name, wire.H_DIGEST: digest, **seal(axis_id)})

    out = tmp_path / H41
    pulled = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1")
    assert pulled.exit_code == 1 and pulled.lines() == [], pulled
    assert pulled.stderr.count("AX411 UNSEALED_DELIVERY") == len(seals) and "(dead-letter)" in pulled.stderr
    assert not out.exists() or list(out.iterdir()) == []
    letters = dead_letters(deployment, wire.inbox_queue(H41))
    assert sorted(letter.headers[wire.H_DOCUMENT_ID] for letter in letters) == sorted(seals)
    assert all(letter.reason.startswith("AX411") for letter in letters)
    # The hub's dead-letter sweep finds no document of its own behind them: no state, no error receipt.
    with deployment.store() as store:
        assert store.list_deliveries() == []
    assert deployment.depths(wire.receipts_queue(G22)) == {wire.receipts_queue(G22): 0}


def test_junk_on_intake_with_a_foreign_reply_to_sends_that_agency_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    foreign = wire.receipts_queue(H14)
    tampered = e2e_pki.document(G22, [H41], 1).replace(SUBJECT.encode(), SUBJECT.replace("nghiệm", "nghiện").encode())
    junk = {"junk": b"<junk/>",
            "unregistered": unsigned_document(H99, [H41], 2),   # claims a sender nobody registered
            "tampered": tampered}                               # claims G22: at most G22 hears of it
    for name, body in junk.items():
        publish(deployment, wire.INTAKE_QUEUE, body, name, {wire.H_SUBMISSION: name, wire.H_REPLY_TO: foreign})

    letters = wait_until(lambda: (found := dead_letters(deployment, wire.INTAKE_QUEUE)) and len(found) >= 2 and found,
                         "the junk to be dead-lettered on axis.intake")
    assert sorted(letter.message_id for letter in letters) == ["junk", "unregistered"]
    assert all(letter.reason.startswith("AX414 SENDER_UNKNOWN") for letter in letters), letters
    with deployment.store() as store:
        refused = wait_until(lambda: [e.data for e in store.audit_entries() if e.action == "refused"] or None,
                             "the refusals to be recorded")
        assert len(refused) == 3 and {e["reply_to"] for e in refused} == {foreign}
        assert {e["code"] for e in refused} >= {301}
    wait_until(lambda: deployment.depths(wire.receipts_queue(G22))[wire.receipts_queue(G22)] == 1,
               "G22's refusal receipt for the tampered packet")
    assert deployment.depths(foreign, wire.receipts_queue(H41)) == {foreign: 0, wire.receipts_queue(H41): 0}


def test_forged_receipts_on_an_agencys_receipts_queue_change_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()

    def receipt(signed_by: str, issuer: str, sender: str) -> bytes:
        body = Receipt(kind="intake", outcome="accepted", issuer=issuer, time=now_utc(), axis_id=wire.new_axis_id(),
                       submission=f"forged-{signed_by}-{sender}", sender=sender, document_id="x")
        return e2e_pki.signer(signed_by).sign_receipt(build_receipt(body))

    forged = {"signed-by-an-agency": receipt(G22, G22, G22),                # not the hub's
              "issuer-not-signer": receipt(G22, HUB, G22),                  # claims the hub, signed by G22
              "about-another-agency": receipt(HUB, HUB, H14)}               # the hub's, but not for G22
    for name, body in forged.items():
        publish(deployment, wire.receipts_queue(G22), body, name, {wire.H_RECEIPT_KIND: "intake",
                                                                      wire.H_SUBMISSION: f"forged-{name}"})
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41], 1))
    [answer] = send(deployment, packet)  # collects G22's receipts queue, forged ones included
    assert answer["outcome"] == "accepted"

    receipts = deployment.data / "agencies" / G22 / "receipts"
    assert sorted(p.name for p in receipts.iterdir()) == [f"intake_{answer['submission']}.xml"]
    letters = dead_letters(deployment, wire.receipts_queue(G22))
    assert sorted(letter.message_id for letter in letters) == sorted(forged)
