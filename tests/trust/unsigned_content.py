"""Unsigned content in a signed packet: the attacks, and the stored vectors built from them.

Each attack takes a packet signed by Axis's Signer and adds, byte for byte,
something the enveloped URI="" signature does not cover. Before AX305 each
of these verified and was delivered as it was. The tests apply them to
packets they sign at test time (tests/trust, tests/security); the same
functions built the stored vectors in tests/vectors/unsigned-content/
(see its README.md):

    .venv/bin/python -m tests.trust.unsigned_content     # rewrites those vectors and their root.pem
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "unsigned-content"
SAMPLES = Path(__file__).resolve().parents[1] / "vectors" / "vdxp-sdk"
EDXML_NS = b"http://www.mic.gov.vn/TBT/QCVN_102_2016"


def _once(data: bytes, old: bytes, new: bytes) -> bytes:
    if data.count(old) != 1:
        raise ValueError(f"expected {old!r} exactly once in the signed packet, found {data.count(old)}")
    return data.replace(old, new)


def _second_packet() -> bytes:
    """The SDK's revocation document (its broken SDK signature and XML declaration removed)."""
    data = (SAMPLES / "edoc_revocation.edxml").read_bytes()
    data = re.sub(rb"\s*<Signature>.*?</Signature>", b"", data, count=1, flags=re.DOTALL)
    return re.sub(rb"^<\?xml[^>]*\?>\s*", b"", data)


def object_second_packet(signed: bytes) -> bytes:
    """A ds:Object after KeyInfo holding a whole second edXML packet (another sender, another document)."""
    return _once(signed, b"</ds:KeyInfo>", b"</ds:KeyInfo><ds:Object>" + _second_packet() + b"</ds:Object>")


def keyname_subject(signed: bytes) -> bytes:
    """KeyInfo gains a KeyName naming another agency and an edXML Subject a reader may show."""
    return _once(signed, b"<ds:X509Data>",
                 b"<ds:KeyName>000.00.00.H14</ds:KeyName><edXML:Subject xmlns:edXML=\"" + EDXML_NS
                 + b"\">V/v thu hoi van ban so 7816/VPCP-TTDT</edXML:Subject><ds:X509Data>")


def extra_element(signed: bytes) -> bytes:
    """An edXML StatusCode inside the Signature, in X509Data (whose schema admits foreign elements,
    so both engines verified it; after SignatureValue or KeyInfo their schema checks refused it)."""
    return _once(signed, b"</ds:X509Data>",
                 b"<edXML:StatusCode xmlns:edXML=\"" + EDXML_NS + b"\">06</edXML:StatusCode></ds:X509Data>")


def split_text_comment(signed: bytes) -> bytes:
    """The sender's code split by a comment: signed as 000.00.00.H41, read as 000.00.00.H | 41."""
    return _once(signed, b"<edXML:OrganId>000.00.00.H41</edXML:OrganId>",
                 b"<edXML:OrganId>000.00.00.H<!-- H14 -->41</edXML:OrganId>")


def processing_instruction(signed: bytes) -> bytes:
    """A processing instruction inside ds:Signature, which the enveloped transform cuts out."""
    return _once(signed, b"</ds:SignatureValue>",
                 b"</ds:SignatureValue><?axis-route to=\"000.00.00.H14\"?>")


ATTACKS: dict[str, Callable[[bytes], bytes]] = {
    "object_second_packet": object_second_packet,
    "keyname_subject": keyname_subject,
    "extra_element": extra_element,
    "split_text_comment": split_text_comment,
    "processing_instruction": processing_instruction,
}
# What each attack adds, to take out again: the vector minus this is the signed packet.
ADDED: dict[str, re.Pattern[bytes]] = {
    "object_second_packet": re.compile(rb"<ds:Object>.*</ds:Object>", re.DOTALL),
    "keyname_subject": re.compile(rb"<ds:KeyName>.*</edXML:Subject>"),
    "extra_element": re.compile(rb"<edXML:StatusCode xmlns:edXML=[^>]*>06</edXML:StatusCode>"),
    "split_text_comment": re.compile(rb"<!-- H14 -->"),
    "processing_instruction": re.compile(rb"<\?axis-route[^>]*\?>"),
}


def remove_attack(name: str, vector: bytes) -> bytes:
    stripped, count = ADDED[name].subn(b"", vector)
    if count != 1:
        raise ValueError(f"{name}: expected the added content once, found {count}")
    return stripped


def write_vectors() -> None:
    """Sign the SDK's status_inbox_01 (From 000.00.00.H41) with a fresh throwaway PKI, store the
    root certificate and each attacked packet. The keys are not kept: nothing can re-sign them."""
    from cryptography.hazmat.primitives import serialization

    from axis.trust import Signer, pki

    root_key = pki.generate_key("ec")
    root = pki.build_root_certificate(root_key, common_name="Axis Test Vectors Root CA", valid_days=36500)
    key = pki.generate_key("ec")
    cert = pki.build_agency_certificate("000.00.00.H41", key.public_key(), root, root_key, valid_days=36500)
    signed = Signer(key, cert).sign((SAMPLES / "status_inbox_01.edxml").read_bytes())
    VECTORS.mkdir(parents=True, exist_ok=True)
    (VECTORS / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    for name, attack in ATTACKS.items():
        (VECTORS / f"{name}.edxml").write_bytes(attack(signed))


if __name__ == "__main__":
    write_vectors()
