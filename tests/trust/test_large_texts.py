"""A packet with large text nodes (an attachment) is verified with its digest computed in pieces
(`xmldsig.XmlsecEngine._verify_streamed`), with the same verdicts as libxmlsec1's own verification.

The size from which a text node counts as large is lowered here, so small packets take that road.
"""
from __future__ import annotations

import base64
import os

import pytest

from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document
from axis.edxml.ns import q
from axis.refusals import RefusalCode
from axis.trust import xmldsig
from tests.trust.helpers import G22, H14, H41, code_of, replace_once

# Non-ASCII, and the characters C14N escapes in text (a CR only arrives as a character reference).
SUBJECT = "Trục liên thông & <văn bản> điện tử\r" * 60


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Text nodes of 1,000 characters or more count as large; the list grows by one per streamed verification."""
    calls: list[int] = []
    original = xmldsig.XmlsecEngine._verify_streamed

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xmldsig, "LARGE_TEXT", 1000)
    monkeypatch.setattr(xmldsig.XmlsecEngine, "_verify_streamed", counted)
    return calls


def _packet(attachment: bytes) -> bytes:
    document = new_document(Organization(G22, organ_name="Văn phòng Chính phủ"), [Organization(H14)],
                            code_number="7", code_notation="LARGE", subject=SUBJECT,
                            signer=SignerInfo(position="Thứ trưởng", full_name="Nguyễn Văn A"),
                            attachments=[Attachment(content_id="a1", attachment_name="a.bin",
                                                    content_type="application/octet-stream", data=attachment)])
    return packet_to_bytes(document)


@pytest.mark.parametrize("code", [G22, H41])  # RSA and EC keys
def test_a_packet_with_large_texts_verifies_and_keeps_them(dev_pki, streamed: list[int], code: str) -> None:
    attachment = os.urandom(48 * 1024)
    signer = dev_pki.signers[code]
    packet = signer.sign(_packet(attachment).replace(G22.encode(), code.encode()))
    verifier = dev_pki.verifier(engine=xmldsig.engine("xmlsec"))
    result = verifier.verify(packet)
    assert streamed == [1]
    assert result.signer_code == code
    root = result.signed_root
    assert root.findtext(f".//{q('Subject')}") == SUBJECT
    encoded = root.findtext(f".//{q('ContentTransferEncoded')}")
    assert encoded is not None and len(encoded) > 60_000

    assert base64.b64decode(encoded) == attachment
    assert next(root.iter("{http://www.w3.org/2000/09/xmldsig#}Signature"), None) is None


def test_a_change_anywhere_is_refused_as_libxmlsec1_refuses_it(dev_pki, streamed: list[int]) -> None:
    packet = dev_pki.signers[G22].sign(_packet(os.urandom(48 * 1024)))
    streamed_verifier = dev_pki.verifier(engine=xmldsig.engine("xmlsec"))
    start = packet.index(b"ContentTransferEncoded>") + 30_000
    flipped = b"B" if packet[start:start + 1] != b"B" else b"C"
    changed = {
        "attachment": packet[:start] + flipped + packet[start + 1:],
        "subject": replace_once(packet, "văn bản".encode(), b"van ban"),
        "escaped text": replace_once(packet, b"&amp;", b"&amp;&amp;"),
        "carriage return": replace_once(packet, b"&#13;", b"&#10;"),
        "signature value": _flip_in(packet, b"SignatureValue>"),
        "digest value": _flip_in(packet, b"DigestValue>"),
    }
    for what, data in changed.items():
        refused = code_of(streamed_verifier, data)
        assert refused is RefusalCode.SIGNATURE_INVALID, what
    assert len(streamed) == len(changed)
    # libxmlsec1 alone (no text counted large) gives the same verdicts.
    xmldsig.LARGE_TEXT = 10**12
    for what, data in changed.items():
        assert code_of(streamed_verifier, data) is RefusalCode.SIGNATURE_INVALID, what
    assert streamed_verifier.verify(packet).signer_code == G22
    assert len(streamed) == len(changed)


def _flip_in(packet: bytes, opening: bytes) -> bytes:
    at = packet.index(opening) + len(opening) + 5
    return packet[:at] + (b"A" if packet[at:at + 1] != b"A" else b"B") + packet[at + 1:]



@pytest.mark.parametrize("character", ["\u00a0", "\u0085", "\u2028"])
def test_a_signature_value_with_a_character_xml_does_not_call_whitespace_is_refused_on_both_roads(
        dev_pki, streamed: list[int], character: str) -> None:
    # SignatureValue is outside what it signs: a character slipped into it after signing leaves the signature
    # whole to a decoder that takes any Unicode space as whitespace (str.split), so the streamed road accepted,
    # and delivered as received, a packet the recipients' libxmlsec1 refuses. XML whitespace stays allowed.
    packet = dev_pki.signers[G22].sign(_packet(os.urandom(48 * 1024)))
    verifier = dev_pki.verifier(engine=xmldsig.engine("xmlsec"))
    at = packet.index(b"SignatureValue>") + len(b"SignatureValue>") + 8
    assert verifier.verify(packet[:at] + b"\r\n \t" + packet[at:]).signer_code == G22
    tampered = packet[:at] + character.encode() + packet[at:]
    streamed_code = code_of(verifier, tampered)
    xmldsig.LARGE_TEXT = 10**12   # libxmlsec1 alone
    assert streamed_code is not None and streamed_code == code_of(verifier, tampered)
    assert len(streamed) == 2
