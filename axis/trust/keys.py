"""PEM files for keys, certificates and CRLs: reading them once, writing them safely.

Callers may rely on:
- the `load_*` functions return parsed `cryptography` objects or raise
  `ValueError` naming the file and what is wrong with it (these are operator
  configuration files, not untrusted input, so they do not raise refusals);
- `write_private_key` creates the file with mode 0600 before any key byte is
  written, and every `write_*` replaces its target atomically (a reader never
  sees half a file);
- only the key types Axis signs with are accepted: RSA of at least 2048 bits and
  EC P-256 (`SigningKey`).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from axis.private import FILE_MODE, private_directory

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# What a SigningKey's certificate carries; the one kind of key that can sign a certificate or CRL here.
IssuerPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
MIN_RSA_BITS = 2048

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)



class KeyFileError(ValueError):
    """A key, certificate or CRL file that cannot be used: missing, unreadable, not PEM, a key Axis does not
    sign with, or a key that is not its certificate's. The message names the file and what is wrong, in one
    line (commands print it as it is, without a traceback)."""

def check_signing_key(key: object) -> SigningKey:
    """Accept an RSA (>= 2048 bits) or EC P-256 private key; raise ValueError for anything else."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too small; use at least {MIN_RSA_BITS}")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC key on {key.curve.name}; Axis signs with P-256 (secp256r1) only")
        return key
    raise ValueError(f"{type(key).__name__} is not a signing key Axis uses; use RSA (>= 2048) or EC P-256")


def issuer_public_key(cert: x509.Certificate) -> IssuerPublicKey:
    """The certificate's key if it is RSA or EC (the keys Axis signs with); ValueError otherwise."""
    key = cert.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ValueError(f"the key of {cert.subject.rfc4514_string()!r} is {type(key).__name__}, not RSA or EC")
    return key


def same_public_key(key: SigningKey, cert: x509.Certificate) -> bool:
    """Whether `cert` carries the public half of `key` (compared as SubjectPublicKeyInfo DER)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def sign_raw(key: SigningKey, data: bytes) -> bytes:
    """A signature over `data` with SHA-256: RSA PKCS#1 v1.5, or ECDSA (DER-encoded), by the key's type.

    The form `openssl dgst -sha256 -verify pub.pem -signature sig data` accepts; delivery seals
    (`axis.seal`) and the signer's `sign_bytes` are made with it."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify_raw(key: IssuerPublicKey, signature: bytes, data: bytes) -> None:
    """Return if `signature` is `sign_raw`'s over `data` by the key's private half; InvalidSignature if not."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def load_private_key(path: str | os.PathLike[str], password: bytes | None = None) -> SigningKey:
    """Load a PEM private key. RSA keys get cryptography's full validation (~100 ms): load once."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a readable PEM private key ({exc})") from None
    try:
        return check_signing_key(key)
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order (at least one)."""
    data = _read(path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a readable PEM certificate file ({exc})") from None
    return certs


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The first certificate of a PEM file (a leaf file may carry its chain after it)."""
    return load_certificates(path)[0]


def load_crls(path: str | os.PathLike[str]) -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM file (one or more `BEGIN X509 CRL` blocks)."""
    return parse_crls(_read(path), str(path))


def parse_crls(data: bytes, where: str) -> list[x509.CertificateRevocationList]:
    """Every CRL in PEM bytes; ValueError naming `where` when there is none or one cannot be read."""
    blocks = _PEM_CRL.findall(data)
    if not blocks:
        raise KeyFileError(f"{where}: no PEM CRL (-----BEGIN X509 CRL-----) found")
    crls = []
    for index, block in enumerate(blocks):
        try:
            crls.append(x509.load_pem_x509_crl(block))
        except ValueError as exc:
            raise KeyFileError(f"{where}: CRL #{index + 1} cannot be read ({exc})") from None
    return crls


def private_key_pem(key: SigningKey) -> bytes:
    # Unencrypted PKCS#8: the development PKI protects keys by file mode; production
    # keys belong in an HSM or an encrypted store, which this module does not manage.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def write_private_key(path: str | os.PathLike[str], key: SigningKey) -> Path:
    return _write_atomic(Path(path), private_key_pem(key), mode=FILE_MODE)


def write_public_file(path: str | os.PathLike[str], data: bytes) -> Path:
    # Public, yet private to Axis's user like every file it creates: share a certificate by copying it.
    return _write_atomic(Path(path), data, mode=FILE_MODE)


def _write_atomic(path: Path, data: bytes, *, mode: int) -> Path:
    private_directory(path.parent)
    # mkstemp creates the file 0600, so a key is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from None
