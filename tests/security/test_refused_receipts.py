"""Nothing refused is silent (issue 8, item 4), and a delivery receipt changes state only when it
matches the store (item 3).

Attack: a delivery receipt signed with a revoked certificate vanished into `axis.receipts.dlq`: the
delivery stayed as it was, nothing was logged. On the road of issue 9 there is no receipts queue:
the receipt comes with the recipient's ack (`POST /v1/inbox/{axis_id}/ack`) and the gateway
verifies and records it before it answers (`AgencyService.ack`, `record_delivery_receipt`). So a
refused receipt is refused to its sender, at once, with its code: 422 AX413 RECEIPT_REFUSED (the
revoked certificate's AX313 in the message) or AX412 RECEIPT_MISMATCH (a receipt for other bytes
than the sender signed, which is also audited as `delivery-digest-mismatch`: proof that the
recipient holds other bytes). Each refusal is a line of the gateway's access log naming the
credential, the agency and the 422. An agency that is not a recipient gets 404, as for an unknown
document. None of them moves the delivery or puts anything on the document's timeline, so the
sender hears of none of them; the recipient's genuine ack afterwards records the delivery.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from adapters.edge import EdgeNotFound, EdgeRefused
from axis.receipt import Receipt, build_receipt, now_utc
from axis.trust import Signer
from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H14, H41, TestPKI, document_id
from tests.e2e.test_delivery import send
from tests.security.support import as_agency, audited, states


def delivery_receipt(signer: Signer, recipient: str, axis_id: str, digest: str) -> bytes:
    receipt = Receipt(kind="delivery", outcome="delivered", issuer=recipient, time=now_utc(), axis_id=axis_id,
                      sender=G22, recipient=recipient, document_id=document_id(G22, 1), digest=digest)
    return signer.sign_receipt(build_receipt(receipt))


def test_refused_delivery_receipts_are_refused_at_the_ack_logged_and_change_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    # A second certificate for H41 from the trusted CA, revoked before the hub (and its gateway) starts.
    out = tmp_path / "revoked"
    assert deployment.cli("pki", "issue", H41, "--pki", str(e2e_pki.ca), "--out", str(out)).exit_code == 0
    assert deployment.cli("pki", "revoke", str(out / f"{H41}.cert.pem"), "--pki", str(e2e_pki.ca)).exit_code == 0
    shutil.copyfile(e2e_pki.ca / "crl.pem", deployment.data / "pki" / "crl.pem")
    revoked = Signer.from_files(out / f"{H41}.key.pem", out / f"{H41}.cert.pem")

    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41], 1))
    digest = hashlib.sha256(packet.read_bytes()).hexdigest()
    hub = deployment.serve()
    [answer] = send(deployment, packet)
    axis_id = answer["axis_id"]

    cases = {"revoked": (delivery_receipt(revoked, H41, axis_id, digest), "AX413", "AX313"),
             "other-bytes": (delivery_receipt(e2e_pki.signer(H41), H41, axis_id, "0" * 64), "AX412", "digest")}

    async def ack(edge: Any) -> dict[str, tuple[int, str, str]]:
        answers = {}
        for name, (body, _, _) in cases.items():
            try:
                answers[name] = (200, "acknowledged", str(await edge.ack(axis_id, body)))
            except EdgeRefused as refused:
                answers[name] = (refused.status, refused.code, refused.message)
        return answers
    answers = as_agency(deployment, H41, ack)
    for name, (_, code, detail) in cases.items():
        status, got, message = answers[name]
        assert (status, got) == (422, code) and detail in message, (name, answers[name])

    async def not_a_recipient(edge: Any) -> None:
        try:
            await edge.ack(axis_id, delivery_receipt(e2e_pki.signer(H14), H14, axis_id, digest))
        except EdgeNotFound:
            return
        raise AssertionError("H14, no recipient of the document, could acknowledge it")
    as_agency(deployment, H14, not_a_recipient)

    # Logged: the gateway's access log names each refused ack's credential, agency and refusal code.
    with deployment.store() as store:
        credentials = {c.agency_code: c.id for c in store.list_credentials() if c.agency_code in (H41, H14)}
    log = hub.stderr().splitlines()
    if deployment.road == "gateway":  # acknowledged through POST /v1/inbox/ack: its line counts each outcome
        refused = [line for line in log
                   if "POST /v1/inbox/ack 200" in line and ("AX413=1" in line or "AX412=1" in line)]
        assert len(refused) == len(cases) and all(credentials[H41] in line and H41 in line for line in refused), \
            "\n".join(log[-40:])
        assert [line for line in log if "POST /v1/inbox/ack 200" in line and "GW404=1" in line
                and credentials[H14] in line], "\n".join(log[-40:])
    # Audited where it is evidence: the recipient signed for other bytes than the sender signed.
    assert [(e["recipient"], e["received"]) for e in audited(deployment, "delivery-digest-mismatch")] == \
        [(H41, "0" * 64)]

    # Nothing changed: the delivery still waits, the timeline shows no delivery and no error for H41.
    assert states(deployment, axis_id) == {H41: "queued"}
    with deployment.store() as store:
        assert [r.kind for r in store.receipts(axis_id)] == ["intake"]
    assert [e for e in audited(deployment, "delivered") if e["recipient"] == H41] == []

    # H41's genuine receipt, sent with its ack, is recorded: the refusals were about the receipts.
    async def genuine(edge: Any) -> dict[str, Any]:
        return await edge.ack(axis_id, delivery_receipt(e2e_pki.signer(H41), H41, axis_id, digest))
    assert as_agency(deployment, H41, genuine)["state"] == "delivered"
    with deployment.store() as store:
        assert sorted(r.kind for r in store.receipts(axis_id)) == ["delivery", "intake"]
