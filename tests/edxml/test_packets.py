"""Packets: build → bytes → parse round trips, the SDK samples, and mutated input."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.edxml import (
    Attachment,
    Business,
    BusinessDocumentInfo,
    Code,
    DocumentPacket,
    DocumentType,
    ManifestReference,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusPacket,
    TraceHeader,
    load_packet,
    packet_to_bytes,
)
from axis.refusals import PacketError, RefusalCode
from tests.edxml.strategies import packets

G22 = Organization("000.00.00.G22", "Văn phòng Chính phủ", "Văn phòng Chính phủ",
                   "Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội", "vpcp@gov.vn", "8043100", "048989898789", "vpcp.vn")
H41 = Organization("000.00.00.H41", "UBND Tỉnh Nghệ An", "UBND Tỉnh Nghệ An")
STAFF = StaffInfo("Văn thư văn phòng", "Nguyễn Thị Ngọc Trâm", "84912000001", "vanthuvanphong@gov.vn")

FULL_DOCUMENT = DocumentPacket(
    header=MessageHeader(
        from_=G22, to=(H41, Organization("000.00.00.H14", organ_name="UBND Tỉnh Cao Bằng")),
        code=Code("7816", "VPCP-TTĐT"),
        promulgation_info=PromulgationInfo(place="Hà Nội", promulgation_date=dt.date(2018, 9, 28)),
        document_type=DocumentType(18, 0, "Công văn"), subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        content="Nội dung tóm tắt",
        signer_info=SignerInfo(competence="KT. BỘ TRƯỞNG", position="Thứ trưởng", full_name="Nguyễn Văn A"),
        due_date=dt.date(2018, 10, 5), to_places=("Các bộ", "UBND các tỉnh, TP"),
        other_info=OtherInfo(3, "Liên thông văn bản quốc gia", "TVC", 2, 22, False, ("Phụ lục I", "Phụ lục II")),
        response_for=(ResponseFor("000.00.00.H14", "267/VPCP-TTĐT", dt.date(2012, 8, 6),
                                  "000.00.04.G14,2012/08/06,267/VPCP-TTĐT"),),
        steering_type=1, document_id="000.00.00.G22,2018/09/28,7816/VPCP-TTĐT"),
    traces=(TraceHeader("000.00.00.G22", dt.datetime(2018, 9, 28, 8, 30, 5)),
            TraceHeader("000.00.00.H41", dt.datetime(2018, 9, 28, 8, 31, 0))),
    business=Business(2, "Cập nhật văn bản điện tử", "000.00.00.G22,2018/09/27,7806/VPCP-TTĐT", 0,
                      BusinessDocumentInfo(1, 1, (Receiver("000.00.00.H41", 0), Receiver("000.00.00.H14", 1))),
                      (ReplacementInfo("000.00.00.G22,2018/01/30,7806/VPCP-TTĐT", ("000.00.00.H41",)),), STAFF),
    manifest=(ManifestReference(content_id="cid:1", content_type="application/pdf", description="Văn bản",
                                attachment_name="cong-van.pdf"),),
    attachments=(Attachment(content_id="cid:1", attachment_name="cong-van.pdf", description="Văn bản",
                            content_type="application/pdf", data=b"%PDF-1.4\n\x00\xff binary"),),
)
FULL_STATUS = StatusPacket(
    from_=H41, response_for=ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", dt.date(2018, 9, 28),
                                        "000.00.00.G22,2018/09/28,7816/VPCP-TTĐT"),
    staff_info=STAFF, status_code=StatusCode.REFUSED, description="Từ chối: sai thể thức",
    timestamp=dt.datetime(2018, 9, 28, 17, 25, 11))


@pytest.mark.parametrize("packet", [FULL_DOCUMENT, FULL_STATUS], ids=["document", "status"])
def test_round_trip_with_every_field(packet) -> None:
    data = packet_to_bytes(packet)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert load_packet(data) == packet
    assert packet_to_bytes(load_packet(data)) == data
    assert "Nguyễn Thị Ngọc Trâm".encode() in data  # Vietnamese kept as UTF-8, not escaped


def test_document_fields_on_the_wire() -> None:
    data = packet_to_bytes(FULL_DOCUMENT)
    assert b"<edXML:PromulgationDate>2018/09/28</edXML:PromulgationDate>" in data
    assert b"<edXML:Timestamp>2018/09/28 08:30:05</edXML:Timestamp>" in data
    assert b"<edXML:Bussiness>" in data and b'<edXML:edXMLManifest version="1.0">' in data
    assert FULL_DOCUMENT.priority == 3 and FULL_DOCUMENT.recipients == ("000.00.00.H41", "000.00.00.H14")


WELL_FORMED = ["edoc_update.edxml", "edoc_revocation.edxml", "edoc_replacement.edxml", "status.edxml",
               "status_inbox_01.edxml", "status_rejection_02.edxml", "status_acceptance_03.edxml",
               "status_assignment_04.edxml", "status_processing_05.edxml", "status_finish_06.edxml",
               "status_cancellation_13.edxml", "status_change-acceptance_15.edxml",
               "status_change-rejection_16.edxml"]


@pytest.mark.parametrize("name", WELL_FORMED)
def test_sdk_samples_parse_and_survive_a_round_trip(samples_dir: Path, name: str) -> None:
    packet = load_packet((samples_dir / name).read_bytes())
    assert load_packet(packet_to_bytes(packet)) == packet
    if name.startswith("status"):
        assert isinstance(packet, StatusPacket)
        expected = "01" if name == "status.edxml" else name.rsplit("_", 1)[1][:2]
        assert packet.status_code.value == expected
        assert packet.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
        assert packet.timestamp is not None and packet.staff_info is not None
    else:
        assert isinstance(packet, DocumentPacket)
        assert packet.sender == "000.00.00.G22"
        assert packet.recipients == ("000.00.00.H41", "000.00.00.H14", "000.00.00.G17")
        assert packet.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
        assert packet.header.other_info.direction is False
        assert packet.attachments[0].content_id == "cid:209" and len(packet.attachments[0].data) == 270823
        assert packet.manifest[0].attachment_name == "1896_QD-TTg_m_294779.doc"


def test_sdk_business_variants(samples_dir: Path) -> None:
    update = load_packet((samples_dir / "edoc_update.edxml").read_bytes())
    assert update.business_doc_type == 2
    assert update.business.document_info.receivers == (Receiver("000.00.00.H41", 0), Receiver("000.00.00.H14", 1))
    revocation = load_packet((samples_dir / "edoc_revocation.edxml").read_bytes())
    assert revocation.business_doc_type == 1
    assert revocation.header.response_for[0].document_id == "000.04.00.G14,2012/08/06,267/VPCP-TTĐT".replace(
        "000.04.00", "000.00.04")
    replacement = load_packet((samples_dir / "edoc_replacement.edxml").read_bytes())
    assert replacement.business_doc_type == 3
    assert [r.organ_ids for r in replacement.business.replacements] == [("000.00.00.H41", "000.00.00.H14")] * 2


def test_business_spelling_variant_is_read() -> None:
    data = packet_to_bytes(FULL_DOCUMENT).replace(b"edXML:Bussiness>", b"edXML:Business>")
    assert load_packet(data).business == FULL_DOCUMENT.business


@pytest.mark.parametrize("old, new, code", [
    (b"<edXML:PromulgationDate>2018/09/28<", b"<edXML:PromulgationDate>2018/02/30<", RefusalCode.INVALID_FIELD),
    (b"<edXML:PromulgationDate>2018/09/28<", b"<edXML:PromulgationDate>28/09/2018<", RefusalCode.SCHEMA_INVALID),
    (b"http://www.mic.gov.vn/TBT/QCVN_102_2016", b"http://www.go.vn/eDoc", RefusalCode.NOT_EDXML),
])
def test_bad_fields_are_refused_with_their_code(old: bytes, new: bytes, code: RefusalCode) -> None:
    data = packet_to_bytes(FULL_DOCUMENT)
    assert old in data
    with pytest.raises(PacketError) as info:
        load_packet(data.replace(old, new, 1))
    assert info.value.code is code


@pytest.mark.parametrize("character", ["\u00a0", "\u0085", "\u2028"])
def test_attachment_base64_takes_xml_whitespace_and_no_other(character: str) -> None:
    # The same reading as every other base64 value (axis.edxml.safe.decode_base64): line breaks, spaces and tabs
    # as MIME writes them, nothing else a Unicode-aware str.split() would also have dropped.
    data = packet_to_bytes(FULL_DOCUMENT)
    start = data.index(b"<edXML:ContentTransferEncoded>") + len(b"<edXML:ContentTransferEncoded>") + 4
    wrapped = data[:start] + b"\r\n \t" + data[start:]
    assert load_packet(wrapped).attachments == FULL_DOCUMENT.attachments
    with pytest.raises(PacketError) as info:
        load_packet(data[:start] + character.encode() + data[start:])
    assert info.value.code is RefusalCode.INVALID_FIELD and "ContentTransferEncoded" in info.value.detail


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets)
def test_build_parse_round_trip(packet) -> None:
    data = packet_to_bytes(packet)
    assert load_packet(data) == packet


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_packets_never_crash(data) -> None:
    original = bytearray(packet_to_bytes(FULL_DOCUMENT if data.draw(st.booleans()) else FULL_STATUS))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(original) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            original[position] ^= data.draw(st.integers(1, 255))
        elif action == "delete":
            del original[position]
        else:
            original[position:position] = data.draw(st.sampled_from(
                [b"<", b"&", b"]]>", b"<!DOCTYPE x>", b"\x00", b"\xc3", b"<edXML:To/>", b"x"]))
    try:
        load_packet(bytes(original))
    except PacketError:
        pass
