"""Composing new packets with the fields the standard derives for you.

An agency system usually knows who sends what to whom; the DocumentId, the
manifest, the first trace entry and the `Bussiness` block follow from that.
These helpers fill them in the way the national SDK does, so every packet
Axis or its SDK builds is complete and schema-valid.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from axis.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    Code,
    DocumentPacket,
    DocumentType,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusPacket,
    TraceHeader,
    make_document_id,
)

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
CONG_VAN = DocumentType(type=18, type_name="Công văn")  # NĐ 30/2020 Phụ lục III numbering


def now_vietnam() -> dt.datetime:
    """Timestamps in edXML are Vietnam local time without a zone, to the second."""
    return dt.datetime.now(VIETNAM).replace(tzinfo=None, microsecond=0)


def new_document(
    sender: Organization,
    recipients: Sequence[Organization],
    *,
    code_number: str,
    code_notation: str,
    subject: str,
    signer: SignerInfo,
    place: str = "Hà Nội",
    promulgation_date: dt.date | None = None,
    document_type: DocumentType = CONG_VAN,
    content: str | None = None,
    attachments: Sequence[Attachment] = (),
    priority: int = 0,
    business: BusinessDocType = BusinessDocType.NEW,
    business_reason: str | None = None,
    business_document_id: str | None = None,
    response_for: Sequence[ResponseFor] | None = None,
    staff: StaffInfo | None = None,
    timestamp: dt.datetime | None = None,
) -> DocumentPacket:
    """A document packet; for a recall, update or replacement pass `business` and the target's id."""
    date = promulgation_date or now_vietnam().date()
    header = MessageHeader(
        from_=sender,
        to=tuple(recipients),
        code=Code(code_number, code_notation),
        promulgation_info=PromulgationInfo(place=place, promulgation_date=date),
        document_type=document_type,
        subject=subject,
        content=content,
        signer_info=signer,
        other_info=OtherInfo(priority=priority),
        response_for=tuple(response_for) if response_for else None,
        document_id=make_document_id(sender.organ_id, date, code_number, code_notation),
    )
    return DocumentPacket(
        header=header,
        traces=(TraceHeader(sender.organ_id, timestamp or now_vietnam()),),
        business=Business(business_doc_type=int(business), business_doc_reason=business_reason,
                          document_id=business_document_id, paper=0, staff_info=staff),
        manifest=tuple(a.reference() for a in attachments),
        attachments=tuple(attachments),
    )


def new_status(
    sender: Organization,
    document: DocumentPacket | ResponseFor,
    code: StatusCode | str,
    *,
    description: str | None = None,
    staff: StaffInfo | None = None,
    timestamp: dt.datetime | None = None,
) -> StatusPacket:
    """A status packet from `sender` about `document` (the packet itself, or its ResponseFor)."""
    if isinstance(document, DocumentPacket):
        h = document.header
        document = ResponseFor(organ_id=h.from_.organ_id, code=f"{h.code.code_number}/{h.code.code_notation}",
                               promulgation_date=h.promulgation_info.promulgation_date,
                               document_id=h.document_id)
    return StatusPacket(from_=sender, response_for=document, staff_info=staff, status_code=StatusCode(code),
                        description=description, timestamp=timestamp or now_vietnam())
