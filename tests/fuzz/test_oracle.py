"""The fuzz oracle (tests/fuzz/road.py) can fail: it tells a harmless re-encoding from unsigned content,
and flags every answer the campaign must never get. No deployment: the oracle's functions alone."""
from __future__ import annotations

import pytest
from lxml import etree

from axis.edxml import Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document
from tests.e2e.packets import G22, H14, H41, TestPKI
from tests.fuzz.mutations import DS, Mutant, serialize, tree
from tests.fuzz.road import Answer, judge, signed_view, verify_raw


@pytest.fixture(scope="module")
def signed(e2e_pki: TestPKI) -> bytes:
    packet = new_document(Organization(G22, organ_name="Văn phòng Chính phủ"), [Organization(H41)], code_number="7",
                          code_notation="FUZZ", subject="Về việc thử nghiệm", signer=SignerInfo(full_name="A"))
    return e2e_pki.signer(G22).sign(packet_to_bytes(packet))


def _edited(data: bytes, edit) -> bytes:
    root = tree(data)
    edit(root)
    return serialize(root)


def test_what_a_reader_cannot_tell_apart_has_the_same_signed_view(signed: bytes) -> None:
    body = signed.decode().split("?>", 1)[1]
    same = [b"\xef\xbb\xbf" + signed, signed.replace(b"\n", b"\r\n"), signed + b"\n",
            f"<?xml version='1.0' encoding='UTF-16'?>{body}".encode("utf-16"),
            _edited(signed, lambda root: root.find(".//{*}MessageHeader").append(etree.Comment("between elements")))]
    for variant in same:
        assert signed_view(variant) == signed_view(signed)


def test_unsigned_content_changes_the_signed_view(signed: bytes, e2e_pki: TestPKI) -> None:
    def split_subject(root):
        subject = root.find(".//{*}Subject")
        comment = etree.Comment(" ")
        subject.text, comment.tail = "Về", " việc thử nghiệm"
        subject.insert(0, comment)

    def into_object(root):
        etree.SubElement(root.find(f".//{DS}Signature"), f"{DS}Object").text = "x"

    def move_signature(root):
        root.find(".//{*}edXMLBody").append(root.find(f".//{DS}Signature"))

    changed = [signed.replace(H41.encode(), H14.encode()), _edited(signed, split_subject), _edited(signed, into_object),
               _edited(signed, move_signature), signed.replace(b"<edXML:Subject>", b"<edXML:Subject><?pi x?>"),
               signed.replace(b"<ds:X509Certificate>", "<ds:X509Certificate>\u00a0".encode())]
    for index, variant in enumerate(changed):
        assert signed_view(variant) != signed_view(signed), index
    assert signed_view(b"<not-xml") is None


def test_raw_signxml_verifies_only_the_genuine_signature(signed: bytes, e2e_pki: TestPKI) -> None:
    assert verify_raw(signed, e2e_pki) is None
    assert verify_raw(signed.replace(b">7<", b">8<"), e2e_pki) is not None
    # Another agency's genuine signature over the same content: the signed view is the same, the signer is not.
    resigned = e2e_pki.signer(H41).sign(signed)
    assert signed_view(resigned) == signed_view(signed)
    assert verify_raw(resigned, e2e_pki) is not None


def test_every_forbidden_answer_is_a_problem(signed: bytes, e2e_pki: TestPKI) -> None:
    harmless = Mutant("encoding", "bom-utf8", b"\xef\xbb\xbf" + signed, signed)
    forged = Mutant("signature", "x", signed.replace(H41.encode(), H14.encode()), signed)
    must = Mutant("certificate", "expired", signed, signed, must_refuse="expired")
    resigned = Mutant("certificate", "x", e2e_pki.signer(H41).sign(signed), signed)
    assert judge(harmless, Answer(200, "accepted"), e2e_pki) == []
    assert judge(forged, Answer(200, "refused", "AX301"), e2e_pki) == []
    for mutant, answer in [(forged, Answer(200, "accepted")), (must, Answer(200, "accepted")),
                           (resigned, Answer(200, "accepted")),
                           (must, Answer(200, "duplicate")), (harmless, Answer(500, None, "GW500")),
                           (harmless, Answer(None)), (harmless, Answer(422, None, "GW422")),
                           (harmless, Answer(202, "queued")), (harmless, Answer(200, "refused", "AX999")),
                           (harmless, Answer(200, "refused", None)), (harmless, Answer(200, "refused", "AX501")),
                           (harmless, Answer(200, "maybe"))]:
        assert judge(mutant, answer, e2e_pki), (mutant.label, answer)
