"""Shared by the timestamp tests: development TSAs made with the real `init_tsa`, and OpenSSL as a second opinion.

- `tsa_files` / `rsa_tsa_files`: a TSA directory per module (EC P-256 / RSA-3072);
- `openssl_ts_verify(...)`: `openssl ts -verify` on a token, its output;
- `request_der(data, ...)`: a TimeStampReq made by rfc3161-client, the client Axis uses;
- `self_signed_certificate(eku, critical)`: a self-signed EC certificate with that EKU (None: none), and its key.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from axis.trust.keys import SigningKey
from axis.trust.pki import TsaFiles, generate_key, init_tsa

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@pytest.fixture(scope="module")
def tsa_files(tmp_path_factory: pytest.TempPathFactory) -> TsaFiles:
    return init_tsa(tmp_path_factory.mktemp("tsa-ec"), "ec")


@pytest.fixture(scope="module")
def rsa_tsa_files(tmp_path_factory: pytest.TempPathFactory) -> TsaFiles:
    return init_tsa(tmp_path_factory.mktemp("tsa-rsa"), "rsa")


def request_der(data: bytes, *, cert_req: bool = True, nonce: bool = True) -> bytes:
    builder = TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
    return builder.nonce(nonce=nonce).cert_request(cert_request=cert_req).build().as_bytes()


def openssl_ts_verify(folder: Path, data: bytes, tsr: bytes, root: Path, untrusted: Path | None = None
                      ) -> subprocess.CompletedProcess[str]:
    """`openssl ts -verify -data FILE -in TOKEN.tsr -CAfile ROOT [-untrusted CERT]`, run on files in `folder`."""
    if not Path(OPENSSL).is_file():
        pytest.fail("openssl is not installed: the interoperability checks need it (Debian: apt-get install openssl)")
    data_path, tsr_path = folder / "data.bin", folder / "token.tsr"
    data_path.write_bytes(data)
    tsr_path.write_bytes(tsr)
    command = [OPENSSL, "ts", "-verify", "-data", str(data_path), "-in", str(tsr_path), "-CAfile", str(root)]
    if untrusted is not None:
        command += ["-untrusted", str(untrusted)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def self_signed_certificate(eku: list[x509.ObjectIdentifier] | None, critical: bool = True
                            ) -> tuple[x509.Certificate, SigningKey]:
    key = generate_key("ec")
    name = x509.Name.from_rfc4514_string("CN=not a TSA")
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1)))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=critical)
    return builder.sign(key, hashes.SHA256()), key
