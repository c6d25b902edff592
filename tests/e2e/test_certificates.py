"""Certificates and keys through a running `axis serve` (issue 11).

An agency whose certificate its CA revoked gets a new one with `axis cert add` and sends again, with no
database edit; the axis key is rotated with `axis key rotate` between two runs of the hub, and what the old
key signed (intake and delivery receipts, the seal of a packet still waiting, checkpoints, log keys) verifies
afterwards, beside what the new key signs. The embedded configuration only (two hub runs cost ~30 s; on
RabbitMQ and PostgreSQL ~60 s): tests/hub/test_certificates.py runs the same through the real intake and
gateway service on both stores.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from axis.receipt import read_receipt
from axis.trust import Signer, Verifier, load_certificate, pki
from tests.e2e.harness import Deployment
from tests.e2e.packets import G17, G22, H41, HUB, TestPKI, unsigned_document


def _fingerprint(path: Path) -> str:
    return load_certificate(path).fingerprint(hashes.SHA256()).hex()


def _send(deployment: Deployment, path: Path, data: bytes) -> dict:
    path.write_bytes(data)
    outcome = deployment.cli("send", str(path), "--json")
    [answer] = json.loads(outcome.stdout)
    return answer


def _pull(deployment: Deployment, out: Path) -> list[str]:
    outcome = deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1")
    assert outcome.exit_code == 0, outcome
    return sorted(p.stem for p in out.glob("*.edxml"))


@pytest.mark.slow(seconds=35)
def test_a_revoked_agency_certificate_is_replaced_and_the_axis_key_rotated_with_no_database_edit(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment = embedded_deployment
    db = ["--db", deployment.db] if deployment.db else []
    ca = tmp_path / "ca"  # a copy of the CA with its key: it revokes and issues without touching the session's
    shutil.copytree(e2e_pki.ca, ca)
    hub = deployment.serve()
    first = _send(deployment, tmp_path / "first.edxml", e2e_pki.document(G17, [H41], 1))
    assert first["outcome"] == "accepted", first
    assert _pull(deployment, tmp_path / "inbox") == [first["axis_id"]]
    waiting = _send(deployment, tmp_path / "waiting.edxml", e2e_pki.document(G17, [H41], 2))  # sealed, not pulled
    assert waiting["outcome"] == "accepted", waiting
    hub.stop()  # its last checkpoint is signed with the old axis key

    # G22's CA revokes its certificate; the axis key is replaced by a new one from the same CA.
    assert deployment.cli("pki", "revoke", str(e2e_pki.cert(G22)), "--pki", str(ca)).exit_code == 0
    shutil.copyfile(ca / "crl.pem", deployment.data / "pki" / "crl.pem")
    new_key, new_cert = pki.issue(HUB, ca, tmp_path / "new-axis")
    rotated = deployment.cli("key", "rotate", "--key", str(new_key), "--cert", str(new_cert), *db)
    assert rotated.exit_code == 0, rotated
    old_axis, new_axis = _fingerprint(e2e_pki.cert(HUB)), _fingerprint(new_cert)
    assert _fingerprint(deployment.data / "hub" / f"{HUB}.cert.pem") == new_axis
    assert len(list((deployment.data / "hub" / "retired").glob(f"{HUB}-*-{old_axis[:12]}.*.pem"))) == 2

    hub = deployment.serve()
    refused = _send(deployment, tmp_path / "revoked.edxml", e2e_pki.document(G22, [H41], 3))
    assert refused["outcome"] == "refused" and refused["refusal"]["code"] == 313, refused
    g22_key, g22_cert = pki.issue(G22, ca, tmp_path / "g22-new")
    added = deployment.cli("cert", "add", G22, str(g22_cert), *db)
    assert added.exit_code == 0, added
    again = _send(deployment, tmp_path / "again.edxml",
                  Signer.from_files(g22_key, g22_cert).sign(unsigned_document(G22, [H41], 4)))
    assert again["outcome"] == "accepted", again
    # What waited across the rotation carries the old key's seal, served with the old certificate: the SDK stores it.
    assert _pull(deployment, tmp_path / "inbox") == sorted([first["axis_id"], waiting["axis_id"], again["axis_id"]])
    listed = json.loads(deployment.cli("cert", "list", G22, "--json", *db).stdout)
    assert {(row["fingerprint"], row["state"]) for row in listed} == {
        (_fingerprint(e2e_pki.cert(G22)), "revoked"), (_fingerprint(g22_cert), "active")}
    hub.stop()  # a last checkpoint, signed with the new key

    verifier = Verifier.from_files(deployment.data / "pki" / "ca.pem", deployment.data / "pki" / "crl.pem")
    signed_by = {}
    with deployment.store() as store:
        for answer in (first, waiting, again):
            for receipt in store.receipts(answer["axis_id"]):
                if receipt.kind in ("intake", "delivery"):
                    result = verifier.verify_receipt(receipt.body)
                    assert read_receipt(result.signed_root).axis_id == answer["axis_id"]
                    signed_by[(answer["axis_id"], receipt.kind)] = result.fingerprint
        signers = set(store.audit_signers())
    assert signed_by[(first["axis_id"], "intake")] == signed_by[(waiting["axis_id"], "intake")] == old_axis
    assert signed_by[(again["axis_id"], "intake")] == new_axis
    assert {(first["axis_id"], "delivery"), (again["axis_id"], "delivery")} <= set(signed_by)
    assert {old_axis, new_axis} <= signers  # checkpoints and log keys signed by each key

    audit = deployment.cli("audit", "verify", "--json")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["ok"], audit
    bundle = tmp_path / "first.zip"
    built = deployment.cli("evidence", "get", first["axis_id"], "--out", str(bundle), *db)
    assert built.exit_code == 0, built
    checked = deployment.cli("evidence", "verify", str(bundle), "--trust", str(deployment.data / "pki" / "ca.pem"))
    assert checked.exit_code == 0, checked
