"""The SDK acts only with a certificate the axis would accept for the agency it acts for (issue 8, item 2).

Attack: `axis inbox pull 000.00.00.H41 --key rogue.key --cert rogue.cert` with a self-signed
certificate naming no agency stored H41's documents; H41's own pull then got nothing. On the road
of issue 9 the command runs through the gateway with H41's credential (the harness gives it), so
the credential alone would let it list and fetch: the certificate is what the SDK signs H41's
delivery receipts and statuses with. Each bad certificate (self-signed, another agency's, expired,
revoked) is refused with its code before any call to the gateway: nothing is fetched, stored or
acknowledged, the delivery still waits in H41's inbox in the store (`queued`, no receipt), and
H41's own pull then gets it.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from axis.trust import build_agency_certificate, generate_key, keys, load_ca
from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H41, TestPKI
from tests.e2e.test_delivery import pull, send, stored_paths
from tests.security.support import states, waiting


def rogue(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate naming no agency, made as the attacker made it."""
    key, cert = tmp_path / "rogue.key", tmp_path / "rogue.cert"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=rogue", "-days", "30"],
                   check=True, capture_output=True)
    return key, cert


def expired(pki: TestPKI, tmp_path: Path) -> tuple[Path, Path]:
    """H41's code in a certificate of the trusted CA that expired yesterday."""
    ca = load_ca(pki.ca)
    key = generate_key()
    now = dt.datetime.now(dt.UTC)
    cert = build_agency_certificate(H41, key.public_key(), ca.certificate, ca.key,
                                    not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    key_path, cert_path = tmp_path / "expired.key", tmp_path / "expired.cert"
    keys.write_private_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def revoked(deployment: Deployment, tmp_path: Path) -> tuple[Path, Path]:
    """A second certificate for H41 from the trusted CA, revoked; the deployment gets the new CRL."""
    out = tmp_path / "revoked"
    assert deployment.cli("pki", "issue", H41, "--pki", str(deployment.pki.ca), "--out", str(out)).exit_code == 0
    cert = out / f"{H41}.cert.pem"
    assert deployment.cli("pki", "revoke", str(cert), "--pki", str(deployment.pki.ca)).exit_code == 0
    shutil.copyfile(deployment.pki.ca / "crl.pem", deployment.data / "pki" / "crl.pem")
    return out / f"{H41}.key.pem", cert


@pytest.mark.parametrize("kind", ["rogue", "other-agency", "expired", "revoked"])
def test_inbox_pull_with_a_certificate_not_for_the_agency_takes_nothing(
        deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path, kind: str) -> None:
    key, cert, code = {
        "rogue": lambda: (*rogue(tmp_path), "AX311"),
        "other-agency": lambda: (e2e_pki.key(G22), e2e_pki.cert(G22), "AX410"),
        "expired": lambda: (*expired(e2e_pki, tmp_path), "AX312"),
        "revoked": lambda: (*revoked(deployment, tmp_path), "AX313"),
    }[kind]()
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41], 1))
    deployment.serve()
    [answer] = send(deployment, packet)
    assert waiting(deployment, H41) == [answer["axis_id"]]

    stolen = deployment.cli("inbox", "pull", H41, "--key", str(key), "--cert", str(cert),
                            "--out", str(tmp_path / "stolen"), "--wait", "1")
    assert stolen.exit_code != 0 and code in stolen.stderr, stolen
    assert not (tmp_path / "stolen").exists() or not any((tmp_path / "stolen").iterdir())
    # And no status either: the same check guards every command that signs.
    status = deployment.cli("status", "send", "x", "--from", H41, "--code", "01", "--key", str(key),
                            "--cert", str(cert))
    assert status.exit_code != 0 and code in status.stderr, status

    assert waiting(deployment, H41) == [answer["axis_id"]]
    assert states(deployment, answer["axis_id"]) == {H41: "queued"}
    with deployment.store() as store:
        assert [r.kind for r in store.receipts(answer["axis_id"])] == ["intake"]
    own = pull(deployment, H41, tmp_path / H41)
    assert stored_paths(own) == [tmp_path / H41 / f"{answer['axis_id']}.edxml"]
    assert states(deployment, answer["axis_id"]) == {H41: "delivered"} and waiting(deployment, H41) == []
