"""Refusals through a running `axis serve`: each bad submission gets its code, and nothing is delivered.

`axis send` prints `FILE  -  refused  AXnnn NAME: detail` and exits 1 for
each; nothing waits in any inbox and the hub records no delivery.
"""
from __future__ import annotations

from pathlib import Path

from axis.refusals import RefusalCode
from tests.e2e.harness import Deployment
from tests.e2e.packets import G17, G22, H14, H41, H99, SUBJECT, TestPKI, unsigned_document


def test_each_refusal_comes_back_with_its_code_and_nothing_is_delivered(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment.serve()
    for code in (H14, G17):
        outcome = deployment.cli("agency", "suspend", code)
        assert outcome.exit_code == 0 and f"{code} is suspended" in outcome.stdout, outcome

    # Forged: G22's document signed with H41's key, by the real `axis packet sign`.
    unsigned = tmp_path / "unsigned.edxml"
    unsigned.write_bytes(unsigned_document(G22, [H41], 4))
    forged = tmp_path / "forged.edxml"
    signed = deployment.cli("packet", "sign", str(unsigned), *deployment.agency_files(H41), "-o", str(forged))
    assert signed.exit_code == 0, signed
    tampered = e2e_pki.document(G22, [H41], 5).replace(SUBJECT.encode(), SUBJECT.replace("nghiệm", "nghiện").encode())
    assert tampered != e2e_pki.document(G22, [H41], 5)

    cases = {
        "unknown-recipient": (e2e_pki.document(G22, [H41, H99], 1), RefusalCode.UNKNOWN_RECIPIENT),
        "suspended-recipient": (e2e_pki.document(G22, [H41, H14], 2), RefusalCode.RECIPIENT_SUSPENDED),
        "suspended-sender": (e2e_pki.document(G17, [H41], 3), RefusalCode.SENDER_SUSPENDED),
        "forged-signer": (forged.read_bytes(), RefusalCode.SIGNER_NOT_SENDER),
        "tampered": (tampered, RefusalCode.SIGNATURE_INVALID),
    }
    for name, (data, code) in cases.items():
        path = tmp_path / f"{name}.edxml"
        path.write_bytes(data)
        outcome = deployment.cli("send", str(path))
        assert outcome.exit_code == 1, outcome
        [line] = outcome.lines()
        assert line.startswith(f"{path}  -  refused  {code.label}: "), (name, line)
        assert "1 of 1 packets were not accepted" in outcome.stderr

    with deployment.store() as store:
        assert store.list_deliveries() == []
        assert all(store.inbox(code) == [] for code in (H41, H14, G17, G22))
        refused = [entry.data["code"] for entry in store.audit_entries() if entry.action == "refused"]
    assert sorted(refused) == sorted(code.number for _, code in cases.values())
