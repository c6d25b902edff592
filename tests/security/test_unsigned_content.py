"""Unsigned content inside a signed packet is refused with AX305 and never delivered (issue 8).

Once, a packet carrying a ds:Object with a second edXML packet, a KeyName and an edXML Subject
in KeyInfo, or a comment splitting an agency code verified, because the signature covers neither
its own Signature element nor comments, and was delivered as it was: the recipient read text its
sender never signed. Now `axis send` (through the gateway) gets AX305 UNSIGNED_CONTENT for each,
the hub signs a refused intake receipt to the sender and audits the refusal, no document or
delivery is stored for any of them, and `axis inbox pull` finds nothing but the one clean document
sent after them, after which nothing waits in the recipient's inbox.
"""
from __future__ import annotations

import json
from pathlib import Path

from axis.receipt import read_receipt
from axis.refusals import RefusalCode
from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H41, TestPKI
from tests.security.support import waiting
from tests.trust.unsigned_content import ATTACKS

UNSIGNED = RefusalCode.UNSIGNED_CONTENT


def test_unsigned_content_is_refused_recorded_and_not_delivered(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    paths = []
    for number, name in enumerate(sorted(ATTACKS), start=1):
        signed = e2e_pki.document(G22, [H41], number)
        assert e2e_pki.verifier().verify(signed).signer_code == G22   # genuinely signed by its sender
        path = tmp_path / f"{name}.edxml"
        path.write_bytes(ATTACKS[name](signed))
        paths.append(path)

    outcome = deployment.cli("send", *map(str, paths))
    assert outcome.exit_code == 1, outcome
    lines = outcome.lines()
    assert len(lines) == len(paths), outcome
    for path, line in zip(paths, lines, strict=True):
        assert line.startswith(f"{path}  -  refused  {UNSIGNED.label}: line "), line
    assert f"{len(paths)} of {len(paths)} packets were not accepted" in outcome.stderr

    # After them, one clean document: the hub and the recipient's pull do work.
    clean = tmp_path / "clean.edxml"
    clean.write_bytes(e2e_pki.document(G22, [H41], 99))
    sent = deployment.cli("send", str(clean), "--json")
    assert sent.exit_code == 0, sent
    [accepted] = json.loads(sent.stdout)
    out = tmp_path / "inbox"
    pulled = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1")
    assert pulled.exit_code == 0, pulled
    assert [p.name for p in out.iterdir()] == [f"{accepted['axis_id']}.edxml"]
    assert (out / f"{accepted['axis_id']}.edxml").read_bytes() == clean.read_bytes()
    assert waiting(deployment, H41) == []

    # Recorded: a refused intake receipt, signed by the hub, for each; one audit entry for each.
    receipts = [read_receipt(p.read_bytes()) for p in (deployment.data / "agencies" / G22 / "receipts").iterdir()
                if p.name.startswith("intake_")]
    refused = [r for r in receipts if r.outcome == "refused"]
    assert len(refused) == len(paths)
    assert {(r.refusal_code, r.refusal_name) for r in refused} == {(UNSIGNED.number, UNSIGNED.name)}
    with deployment.store() as store:
        assert [d.axis_id for d in store.list_deliveries()] == [accepted["axis_id"]]
        audit = [entry.data for entry in store.audit_entries() if entry.action == "refused"]
    assert len(audit) == len(paths)
    assert all(entry["code"] == UNSIGNED.number and entry["sender"] == G22 for entry in audit), audit
