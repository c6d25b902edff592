"""A packet built with `axis packet new` and signed with `axis packet sign` goes through a running hub like any
other: accepted, delivered, and counted by `axis agency show` (issue 11, items 6 and 7)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import output
from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H14, H41, TestPKI


def test_a_new_packet_goes_through_the_hub(rabbit_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # RabbitMQ+PostgreSQL; the operator guide's test sends a built packet through a hub on the embedded defaults.
    deployment = rabbit_deployment
    (tmp_path / "tờ trình.pdf").write_bytes(b"%PDF-1.4 " + bytes(2000))
    made = deployment.cli("packet", "new", "--from", G22, "--to", H41, "--to", H14, "--subject", "Thử trục",
                          "--attach", str(tmp_path / "tờ trình.pdf"), "--priority", "1", "-o", str(tmp_path / "p.xml"))
    assert made.exit_code == 0, made
    signed = deployment.cli("packet", "sign", str(tmp_path / "p.xml"), *deployment.agency_files(G22),
                            "-o", str(tmp_path / "p.edxml"))
    assert signed.exit_code == 0, signed
    deployment.serve()
    sent = deployment.cli("send", str(tmp_path / "p.edxml"), "--json")
    assert sent.exit_code == 0, sent
    [answer] = json.loads(sent.stdout)
    assert answer["outcome"] == "accepted", answer
    assert "sending" not in sent.stderr  # no progress bar with --json, nor off a terminal

    monkeypatch.setattr(output.stderr, "_force_terminal", True)
    monkeypatch.setattr(output.stderr, "is_interactive", True)  # as on an operator's terminal: progress bars
    again = deployment.cli("send", str(tmp_path / "p.edxml"))
    assert again.exit_code == 0 and "duplicate" in again.stdout and "sending" in again.stderr, again
    pulled = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(tmp_path / "in"),
                            "--wait", "1", "--max", "1")
    assert pulled.exit_code == 0 and "received" in pulled.stderr and "1/1" in pulled.stderr, pulled
    monkeypatch.undo()
    assert (tmp_path / "in" / f"{answer['axis_id']}.edxml").read_bytes() == (tmp_path / "p.edxml").read_bytes()

    sender = json.loads(deployment.cli("agency", "show", G22, "--json").stdout)
    assert sender["sent"] == {"document": 1} and len(sender["certificates"]) == 1
    received = json.loads(deployment.cli("agency", "show", H41, "--json").stdout)
    assert received["received"] == {"delivered": 1}
    waiting = json.loads(deployment.cli("agency", "show", H14, "--json").stdout)["received"]
    assert sum(waiting.values()) == 1 and set(waiting) <= {"queued", "published"}, waiting
    as_json = deployment.cli("inbox", "pull", H14, *deployment.agency_files(H14), "--out", str(tmp_path / "h14"),
                             "--wait", "1", "--max", "1", "--json")
    assert as_json.exit_code == 0, as_json
    [stored] = json.loads(as_json.stdout)["stored"]
    assert (stored["axis_id"], stored["sender"], stored["kind"], stored["duplicate"]) == (
        answer["axis_id"], G22, "document", False)
    assert Path(stored["path"]).read_bytes() == (tmp_path / "p.edxml").read_bytes()
