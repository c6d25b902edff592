"""Signing and verifying real SDK packets: round trips, placement, tampering, wrapping, algorithms."""
from __future__ import annotations

import re

import pytest
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod

from axis.edxml.safe import parse_xml
from axis.refusals import PacketError, Refusal, RefusalCode, TrustError
from axis.trust import Signer
from axis.trust.placement import DIGITAL_SIGNATURE, HEADER, MESSAGE_HEADER, edxml
from tests.trust.helpers import G22, H14, H41, code_of, flip_byte_in, refusal_of, replace_once, signatures

C = RefusalCode


def _header_children(data: bytes) -> list[str]:
    header = next(parse_xml(data).iter(HEADER))
    return [etree.QName(child).localname for child in header if isinstance(child.tag, str)]


# ------------------------------------------------------------------ round trips

def test_rsa_document_round_trip(dev_pki, signed_document):
    result = dev_pki.verifier().verify(signed_document)
    assert result.signer_code == G22
    assert result.signature_algorithm == SignatureMethod.RSA_SHA256.value
    assert result.digest_algorithm == DigestAlgorithm.SHA256.value
    assert result.certificate == dev_pki.signers[G22].certificate
    assert result.signed_root.findtext(f".//{edxml('Subject')}") == "V/v kết nối, liên thông phần mềm quản lý văn bản"


def test_ec_status_round_trip(dev_pki, signed_status):
    result = dev_pki.verifier().verify(signed_status)
    cert = dev_pki.signers[H41].certificate
    assert result.signer_code == H41
    assert result.signature_algorithm == SignatureMethod.ECDSA_SHA256.value
    assert result.serial == cert.serial_number
    assert result.subject == cert.subject.rfc4514_string()
    assert (result.not_before, result.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert len(result.fingerprint) == 64 and int(result.fingerprint, 16) >= 0
    assert result.verified_at.tzinfo is not None


def test_default_namespace_signature_verifies(dev_pki, signed_status_default_ns):
    assert b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>' in signed_status_default_ns
    assert dev_pki.verifier().verify(signed_status_default_ns).signer_code == H41
    moved_out = replace_once(signed_status_default_ns, b"<DigestMethod ", b'<DigestMethod xmlns="" ')
    assert code_of(dev_pki.verifier(), moved_out) is C.SIGNATURE_INVALID


def test_verify_accepts_a_parsed_root(dev_pki, signed_status):
    assert dev_pki.verifier().verify(parse_xml(signed_status)).signer_code == H41


def test_signer_from_files(dev_pki, status_packet):
    signer = Signer.from_files(dev_pki.key_paths[H41], dev_pki.cert_paths[H41])
    assert signer.agency_code == H41
    assert dev_pki.verifier().verify(signer.sign(status_packet)).signer_code == H41


def test_signer_refuses_a_key_that_is_not_the_certificates(dev_pki):
    with pytest.raises(ValueError, match="does not belong"):
        Signer(dev_pki.keys[H14], dev_pki.signers[H41].certificate)


# -------------------------------------------------------------------- placement

def test_output_has_declaration_and_is_not_reformatted(signed_document, document_packet):
    assert signed_document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    # Everything after the header is the input as an XML parser reads it (line ends
    # normalised to LF, XML 1.0 §2.11), byte for byte: nothing was pretty-printed.
    tail = document_packet[document_packet.index(b"<edXML:edXMLBody>"):].replace(b"\r\n", b"\n").rstrip()
    assert signed_document.endswith(tail)


def test_document_signature_follows_trace_header_list(signed_document):
    assert _header_children(signed_document) == ["MessageHeader", "TraceHeaderList", "Signature"]


def test_status_signature_follows_message_header(signed_status):
    assert _header_children(signed_status) == ["MessageHeader", "Signature"]
    sig = signatures(signed_status)[0]
    assert sig.getprevious().tag == MESSAGE_HEADER


def test_digital_signature_placeholder_is_replaced(dev_pki, document_packet):
    with_placeholder = replace_once(document_packet, b"</edXML:TraceHeaderList>",
                                    b"</edXML:TraceHeaderList>\n      <edXML:DigitalSignature/>")
    signed = dev_pki.signers[G22].sign(with_placeholder)
    assert parse_xml(signed).find(f".//{DIGITAL_SIGNATURE}") is None
    assert _header_children(signed) == ["MessageHeader", "TraceHeaderList", "Signature"]
    assert dev_pki.verifier().verify(signed).signer_code == G22


def test_resigning_replaces_the_old_signature(dev_pki, signed_status):
    again = dev_pki.signers[H41].sign(signed_status)
    assert len(signatures(again)) == 1
    assert dev_pki.verifier().verify(again).signer_code == H41


def test_sdk_signature_in_the_edxml_namespace_is_replaced(dev_pki, samples_dir):
    signed = dev_pki.signers[G22].sign((samples_dir / "edoc_update.edxml").read_bytes())
    assert parse_xml(signed).find(f".//{edxml('Signature')}") is None
    assert dev_pki.verifier().verify(signed).signer_code == G22


def test_sign_refuses_what_is_not_edxml(dev_pki):
    with pytest.raises(PacketError) as info:
        dev_pki.signers[H41].sign(b"<root/>")
    assert info.value.code is C.NOT_EDXML
    with pytest.raises(PacketError) as info:
        dev_pki.signers[H41].sign(b"<edXML")
    assert info.value.code is C.MALFORMED


def test_sign_refuses_a_signature_outside_the_header(dev_pki, signed_status):
    stray = re.search(rb"<ds:Signature.*</ds:Signature>", signed_status, re.DOTALL).group(0)
    packet = replace_once(signed_status, stray, b"")
    packet = replace_once(packet, b"</edXML:From>", b"</edXML:From>" + stray)
    with pytest.raises(TrustError) as info:
        dev_pki.signers[H41].sign(packet)
    assert info.value.code is C.SIGNATURE_MISPLACED


def test_large_attachment_over_libxml2_text_limit(dev_pki, status_packet):
    # An 11 MB text node: signxml's default parser would fail with "Text node too long".
    big = replace_once(status_packet, b"</edXML:edXMLEnvelope>",
                       b"</edXML:edXMLEnvelope><AttachmentEncoded><Attachment><ContentTransferEncoded>"
                       + b"QUJD" * (11_000_000 // 4) + b"</ContentTransferEncoded></Attachment></AttachmentEncoded>")
    signed = dev_pki.signers[H41].sign(big)
    assert dev_pki.verifier().verify(signed).signer_code == H41


# ----------------------------------------------------------------- tampering

ONE_BYTE_CHANGES = {  # where: (pattern whose group 1 holds the byte, offset into it, expected code)
    "subject text": (rb"<edXML:Subject>(V/v)", 0, C.SIGNATURE_INVALID),
    "from organ id": (rb"<edXML:From>\s*<edXML:OrganId>000\.00\.00\.G2(2)", 0, C.SIGNATURE_INVALID),
    "attachment start": (rb"<edXML:ContentTransferEncoded[^>]*>(U)", 0, C.SIGNATURE_INVALID),
    "attachment middle": (rb"<edXML:ContentTransferEncoded[^>]*>([A-Za-z0-9+/]{1000})", 500, C.SIGNATURE_INVALID),
    "attribute value": (rb'<edXML:edXMLManifest version="(1)', 0, C.SIGNATURE_INVALID),
    "trace timestamp": (rb"<edXML:Timestamp>(2018)", 0, C.SIGNATURE_INVALID),
    "signature value": (rb"<ds:SignatureValue>([A-Za-z0-9+/]{40})", 20, C.SIGNATURE_INVALID),
    "digest value": (rb"<ds:DigestValue>([A-Za-z0-9+/]{10})", 5, C.SIGNATURE_INVALID),
    "signature method": (rb'SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#(r)sa', 0,
                         C.ALGORITHM_NOT_ALLOWED),
    "reference uri": (rb"<ds:Reference (U)RI=", 0, C.SIGNATURE_MISPLACED),  # URI -> ARI: no URI at all
}


@pytest.mark.parametrize("where", sorted(ONE_BYTE_CHANGES))
def test_one_byte_change_is_refused(dev_pki, signed_document, where):
    pattern, offset, expected = ONE_BYTE_CHANGES[where]
    tampered = flip_byte_in(signed_document, pattern, offset)
    assert tampered != signed_document and len(tampered) == len(signed_document)
    assert code_of(dev_pki.verifier(), tampered) is expected


def test_one_byte_change_in_whitespace_is_refused(dev_pki, signed_status):
    tampered = replace_once(signed_status, b"<edXML:StatusCode>", b"<edXML:StatusCode >")
    assert parse_xml(tampered) is not None
    # A space inside a tag does not change the infoset: still valid, and nothing else changed.
    assert dev_pki.verifier().verify(tampered).signer_code == H41
    tampered = replace_once(signed_status, b"  <edXML:StatusCode>", b" \t<edXML:StatusCode>")
    assert code_of(dev_pki.verifier(), tampered) is C.SIGNATURE_INVALID


def test_one_byte_change_in_the_certificate_is_refused(dev_pki, signed_status):
    tampered = flip_byte_in(signed_status, rb"<ds:X509Certificate>([A-Za-z0-9+/\n]{300})", offset=200)
    assert code_of(dev_pki.verifier(), tampered) in {C.CERT_MALFORMED, C.CERT_UNTRUSTED, C.SIGNATURE_INVALID}


def test_breaking_the_xml_is_a_packet_refusal(dev_pki, signed_status):
    tampered = replace_once(signed_status, b"<edXML:Description>", b"<edXML:Descriptiom>")
    refusal = refusal_of(dev_pki.verifier(), tampered)
    assert isinstance(refusal, PacketError) and refusal.code is C.MALFORMED


# ------------------------------------------------------------------ the signer must be the sender

def test_signed_by_another_agency(dev_pki, status_packet):
    signed = dev_pki.signers[H14].sign(status_packet)   # a valid H14 signature on an H41 packet
    refusal = refusal_of(dev_pki.verifier(), signed)
    assert refusal.code is C.SIGNER_NOT_SENDER
    assert H41 in refusal.detail and H14 in refusal.detail


def test_short_sender_codes_need_lenient_mode(dev_pki, status_packet):
    # The SDK samples address agencies as 28.22.H17; the certificate always names the full code.
    packet = replace_once(status_packet, b"<edXML:OrganId>000.00.00.H41", b"<edXML:OrganId>00.H41")
    signed = dev_pki.signers[H41].sign(packet)
    refusal = refusal_of(dev_pki.verifier(), signed)
    assert refusal.code is C.SIGNER_NOT_SENDER and "'00.H41'" in refusal.detail
    assert dev_pki.verifier(lenient_codes=True).verify(signed).signer_code == H41


def test_status_packets_bind_from_not_response_for(dev_pki, status_packet):
    # ResponseFor/OrganId (G22) is the document's sender, not this packet's.
    signed = dev_pki.signers[G22].sign(status_packet)
    assert code_of(dev_pki.verifier(), signed) is C.SIGNER_NOT_SENDER


# ------------------------------------------------------------------ signature wrapping

def _signature_bytes(data: bytes) -> bytes:
    return re.search(rb"<ds:Signature.*</ds:Signature>", data, re.DOTALL).group(0)


def test_signature_moved_to_the_root(dev_pki, signed_status):
    sig = _signature_bytes(signed_status)
    moved = replace_once(replace_once(signed_status, sig, b""), b"</edXML>", sig + b"</edXML>")
    assert code_of(dev_pki.verifier(), moved) is C.SIGNATURE_MISPLACED


def test_signature_moved_into_message_header(dev_pki, signed_status):
    sig = _signature_bytes(signed_status)
    moved = replace_once(replace_once(signed_status, sig, b""), b"</edXML:MessageHeader>",
                         sig + b"</edXML:MessageHeader>")
    assert code_of(dev_pki.verifier(), moved) is C.SIGNATURE_MISPLACED


def test_second_signature_is_refused(dev_pki, signed_status):
    sig = _signature_bytes(signed_status)
    doubled = replace_once(signed_status, sig, sig + sig)
    assert code_of(dev_pki.verifier(), doubled) is C.SIGNATURE_MISPLACED


def test_injected_message_header_with_another_sender(dev_pki, signed_status):
    forged = (b"<edXML:MessageHeader><edXML:From><edXML:OrganId>000.00.00.G22</edXML:OrganId></edXML:From>"
              b"</edXML:MessageHeader>")
    before = replace_once(signed_status, b"<edXML:MessageHeader>", forged + b"<edXML:MessageHeader>")
    after = replace_once(signed_status, b"</edXML:MessageHeader>", b"</edXML:MessageHeader>" + forged)
    for injected in (before, after):
        assert code_of(dev_pki.verifier(), injected) is C.SIGNATURE_INVALID


def test_original_wrapped_in_a_forged_envelope(dev_pki, signed_status):
    body = signed_status.split(b"?>", 1)[1]
    inner = body.replace(b"<edXML xmlns=", b"<Wrapped xmlns=").replace(b"</edXML>", b"</Wrapped>")
    forged_root = (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope><edXMLHeader>'
                   b"<MessageHeader><From><OrganId>000.00.00.H41</OrganId></From><Subject>forged</Subject>"
                   b"</MessageHeader></edXMLHeader></edXMLEnvelope>" + inner + b"</edXML>")
    assert code_of(dev_pki.verifier(), forged_root) in {C.SIGNATURE_MISPLACED, C.SIGNATURE_MISSING}
    two_envelopes = replace_once(signed_status, b"</edXML>", b"<edXML:edXMLEnvelope xmlns:edXML="
                                 b'"http://www.mic.gov.vn/TBT/QCVN_102_2016"/></edXML>')
    assert code_of(dev_pki.verifier(), two_envelopes) is C.SIGNATURE_MISPLACED


def test_comment_in_the_sender_is_refused(dev_pki, signed_status):
    # Comments are not signed (a URI="" reference drops them), so this verified once: the
    # signed tree read 000.00.00.H41 while a reader of the file saw "000.00." and "00.H41".
    commented = replace_once(signed_status, b"<edXML:OrganId>000.00.00.H41",
                             b"<edXML:OrganId>000.00.<!-- -->00.H41")
    raw_sender = parse_xml(commented).find(f".//{edxml('From')}/{edxml('OrganId')}").text
    assert raw_sender == "000.00."
    refusal = refusal_of(dev_pki.verifier(), commented)
    assert refusal.code is C.UNSIGNED_CONTENT and "edXML:OrganId" in refusal.detail


def test_no_signature_and_placeholders(dev_pki, status_packet, document_packet):
    assert code_of(dev_pki.verifier(), status_packet) is C.SIGNATURE_MISSING
    with_placeholder = replace_once(document_packet, b"</edXML:TraceHeaderList>",
                                    b"</edXML:TraceHeaderList><edXML:DigitalSignature/>")
    refusal = refusal_of(dev_pki.verifier(), with_placeholder)
    assert refusal.code is C.SIGNATURE_MISSING and "placeholder" in refusal.detail


# ------------------------------------------------------------------ algorithms

def test_sha1_is_refused_by_default(dev_pki, document_packet):
    signed = dev_pki.signers[G22].sign(document_packet, signature_method=SignatureMethod.RSA_SHA1,
                                       digest_method=DigestAlgorithm.SHA1)
    assert code_of(dev_pki.verifier(), signed) is C.WEAK_ALGORITHM
    assert code_of(dev_pki.verifier(allow_sha1_for=frozenset({H41})), signed) is C.WEAK_ALGORITHM
    result = dev_pki.verifier(allow_sha1_for=frozenset({G22})).verify(signed)
    assert result.signer_code == G22
    assert result.signature_algorithm == SignatureMethod.RSA_SHA1.value
    assert result.digest_algorithm == DigestAlgorithm.SHA1.value


def test_sha1_digest_alone_is_weak(dev_pki, status_packet):
    signed = dev_pki.signers[H41].sign(status_packet, digest_method=DigestAlgorithm.SHA1)
    assert code_of(dev_pki.verifier(), signed) is C.WEAK_ALGORITHM
    assert dev_pki.verifier(allow_sha1_for=frozenset({H41})).verify(signed).signer_code == H41


def test_ecdsa_sha1_allowed_only_for_its_agency(dev_pki, status_packet):
    signed = dev_pki.signers[H41].sign(status_packet, signature_method=SignatureMethod.ECDSA_SHA1,
                                       digest_method=DigestAlgorithm.SHA1)
    assert code_of(dev_pki.verifier(), signed) is C.WEAK_ALGORITHM
    assert dev_pki.verifier(allow_sha1_for=frozenset({H41})).verify(signed).signer_code == H41


def test_sha1_exemption_cannot_be_borrowed_with_a_comment(dev_pki, status_packet):
    # The unverified tree reads "G09" (allowed SHA-1) before the comment; the signed tree,
    # without comments, reads "G0901". The split is refused before any policy is chosen.
    # Comments are not signed, so the split can be made after signing.
    signer = dev_pki.signer("G0901", key_of=H41)
    unsplit = signer.sign(replace_once(status_packet, b"<edXML:OrganId>000.00.00.H41", b"<edXML:OrganId>G0901"),
                          digest_method=DigestAlgorithm.SHA1)
    split = replace_once(unsplit, b"<edXML:OrganId>G0901<", b"<edXML:OrganId>G09<!-- -->01<")
    for allowed in ({"G09", "G0901"}, {"G09"}):
        assert code_of(dev_pki.verifier(allow_sha1_for=frozenset(allowed)), split) is C.UNSIGNED_CONTENT
    assert dev_pki.verifier(allow_sha1_for=frozenset({"G0901"})).verify(unsplit).signer_code == "G0901"
    refusal = refusal_of(dev_pki.verifier(allow_sha1_for=frozenset({"G09"})), unsplit)
    assert refusal.code is C.WEAK_ALGORITHM and "G0901" in refusal.detail


@pytest.mark.parametrize("method, digest", [
    (SignatureMethod.RSA_SHA512, DigestAlgorithm.SHA256),
    (SignatureMethod.SHA256_RSA_MGF1, DigestAlgorithm.SHA256),
    (SignatureMethod.RSA_SHA256, DigestAlgorithm.SHA512),
])
def test_other_algorithms_are_not_allowed(dev_pki, document_packet, method, digest):
    signed = dev_pki.signers[G22].sign(document_packet, signature_method=method, digest_method=digest)
    assert code_of(dev_pki.verifier(), signed) is C.ALGORITHM_NOT_ALLOWED


def test_extra_transform_is_not_allowed(dev_pki, signed_status):
    xpath = (b'<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116">'
             b"<ds:XPath>self::text()</ds:XPath></ds:Transform></ds:Transforms>")
    tampered = replace_once(signed_status, b"</ds:Transforms>", xpath)
    assert code_of(dev_pki.verifier(), tampered) is C.ALGORITHM_NOT_ALLOWED


def test_signed_info_element_outside_the_dsig_namespace(dev_pki, signed_status):
    tampered = replace_once(signed_status, b"<ds:DigestMethod ", b'<ds:Foo xmlns:ds="urn:x"/><ds:DigestMethod ')
    assert code_of(dev_pki.verifier(), tampered) is C.SIGNATURE_INVALID


def test_refusals_are_refusals(dev_pki):
    for data in (b"", b"not xml", b"<edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'/>"):
        assert isinstance(refusal_of(dev_pki.verifier(), data), Refusal)
    with pytest.raises(TypeError):
        dev_pki.verifier().verify("text is not bytes")  # type: ignore[arg-type]


def test_signed_packets_stay_schema_valid(signed_status, signed_document):
    from axis.edxml import load_packet, validate
    for signed in (signed_status, signed_document):
        validate(parse_xml(signed))
        load_packet(signed)
