"""A delivery the recipient can never take ends in its dead-letter queue, and the sender learns it.

The recipient here trusts another root than the axis does, so it cannot
verify what it is given and asks for a retry each time. `axis inbox pull`
offers no way to shorten its retry backoff (the transport's default is 10 s
doubling over 6 attempts, about 5 minutes), so the recipient is the SDK
(`AgencyClient`) on a transport with a short `RetryPolicy`; the hub, the sender
and the operator view are the real commands.
"""
from __future__ import annotations

import json
from pathlib import Path

from adapters.client import AgencyClient, Received, ReceivedReceipt, Rejection
from axis import wire
from axis.refusals import RefusalCode
from axis.transport import DeadLetter, RetryPolicy, Transport
from axis.trust import Verifier
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G22, H41, HUB, TestPKI, document_id, sha256
from tests.e2e.test_delivery import send
from tests.e2e.test_statuses import timeline

POLICY = RetryPolicy(base_delay=0.05, max_attempts=3)  # dead-lettered within ~0.2 s


def test_a_delivery_that_keeps_failing_is_dead_lettered_with_an_error_receipt_to_the_sender(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet = e2e_pki.document(G22, [H41], 1)
    (tmp_path / "letter.edxml").write_bytes(packet)
    deployment.serve()
    [sent] = send(deployment, tmp_path / "letter.edxml")
    axis_id = sent["axis_id"]

    async def recipient_that_cannot_verify(transport: Transport) -> tuple[list[Received], list[Rejection]]:
        wrong_roots = Verifier.from_files(e2e_pki.other_ca / "ca.pem", e2e_pki.other_ca / "crl.pem")
        rejected: list[Rejection] = []
        async with AgencyClient(H41, transport, signer=e2e_pki.signer(H41), verifier=e2e_pki.verifier(),
                                state_dir=deployment.data / "agencies" / H41) as client:
            # Its identity and the hub's seal check out; then every packet signature fails to verify.
            client.verifier = wrong_roots
            received = await client.pull(tmp_path / H41, wait=20.0, max_messages=POLICY.max_attempts,
                                         on_rejected=rejected.append)
        return received, rejected

    received, rejected = deployment.transport_call(recipient_that_cannot_verify, retry=POLICY)
    assert received == [] and list((tmp_path / H41).iterdir()) == []
    assert [r.action for r in rejected] == ["retry"] * POLICY.max_attempts
    assert {r.message_id for r in rejected} == {wire.delivery_message_id(axis_id, H41)}
    assert all(RefusalCode.CERT_UNTRUSTED.label in r.reason for r in rejected), rejected

    async def dead_letters(transport: Transport) -> list[DeadLetter]:
        return await transport.dead_letters(wire.inbox_queue(H41))

    [letter] = deployment.transport_call(dead_letters)
    assert letter.body == packet and letter.headers[wire.H_AXIS_ID] == axis_id
    assert letter.attempts == POLICY.max_attempts

    # The hub takes the letter from the dead-letter feed, marks the delivery failed, signs an error receipt...
    [recipient] = wait_until(
        lambda: [rec for rec in timeline(deployment, document_id(G22, 1))["recipients"] if rec["state"] == "failed"],
        "the hub to record the delivery as failed")
    assert recipient["recipient"] == H41
    failed = str(RefusalCode.DELIVERY_FAILED.number)
    assert [(r["kind"], r["code"]) for r in recipient["receipts"]] == [("error", failed)]

    # ...and sends it to the sender, who verifies it was signed by the hub.
    async def sender_receipts(transport: Transport) -> list[ReceivedReceipt]:
        async with AgencyClient(G22, transport, verifier=e2e_pki.verifier(),
                                state_dir=deployment.data / "agencies" / G22) as client:
            return await client.collect_receipts(20.0, max_messages=1)

    [error] = deployment.transport_call(sender_receipts)
    assert (error.signer_code, error.outcome) == (HUB, "failed")
    assert (error.receipt.kind, error.receipt.axis_id, error.receipt.recipient) == ("error", axis_id, H41)
    assert error.receipt.refusal_code == RefusalCode.DELIVERY_FAILED.number
    assert error.receipt.digest == sha256(packet)

    # The operator sees it parked, with why and after how many attempts; listing takes nothing away.
    for _ in range(2):
        listed = deployment.cli("dlq", "list", H41, "--json")
        assert listed.exit_code == 0, listed
        [parked] = json.loads(listed.stdout)
        assert (parked["axis_id"], parked["sender"], parked["attempts"]) == (axis_id, G22, POLICY.max_attempts)
        assert RefusalCode.CERT_UNTRUSTED.label in parked["reason"] and parked["bytes"] == len(packet)
    assert "no dead letters" in deployment.cli("dlq", "list", G22).stdout

    audit = deployment.cli("audit", "verify", "--json")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["ok"], audit
