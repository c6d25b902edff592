"""Status packets through a running `axis serve`: business statuses back to the sender, recall to everyone.

Agencies use `axis send`, `axis inbox pull`, `axis status send`; the operator
view is `axis receipts DOCUMENT-ID --json`.
"""
from __future__ import annotations

import json
from pathlib import Path

from axis.edxml import StatusPacket, load_packet
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G17, G22, H14, H41, TestPKI, document_id
from tests.e2e.test_delivery import pull, send, stored_paths


def send_status(deployment: Deployment, about: str, sender: str, code: str) -> dict:
    outcome = deployment.cli("status", "send", about, "--from", sender, "--code", code,
                             *deployment.agency_files(sender), "--json")
    assert outcome.exit_code == 0, outcome
    answer = json.loads(outcome.stdout)
    assert answer["outcome"] == "accepted", answer
    return answer


def timeline(deployment: Deployment, about: str) -> dict:
    outcome = deployment.cli("receipts", about, "--json")
    assert outcome.exit_code == 0, outcome
    [document] = json.loads(outcome.stdout)
    return document


def test_statuses_01_03_06_flow_back_and_show_per_recipient_in_receipts(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41, H14], 1))
    about = document_id(G22, 1)
    deployment.serve()
    [sent] = send(deployment, packet)
    for code in (H41, H14):
        assert len(stored_paths(pull(deployment, code, tmp_path / code, "--max", "1"))) == 1

    for code in (H41, H14):
        for status in ("01", "03", "06"):
            send_status(deployment, about, code, status)

    # The sender receives the six status packets, each signed by the recipient that sent it.
    back = pull(deployment, G22, tmp_path / G22)
    assert sorted(line.split(maxsplit=1)[1] for line in back.lines()) == sorted(
        f"status {status} about {about} from {code}" for code in (H41, H14) for status in ("01", "03", "06"))
    for path in stored_paths(back):
        assert isinstance(load_packet(path.read_bytes()), StatusPacket)

    # Per recipient: the delivery receipt (it may still be on its way) and the statuses, state done.
    document = wait_until(
        lambda: (doc := timeline(deployment, about)) and all(
            any(r["kind"] == "delivery" for r in rec["receipts"]) for rec in doc["recipients"]) and doc,
        "both delivery receipts to be recorded")
    assert document["axis_id"] == sent["axis_id"]
    assert [rec["recipient"] for rec in document["recipients"]] == sorted([H41, H14])
    for rec in document["recipients"]:
        assert rec["state"] == "done", rec
        assert [r["code"] for r in rec["receipts"] if r["kind"] == "status"] == ["01", "03", "06"], rec


def test_a_recall_from_the_sender_reaches_every_recipient(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    recipients = [H41, H14, G17]
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, recipients, 1))
    about = document_id(G22, 1)
    deployment.serve()
    send(deployment, packet)
    for code in recipients:
        assert len(stored_paths(pull(deployment, code, tmp_path / code / "documents", "--max", "1"))) == 1

    send_status(deployment, about, G22, "13")

    for code in recipients:
        outcome = pull(deployment, code, tmp_path / code / "statuses", "--max", "1")
        [line] = outcome.lines()
        assert line.split(maxsplit=1)[1] == f"status 13 about {about} from {G22}"
        recall = load_packet(stored_paths(outcome)[0].read_bytes())
        assert isinstance(recall, StatusPacket) and recall.status_code.value == "13"
        assert recall.response_for.document_id == about
    # A recall request moves no delivery's state.
    document = timeline(deployment, about)
    # The recall request shows once on each recipient's timeline, and not among the intake receipts.
    assert [r["kind"] for r in document["intake"]] == ["intake"]
    for rec in document["recipients"]:
        assert [r["code"] for r in rec["receipts"] if r["kind"] == "status"] == ["13"], rec
    assert {rec["state"] for rec in document["recipients"]} <= {"published", "delivered"}
