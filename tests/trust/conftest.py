"""Fixtures for the trust tests: one real development PKI per session.

`init_ca` + `issue` write real files (an EC root; H41 and H14 EC agencies; G22
an RSA-3072 agency). Keys are loaded once, RSA included, because RSA key
validation costs ~100 ms per load.

Every trust test runs twice, once per XML-DSig engine (`axis.trust.xmldsig`):
the engine signs the session's packets and verifies them.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from signxml.algorithms import CanonicalizationMethod

from axis.trust import Signer, keys, pki, xmldsig
from axis.trust.keys import SigningKey
from tests.trust.helpers import DOCUMENT_SAMPLE, G22, H14, H41, STATUS_SAMPLE, DevPKI, load_sample, raw_sign


@pytest.fixture(scope="session", params=["xmlsec", "signxml"], autouse=True)
def xmldsig_engine(request: pytest.FixtureRequest) -> Iterator[xmldsig.Engine]:
    previous = xmldsig.default()
    yield xmldsig.select(request.param)
    xmldsig.select(previous.name)


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    base = tmp_path_factory.mktemp("pki")
    directory, out = base / "ca", base / "agencies"
    pki.init_ca(directory)
    key_paths, cert_paths, loaded, signers = {}, {}, {}, {}
    for code, key_type in ((H41, "ec"), (H14, "ec"), (G22, "rsa")):
        key_paths[code], cert_paths[code] = pki.issue(code, directory, out, key_type)
        loaded[code] = keys.load_private_key(key_paths[code])
        signers[code] = Signer(loaded[code], keys.load_certificate(cert_paths[code]))
    return DevPKI(directory, out, pki.load_ca(directory), loaded, signers, key_paths, cert_paths)


@pytest.fixture(scope="session")
def status_packet(samples_dir: Path) -> bytes:
    return load_sample(samples_dir, STATUS_SAMPLE)


@pytest.fixture(scope="session")
def document_packet(samples_dir: Path) -> bytes:
    return load_sample(samples_dir, DOCUMENT_SAMPLE)


@pytest.fixture(scope="session")
def signed_status(dev_pki: DevPKI, status_packet: bytes, xmldsig_engine: xmldsig.Engine) -> bytes:
    return dev_pki.signers[H41].sign(status_packet)


@pytest.fixture(scope="session")
def signed_document(dev_pki: DevPKI, document_packet: bytes, xmldsig_engine: xmldsig.Engine) -> bytes:
    return dev_pki.signers[G22].sign(document_packet)


@pytest.fixture(scope="session")
def signed_status_default_ns(dev_pki: DevPKI, status_packet: bytes, xmldsig_engine: xmldsig.Engine) -> bytes:
    """H41's status packet signed as Java SDKs do: `<Signature xmlns="...xmldsig#">`, inclusive C14N 1.0."""
    return raw_sign(status_packet, dev_pki.keys[H41], dev_pki.signers[H41].certificate, default_namespace=True,
                    c14n=CanonicalizationMethod.CANONICAL_XML_1_0)


@pytest.fixture(scope="session")
def other_root() -> tuple[x509.Certificate, SigningKey]:
    """A second root with the SAME subject name as the dev root: only its key differs."""
    key = pki.generate_key("ec")
    return pki.build_root_certificate(key), key


@pytest.fixture
def fresh_pki(tmp_path: Path) -> Path:
    """A throwaway PKI directory (EC root, fast) for tests that revoke."""
    pki.init_ca(tmp_path / "ca")
    return tmp_path / "ca"
