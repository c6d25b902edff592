"""Tokens that must not verify: other data, tampering, an untrusted TSA, a signer that is not a TSA.

Each token is made by the real responder with real keys, and checked by `verify_timestamp`; where
OpenSSL can say the same, `openssl ts -verify` must refuse it too.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import decode_timestamp_response

from axis.timestamp import TimeStampAuthority, TimestampInvalid, load_authority, verify_timestamp
from axis.trust import keys
from axis.trust.pki import TsaFiles, build_agency_certificate, build_root_certificate, generate_key, init_tsa
from tests.timestamp.conftest import openssl_ts_verify, request_der, self_signed_certificate

DATA = b"checkpoint 7: tree size 1000, root hash 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"


@pytest.fixture(scope="module")
def token(tsa_files: TsaFiles) -> bytes:
    return load_authority(tsa_files.key, tsa_files.cert).respond(request_der(DATA))


def test_the_genuine_token_verifies(token: bytes, tsa_files: TsaFiles, tmp_path: Path) -> None:
    # The control for every refusal below: the same token, the right data and root.
    assert verify_timestamp(token, DATA, [tsa_files.root.read_bytes()]).tzinfo == dt.UTC
    assert "Verification: OK" in openssl_ts_verify(tmp_path, DATA, token, tsa_files.root).stdout


@pytest.mark.parametrize("other", [DATA + b" ", DATA[:-1], b"x", hashlib.sha256(DATA).digest()],
                         ids=["appended", "truncated", "unrelated", "its-digest"])
def test_a_token_does_not_verify_other_data(other: bytes, token: bytes, tsa_files: TsaFiles,
                                            tmp_path: Path) -> None:
    with pytest.raises(TimestampInvalid, match="does not verify: Mismatch between messages"):
        verify_timestamp(token, other, [tsa_files.root.read_bytes()])
    result = openssl_ts_verify(tmp_path, other, token, tsa_files.root)
    assert "Verification: OK" not in result.stdout and "message imprint mismatch" in result.stderr


def _protected(token: bytes) -> dict[str, range]:
    """Where in the token the signed content, the signed attributes, the signature and the certificate lie."""
    signed_data = tsp.TimeStampResp.load(token)["time_stamp_token"]["content"]
    (signer,) = signed_data["signer_infos"]
    parts = {
        "TSTInfo": signed_data["encap_content_info"]["content"].contents,
        "signed attributes": signer["signed_attrs"].contents,
        "signature": signer["signature"].contents,
        "certificate": signed_data["certificates"][0].chosen.dump(),
    }
    ranges = {}
    for name, part in parts.items():
        start = token.find(part)
        assert start > 0 and token.find(part, start + 1) == -1, name
        ranges[name] = range(start, start + len(part))
    return ranges


def test_no_flipped_byte_in_what_is_signed_verifies_and_none_changes_the_time(
        token: bytes, tsa_files: TsaFiles, tmp_path: Path) -> None:
    roots = [tsa_files.root.read_bytes()]
    genuine = verify_timestamp(token, DATA, roots)
    protected = _protected(token)
    still_verifying = []
    for at in range(len(token)):
        flipped = bytearray(token)
        flipped[at] ^= 0x01
        try:
            when = verify_timestamp(bytes(flipped), DATA, roots)
        except TimestampInvalid:
            continue
        still_verifying.append(at)
        assert when == genuine
    # CMS leaves a few fields outside every signature (the SignedData and SignerInfo version numbers, the
    # signatureAlgorithm identifier, which verifiers take from the key): a flip there changes nothing a
    # token proves. Every byte of what is signed, and of the certificate, is covered.
    assert not [(name, at) for name, where in protected.items() for at in still_verifying if at in where]
    assert len(still_verifying) < 16
    inside = protected["TSTInfo"][len(protected["TSTInfo"]) // 2]
    flipped = bytearray(token)
    flipped[inside] ^= 0x01
    assert "Verification: OK" not in openssl_ts_verify(tmp_path, DATA, bytes(flipped), tsa_files.root).stdout


def test_a_token_from_a_tsa_chaining_to_an_untrusted_root_does_not_verify(
        tsa_files: TsaFiles, tmp_path: Path) -> None:
    other = init_tsa(tmp_path / "other-tsa")
    foreign = load_authority(other.key, other.cert).respond(request_der(DATA))
    assert verify_timestamp(foreign, DATA, [other.root.read_bytes()])  # genuine, under its own root
    with pytest.raises(TimestampInvalid, match="certificate check failed: unable to get local issuer certificate"):
        verify_timestamp(foreign, DATA, [tsa_files.root.read_bytes()])
    assert "Verification: OK" not in openssl_ts_verify(tmp_path, DATA, foreign, tsa_files.root).stdout
    # Trusting its TSA certificate (not a root) is not enough either: the chain must end at a trusted root.
    with pytest.raises(TimestampInvalid):
        verify_timestamp(foreign, DATA, [tsa_files.root.read_bytes(), other.cert.read_bytes()])


@pytest.mark.parametrize(("eku", "critical"), [
    (None, True),
    ([ExtendedKeyUsageOID.TIME_STAMPING], False),
    ([ExtendedKeyUsageOID.CODE_SIGNING], True),
], ids=["no-eku", "eku-not-critical", "other-eku"])
def test_a_self_signed_signer_that_is_not_a_tsa_does_not_verify_even_when_trusted(
        eku: list[ObjectIdentifier] | None, critical: bool, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(eku, critical)
    forged = TimeStampAuthority(key, cert).respond(request_der(DATA))
    (tmp_path / "self.pem").write_bytes(keys.certificate_pem(cert))
    with pytest.raises(TimestampInvalid, match="certificate check failed: unsuitable certificate purpose"):
        verify_timestamp(forged, DATA, [cert])
    assert "Verification: OK" not in openssl_ts_verify(tmp_path, DATA, forged, tmp_path / "self.pem").stdout


def test_a_self_signed_tsa_certificate_with_the_critical_eku_verifies(tmp_path: Path) -> None:
    # The control for the test above: the same kind of certificate, with the EKU RFC 3161 asks for.
    cert, key = self_signed_certificate([ExtendedKeyUsageOID.TIME_STAMPING], critical=True)
    genuine = TimeStampAuthority(key, cert).respond(request_der(DATA))
    assert verify_timestamp(genuine, DATA, [cert])
    (tmp_path / "self.pem").write_bytes(keys.certificate_pem(cert))
    assert "Verification: OK" in openssl_ts_verify(tmp_path, DATA, genuine, tmp_path / "self.pem").stdout


def test_an_agency_signing_key_cannot_make_timestamps(tsa_files: TsaFiles, tmp_path: Path) -> None:
    # A certificate chaining to a root the verifier trusts, but issued for signing packets, not timestamps.
    root_key = generate_key("ec")
    root = build_root_certificate(root_key)
    key = generate_key("ec")
    cert = build_agency_certificate("000.00.00.G22", key.public_key(), root, root_key)
    forged = TimeStampAuthority(key, cert).respond(request_der(DATA))
    with pytest.raises(TimestampInvalid, match="certificate check failed: unsuitable certificate purpose"):
        verify_timestamp(forged, DATA, [root])
    (tmp_path / "root.pem").write_bytes(keys.certificate_pem(root))
    assert "Verification: OK" not in openssl_ts_verify(tmp_path, DATA, forged, tmp_path / "root.pem").stdout
    # Nor by carrying a genuine TSA certificate beside its own (the certificate list is not signed): the
    # signer's certificate is the one named by the signature (rfc3161-client before 1.0.6 took another).
    response = tsp.TimeStampResp.load(forged)
    signed_data = response["time_stamp_token"]["content"]
    signed_data["certificates"] = [
        cms.CertificateChoices({"certificate": asn1_x509.Certificate.load(c.public_bytes(Encoding.DER))})
        for c in (keys.load_certificate(tsa_files.cert), cert)]
    dressed = response.dump(force=True)
    assert len(decode_timestamp_response(dressed).signed_data.certificates) == 2
    with pytest.raises(TimestampInvalid, match="certificate check failed: unsuitable certificate purpose"):
        verify_timestamp(dressed, DATA, [root, keys.load_certificate(tsa_files.root)])


@pytest.mark.parametrize(("garbage", "says"), [
    (b"", "not a DER TimeStampResp"),
    (b"\x30\x00", "not a DER TimeStampResp"),
    (b"not a token", "not a DER TimeStampResp"),
    (b"\x30\x80" * 100, "not a DER TimeStampResp"),
    (bytes.fromhex("30053003020100"), "does not verify: Missing SignedData"),  # granted, and no token
], ids=["empty", "empty-sequence", "text", "nested-indefinite", "granted-without-token"])
def test_garbage_is_an_invalid_token_not_a_crash(garbage: bytes, says: str, tsa_files: TsaFiles) -> None:
    with pytest.raises(TimestampInvalid, match=says):
        verify_timestamp(garbage, DATA, [tsa_files.root.read_bytes()])


def test_a_rejection_is_not_a_token(tsa_files: TsaFiles) -> None:
    rejection = load_authority(tsa_files.key, tsa_files.cert).respond(b"garbage")
    with pytest.raises(TimestampInvalid, match="status is rejection, not granted"):
        verify_timestamp(rejection, DATA, [tsa_files.root.read_bytes()])


def test_verifying_without_roots_is_a_configuration_error(token: bytes) -> None:
    with pytest.raises(ValueError, match="AXIS_TSA_TRUST"):
        verify_timestamp(token, DATA, [])


def test_every_truncation_of_a_token_is_invalid(token: bytes, tsa_files: TsaFiles) -> None:
    roots = [tsa_files.root.read_bytes()]
    for length in range(len(token)):
        with pytest.raises(TimestampInvalid):
            verify_timestamp(token[:length], DATA, roots)
