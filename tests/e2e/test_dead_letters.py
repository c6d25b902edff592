"""A delivery the recipient can never take is reported failed, and the sender learns it with a signed receipt.

The recipient here trusts another root than the axis does, so it cannot verify
what it is given. `axis inbox pull` tries a delivery that fails verification
`max_attempts` times (1 s apart, doubling) before it reports it failed; to keep
this test short the recipient is the SDK (`AgencyClient`, 0.05 s apart) on the
same road its commands take (`Deployment.edge`); the hub, the sender and the
operator view are the real commands.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from adapters.client import AgencyClient, Received, ReceivedReceipt, Rejection
from axis.refusals import RefusalCode
from axis.trust import Verifier
from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H41, HUB, TestPKI, document_id, sha256
from tests.e2e.test_delivery import send
from tests.e2e.test_statuses import timeline

ATTEMPTS = 3


def test_a_delivery_that_keeps_failing_is_reported_failed_with_an_error_receipt_to_the_sender(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet = e2e_pki.document(G22, [H41], 1)
    (tmp_path / "letter.edxml").write_bytes(packet)
    deployment.serve()
    [sent] = send(deployment, tmp_path / "letter.edxml")
    axis_id = sent["axis_id"]

    async def recipient_that_cannot_verify() -> tuple[list[Received], list[Rejection]]:
        wrong_roots = Verifier.from_files(e2e_pki.other_ca / "ca.pem", e2e_pki.other_ca / "crl.pem")
        rejected: list[Rejection] = []
        async with deployment.edge(H41) as edge:
            client = AgencyClient(H41, edge, signer=e2e_pki.signer(H41), verifier=e2e_pki.verifier(),
                                  state_dir=deployment.data / "agencies" / H41, max_attempts=ATTEMPTS,
                                  retry_delay=0.05)
            # Its identity and the hub's seal check out; then every packet signature fails to verify.
            client.verifier = wrong_roots
            try:
                received = await client.pull(tmp_path / H41, wait=5.0, on_rejected=rejected.append)
            finally:
                client.close()
        return received, rejected

    received, rejected = asyncio.run(recipient_that_cannot_verify())
    assert received == [] and list((tmp_path / H41).iterdir()) == []
    assert [r.action for r in rejected] == ["retry"] * (ATTEMPTS - 1) + ["fail"]
    assert {r.axis_id for r in rejected} == {axis_id}
    assert all(RefusalCode.CERT_UNTRUSTED.label in r.reason for r in rejected), rejected

    # The delivery is failed, with an error receipt the hub's key signed, on the document's timeline...
    [recipient] = timeline(deployment, document_id(G22, 1))["recipients"]
    assert (recipient["recipient"], recipient["state"]) == (H41, "failed")
    failed = str(RefusalCode.DELIVERY_FAILED.number)
    assert [(r["kind"], r["code"]) for r in recipient["receipts"]] == [("error", failed)]

    # ...and the sender's SDK collects it (its journal tracks what `axis send` had accepted) and verifies it.
    async def sender_receipts() -> list[ReceivedReceipt]:
        async with deployment.edge(G22) as edge:
            client = AgencyClient(G22, edge, verifier=e2e_pki.verifier(),
                                  state_dir=deployment.data / "agencies" / G22)
            try:
                return await client.collect_receipts()
            finally:
                client.close()

    [error] = asyncio.run(sender_receipts())
    assert (error.signer_code, error.outcome) == (HUB, "failed")
    assert (error.receipt.kind, error.receipt.axis_id, error.receipt.recipient) == ("error", axis_id, H41)
    assert error.receipt.refusal_code == RefusalCode.DELIVERY_FAILED.number
    assert error.receipt.digest == sha256(packet)
    assert RefusalCode.CERT_UNTRUSTED.label in (error.receipt.refusal_detail or "")

    # Nothing waits for H41 any more; the operator still sees the failed delivery.
    with deployment.store() as store:
        assert store.inbox(H41) == []
        assert [d.state for d in store.deliveries(axis_id)] == ["failed"]
    audit = deployment.cli("audit", "verify", "--json")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["ok"], audit

