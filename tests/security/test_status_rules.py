"""Who may move a delivery's state: a rule per status code (issue 8, item 2).

Attack: a business status 06 from an agency that never received the document (the delivery to it
was never stored by its adapter) was accepted and moved the delivery to `done`.
"""
from __future__ import annotations

import json
from pathlib import Path

from axis.refusals import RefusalCode
from tests.e2e.harness import Deployment
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
    # H14 really stores it; H41's copy stays on its queue, never stored, never receipted.
    assert len(stored_paths(pull(deployment, H14, tmp_path / H14, "--max", "1"))) == 1

    for code in ("06", "01", "15"):
        answer = status(deployment, about, H41, code)
        assert answer["exit"] == 1 and answer["outcome"] == "refused", answer
        assert answer["refusal"]["code"] == RefusalCode.STATUS_BEFORE_RECEIPT.number, answer

    assert states(deployment, about)[H41] == "published"
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
    from tests.e2e.harness import wait_until
    wait_until(lambda: states(deployment, about)[H41] == "delivered", "H41's delivery receipt to be recorded")
    answer = status(deployment, about, H41, "06")
    assert answer["outcome"] == "accepted", answer
    assert states(deployment, about)[H41] == "done"
