"""An RFC 3161 time-stamping authority: a DER TimeStampReq in, a DER TimeStampResp out.

`TimeStampAuthority(key, cert).respond(request_der)` never raises for what a client sends: any
request it cannot grant gets a TimeStampResp with status `rejection` and a failInfo:

| the request | failInfo |
|---|---|
| not a DER TimeStampReq (garbage, trailing bytes, wrong version), or larger than `MAX_REQUEST_BYTES` | badRequest |
| a messageImprint hashed with anything but SHA-256, SHA-384 or SHA-512 | badAlg |
| a hashedMessage whose length is not that algorithm's digest size | badDataFormat |
| a reqPolicy other than this TSA's policy | unacceptedPolicy |
| any extension (this TSA supports none) | unacceptedExtension |

A granted response carries a CMS SignedData (RFC 5652) over a TSTInfo: version 1, this TSA's policy,
the request's messageImprint exactly as it came, a random 128-bit serial number, genTime (UTC, to the
microsecond), the request's nonce when it had one, and the TSA's name. The SignerInfo is signed with
RSA PKCS#1 v1.5 or ECDSA, with SHA-256 (by the key's type), over the signed attributes content-type,
signing-time, message-digest and signingCertificateV2 (an ESSCertIDv2 of the TSA certificate, RFC 5816;
`openssl ts -verify` requires it). The TSA certificate is in the token when the request asked for it
(certReq). Such a response verifies with `openssl ts -verify` and with `axis.timestamp.verify_timestamp`.

The constructor checks only that the key is the certificate's: tests build tokens from deliberately
bad certificates with it. `load_authority(key_path, cert_path)`, which `axis tsa serve` uses, also
refuses a certificate that verifiers would refuse (no critical timeStamping EKU, expired).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from typing import Any, ClassVar, Final, NamedTuple

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from axis.trust import keys
from axis.trust.keys import SigningKey

# The TSA policy under which tokens are issued (TSTInfo.policy). A PLACEHOLDER on the IANA enterprise
# number reserved for documentation (1.3.6.1.4.1.32473, RFC 5612): Axis's development TSA has no
# published policy. A production TSA issues tokens under its own registered policy OID.
POLICY_OID: Final = "1.3.6.1.4.1.32473.3161.1"
# A TimeStampReq is a few hundred bytes (an imprint, a nonce, a policy); anything bigger is refused
# before it is parsed.
MAX_REQUEST_BYTES: Final = 64 * 1024

_DIGEST_SIZES: Final = {"sha256": 32, "sha384": 48, "sha512": 64}


class _TimeStampResp(tsp.TimeStampResp):
    # asn1crypto (1.5.1) declares timeStampToken mandatory; RFC 3161 §2.4.2 makes it OPTIONAL, and a
    # rejection has none.
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TSAConfigError(ValueError):
    """The TSA cannot sign with this key and certificate; the message says which file and what to do."""


class Answer(NamedTuple):
    """A DER TimeStampResp and a one-line summary of it ("granted serial …" or "rejected bad_alg: …")."""

    der: bytes
    granted: bool
    summary: str


class TimeStampAuthority:
    """Answers RFC 3161 requests with tokens signed by `key` under `cert` (see the module's docstring).

    Thread-safe: `respond` keeps no state between calls.
    """

    def __init__(self, key: SigningKey, cert: x509.Certificate, *, policy: str = POLICY_OID) -> None:
        if not keys.same_public_key(key, cert):
            raise TSAConfigError("the TSA key is not the key of the TSA certificate; pass the matching pair")
        self._key = key
        self._cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        self._policy = policy
        self._signature_algorithm = "rsassa_pkcs1v15" if isinstance(key, rsa.RSAPrivateKey) else "sha256_ecdsa"
        der = self._cert.dump()
        self._ess_cert_id = tsp.ESSCertIDv2({
            # hashAlgorithm is left out: its DEFAULT is SHA-256, and DER omits a default value.
            "cert_hash": hashlib.sha256(der).digest(),
            "issuer_serial": {"issuer": [asn1_x509.GeneralName({"directory_name": self._cert.issuer})],
                              "serial_number": self._cert.serial_number},
        })

    def respond(self, request: bytes) -> bytes:
        """The DER TimeStampResp answering the DER TimeStampReq `request`: granted, or a rejection."""
        return self.answer(request).der

    def answer(self, request: bytes) -> Answer:
        """`respond`'s response with what it says, for the log line of each request."""
        if len(request) > MAX_REQUEST_BYTES:
            return _rejection("bad_request", f"the request is larger than {MAX_REQUEST_BYTES} bytes")
        try:
            req = tsp.TimeStampReq.load(request, strict=True)
            version = req["version"].native
            algorithm = req["message_imprint"]["hash_algorithm"]["algorithm"].native
            digest = req["message_imprint"]["hashed_message"].native
            policy = req["req_policy"].dotted if req["req_policy"].native is not None else None
            nonce = req["nonce"].native
            cert_req = bool(req["cert_req"].native)
            extensions = req["extensions"].native
        # asn1crypto reports malformed DER with any of these, depending on where the bytes go wrong.
        except (ValueError, TypeError, KeyError, IndexError, OverflowError):
            return _rejection("bad_request", "not a DER TimeStampReq")
        if version != "v1":
            return _rejection("bad_request", "only TimeStampReq version 1 is supported")
        if algorithm not in _DIGEST_SIZES:
            return _rejection("bad_alg", "the messageImprint must be hashed with SHA-256, SHA-384 or SHA-512")
        if len(digest) != _DIGEST_SIZES[algorithm]:
            return _rejection("bad_data_format", f"a {algorithm} hashedMessage is {_DIGEST_SIZES[algorithm]} bytes")
        if policy is not None and policy != self._policy:
            return _rejection("unaccepted_policy", f"this TSA issues tokens under policy {self._policy} only")
        if extensions:
            return _rejection("unaccepted_extensions", "this TSA supports no request extension")
        return self._grant(req["message_imprint"], nonce, cert_req)

    def _grant(self, imprint: tsp.MessageImprint, nonce: int | None, cert_req: bool) -> Answer:
        now = dt.datetime.now(dt.UTC)
        # Random, not a counter: unique without state shared between TSA processes, and never 0.
        serial = secrets.randbits(128) | 1
        info: dict[str, object] = {
            "version": "v1",
            "policy": self._policy,
            "message_imprint": imprint,
            "serial_number": serial,
            "gen_time": now,
            "tsa": asn1_x509.GeneralName({"directory_name": self._cert.subject}),
        }
        if nonce is not None:
            info["nonce"] = nonce
        tst_info = tsp.TSTInfo(info)
        signed_attrs = _sorted_attributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": now})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_info.dump()).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2",
                              "values": [tsp.SigningCertificateV2({"certs": [self._ess_cert_id]})]}),
        ])
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
                "issuer": self._cert.issuer, "serial_number": self._cert.serial_number}}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": self._signature_algorithm}),
            # The signature covers the attributes DER-encoded as a SET OF (RFC 5652 §5.4, tag 0x31), not as
            # the [0] IMPLICIT field they are stored in: `signed_attrs` is still the untagged SET here.
            "signature": self._sign(signed_attrs.dump()),
        })
        signed_data = cms.SignedData({
            "version": "v3",  # RFC 5652 §5.1: eContentType is not id-data
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "certificates": [self._cert] if cert_req else None,
            "signer_infos": [signer_info],
        })
        response = _TimeStampResp({
            "status": {"status": "granted"},
            "time_stamp_token": cms.ContentInfo({"content_type": "signed_data", "content": signed_data}),
        })
        return Answer(bytes(response.dump()), True, f"granted serial {serial:032x}")

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


def load_authority(key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str], *,
                   policy: str = POLICY_OID) -> TimeStampAuthority:
    """The TSA of these PEM files; TSAConfigError (one line) for a certificate verifiers would refuse.

    The certificate must carry the extendedKeyUsage timeStamping, critical (RFC 3161 §2.3), and be
    within its validity period now: a token signed under anything else would not verify.
    """
    try:
        key = keys.load_private_key(key_path)
        cert = keys.load_certificate(cert_path)
    except ValueError as exc:
        raise TSAConfigError(f"{exc}; create a TSA with `axis tsa init DIR`") from None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TSAConfigError(f"{cert_path} is not a TSA certificate: RFC 3161 requires extendedKeyUsage "
                             "timeStamping alone, marked critical; issue one with `axis tsa init DIR`")
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise TSAConfigError(f"{cert_path} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                             f"{cert.not_valid_after_utc:%Y-%m-%d}); make a new TSA with `axis tsa init DIR`")
    try:
        return TimeStampAuthority(key, cert, policy=policy)
    except TSAConfigError as exc:
        raise TSAConfigError(f"{key_path}, {cert_path}: {exc}") from None


def _sorted_attributes(attributes: list[cms.CMSAttribute]) -> cms.CMSAttributes:
    # DER orders the members of a SET OF by their encodings (X.690 §11.6); asn1crypto keeps the given order.
    return cms.CMSAttributes(sorted(attributes, key=lambda attribute: attribute.dump()))


def _rejection(fail_info: str, reason: str) -> Answer:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [reason], "fail_info": {fail_info}})
    return Answer(bytes(_TimeStampResp({"status": status}).dump()), False, f"rejected {fail_info}: {reason}")
