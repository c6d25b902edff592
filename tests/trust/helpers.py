"""Helpers for the trust tests: the SDK samples, the session PKI, byte surgery on signed packets.

The document samples carry a broken `<Signature>` (edXML namespace, RSA-SHA1, a
truncated certificate); `strip_signature` removes exactly that element, byte
for byte, so the rest of the real packet is signed as the SDK wrote it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree
from signxml import SignatureMethod, XMLSigner, methods
from signxml.algorithms import CanonicalizationMethod

from axis.refusals import Refusal, RefusalCode
from axis.trust import Signer, Verifier, pki
from axis.trust.keys import SigningKey
from axis.trust.placement import DS_NS, SIGNATURE, header_of, signature_anchor

STATUS_SAMPLE = "status_inbox_01.edxml"   # From/OrganId 000.00.00.H41
DOCUMENT_SAMPLE = "edoc_update.edxml"     # From/OrganId 000.00.00.G22
H41, G22, H14 = "000.00.00.H41", "000.00.00.G22", "000.00.00.H14"

_SDK_SIGNATURE = re.compile(rb"\s*<Signature>.*?</Signature>", re.DOTALL)


def strip_signature(data: bytes) -> bytes:
    stripped, count = _SDK_SIGNATURE.subn(b"", data)
    assert count == 1, f"expected exactly one SDK <Signature> element, found {count}"
    return stripped


def load_sample(samples_dir: Path, name: str) -> bytes:
    """The sample's bytes; a document sample without its broken SDK signature."""
    data = (samples_dir / name).read_bytes()
    return strip_signature(data) if name.startswith("edoc_") else data


def signatures(data: bytes) -> list[etree._Element]:
    return list(etree.fromstring(data).iter(SIGNATURE))


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1, f"{old!r} not found"
    return data.replace(old, new, 1)


def flip_byte_in(data: bytes, pattern: bytes, offset: int = 0) -> bytes:
    """Change one byte: the one `offset` bytes into the content of the first element matching `pattern`."""
    match = re.search(pattern, data, re.DOTALL)
    assert match, f"{pattern!r} not found"
    position = match.start(1) + offset
    old = data[position]
    # Stay inside the same character class, so the XML stays well-formed and base64 stays base64.
    new = {ord("A"): ord("B"), ord("a"): ord("b")}.get(old, ord("A") if old != ord("A") else ord("C"))
    if chr(old).isdigit():
        new = ord("1") if old != ord("1") else ord("2")
    return data[:position] + bytes([new]) + data[position + 1:]


def raw_sign(packet: bytes, key, cert: x509.Certificate, *, default_namespace: bool = False,
             method: SignatureMethod = SignatureMethod.ECDSA_SHA256,
             c14n: CanonicalizationMethod = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0) -> bytes:
    """Sign with signxml directly: for keys `Signer` refuses, and for a default-namespace
    `<Signature xmlns="...xmldsig#">` with inclusive C14N, the form Java SDKs write."""
    root = etree.fromstring(packet)
    nsmap = {None: DS_NS} if default_namespace else {"ds": DS_NS}
    signature_anchor(header_of(root)).addnext(etree.Element(SIGNATURE, {"Id": "placeholder"}, nsmap=nsmap))
    signer = XMLSigner(method=methods.enveloped, signature_algorithm=method, c14n_algorithm=c14n)
    signer.namespaces = nsmap
    return etree.tostring(signer.sign(root, key=key, cert=[cert]), xml_declaration=True, encoding="UTF-8")


def refusal_of(verifier: Verifier, data: bytes) -> Refusal:
    with pytest.raises(Refusal) as info:
        verifier.verify(data)
    return info.value


def code_of(verifier: Verifier, data: bytes) -> RefusalCode:
    return refusal_of(verifier, data).code


@dataclass
class DevPKI:
    """The session PKI: files from `init_ca`/`issue`, keys loaded once."""

    directory: Path
    out: Path
    ca: pki.CertificateAuthority
    keys: dict[str, SigningKey]
    signers: dict[str, Signer]
    key_paths: dict[str, Path]
    cert_paths: dict[str, Path]
    _verifier: Verifier | None = field(default=None, repr=False)

    @property
    def ca_path(self) -> Path:
        return self.ca.cert_path

    @property
    def crl_path(self) -> Path:
        return self.ca.crl_path

    def verifier(self, **options) -> Verifier:
        """A verifier from the PKI files (one shared instance when no options are given)."""
        if options:
            return Verifier.from_files(self.ca_path, self.crl_path, **options)
        if self._verifier is None:
            self._verifier = Verifier.from_files(self.ca_path, self.crl_path)
        return self._verifier

    def certificate(self, code: str, *, key_of: str | None = None,
                    issuer: tuple[x509.Certificate, SigningKey] | None = None, **options) -> x509.Certificate:
        """A certificate for `code` over the key of `key_of` (default: code's own), from this root or `issuer`."""
        cert, key = issuer or (self.ca.certificate, self.ca.key)
        return pki.build_agency_certificate(code, self.keys[key_of or code].public_key(), cert, key, **options)

    def signer(self, code: str, **options) -> Signer:
        """`code`'s signer, or one with `code`'s key and an odd certificate (`options` as for `certificate`)."""
        if not options:
            return self.signers[code]
        key_of = options.pop("key_of", None) or code
        return Signer(self.keys[key_of], self.certificate(code, key_of=key_of, **options))
