"""`routing_facts` (the one reader of a packet's routing fields) agrees with the full model on every
national SDK sample, and refuses what is not an edXML packet with a stable code."""
from __future__ import annotations

from pathlib import Path

import pytest

from axis.edxml import DocumentPacket, parse_xml, read_packet, routing_facts
from axis.refusals import PacketError, RefusalCode

# The 13 well-formed samples (edoc.edxml and edoc_new.edxml are not well-formed XML: test_safe_parsing).
SAMPLES = sorted(path for path in (Path(__file__).resolve().parents[1] / "vectors" / "vdxp-sdk").glob("*.edxml")
                 if path.name not in ("edoc.edxml", "edoc_new.edxml"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_routing_facts_agree_with_the_model(path: Path) -> None:
    data = path.read_bytes()
    facts, packet = routing_facts(data), read_packet(parse_xml(data))
    assert facts == routing_facts(parse_xml(data))  # bytes or a parsed tree: the same answer
    assert facts.sender == packet.sender.strip()
    if isinstance(packet, DocumentPacket):
        assert facts.kind == "document" and facts.document_id == packet.document_id.strip()
        assert facts.recipients == tuple(r.strip() for r in packet.recipients)
        assert facts.priority == packet.priority
        assert facts.business_type == packet.business_doc_type
        business_id = packet.business.document_id if packet.business else None
        assert facts.business_document_id == ((business_id or "").strip() or None)
    else:
        assert facts.kind == "status" and facts.status_code == packet.status_code.value
        assert facts.document_id == (packet.response_for.document_id or "").strip()
        assert facts.answers_sender == (packet.response_for.organ_id or "").strip()


@pytest.mark.parametrize(("data", "code"), [
    (b"<not-edxml/>", RefusalCode.NOT_EDXML),
    (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>', RefusalCode.SCHEMA_INVALID),
    (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope><edXMLHeader><MessageHeader>'
     b'<From><OrganId>000.00.00.G22</OrganId></From><OtherInfo><Priority>9</Priority></OtherInfo>'
     b'</MessageHeader></edXMLHeader></edXMLEnvelope></edXML>', RefusalCode.INVALID_FIELD),
    (b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope><edXMLHeader><MessageHeader>'
     b'<From><OrganId> </OrganId></From></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>',
     RefusalCode.SCHEMA_INVALID),
])
def test_what_is_not_a_routable_packet_is_refused(data: bytes, code: RefusalCode) -> None:
    with pytest.raises(PacketError) as refused:
        routing_facts(data)
    assert refused.value.code is code
