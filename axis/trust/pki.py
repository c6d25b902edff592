"""A real development PKI: a root CA, agency signing certificates and CRLs.

Two layers. The object layer (`generate_key`, `build_root_certificate`,
`build_intermediate_certificate`, `build_agency_certificate`, `build_crl`)
makes certificates in memory; its keyword arguments produce the bad
certificates tests need (expired, no digitalSignature, SHA-1, from another
root, without an agency code) from the same code path as the good ones. The
file layer (`init_ca`, `issue`, `revoke`, `refresh_crl`) is what `axis pki`
runs: a directory with `ca.pem`, `ca.key.pem` (0600) and `crl.pem`. `init_tsa`
(what `axis tsa init` runs) makes the development time-stamping authority's
own root, certificate and key (docs/timestamps.md).

Profiles (see docs/trust.md):
- root: BasicConstraints(ca, path_length=0) and KeyUsage(keyCertSign, cRLSign),
  both critical; SubjectKeyIdentifier.
- agency: BasicConstraints(ca=False) and KeyUsage(digitalSignature,
  contentCommitment), both critical; EKU documentSigning (RFC 9336) and
  emailProtection; AKI, SKI; SAN `urn:axis:agency:<code>`; the agency code as
  subject organizationIdentifier and CN (`axis.trust.identity`).
- TSA: BasicConstraints(ca=False), KeyUsage(digitalSignature, contentCommitment)
  and EKU timeStamping alone, all critical (RFC 3161 §2.3); AKI, SKI.

Callers may rely on: every certificate and CRL returned or written is signed by
the CA key passed in (or by `signing_key` where a test asks for a forged CRL);
`revoke` keeps every entry of the current CRL, adds the new one, increments the
CRL number and re-signs; an existing CA or agency key is never overwritten.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from axis.trust import keys
from axis.trust.identity import agency_subject, canonical_agency_code
from axis.trust.keys import SigningKey

KeyType = Literal["ec", "rsa"]
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning, RFC 9336
AGENCY_SAN_PREFIX = "urn:axis:agency:"

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key.pem"
CRL_FILE = "crl.pem"

ROOT_VALID_DAYS = 3650
AGENCY_VALID_DAYS = 730
CRL_VALID_DAYS = 7
RSA_BITS = 3072
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$)(\*\.)?{_LABEL}(\.{_LABEL})*$")
# Back-date notBefore/thisUpdate a little so a peer whose clock runs slightly behind
# does not see a brand-new certificate as "not yet valid".
_BACKDATE = dt.timedelta(minutes=5)


class PKIError(Exception):
    """A development-PKI operation cannot be done; the message says why and what to do."""


# ------------------------------------------------------------------ object layer

def generate_key(key_type: KeyType = "ec", *, rsa_bits: int = RSA_BITS) -> SigningKey:
    """A fresh EC P-256 or RSA key (RSA-3072 by default; at least 2048 bits)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        if rsa_bits < keys.MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {keys.MIN_RSA_BITS} bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"unknown key type {key_type!r}; use 'ec' or 'rsa'")


def _window(not_before: dt.datetime | None, not_after: dt.datetime | None,
            valid_days: int) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or (dt.datetime.now(dt.UTC) - _BACKDATE)
    end = not_after or (start + dt.timedelta(days=valid_days))
    return start, end


def _ski(public_key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(keys.issuer_public_key(issuer_cert))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Axis development PKI"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_certificate(key: SigningKey, name: x509.Name, issuer_cert: x509.Certificate | None,
                    signing_key: SigningKey, path_length: int | None, start: dt.datetime, end: dt.datetime,
                    hash_algorithm: hashes.HashAlgorithm) -> x509.Certificate:
    """A CA certificate for `key`: self-signed when `issuer_cert` is None, else issued by it."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(_aki(issuer_cert), critical=False)
    return _sign(builder, signing_key, hash_algorithm)


def build_root_certificate(
    key: SigningKey,
    *,
    common_name: str = "Axis Development Root CA",
    path_length: int | None = 0,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    valid_days: int = ROOT_VALID_DAYS,
    hash_algorithm: hashes.HashAlgorithm = hashes.SHA256(),
) -> x509.Certificate:
    """A self-signed root. `path_length=0`: it issues agency certificates directly, no intermediates."""
    start, end = _window(not_before, not_after, valid_days)
    return _ca_certificate(key, _ca_name(common_name), None, key, path_length, start, end, hash_algorithm)


def build_intermediate_certificate(
    key: SigningKey,
    issuer_cert: x509.Certificate,
    issuer_key: SigningKey,
    *,
    common_name: str = "Axis Development Issuing CA",
    path_length: int | None = 0,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    valid_days: int = ROOT_VALID_DAYS,
    hash_algorithm: hashes.HashAlgorithm = hashes.SHA256(),
) -> x509.Certificate:
    """A subordinate CA (the shape of a national root → public CA → agency hierarchy)."""
    start, end = _window(not_before, not_after, valid_days)
    return _ca_certificate(key, _ca_name(common_name), issuer_cert, issuer_key, path_length, start, end,
                           hash_algorithm)


def build_agency_certificate(
    code: str,
    public_key,
    issuer_cert: x509.Certificate,
    issuer_key: SigningKey,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    valid_days: int = AGENCY_VALID_DAYS,
    digital_signature: bool = True,
    content_commitment: bool = True,
    key_usage: bool = True,
    with_agency_code: bool = True,
    hash_algorithm: hashes.HashAlgorithm = hashes.SHA256(),
    serial_number: int | None = None,
) -> x509.Certificate:
    """An agency signing certificate for `code`, issued by `issuer_cert`/`issuer_key`.

    The keywords exist for tests of the refusal paths: `digital_signature=False`
    or `key_usage=False` (no KeyUsage extension at all), `with_agency_code=False`
    (subject CN only), `hash_algorithm=hashes.SHA1()`, or a validity window in
    the past or future.
    """
    code = canonical_agency_code(code)
    if with_agency_code:
        subject = agency_subject(code)
    else:
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                             x509.NameAttribute(NameOID.COMMON_NAME, code)])
    start, end = _window(not_before, not_after, valid_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                       critical=False)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(AGENCY_SAN_PREFIX + code)]), critical=False)
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=digital_signature, content_commitment=content_commitment,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
    return _sign(builder, issuer_key, hash_algorithm)


def build_crl(
    issuer_cert: x509.Certificate,
    signing_key: SigningKey,
    revoked: Iterable[tuple[int, dt.datetime]] = (),
    *,
    number: int = 1,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    valid_days: int = CRL_VALID_DAYS,
    hash_algorithm: hashes.HashAlgorithm = hashes.SHA256(),
) -> x509.CertificateRevocationList:
    """A full CRL naming `issuer_cert` as issuer, listing `(serial, revocation time)` pairs.

    `signing_key` is normally the issuer's key; a test passes another key to make
    a CRL that claims the CA as issuer but is not signed by it.
    """
    start = last_update or (dt.datetime.now(dt.UTC) - _BACKDATE)
    end = next_update or (start + dt.timedelta(days=valid_days))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(start).next_update(end)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(signing_key, _x509_hash(hash_algorithm))


# cryptography (>= 48) no longer signs X.509 objects with SHA-1, but tests must show
# that a SHA-1 certificate is refused. So a SHA-1 certificate is built with SHA-256,
# then its AlgorithmIdentifiers are swapped and the TBSCertificate re-signed.
_SHA1_ALGORITHM_IDS = {
    rsa.RSAPrivateKey: bytes.fromhex("300d06092a864886f70d0101050500"),  # sha1WithRSAEncryption
    ec.EllipticCurvePrivateKey: bytes.fromhex("300906072a8648ce3d0401"),  # ecdsa-with-SHA1
}


_X509_HASHES = (hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512,
                hashes.SHA3_224, hashes.SHA3_256, hashes.SHA3_384, hashes.SHA3_512)


def _x509_hash(algorithm: hashes.HashAlgorithm) -> (hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512
                                                   | hashes.SHA3_224 | hashes.SHA3_256 | hashes.SHA3_384
                                                   | hashes.SHA3_512):
    """The hashes cryptography signs certificates and CRLs with; SHA-1 goes through `_sign`'s own path."""
    if not isinstance(algorithm, _X509_HASHES):
        raise ValueError(f"cryptography does not sign X.509 objects with {algorithm.name}")
    return algorithm


def _sign(builder: x509.CertificateBuilder, key: SigningKey, hash_algorithm: hashes.HashAlgorithm
          ) -> x509.Certificate:
    if not isinstance(hash_algorithm, hashes.SHA1):
        return builder.sign(key, _x509_hash(hash_algorithm))
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    algorithm_id = next(aid for kind, aid in _SHA1_ALGORITHM_IDS.items() if isinstance(key, kind))
    tbs, _, _ = _der_children(der)
    fields = _der_children(tbs)
    index = 2 if fields[0][0] == 0xA0 else 1  # [0] version, serialNumber, signature
    tbs = _der(0x30, b"".join(algorithm_id if i == index else f for i, f in enumerate(fields)))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    else:
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA1()))
    return x509.load_der_x509_certificate(_der(0x30, tbs + algorithm_id + _der(0x03, b"\x00" + signature)))


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_children(der: bytes) -> list[bytes]:
    """The complete TLVs inside the outer (constructed) TLV of `der`."""
    def read(pos: int) -> tuple[int, int]:  # (content start, end) of the TLV at pos
        first = der[pos + 1]
        if first < 0x80:
            return pos + 2, pos + 2 + first
        count = first & 0x7F
        return pos + 2 + count, pos + 2 + count + int.from_bytes(der[pos + 2:pos + 2 + count], "big")
    start, end = read(0)
    children, pos = [], start
    while pos < end:
        _, child_end = read(pos)
        children.append(der[pos:child_end])
        pos = child_end
    return children


# -------------------------------------------------------------------- file layer

@dataclass(frozen=True)
class CertificateAuthority:
    """A CA loaded from a PKI directory."""

    directory: Path
    certificate: x509.Certificate
    key: SigningKey

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT_FILE

    @property
    def crl_path(self) -> Path:
        return self.directory / CRL_FILE


def load_ca(pki_dir: str | os.PathLike[str]) -> CertificateAuthority:
    """The CA of a directory made by `init_ca`; PKIError when it is missing or inconsistent."""
    directory = Path(pki_dir)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not cert_path.is_file() or not key_path.is_file():
        raise PKIError(f"{directory} is not a PKI directory (no {CA_CERT_FILE} / {CA_KEY_FILE}); "
                       "create one with `axis pki init DIR`")
    try:
        cert = keys.load_certificate(cert_path)
        key = keys.load_private_key(key_path)
    except ValueError as exc:
        raise PKIError(str(exc)) from None
    if not keys.same_public_key(key, cert):
        raise PKIError(f"{key_path} is not the key of {cert_path}")
    return CertificateAuthority(directory, cert, key)


def init_ca(
    pki_dir: str | os.PathLike[str],
    *,
    key_type: KeyType = "ec",
    common_name: str = "Axis Development Root CA",
    valid_days: int = ROOT_VALID_DAYS,
) -> Path:
    """Create DIR/ca.pem, DIR/ca.key.pem (0600) and an empty signed DIR/crl.pem; return ca.pem's path."""
    directory = Path(pki_dir)
    for name in (CA_CERT_FILE, CA_KEY_FILE):
        if (directory / name).exists():
            raise PKIError(f"{directory / name} already exists; refusing to replace a CA "
                           "(every certificate it issued would stop verifying). Use another directory.")
    key = generate_key(key_type)
    cert = build_root_certificate(key, common_name=common_name, valid_days=valid_days)
    keys.write_private_key(directory / CA_KEY_FILE, key)
    keys.write_public_file(directory / CA_CERT_FILE, keys.certificate_pem(cert))
    keys.write_public_file(directory / CRL_FILE, keys.crl_pem(build_crl(cert, key, number=1)))
    return directory / CA_CERT_FILE


def issue(
    code: str,
    pki_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    key_type: KeyType = "ec",
    *,
    valid_days: int = AGENCY_VALID_DAYS,
) -> tuple[Path, Path]:
    """Issue a key and certificate for agency CODE into OUT/CODE.key.pem (0600) and OUT/CODE.cert.pem.

    Raises PacketError(INVALID_AGENCY_CODE) for a bad code and PKIError when the
    CA is missing or the files already exist.
    """
    code = canonical_agency_code(code)
    ca = load_ca(pki_dir)
    out = Path(out_dir)
    key_path, cert_path = out / f"{code}.key.pem", out / f"{code}.cert.pem"
    for path in (key_path, cert_path):
        if path.exists():
            raise PKIError(f"{path} already exists; revoke the old certificate and remove its files first, "
                           "or issue into another directory")
    key = generate_key(key_type)
    cert = build_agency_certificate(code, key.public_key(), ca.certificate, ca.key, valid_days=valid_days)
    keys.write_private_key(key_path, key)
    keys.write_public_file(cert_path, keys.certificate_pem(cert))
    return key_path, cert_path


TLS_VALID_DAYS = 397  # what browsers accept for a server certificate


def build_tls_certificate(
    names: Sequence[str],
    public_key,
    issuer_cert: x509.Certificate,
    issuer_key: SigningKey,
    *,
    valid_days: int = TLS_VALID_DAYS,
) -> x509.Certificate:
    """A TLS server certificate (the gateway's) for DNS names and IP addresses, the first one its CN."""
    if not names:
        raise ValueError("a TLS certificate needs at least one host name")
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not _HOSTNAME.match(name):
                raise PKIError(f"{name!r} is neither a host name nor an IP address") from None
            alternatives.append(x509.DNSName(name.lower()))
    start, end = _window(None, None, valid_days)
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Axis development PKI"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
    )
    return _sign(builder, issuer_key, hashes.SHA256())


def issue_tls(
    names: Sequence[str],
    pki_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    key_type: KeyType = "ec",
    *,
    valid_days: int = TLS_VALID_DAYS,
) -> tuple[Path, Path]:
    """Issue the gateway's TLS key and certificate into OUT/NAME.tls.key.pem (0600) and OUT/NAME.tls.cert.pem.

    NAME is the first of `names` (host names and IP addresses, all in the certificate's SAN). The
    certificate file holds the leaf and then the CA, the chain a TLS server sends.
    """
    ca = load_ca(pki_dir)
    out = Path(out_dir)
    first = names[0] if names else ""
    key_path, cert_path = out / f"{first}.tls.key.pem", out / f"{first}.tls.cert.pem"
    for path in (key_path, cert_path):
        if path.exists():
            raise PKIError(f"{path} already exists; remove it first, or issue into another directory")
    key = generate_key(key_type)
    cert = build_tls_certificate(list(names), key.public_key(), ca.certificate, ca.key, valid_days=valid_days)
    keys.write_private_key(key_path, key)
    keys.write_public_file(cert_path, keys.certificate_pem(cert, ca.certificate))
    return key_path, cert_path


TSA_ROOT_FILE = "tsa-root.pem"
TSA_CERT_FILE = "tsa.pem"
TSA_KEY_FILE = "tsa.key"
TSA_VALID_DAYS = 1095


def build_tsa_certificate(
    public_key,
    issuer_cert: x509.Certificate,
    issuer_key: SigningKey,
    *,
    common_name: str = "Axis Development TSA",
    valid_days: int = TSA_VALID_DAYS,
) -> x509.Certificate:
    """A time-stamping authority's certificate (RFC 3161 §2.3): EKU timeStamping alone, critical.

    KeyUsage is digitalSignature and contentCommitment (critical): OpenSSL's timestamp-signing purpose
    allows no other bit, and verifiers (openssl ts -verify, rfc3161-client) refuse a token whose
    signer lacks the critical EKU.
    """
    start, end = _window(None, None, valid_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Axis development PKI"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
    )
    return _sign(builder, issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class TsaFiles:
    """What `init_tsa` wrote: the root verifiers trust, the TSA's certificate and its key (0600)."""

    root: Path
    cert: Path
    key: Path


def init_tsa(directory: str | os.PathLike[str], key_type: KeyType = "ec", *,
             valid_days: int = TSA_VALID_DAYS) -> TsaFiles:
    """Create a development TSA in DIR: tsa-root.pem, tsa.pem (issued by that root) and tsa.key (0600).

    The root's key is used once and never written: nothing else can ever chain to that root, so a
    verifier trusting tsa-root.pem trusts this one TSA certificate. To renew, make a new directory
    (and distribute its tsa-root.pem). Raises PKIError when any of the three files already exists.
    """
    out = Path(directory)
    files = TsaFiles(out / TSA_ROOT_FILE, out / TSA_CERT_FILE, out / TSA_KEY_FILE)
    for path in (files.root, files.cert, files.key):
        if path.exists():
            raise PKIError(f"{path} already exists; refusing to replace a TSA (tokens it signed would no longer "
                           "verify against a new root). Use another directory.")
    root_key = generate_key(key_type)
    root = build_root_certificate(root_key, common_name="Axis Development TSA Root CA", valid_days=ROOT_VALID_DAYS)
    key = generate_key(key_type)
    cert = build_tsa_certificate(key.public_key(), root, root_key, valid_days=valid_days)
    keys.write_private_key(files.key, key)
    keys.write_public_file(files.cert, keys.certificate_pem(cert))
    keys.write_public_file(files.root, keys.certificate_pem(root))
    return files


def _current_crl(ca: CertificateAuthority) -> x509.CertificateRevocationList | None:
    if not ca.crl_path.exists():
        return None
    try:
        crls = keys.load_crls(ca.crl_path)
    except ValueError as exc:
        raise PKIError(f"{exc}; restore it from backup (its entries must not be lost)") from None
    crl = crls[0]
    if crl.issuer != ca.certificate.subject or not crl.is_signature_valid(ca.key.public_key()):
        raise PKIError(f"{ca.crl_path} is not signed by the CA in {ca.cert_path}; "
                       "refusing to extend a CRL of unknown origin")
    return crl


def _publish(ca: CertificateAuthority, entries: dict[int, dt.datetime], next_number: int,
             valid_days: int) -> Path:
    crl = build_crl(ca.certificate, ca.key, sorted(entries.items()), number=next_number, valid_days=valid_days)
    return keys.write_public_file(ca.crl_path, keys.crl_pem(crl))


def _entries_and_number(ca: CertificateAuthority) -> tuple[dict[int, dt.datetime], int]:
    crl = _current_crl(ca)
    if crl is None:
        return {}, 1
    entries = {entry.serial_number: entry.revocation_date_utc for entry in crl}
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    return entries, number + 1


def revoke(
    cert_path: str | os.PathLike[str],
    pki_dir: str | os.PathLike[str],
    *,
    valid_days: int = CRL_VALID_DAYS,
) -> int:
    """Add the certificate's serial to a freshly signed DIR/crl.pem; return the serial.

    Revoking an already revoked certificate keeps its first revocation time and
    still publishes a fresh CRL.
    """
    ca = load_ca(pki_dir)
    try:
        cert = keys.load_certificate(cert_path)
    except ValueError as exc:
        raise PKIError(str(exc)) from None
    if cert.issuer != ca.certificate.subject:
        raise PKIError(f"{cert_path} was issued by {cert.issuer.rfc4514_string()!r}, "
                       f"not by this CA ({ca.certificate.subject.rfc4514_string()!r})")
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):  # all mean "not ours"
        raise PKIError(f"{cert_path} names this CA as issuer but is not signed by its key") from None
    entries, number = _entries_and_number(ca)
    entries.setdefault(cert.serial_number, dt.datetime.now(dt.UTC).replace(microsecond=0))
    _publish(ca, entries, number, valid_days)
    return cert.serial_number


def refresh_crl(pki_dir: str | os.PathLike[str], *, valid_days: int = CRL_VALID_DAYS) -> Path:
    """Re-sign DIR/crl.pem with the same entries, a new number and a new nextUpdate."""
    ca = load_ca(pki_dir)
    entries, number = _entries_and_number(ca)
    return _publish(ca, entries, number, valid_days)
