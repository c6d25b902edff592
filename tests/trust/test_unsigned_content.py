"""Signed means everything delivered was signed: AX305 UNSIGNED_CONTENT (axis/trust/coverage.py).

Every test runs on both XML-DSig engines (the session's `xmldsig_engine` fixture). Each attack
verified before AX305: the packet was accepted and delivered with text its signer never signed.
"""
from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from axis.edxml.safe import parse_xml
from axis.receipt import Receipt, build_receipt, now_utc
from axis.refusals import Refusal, RefusalCode
from axis.trust import Verifier, keys
from axis.trust.placement import SIGNATURE
from tests.trust.helpers import G22, H41, raw_sign, refusal_of, replace_once
from tests.trust.unsigned_content import ATTACKS, VECTORS, remove_attack

C = RefusalCode
EDXML_NS = b"http://www.mic.gov.vn/TBT/QCVN_102_2016"
WELL_FORMED_SAMPLES = {
    "edoc_update.edxml": G22, "edoc_revocation.edxml": G22, "edoc_replacement.edxml": G22,
    "status.edxml": H41, "status_inbox_01.edxml": H41, "status_rejection_02.edxml": H41,
    "status_acceptance_03.edxml": H41, "status_assignment_04.edxml": H41, "status_processing_05.edxml": H41,
    "status_finish_06.edxml": H41, "status_cancellation_13.edxml": G22,
    "status_change-acceptance_15.edxml": H41, "status_change-rejection_16.edxml": H41,
}


def _unsigned(verifier: Verifier, data: bytes) -> Refusal:
    refusal = refusal_of(verifier, data)
    assert refusal.code is C.UNSIGNED_CONTENT, refusal
    assert str(refusal).startswith("AX305 UNSIGNED_CONTENT: line ")
    return refusal


# -------------------------------------------------------------- the stored vectors

@pytest.fixture(scope="module")
def vector_verifier() -> Verifier:
    # The vectors' throwaway root; its keys were discarded (tests.trust.unsigned_content.write_vectors).
    return Verifier(keys.load_certificates(VECTORS / "root.pem"))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_stored_vector_is_refused(vector_verifier, name):
    vector = (VECTORS / f"{name}.edxml").read_bytes()
    _unsigned(vector_verifier, vector)
    # Really signed: without what the attack added, the very same bytes verify.
    assert vector_verifier.verify(remove_attack(name, vector)).signer_code == H41


def test_every_vector_is_stored_and_described():
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    assert sorted(p.stem for p in VECTORS.glob("*.edxml")) == sorted(ATTACKS)
    for name in ATTACKS:
        assert f"`{name}.edxml`" in readme


# ------------------------------------------------------ the attacks, signed now

@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_on_a_packet_signed_now(dev_pki, signed_status, name):
    _unsigned(dev_pki.verifier(), ATTACKS[name](signed_status))


def test_details_name_what_is_unsigned(dev_pki, signed_status):
    verifier = dev_pki.verifier()
    assert "<ds:Object> inside <ds:Signature>" in _unsigned(verifier, ATTACKS["object_second_packet"](
        signed_status)).detail
    assert "<ds:KeyName> inside <ds:KeyInfo>" in _unsigned(verifier, ATTACKS["keyname_subject"](
        signed_status)).detail
    assert "<edXML:StatusCode> inside <ds:X509Data>" in _unsigned(verifier, ATTACKS["extra_element"](
        signed_status)).detail
    detail = _unsigned(verifier, ATTACKS["split_text_comment"](signed_status)).detail
    assert "comment inside the text of <edXML:OrganId> ('000.00.00.H' | '41')" in detail
    assert "processing instruction <?axis-route" in _unsigned(verifier, ATTACKS["processing_instruction"](
        signed_status)).detail


@pytest.mark.parametrize("old, new", [
    # elements and attributes in the Signature that no engine needs
    (b"</ds:KeyInfo>", b"</ds:KeyInfo><ds:Object/>"),
    (b"<ds:X509Data>", b'<ds:RetrievalMethod URI="http://127.0.0.1:1/key"/><ds:X509Data>'),
    (b"<ds:X509Data>", b"<ds:X509Data><ds:X509SKI>AAAA</ds:X509SKI>"),
    (b"<ds:X509Data>", b"<ds:X509Data><ds:X509CRL>AAAA</ds:X509CRL>"),
    (b"<ds:X509Data>", b"<ds:PGPData><ds:PGPKeyID>AAAA</ds:PGPKeyID></ds:PGPData><ds:X509Data>"),
    (b"<ds:Signature ", b'<ds:Signature Target="000.00.00.H14" '),
    (b"<ds:Signature ", b'<ds:Signature e:To="000.00.00.H14" xmlns:e="' + EDXML_NS + b'" '),
    (b"<ds:KeyInfo>", b'<ds:KeyInfo xml:lang="vi">'),
    (b"<ds:X509Certificate>", b'<ds:X509Certificate Note="H14">'),
    (b"</ds:SignatureValue>", b"</ds:SignatureValue><ds:SignatureValue>AAAA</ds:SignatureValue>"),
    (b"</ds:KeyInfo>", b"</ds:KeyInfo><ds:KeyInfo/>"),
    # text and tails in the Signature, and its own tail
    (b"</ds:KeyInfo>", b"</ds:KeyInfo>Chuyen cho H14"),
    (b"<ds:X509Data>", b"<ds:X509Data>note"),
    (b"</ds:X509Certificate>", b"</ds:X509Certificate>note"),
    (b"</ds:Signature>", b"</ds:Signature>Chuyen cho H14"),
    (b"</ds:KeyInfo>", "</ds:KeyInfo>\u00a0".encode()),   # no-break space: not XML whitespace
    (b"<edXML:From>", "<edXML:From>\u00a0<!-- x -->".encode()),
    # comments touching text, in the body and in the Signature's own text nodes
    (b"<edXML:OrganId>000.00.00.H41", b"<edXML:OrganId><!-- x -->000.00.00.H41"),
    (b"000.00.00.H41</edXML:OrganId>", b"000.00.00.H41<!-- x --></edXML:OrganId>"),
    (b"<ds:X509Certificate>", b"<ds:X509Certificate><!-- x -->"),
    (b"</ds:X509Certificate>", b"<!-- x --></ds:X509Certificate>"),
    (b"</ds:SignatureValue>", b"<!-- x --></ds:SignatureValue>"),
    # processing instructions anywhere
    (b"<edXML:edXMLEnvelope", b"<?xml-stylesheet href=\"x.xsl\"?><edXML:edXMLEnvelope"),
    (b"</ds:Signature>", b"</ds:Signature><?note?>"),
])
def test_more_unsigned_content(dev_pki, signed_status, old, new):
    _unsigned(dev_pki.verifier(), replace_once(signed_status, old, new))


def test_a_processing_instruction_outside_the_root(dev_pki, signed_status):
    _unsigned(dev_pki.verifier(), signed_status + b"<?route to=\"H14\"?>")
    declaration = signed_status[:signed_status.index(b"?>") + 2]
    _unsigned(dev_pki.verifier(), declaration + b"<?xml-stylesheet href=\"x.xsl\"?>"
              + signed_status[len(declaration):])


def test_a_processing_instruction_signed_inside_a_value(dev_pki, status_packet):
    # C14N keeps processing instructions, so this one is signed (here by signxml directly); it
    # still splits what lxml's .text reads.
    packet = replace_once(status_packet, b"000.00.00.H41", b"000.00.00.H<?x?>41")
    _unsigned(dev_pki.verifier(), raw_sign(packet, dev_pki.keys[H41], dev_pki.signers[H41].certificate))


@pytest.mark.parametrize("old, new", [
    (b"000.00.00.H41", b"000.00.00.H<?x?>41"),
    (b"000.00.00.H41", b"000.00.00.H<!-- H14 -->41"),
    (b"<edXML:edXMLEnvelope", b"<?xml-stylesheet href=\"x.xsl\"?><edXML:edXMLEnvelope"),
])
def test_the_signer_refuses_what_the_verifier_would(dev_pki, status_packet, old, new):
    # A Signer's output always verifies: it does not sign what would be refused as unsigned content.
    with pytest.raises(Refusal) as info:
        dev_pki.signers[H41].sign(replace_once(status_packet, old, new))
    assert info.value.code is C.UNSIGNED_CONTENT


def test_receipts_go_through_the_same_check(dev_pki):
    receipt = build_receipt(Receipt(kind="delivery", outcome="delivered", issuer=H41, time=now_utc(),
                                    axis_id="ax-1", sender=G22, recipient=H41, digest="ab" * 32))
    signed = dev_pki.signers[H41].sign_receipt(receipt)
    assert dev_pki.verifier().verify_receipt(signed).signer_code == H41
    for changed in (replace_once(signed, b"<ds:X509Data>", b"<ds:KeyName>failed</ds:KeyName><ds:X509Data>"),
                    replace_once(signed, b"</ds:KeyInfo>", b"</ds:KeyInfo><ds:Object>failed</ds:Object>"),
                    re.sub(rb">delivered<", b">deli<!-- -->vered<", signed, count=1)):
        with pytest.raises(Refusal) as info:
            dev_pki.verifier().verify_receipt(changed)
        assert info.value.code is C.UNSIGNED_CONTENT


# ------------------------------------------------------------------ what is allowed

def test_comments_between_elements_and_key_material(dev_pki, signed_status):
    changed = replace_once(signed_status, b"<edXML:From>", b"<edXML:From><!-- the sender -->")
    changed = replace_once(changed, b"</edXML>", b"</edXML><!-- end -->")
    changed = replace_once(changed, b"<ds:SignedInfo>", b"<!-- sig --><ds:SignedInfo>")
    changed = replace_once(changed, b"<ds:X509Data>", b"<ds:X509Data>\n<!-- cert -->\n"
                           b"<ds:X509SubjectName>CN=000.00.00.H41</ds:X509SubjectName>"
                           b"<ds:X509IssuerSerial><ds:X509IssuerName>CN=Axis</ds:X509IssuerName>"
                           b"<ds:X509SerialNumber>1</ds:X509SerialNumber></ds:X509IssuerSerial>")
    # The signer's own key, as Java SDKs write it next to the certificate (signxml refuses a KeyValue
    # that is not the certificate's key; libxmlsec1 never uses it, its key is set from the certificate).
    point = dev_pki.keys[H41].public_key().public_bytes(serialization.Encoding.X962,
                                                        serialization.PublicFormat.UncompressedPoint)
    changed = replace_once(changed, b"</ds:KeyInfo>", b'<ds:KeyValue><dsig11:ECKeyValue xmlns:dsig11="'
                           b'http://www.w3.org/2009/xmldsig11#"><dsig11:NamedCurve URI="urn:oid:1.2.840.10045.3.1.7"/>'
                           b"<dsig11:PublicKey>" + base64.b64encode(point) + b"</dsig11:PublicKey>"
                           b"</dsig11:ECKeyValue></ds:KeyValue></ds:KeyInfo>")
    changed = replace_once(changed, b"<ds:Signature ", b'<ds:Signature Id="sig-1" ')
    result = dev_pki.verifier().verify(changed)
    assert result.signer_code == H41
    assert result.certificate == dev_pki.signers[H41].certificate   # the key never comes from KeyValue


@pytest.mark.parametrize("name", sorted(WELL_FORMED_SAMPLES))
def test_every_well_formed_sdk_sample_verifies_once_signed(dev_pki, samples_dir, name):
    # Signed as they are: the Signer replaces their broken SDK signature and keeps everything else.
    data = (samples_dir / name).read_bytes()
    signed = dev_pki.signers[WELL_FORMED_SAMPLES[name]].sign(data)
    assert signed.count(b"<!--") == data.count(b"<!--")
    assert dev_pki.verifier().verify(signed).signer_code == WELL_FORMED_SAMPLES[name]


def test_the_commented_sdk_sample_verifies_once_signed(dev_pki, samples_dir):
    # edoc.edxml carries five comments between elements (a commented-out ResponseFor, KeyValue,
    # Object, ContentType...). Its defects are prefixes used where they are not declared (xlink:,
    # and edXML: outside edXMLEnvelope); declared on the root, it signs and verifies. The Signer
    # replaces its old SHA-1 Signature, and the two comments inside it with it; the rest stay.
    data = replace_once((samples_dir / "edoc.edxml").read_bytes(),
                        b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">',
                        b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016" '
                        b'xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016" '
                        b'xmlns:xlink="http://www.w3.org/1999/xlink">')
    root = parse_xml(data)
    old = next(root.iter(SIGNATURE))
    kept = [c.text for c in root.iter(etree.Comment) if old not in c.iterancestors()]
    assert len(kept) == 3
    signed = dev_pki.signer("002.00.20.H13", key_of=H41).sign(data)
    assert [c.text for c in parse_xml(signed).iter(etree.Comment)] == kept
    assert dev_pki.verifier().verify(signed).signer_code == "002.00.20.H13"
