"""Forged dead letters: an attacker who can write to the broker parks messages in `<code>.dlq`.

Issue 8: a forged dead letter on `<code>.dlq` turned a delivery into `failed`, with a hub-signed
AX500 to the sender, and it stayed `failed` after the recipient really stored the document. Now a
dead letter changes state only when it matches what the store holds (axis id, the agency whose queue
it died on, SHA-256 of the body); anything else is one AX415 refusal in the audit log. And a
recipient's verified delivery receipt wins over `failed`: the recipient has the bytes.

The attacker uses the transport API only: publish a message (urgent, so it is handed out first) to
the agency's queue, take it, and dead-letter it, which parks it in `<code>.dlq` exactly as a failing
adapter would.
"""
from __future__ import annotations

import json
from pathlib import Path

from axis import wire
from axis.refusals import RefusalCode
from axis.transport import Transport
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G17, G22, H41, TestPKI, document_id, sha256
from tests.e2e.test_delivery import pull, send, stored_paths
from tests.e2e.test_statuses import timeline
from tests.transport.support import take


def forge(deployment: Deployment, letters: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """Park each (queue, body, headers) in `<queue>.dlq` through the transport API, as an attacker would."""
    async def attack(transport: Transport) -> None:
        for n, (queue, body, headers) in enumerate(letters):
            await transport.publish(queue, body, message_id=f"forged-{n}", priority=4, headers=headers)
            async with transport.consume(queue, prefetch=1) as consumer:
                [delivery] = await take(consumer, 1, 30)
                assert delivery.message_id == f"forged-{n}"  # urgent: ahead of the genuine delivery
                await delivery.dead_letter("cannot store: disk full")

    deployment.transport_call(attack)


def recipient_state(deployment: Deployment, code: str) -> dict:
    [recipient] = [r for r in timeline(deployment, document_id(G22, 1))["recipients"] if r["recipient"] == code]
    return recipient


def published(deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> tuple[bytes, str]:
    """A document from G22 to H41, sent through `axis serve` and published to H41: (bytes, axis id)."""
    packet = e2e_pki.document(G22, [H41], 1)
    (tmp_path / "letter.edxml").write_bytes(packet)
    deployment.serve()
    [sent] = send(deployment, tmp_path / "letter.edxml")
    wait_until(lambda: recipient_state(deployment, H41)["state"] == "published", "the delivery to be published")
    return packet, sent["axis_id"]


def refusals(deployment: Deployment) -> list[dict]:
    with deployment.store() as store:
        return [e.data for e in store.audit_entries() if e.action == "dead-letter-refused"]


def test_forged_dead_letters_move_no_state_and_the_genuine_delivery_still_completes(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet, axis_id = published(deployment, e2e_pki, tmp_path)

    claims = {wire.H_AXIS_ID: axis_id, wire.H_SENDER: G22, wire.H_DIGEST: sha256(packet)}
    other_bytes = packet.replace(b"</edXML:Subject>", b" (forged)</edXML:Subject>", 1)
    assert other_bytes != packet
    forge(deployment, [
        (wire.inbox_queue(H41), other_bytes, claims),                                     # the bytes differ
        (wire.inbox_queue(H41), packet, {**claims, wire.H_AXIS_ID: wire.new_axis_id()}),  # no such document
        (wire.inbox_queue(G17), packet, claims),                                          # never sent to G17
    ])

    refused = wait_until(lambda: len(found := refusals(deployment)) >= 3 and found, "three refusals")
    assert len(refused) == 3
    assert {r["code"] for r in refused} == {RefusalCode.DEAD_LETTER_UNMATCHED.number}
    assert sorted(r["queue"] for r in refused) == sorted([H41, H41, G17])
    # Nothing moved: no failure, no error receipt, nothing for the sender.
    recipient = recipient_state(deployment, H41)
    assert recipient["state"] == "published" and recipient["receipts"] == []
    with deployment.store() as store:
        assert [r.kind for r in store.receipts(axis_id)] == ["intake"]
        assert not [e for e in store.audit_entries() if e.action == "delivery-failed"]
    # The forgeries stay parked where the operator sees them.
    listed = deployment.cli("dlq", "list", H41, "--json")
    assert listed.exit_code == 0, listed
    assert sorted(row["message_id"] for row in json.loads(listed.stdout)) == ["forged-0", "forged-1"]

    # The genuine delivery was never disturbed: the recipient takes it, and it is delivered.
    outcome = pull(deployment, H41, tmp_path / H41, "--max", "1")
    assert stored_paths(outcome) == [tmp_path / H41 / f"{axis_id}.edxml"]
    assert (tmp_path / H41 / f"{axis_id}.edxml").read_bytes() == packet
    wait_until(lambda: recipient_state(deployment, H41)["state"] == "delivered", "the delivery receipt")
    assert len(refusals(deployment)) == 3  # each forgery refused once, not once per look


def test_a_copy_of_the_genuine_delivery_dead_lettered_cannot_outlast_the_recipients_receipt(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    # An attacker holding the broker can copy the genuine bytes: such a letter matches the store, so the
    # hub records a failure. But the recipient really stores the document, and its verified delivery
    # receipt moves `failed` on to `delivered`.
    packet, axis_id = published(deployment, e2e_pki, tmp_path)

    forge(deployment, [(wire.inbox_queue(H41), packet,
                        {wire.H_AXIS_ID: axis_id, wire.H_SENDER: G22, wire.H_DIGEST: sha256(packet)})])
    wait_until(lambda: recipient_state(deployment, H41)["state"] == "failed", "the copied letter to be recorded")

    pull(deployment, H41, tmp_path / H41, "--max", "1")
    assert (tmp_path / H41 / f"{axis_id}.edxml").read_bytes() == packet
    delivered = wait_until(lambda: (r := recipient_state(deployment, H41))["state"] == "delivered" and r,
                           "the recipient's receipt to win over failed")
    assert [r["kind"] for r in delivered["receipts"]] == ["error", "delivery"]
    assert refusals(deployment) == []
