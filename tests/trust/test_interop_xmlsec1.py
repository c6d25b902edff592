"""Interop with xmlsec1 (libxmlsec1, the reference C implementation), both directions.

- Our Signer's output verifies with `xmlsec1 --verify --trusted-pem ca.pem` (the
  Reference URI is "", so no --id-attr is needed) and a tampered copy does not.
- A packet signed BY xmlsec1 from a template whose Signature is in the default
  XML-DSig namespace, with inclusive C14N 1.0 on SignedInfo as the national SDK
  does, verifies with our Verifier; a tampered copy fails with both.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from axis.refusals import RefusalCode
from axis.trust import keys
from tests.trust.helpers import G22, H41, code_of, replace_once

pytestmark = pytest.mark.xmlsec1

TEMPLATE = """<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
        <SignedInfo>
          <CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315" />
          <SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#{method}" />
          <Reference URI="">
            <Transforms>
              <Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature" />
              <Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#" />
            </Transforms>
            <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256" />
            <DigestValue></DigestValue>
          </Reference>
        </SignedInfo>
        <SignatureValue />
        <KeyInfo>
          <X509Data>
            <X509Certificate />
          </X509Data>
        </KeyInfo>
      </Signature>
      """


@pytest.fixture(scope="session")
def xmlsec1() -> str:
    path = shutil.which("xmlsec1")
    if path is None:
        pytest.skip("the xmlsec1 command is not installed (Debian/Ubuntu: apt-get install xmlsec1)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _xmlsec_verify(xmlsec1: str, ca: Path, packet: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "packet.edxml"
    path.write_bytes(packet)
    return _run(xmlsec1, "--verify", "--trusted-pem", str(ca), str(path))


@pytest.mark.parametrize("packet_fixture", ["signed_status", "signed_document"])  # EC and RSA
def test_ours_verifies_with_xmlsec1(xmlsec1, dev_pki, tmp_path, request, packet_fixture):
    packet = request.getfixturevalue(packet_fixture)
    result = _xmlsec_verify(xmlsec1, dev_pki.ca_path, packet, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr
    tampered = replace_once(packet, b"<edXML:OrganName>", b"<edXML:OrganName>X")
    assert _xmlsec_verify(xmlsec1, dev_pki.ca_path, tampered, tmp_path).returncode != 0


def test_xmlsec1_rejects_ours_with_another_root(xmlsec1, dev_pki, signed_status, other_root, tmp_path):
    other = tmp_path / "other.pem"
    other.write_bytes(keys.certificate_pem(other_root[0]))
    assert _xmlsec_verify(xmlsec1, other, signed_status, tmp_path).returncode != 0


@pytest.mark.parametrize("code, method, packet_fixture, anchor", [
    (H41, "ecdsa-sha256", "status_packet", b"</edXML:MessageHeader>"),
    (G22, "rsa-sha256", "document_packet", b"</edXML:TraceHeaderList>"),
])
def test_xmlsec1_signed_verifies_with_ours(xmlsec1, dev_pki, tmp_path, request, code, method, packet_fixture,
                                          anchor):
    packet = request.getfixturevalue(packet_fixture)
    template = replace_once(packet, anchor, anchor + b"\n      " + TEMPLATE.format(method=method).encode())
    (tmp_path / "template.edxml").write_bytes(template)
    out = tmp_path / "signed.edxml"
    key, cert = dev_pki.key_paths[code], dev_pki.cert_paths[code]
    result = _run(xmlsec1, "--sign", "--privkey-pem", f"{key},{cert}", "--output", str(out),
                  str(tmp_path / "template.edxml"))
    assert result.returncode == 0, result.stderr
    signed = out.read_bytes()
    assert b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">' in signed

    verified = dev_pki.verifier().verify(signed)
    assert verified.signer_code == code

    tampered = replace_once(signed, b"<edXML:OrganName>", b"<edXML:OrganName>X")
    assert code_of(dev_pki.verifier(), tampered) is RefusalCode.SIGNATURE_INVALID
    assert _xmlsec_verify(xmlsec1, dev_pki.ca_path, tampered, tmp_path).returncode != 0

    # The default-namespace fix strips xmlns="" from SignedInfo only: a SignedInfo
    # element moved out of the XML-DSig namespace is refused, not silently accepted.
    moved = replace_once(signed, b"<DigestMethod ", b'<DigestMethod xmlns="" ')
    assert code_of(dev_pki.verifier(), moved) is RefusalCode.SIGNATURE_INVALID
