"""The issue-2 command set as operators and scripts use it: pki, packet sign/verify/validate/show.

Includes interop with xmlsec1 in both directions through the commands themselves.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from axis.edxml import Organization, SignerInfo, StatusCode, packet_to_bytes
from axis.edxml.compose import new_document, new_status
from cli.main import app
from tests.trust.test_interop_xmlsec1 import TEMPLATE

G22, H41 = "000.00.00.G22", "000.00.00.H41"
runner = CliRunner()


def axis(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-pki")
    result = axis("pki", "init", root / "ca")
    assert result.exit_code == 0, result.output
    assert {p.name for p in (root / "ca").iterdir()} >= {"ca.pem", "ca.key.pem", "crl.pem"}
    for code, key_type in ((G22, "rsa"), (H41, "ec")):
        result = axis("pki", "issue", code, "--pki", root / "ca", "--out", root / "keys", "--key-type", key_type)
        assert result.exit_code == 0, result.output
        assert (root / "keys" / f"{code}.key.pem").exists() and (root / "keys" / f"{code}.cert.pem").exists()
    document = new_document(Organization(G22, organ_name="Văn phòng Chính phủ"), [Organization(H41)],
                            code_number="12", code_notation="VPCP-TTĐT", subject="Thử nghiệm ký số",
                            signer=SignerInfo(full_name="Nguyễn Văn A"))
    (root / "document.edxml").write_bytes(packet_to_bytes(document))
    (root / "status.edxml").write_bytes(packet_to_bytes(new_status(Organization(H41), document,
                                                                   StatusCode.ACCEPTED)))
    return root


def sign(pki: Path, name: str, code: str) -> Path:
    out = pki / f"{name}.signed.edxml"
    result = axis("packet", "sign", pki / f"{name}.edxml", "--key", pki / "keys" / f"{code}.key.pem",
                  "--cert", pki / "keys" / f"{code}.cert.pem", "-o", out)
    assert result.exit_code == 0, result.output
    return out


def verify(pki: Path, path: Path) -> Result:
    return axis("packet", "verify", path, "--trust", pki / "ca" / "ca.pem", "--crl", pki / "ca" / "crl.pem")


@pytest.mark.parametrize("name, code", [("document", G22), ("status", H41)])  # RSA and EC
def test_sign_then_verify_prints_the_signer(pki: Path, name: str, code: str) -> None:
    result = verify(pki, sign(pki, name, code))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == code


def test_verify_json_and_refusals(pki: Path) -> None:
    signed = sign(pki, "document", G22)
    result = axis("packet", "verify", signed, "--trust", pki / "ca" / "ca.pem", "--json")
    assert json.loads(result.stdout)["signer"] == G22
    tampered = pki / "tampered.edxml"
    tampered.write_bytes(signed.read_bytes().replace("Thử nghiệm".encode(), "Thử nghiện".encode()))
    result = verify(pki, tampered)
    assert result.exit_code == 1 and "AX301 SIGNATURE_INVALID" in result.stderr
    forged = pki / "forged.edxml"
    result = axis("packet", "sign", pki / "document.edxml", "--key", pki / "keys" / f"{H41}.key.pem",
                  "--cert", pki / "keys" / f"{H41}.cert.pem", "-o", forged)
    assert result.exit_code == 0
    result = verify(pki, forged)
    assert result.exit_code == 1 and "AX316 SIGNER_NOT_SENDER" in result.stderr
    result = axis("packet", "verify", forged, "--trust", pki / "ca" / "ca.pem", "--json")
    assert json.loads(result.stdout)["refusal"]["code"] == 316


def test_validate_and_show(pki: Path, samples_dir: Path) -> None:
    assert axis("packet", "validate", samples_dir / "edoc_update.edxml").exit_code == 0
    result = axis("packet", "validate", samples_dir / "edoc.edxml")
    assert result.exit_code == 1 and "AX200 MALFORMED" in result.stderr and "line 116, column 39" in result.stderr
    result = axis("packet", "show", samples_dir / "edoc_update.edxml", "--json")
    shown = json.loads(result.stdout)
    assert shown["kind"] == "document" and shown["header"]["from"]["organ_id"] == G22
    assert shown["business"]["business_doc_type"] == 2
    assert shown["attachments"][0]["size"] == 270823 and len(shown["attachments"][0]["sha256"]) == 64
    result = axis("packet", "show", samples_dir / "status_finish_06.edxml")
    assert result.exit_code == 0 and "06 done" in result.stdout


def test_revoked_certificate_is_refused(tmp_path: Path) -> None:
    assert axis("pki", "init", tmp_path / "ca").exit_code == 0
    assert axis("pki", "issue", H41, "--pki", tmp_path / "ca", "--out", tmp_path / "keys").exit_code == 0
    status = new_status(Organization(H41), new_document(
        Organization(G22), [Organization(H41)], code_number="1", code_notation="X", subject="s",
        signer=SignerInfo(full_name="A")), StatusCode.ARRIVED)
    (tmp_path / "status.edxml").write_bytes(packet_to_bytes(status))
    signed = sign(tmp_path, "status", H41)
    assert verify(tmp_path, signed).exit_code == 0
    result = axis("pki", "revoke", tmp_path / "keys" / f"{H41}.cert.pem", "--pki", tmp_path / "ca")
    assert result.exit_code == 0, result.output
    result = verify(tmp_path, signed)
    assert result.exit_code == 1 and "AX313 CERT_REVOKED" in result.stderr


@pytest.mark.xmlsec1
def test_axis_signed_verifies_with_xmlsec1(pki: Path) -> None:
    for name, code in (("document", G22), ("status", H41)):
        signed = sign(pki, name, code)
        result = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(pki / "ca" / "ca.pem"), str(signed)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


@pytest.mark.xmlsec1
@pytest.mark.parametrize("name, code, method, anchor", [
    ("document", G22, "rsa-sha256", b"</edXML:TraceHeaderList>"),
    ("status", H41, "ecdsa-sha256", b"</edXML:MessageHeader>"),
])
def test_xmlsec1_signed_verifies_with_axis(pki: Path, name: str, code: str, method: str, anchor: bytes) -> None:
    unsigned = (pki / f"{name}.edxml").read_bytes()
    assert unsigned.count(anchor) == 1
    template = pki / f"{name}.template.edxml"
    template.write_bytes(unsigned.replace(anchor, anchor + TEMPLATE.format(method=method).encode()))
    out = pki / f"{name}.xmlsec1.edxml"
    keys = pki / "keys"
    result = subprocess.run([shutil.which("xmlsec1") or "xmlsec1", "--sign", "--privkey-pem",
                             f"{keys / f'{code}.key.pem'},{keys / f'{code}.cert.pem'}", "--output", str(out),
                             str(template)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    result = verify(pki, out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == code
