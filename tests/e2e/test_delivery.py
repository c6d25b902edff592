"""Documents through a running `axis serve`: fan-out byte for byte, duplicates, priority.

Agencies use the real commands, `axis send` and `axis inbox pull`, through the gateway (see the harness);
the operator's view is `axis receipts`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import Deployment, Outcome, wait_until
from tests.e2e.packets import G17, G22, H14, H41, TestPKI, document_id

BACKLOG = 1000


def stored_paths(outcome: Outcome) -> list[Path]:
    """The files `axis inbox pull` printed as newly stored (one line each: PATH  what  id  from SENDER)."""
    return [Path(line.split()[0]) for line in outcome.lines()]


def send(deployment: Deployment, *paths: Path) -> list[dict]:
    outcome = deployment.cli("send", *map(str, paths), "--json")
    assert outcome.exit_code == 0, outcome
    return json.loads(outcome.stdout)


def pull(deployment: Deployment, code: str, out: Path, *extra: str) -> Outcome:
    outcome = deployment.cli("inbox", "pull", code, *deployment.agency_files(code), "--out", str(out),
                             "--wait", "1", *extra)
    assert outcome.exit_code == 0, outcome
    return outcome


def test_a_document_to_three_recipients_arrives_byte_identical_at_each(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    recipients = [H41, H14, G17]
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, recipients, 1))
    hub = deployment.serve()

    [answer] = send(deployment, packet)
    assert answer["outcome"] == "accepted" and answer["sender"] == G22
    axis_id = answer["axis_id"]
    if deployment.road == "gateway":  # one request per packet: its answer carried the intake receipt
        wait_until(lambda: "POST /v1/packets 200" in hub.stderr(), "the submission's access-log line")
        assert "/v1/submissions/" not in hub.stderr(), hub.stderr()[-3000:]

    for code in recipients:
        outcome = pull(deployment, code, tmp_path / code, "--max", "1")
        assert stored_paths(outcome) == [tmp_path / code / f"{axis_id}.edxml"]
        assert f"document {document_id(G22, 1)} from {G22}" in outcome.stdout
        assert sorted(p.name for p in (tmp_path / code).iterdir()) == [f"{axis_id}.edxml"]
        assert (tmp_path / code / f"{axis_id}.edxml").read_bytes() == packet.read_bytes()
    with deployment.store() as store:
        assert {d.recipient_code: d.state for d in store.deliveries(axis_id)} == dict.fromkeys(recipients, "delivered")
        assert all(store.inbox(code) == [] for code in recipients)


def test_a_duplicate_submission_gets_the_first_receipt_and_is_delivered_once(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41], 1))
    deployment.serve()

    [first] = send(deployment, packet)
    [again] = send(deployment, packet)
    assert first["outcome"] == "accepted" and again["outcome"] == "duplicate"
    assert again["axis_id"] == first["axis_id"] and again["submission"] != first["submission"]
    receipts = deployment.data / "agencies" / G22 / "receipts"
    # The duplicate is answered with the first receipt itself, as the hub signed it the first time.
    assert (receipts / f"intake_{again['submission']}.xml").read_bytes() == \
        (receipts / f"intake_{first['submission']}.xml").read_bytes()

    out = tmp_path / H41
    assert stored_paths(pull(deployment, H41, out)) == [out / f"{first['axis_id']}.edxml"]
    assert pull(deployment, H41, out).lines() == []
    assert [p.name for p in out.iterdir()] == [f"{first['axis_id']}.edxml"]
    timeline = deployment.cli("receipts", document_id(G22, 1), "--json")
    [document] = json.loads(timeline.stdout)
    assert [r["recipient"] for r in document["recipients"]] == [H41]
    assert [r["kind"] for r in document["intake"]] == ["intake"]


@pytest.fixture(scope="module")
def backlog(e2e_pki: TestPKI) -> tuple[list[bytes], bytes]:
    """1,000 normal documents G22 -> H41 and one urgent one (Priority 3, hỏa tốc)."""
    normal = [e2e_pki.document(G22, [H41], number) for number in range(1, BACKLOG + 1)]
    return normal, e2e_pki.document(G22, [H41], BACKLOG + 1, priority=3)


@pytest.mark.slow(seconds=25)
def test_an_urgent_document_overtakes_a_thousand_queued_normal_ones(
        deployment: Deployment, backlog: tuple[list[bytes], bytes], tmp_path: Path) -> None:
    normal, urgent = backlog
    folder = tmp_path / "normal"
    folder.mkdir()
    for number, data in enumerate(normal):
        (folder / f"{number:04d}.edxml").write_bytes(data)
    (tmp_path / "urgent.edxml").write_bytes(urgent)
    deployment.serve()

    def waiting() -> int:
        with deployment.store() as store:
            return len(store.inbox(H41, limit=BACKLOG + 10))

    assert len(send(deployment, folder)) == BACKLOG
    wait_until(lambda: waiting() == BACKLOG, "the backlog to wait for H41", interval=0.5)
    [answer] = send(deployment, tmp_path / "urgent.edxml")
    wait_until(lambda: waiting() == BACKLOG + 1, "the urgent document to wait for H41")

    out = tmp_path / H41
    first = pull(deployment, H41, out, "--max", "1")
    assert stored_paths(first) == [out / f"{answer['axis_id']}.edxml"]
    assert (out / f"{answer['axis_id']}.edxml").read_bytes() == urgent
