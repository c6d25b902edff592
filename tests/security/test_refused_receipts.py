"""Nothing refused is silent (issue 8, item 4), and a delivery receipt changes state only when it
matches the store (item 3).

Attack: a delivery receipt signed with a revoked certificate vanished into `axis.receipts.dlq`:
the delivery stayed `published`, nothing was logged. Now each refused delivery receipt shows in
the hub's log (one warning line with its code), on the document's timeline (`axis receipts`, an
`error` record for that recipient) and in the dead-letter queue of `axis.receipts`, with its code.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from axis import wire
from axis.receipt import Receipt, build_receipt, now_utc
from axis.transport import DeadLetter, Transport
from axis.trust import Signer
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G22, H14, H41, TestPKI, document_id
from tests.e2e.test_delivery import send


def delivery_receipt(signer: Signer, recipient: str, axis_id: str, digest: str) -> bytes:
    receipt = Receipt(kind="delivery", outcome="delivered", issuer=recipient, time=now_utc(), axis_id=axis_id,
                      sender=G22, recipient=recipient, document_id=document_id(G22, 1), digest=digest)
    return signer.sign_receipt(build_receipt(receipt))


def publish_receipt(deployment: Deployment, name: str, body: bytes, axis_id: str, recipient: str) -> None:
    async def action(transport: Transport) -> None:
        await transport.publish(wire.RECEIPTS_QUEUE, body, message_id=name,
                                headers={wire.H_KIND: "receipt", wire.H_RECEIPT_KIND: "delivery",
                                         wire.H_AXIS_ID: axis_id, wire.H_SENDER: G22, wire.H_RECIPIENT: recipient})
    deployment.transport_call(action)


def dead_letters(deployment: Deployment) -> list[DeadLetter]:
    async def action(transport: Transport) -> list[DeadLetter]:
        return await transport.dead_letters(wire.RECEIPTS_QUEUE)
    return deployment.transport_call(action)


def test_refused_delivery_receipts_are_logged_on_the_timeline_and_dead_lettered(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    # A second certificate for H41 from the trusted CA, revoked before the hub starts.
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

    cases = {
        "revoked": (delivery_receipt(revoked, H41, axis_id, digest), H41, "AX413 RECEIPT_REFUSED: AX313"),
        "other-bytes": (delivery_receipt(e2e_pki.signer(H41), H41, axis_id, "0" * 64), H41, "AX412"),
        "not-a-recipient": (delivery_receipt(e2e_pki.signer(H14), H14, axis_id, digest), H14, "AX412"),
    }
    for name, (body, recipient, _) in cases.items():
        publish_receipt(deployment, name, body, axis_id, recipient)

    letters = wait_until(lambda: (found := dead_letters(deployment)) and len(found) == len(cases) and found,
                         "the refused receipts to be dead-lettered")
    assert {letter.message_id: letter.reason.split()[0] for letter in letters} == {
        name: expected.split()[0] for name, (_, _, expected) in cases.items()}
    [revoked_letter] = [letter for letter in letters if letter.message_id == "revoked"]
    assert revoked_letter.reason.startswith(cases["revoked"][2]), revoked_letter.reason

    log = hub.stderr()
    for name, (_, _, expected) in cases.items():
        [line] = [line for line in log.splitlines() if f"delivery receipt {name} refused" in line]
        assert expected.split()[0] in line, line

    timeline = deployment.cli("receipts", document_id(G22, 1), "--json")
    [document] = json.loads(timeline.stdout)
    [h41] = document["recipients"]
    assert h41["recipient"] == H41 and h41["state"] == "published", h41
    assert sorted((r["kind"], r["code"]) for r in h41["receipts"]) == [("error", "412"), ("error", "413")], h41
    with deployment.store() as store:
        refused = [e.data for e in store.audit_entries() if e.action == "receipt-refused"]
    assert sorted(e["code"] for e in refused) == [412, 412, 413]
    # The sender heard of none of them: no delivery receipt was forwarded.
    assert deployment.depths(wire.receipts_queue(G22)) == {wire.receipts_queue(G22): 0}
