"""The responder (`axis.timestamp.authority`), in process: what a granted token holds, what is refused and how.

Tokens are checked by two verifiers that share no code with the responder: rfc3161-client (through
`verify_timestamp`) and `openssl ts -verify`. Refusals are read back with asn1crypto and OpenSSL.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.timestamp import (
    MAX_REQUEST_BYTES,
    POLICY_OID,
    TimeStampAuthority,
    TSAConfigError,
    load_authority,
    verify_timestamp,
)
from axis.trust import keys
from axis.trust.pki import TsaFiles, build_root_certificate, generate_key
from tests.timestamp.conftest import OPENSSL, openssl_ts_verify, request_der, self_signed_certificate

DATA = b"signed tree head: size 42, root 9f86d081884c7d659a2feaa0c55ad015"


def _authority(files: TsaFiles) -> TimeStampAuthority:
    return load_authority(files.key, files.cert)


class _Response(tsp.TimeStampResp):
    # asn1crypto makes timeStampToken mandatory; RFC 3161 §2.4.2 makes it OPTIONAL (a rejection has none).
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


def _granted(der: bytes) -> tuple[_Response, cms.SignedData, tsp.TSTInfo]:
    response = _Response.load(der, strict=True)
    assert response["status"]["status"].native == "granted"
    signed_data = response["time_stamp_token"]["content"]
    return response, signed_data, signed_data["encap_content_info"]["content"].parsed


def _rejection(der: bytes) -> tuple[str, set[str]]:
    response = _Response.load(der, strict=True)
    status = response["status"]
    assert status["status"].native == "rejection"
    assert response["time_stamp_token"].native is None
    return " ".join(status["status_string"].native), set(status["fail_info"].native)


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_a_token_verifies_with_rfc3161_client_and_openssl(key_type: str, tsa_files: TsaFiles,
                                                         rsa_tsa_files: TsaFiles, tmp_path: Path) -> None:
    files = tsa_files if key_type == "ec" else rsa_tsa_files
    before = dt.datetime.now(dt.UTC)
    tsr = _authority(files).respond(request_der(DATA))
    gen_time = verify_timestamp(tsr, DATA, [files.root.read_bytes()])
    assert before - dt.timedelta(seconds=1) <= gen_time <= dt.datetime.now(dt.UTC)
    result = openssl_ts_verify(tmp_path, DATA, tsr, files.root, files.cert)
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr
    # The token carries the TSA certificate (certReq), so OpenSSL needs nothing but the root.
    result = openssl_ts_verify(tmp_path, DATA, tsr, files.root)
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr


def test_the_token_holds_what_rfc_3161_and_5816_ask_for(tsa_files: TsaFiles) -> None:
    request = tsp.TimeStampReq.load(request_der(DATA))
    _, signed_data, info = _granted(_authority(tsa_files).respond(request.dump()))
    cert = keys.load_certificate(tsa_files.cert)
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    assert info["version"].native == "v1"
    assert info["policy"].dotted == POLICY_OID
    assert info["message_imprint"].dump() == request["message_imprint"].dump()
    assert info["nonce"].native == request["nonce"].native
    assert 0 < info["serial_number"].native < 2 ** 128
    assert info["tsa"].chosen.native == asn1_x509.Name.load(cert.subject.public_bytes()).native
    assert signed_data["version"].native == "v3"
    assert [c.chosen.dump() for c in signed_data["certificates"]] == [cert_der]
    (signer,) = signed_data["signer_infos"]
    attrs = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    assert set(attrs) == {"content_type", "signing_time", "message_digest", "signing_certificate_v2"}
    assert attrs["content_type"].native == "tst_info"
    assert attrs["message_digest"].native == hashlib.sha256(info.dump()).digest()
    (ess,) = attrs["signing_certificate_v2"]["certs"]
    assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()
    assert ess["issuer_serial"]["serial_number"].native == cert.serial_number
    # DER orders a SET OF by encoding; a verifier that re-encodes the attributes depends on it.
    encoded = [a.dump() for a in signer["signed_attrs"]]
    assert encoded == sorted(encoded)


def test_without_cert_req_the_certificate_is_left_out_and_serials_differ(tsa_files: TsaFiles) -> None:
    authority = _authority(tsa_files)
    _, signed_data, first = _granted(authority.respond(request_der(DATA, cert_req=False, nonce=False)))
    _, _, second = _granted(authority.respond(request_der(DATA, cert_req=False, nonce=False)))
    assert signed_data["certificates"].native is None
    assert first["nonce"].native is None
    assert first["serial_number"].native != second["serial_number"].native


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_openssl_requests_with_other_sha2_digests_are_granted(digest: str, tsa_files: TsaFiles,
                                                               tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(DATA)
    query = subprocess.run([OPENSSL, "ts", "-query", "-data", str(tmp_path / "data.bin"), f"-{digest}", "-cert"],
                           capture_output=True, check=True, timeout=30).stdout
    tsr = _authority(tsa_files).respond(query)
    assert "Verification: OK" in openssl_ts_verify(tmp_path, DATA, tsr, tsa_files.root).stdout
    assert verify_timestamp(tsr, DATA, [tsa_files.root.read_bytes()])


def _request(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(DATA).digest()},
        "cert_req": True,
    }
    fields.update(changes)
    return bytes(tsp.TimeStampReq(fields).dump())


@pytest.mark.parametrize(("request_bytes", "fail_info", "says"), [
    (b"", "bad_request", "not a DER TimeStampReq"),
    (b"GET / HTTP/1.1\r\n\r\n", "bad_request", "not a DER TimeStampReq"),
    (_request() + b"\x00", "bad_request", "not a DER TimeStampReq"),
    (_request(version="v2"), "bad_request", "version 1"),
    (_request(message_imprint={"hash_algorithm": {"algorithm": "sha1"}, "hashed_message": b"\x00" * 20}),
     "bad_alg", "SHA-256"),
    (_request(message_imprint={"hash_algorithm": {"algorithm": "md5"}, "hashed_message": b"\x00" * 16}),
     "bad_alg", "SHA-256"),
    (_request(message_imprint={"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x00" * 31}),
     "bad_data_format", "32 bytes"),
    (_request(req_policy="1.2.3.4"), "unaccepted_policy", POLICY_OID),
    (_request(extensions=[{"extn_id": "1.2.3.4", "extn_value": b"x"}]), "unaccepted_extensions", "extension"),
    (b"\x30" + b"\x84\x00\x01\x00\x01" + b"\x00" * (MAX_REQUEST_BYTES + 1), "bad_request", "larger than"),
], ids=["empty", "http", "trailing-byte", "version-2", "sha1", "md5", "short-digest", "policy", "extension",
        "oversized"])
def test_requests_it_cannot_grant_get_a_rejection_with_fail_info(request_bytes: bytes, fail_info: str, says: str,
                                                                 tsa_files: TsaFiles) -> None:
    text, info = _rejection(_authority(tsa_files).respond(request_bytes))
    assert info == {fail_info}
    assert says in text


def test_openssl_reads_a_rejection_and_its_fail_info(tsa_files: TsaFiles, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(DATA)
    query = subprocess.run([OPENSSL, "ts", "-query", "-data", str(tmp_path / "data.bin"), "-sha1"],
                           capture_output=True, check=True, timeout=30).stdout
    (tmp_path / "reply.tsr").write_bytes(_authority(tsa_files).respond(query))
    shown = subprocess.run([OPENSSL, "ts", "-reply", "-in", str(tmp_path / "reply.tsr"), "-text"],
                           capture_output=True, text=True, check=True, timeout=30).stdout
    assert "Status: Rejected" in shown
    assert "unrecognized or unsupported algorithm identifier" in shown


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_request_makes_it_raise(data: st.DataObject, tsa_files: TsaFiles) -> None:
    valid = _request(nonce=0x1234_5678_9ABC_DEF0)  # fixed: hypothesis replays positions in it
    hostile = data.draw(st.one_of(
        st.binary(max_size=512),
        st.builds(lambda at, byte: valid[:at] + bytes([byte]) + valid[at + 1:],
                  st.integers(0, len(valid) - 1), st.integers(0, 255)),
        st.builds(lambda at: valid[:at], st.integers(0, len(valid))),
    ))
    status = _Response.load(_authority(tsa_files).respond(hostile), strict=True)["status"]["status"].native
    assert status in {"granted", "rejection"}


@pytest.mark.parametrize(("eku", "critical"), [
    (None, True),
    ([ExtendedKeyUsageOID.TIME_STAMPING], False),
    ([ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING], True),
], ids=["no-eku", "not-critical", "not-alone"])
def test_load_authority_refuses_a_certificate_verifiers_would_refuse(
        eku: list[x509.ObjectIdentifier] | None, critical: bool, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(eku, critical)
    keys.write_private_key(tmp_path / "k.pem", key)
    keys.write_public_file(tmp_path / "c.pem", keys.certificate_pem(cert))
    with pytest.raises(TSAConfigError, match="not a TSA certificate: RFC 3161 requires"):
        load_authority(tmp_path / "k.pem", tmp_path / "c.pem")


def test_a_key_that_is_not_the_certificates_is_refused(tsa_files: TsaFiles, tmp_path: Path) -> None:
    keys.write_private_key(tmp_path / "other.key", generate_key("ec"))
    with pytest.raises(TSAConfigError, match="not the key of the TSA certificate"):
        load_authority(tmp_path / "other.key", tsa_files.cert)
    with pytest.raises(TSAConfigError, match="axis tsa init"):
        load_authority(tmp_path / "missing.key", tsa_files.cert)
    # A CA certificate is not a TSA certificate either.
    root_key = generate_key("ec")
    keys.write_private_key(tmp_path / "root.key", root_key)
    keys.write_public_file(tmp_path / "root.pem", keys.certificate_pem(build_root_certificate(root_key)))
    with pytest.raises(TSAConfigError, match="not a TSA certificate"):
        load_authority(tmp_path / "root.key", tmp_path / "root.pem")
