"""Who may move a delivery's state: a rule per status code (issue 8, item 2).

Attack: a business status 06 from an agency that never received the document (the delivery to it
was never stored by its adapter) was accepted and moved the delivery to `done`. Now a recipient's
status counts only once its delivery receipt is recorded (its ack through the gateway), a recall
only from the sender, and a copy of a delivery receipt carried with a status (`ax-delivery-receipt`,
which no gateway or SDK sends any more: only a message written straight onto `axis.intake` can
carry one) only when it verifies and matches the store.
"""
from __future__ import annotations

import json
from pathlib import Path

from axis.refusals import RefusalCode
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G22, H14, H41, TestPKI, document_id
from tests.e2e.test_delivery import pull, send, stored_paths


def status(deployment: Deployment, about: str, sender: str, code: str) -> dict:
    outcome = deployment.cli("status", "send", about, "--from", sender, "--code", code,
                             *deployment.agency_files(sender), "--json")
    return {"exit": outcome.exit_code, **json.loads(outcome.stdout)}


def states(deployment: Deployment, about: str) -> dict[str, str]:
    outcome = deployment.cli("receipts", about, "--json")
    assert outcome.exit_code == 0, outcome
    [document] = json.loads(outcome.stdout)
    return {rec["recipient"]: rec["state"] for rec in document["recipients"]}


def test_a_business_status_from_a_recipient_that_never_stored_the_document_is_refused(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41, H14], 1))
    about = document_id(G22, 1)
    deployment.serve()
    send(deployment, packet)
    # H14 really stores it; H41's copy waits in its inbox (the store), never fetched, never receipted.
    assert len(stored_paths(pull(deployment, H14, tmp_path / H14, "--max", "1"))) == 1

    for code in ("06", "01", "15"):
        answer = status(deployment, about, H41, code)
        assert answer["exit"] == 1 and answer["outcome"] == "refused", answer
        assert answer["refusal"]["code"] == RefusalCode.STATUS_BEFORE_RECEIPT.number, answer

    assert states(deployment, about)[H41] == "queued"
    # Not silent: the refusal is on H41's line of the document's timeline (once per code) and in the hub's log.
    outcome = deployment.cli("receipts", about, "--json")
    [document] = json.loads(outcome.stdout)
    [h41] = [rec for rec in document["recipients"] if rec["recipient"] == H41]
    assert [(r["kind"], r["code"]) for r in h41["receipts"]] == [("error", "409")], h41
    assert deployment.hubs[0].stderr().count("refused: AX409 STATUS_BEFORE_RECEIPT") == 3
    with deployment.store() as store:
        refused = [entry.data for entry in store.audit_entries() if entry.action == "refused"]
    assert [entry["code"] for entry in refused] == [RefusalCode.STATUS_BEFORE_RECEIPT.number] * 3
    assert {entry["sender"] for entry in refused} == {H41}


def test_a_recall_comes_only_from_the_original_sender(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41], 1))
    about = document_id(G22, 1)
    deployment.serve()
    send(deployment, packet)
    assert len(stored_paths(pull(deployment, H41, tmp_path / H41, "--max", "1"))) == 1

    answer = status(deployment, about, H41, "13")
    assert answer["outcome"] == "refused" and answer["refusal"]["code"] == RefusalCode.NOT_ALLOWED.number, answer
    # The recipient that stored it may say where it stands: accepted once its delivery receipt is recorded.
    wait_until(lambda: states(deployment, about)[H41] == "delivered", "H41's delivery receipt to be recorded")
    answer = status(deployment, about, H41, "06")
    assert answer["outcome"] == "accepted", answer
    assert states(deployment, about)[H41] == "done"


def test_a_status_written_onto_intake_with_a_receipt_in_a_header_still_needs_a_recorded_ack(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    """A status counts only once the recipient's ack is recorded in the store. Before issue 9 a status
    could carry a copy of its sender's delivery receipt (`ax-delivery-receipt`), because the receipt and
    the status travelled on different queues; acks are now recorded before the gateway answers, so the
    hub reads no such header. Here a broker writer puts H41's status on `axis.intake` with a genuine,
    matching receipt in that header: refused AX409 all the same. Once H41 acks, its status counts."""
    import base64
    import hashlib

    from axis import wire
    from axis.edxml import DocumentPacket, Organization, StatusCode, load_packet, packet_to_bytes
    from axis.edxml.compose import new_status
    from axis.receipt import Receipt, build_receipt, now_utc
    from tests.security.support import publish

    packet = e2e_pki.document(G22, [H41], 1)
    about = document_id(G22, 1)
    deployment.serve()
    (tmp_path / "letter.edxml").write_bytes(packet)
    [sent] = send(deployment, tmp_path / "letter.edxml")
    receipt = e2e_pki.signer(H41).sign_receipt(build_receipt(Receipt(
        kind="delivery", outcome="delivered", issuer=H41, time=now_utc(), axis_id=sent["axis_id"], sender=G22,
        recipient=H41, document_id=about, digest=hashlib.sha256(packet).hexdigest())))

    original = load_packet(packet)
    assert isinstance(original, DocumentPacket)

    def status(code: str) -> bytes:
        return e2e_pki.signer(H41).sign(packet_to_bytes(new_status(Organization(H41), original, StatusCode(code))))
    publish(deployment, wire.INTAKE_QUEUE, status("06"), "with-a-receipt-header",
            {wire.H_SUBMISSION: "with-a-receipt-header", "ax-delivery-receipt": base64.b64encode(receipt).decode()})

    with deployment.store() as store:
        [refused] = wait_until(lambda: [e.data for e in store.audit_entries() if e.action == "refused"],
                               "the status to be refused")
    assert refused["code"] == RefusalCode.STATUS_BEFORE_RECEIPT.number and refused["sender"] == H41
    assert states(deployment, about)[H41] == "queued"
    # The recipient's own ack, through its edge, is what counts: then the same kind of status does.
    out = tmp_path / "inbox"
    pulled = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1")
    assert pulled.exit_code == 0, pulled
    wait_until(lambda: states(deployment, about)[H41] == "delivered", "H41's ack to be recorded")
    publish(deployment, wire.INTAKE_QUEUE, status("03"), "after-the-ack", {wire.H_SUBMISSION: "after-the-ack"})
    wait_until(lambda: states(deployment, about)[H41] == "accepted", "the status after the ack to count")
