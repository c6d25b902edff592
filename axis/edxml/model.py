"""Typed models of the two edXML packet kinds (QCVN 102:2016 §3 and §4).

Each class maps one XML element; each field carries, in its metadata, the
name of the child element it maps (`xml=`) and its cardinality follows from
its type: `X | None` is 0..1, `tuple[X, ...]` is 0..n, anything else is 1.
`axis/edxml/packet.py` reads and writes XML from these declarations alone, so
the element list lives in one place.

Values are kept as the standard defines them: dates as `datetime.date`
(`yyyy/MM/dd` on the wire), timestamps as naive `datetime.datetime` in
Vietnam local time (`yyyy/MM/dd HH:mm:ss`), text exactly as written
(Vietnamese diacritics and surrounding spaces included), attachments as the
decoded bytes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


def el(name: str, default: Any = ..., **kwargs: Any) -> Any:
    """A field mapped to the child element `name`."""
    if default is ...:
        return field(metadata={"xml": name}, **kwargs)
    return field(default=default, metadata={"xml": name}, **kwargs)


class StatusCode(str, Enum):
    """Status packet codes (§4). 13 is sent by the sender, the others by a recipient."""

    ARRIVED = "01"
    REFUSED = "02"
    ACCEPTED = "03"
    ASSIGNED = "04"
    PROCESSING = "05"
    DONE = "06"
    RECALL_REQUEST = "13"
    RECALL_AGREED = "15"
    RECALL_REFUSED = "16"


class BusinessDocType(int, Enum):
    """`Bussiness/BussinessDocType` (§3.5)."""

    NEW = 0
    RECALL = 1
    UPDATE = 2
    REPLACE = 3


class Priority(int, Enum):
    """`OtherInfo/Priority` (§3.6). 3 and 4 are "hỏa tốc" (urgent)."""

    NORMAL = 0
    URGENT = 1
    VERY_URGENT = 2
    FLASH = 3
    FLASH_TIMED = 4


@dataclass(frozen=True)
class Organization:
    """`From` / `To`: an agency and its contact details."""

    organ_id: str = el("OrganId")
    organization_in_charge: str | None = el("OrganizationInCharge", None)
    organ_name: str | None = el("OrganName", None)
    organ_add: str | None = el("OrganAdd", None)
    email: str | None = el("Email", None)
    telephone: str | None = el("Telephone", None)
    fax: str | None = el("Fax", None)
    website: str | None = el("Website", None)


@dataclass(frozen=True)
class Code:
    """`Code`: the document's number and notation (số, ký hiệu)."""

    code_number: str = el("CodeNumber")
    code_notation: str = el("CodeNotation")


@dataclass(frozen=True, kw_only=True)
class PromulgationInfo:
    place: str | None = el("Place", None)
    promulgation_date: dt.date = el("PromulgationDate")


@dataclass(frozen=True)
class DocumentType:
    type: int = el("Type")
    type_detail: int | None = el("TypeDetail", None)
    type_name: str | None = el("TypeName", None)


@dataclass(frozen=True, kw_only=True)
class SignerInfo:
    """Who signed the document (chức vụ, họ tên)."""

    competence: str | None = el("Competence", None)
    position: str | None = el("Position", None)
    full_name: str = el("FullName")


@dataclass(frozen=True)
class OtherInfo:
    priority: int = el("Priority", 0)
    sphere_of_promulgation: str | None = el("SphereOfPromulgation", None)
    typer_notation: str | None = el("TyperNotation", None)
    promulgation_amount: int | None = el("PromulgationAmount", None)
    page_amount: int | None = el("PageAmount", None)
    direction: bool | None = el("Direction", None)
    appendixes: tuple[str, ...] | None = el("Appendixes/Appendix", None)


@dataclass(frozen=True)
class ResponseFor:
    """The document this packet answers (a reply, or the subject of a status)."""

    organ_id: str | None = el("OrganId", None)
    code: str | None = el("Code", None)
    promulgation_date: dt.date | None = el("PromulgationDate", None)
    document_id: str | None = el("DocumentId", None)


@dataclass(frozen=True)
class StaffInfo:
    department: str | None = el("Department", None)
    staff: str | None = el("Staff", None)
    mobile: str | None = el("Mobile", None)
    email: str | None = el("Email", None)


@dataclass(frozen=True)
class TraceHeader:
    """One system the packet passed through."""

    organ_id: str = el("OrganId")
    timestamp: dt.datetime = el("Timestamp")


@dataclass(frozen=True)
class Receiver:
    organ_id: str = el("OrganId")
    receiver_type: int = el("ReceiverType")  # 0 removed from the recipients, 1 added


@dataclass(frozen=True)
class BusinessDocumentInfo:
    """For updates: what changed."""

    document_info: int = el("DocumentInfo")
    document_receiver: int = el("DocumentReceiver")
    receivers: tuple[Receiver, ...] | None = el("ReceiverList/Receiver", None)


@dataclass(frozen=True)
class ReplacementInfo:
    document_id: str = el("DocumentId")
    organ_ids: tuple[str, ...] = el("OrganIdList/OrganId")


@dataclass(frozen=True)
class Business:
    """`Bussiness` (the standard's spelling; `Business` is accepted when reading)."""

    business_doc_type: int = el("BussinessDocType", 0)
    business_doc_reason: str | None = el("BussinessDocReason", None)
    document_id: str | None = el("DocumentId", None)
    paper: int | None = el("Paper", None)
    document_info: BusinessDocumentInfo | None = el("BussinessDocumentInfo", None)
    replacements: tuple[ReplacementInfo, ...] | None = el("ReplacementInfoList/ReplacementInfo", None)
    staff_info: StaffInfo | None = el("StaffInfo", None)


@dataclass(frozen=True, kw_only=True)
class ManifestReference:
    """`edXMLManifest/Reference`: describes one attachment."""

    content_id: str = el("ContentId")
    content_type: str | None = el("ContentType", None)
    description: str | None = el("Description", None)
    attachment_name: str = el("AttachmentName")


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """`AttachmentEncoded/Attachment`: the file itself, carried as base64 on the wire."""

    content_id: str = el("ContentId")
    attachment_name: str = el("AttachmentName")
    description: str | None = el("Description", None)
    content_type: str = el("ContentType")
    data: bytes = el("ContentTransferEncoded")

    def reference(self) -> ManifestReference:
        """The manifest entry that describes this attachment."""
        return ManifestReference(content_id=self.content_id, content_type=self.content_type,
                                 description=self.description, attachment_name=self.attachment_name)


@dataclass(frozen=True, kw_only=True)
class MessageHeader:
    """The document packet's `MessageHeader`, numbered as in §3.2."""

    from_: Organization = el("From")                                   # 1.1
    to: tuple[Organization, ...] = el("To")                            # 1.2, 1..n
    code: Code = el("Code")                                            # 1.3
    promulgation_info: PromulgationInfo = el("PromulgationInfo")       # 1.4
    document_type: DocumentType = el("DocumentType")                   # 1.5
    subject: str = el("Subject")                                       # 1.6
    content: str | None = el("Content", None)                          # 1.7
    signer_info: SignerInfo = el("SignerInfo")                          # 1.8
    due_date: dt.date | None = el("DueDate", None)                     # 1.9
    to_places: tuple[str, ...] | None = el("ToPlaces/Place", None)     # 1.10
    other_info: OtherInfo | None = el("OtherInfo", None)               # 1.11
    response_for: tuple[ResponseFor, ...] | None = el("ResponseFor", None)  # 1.12, 0..n
    steering_type: int | None = el("SteeringType", None)               # 1.13
    document_id: str = el("DocumentId")                                # 1.14


@dataclass(frozen=True)
class DocumentPacket:
    """A document packet ("gói tin văn bản"): header, trace, manifest and attachments."""

    header: MessageHeader
    traces: tuple[TraceHeader, ...] = ()
    business: Business | None = None
    manifest: tuple[ManifestReference, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    @property
    def sender(self) -> str:
        return self.header.from_.organ_id

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(o.organ_id for o in self.header.to)

    @property
    def document_id(self) -> str:
        return self.header.document_id

    @property
    def priority(self) -> int:
        return self.header.other_info.priority if self.header.other_info else 0

    @property
    def business_doc_type(self) -> int:
        return self.business.business_doc_type if self.business else BusinessDocType.NEW


@dataclass(frozen=True, kw_only=True)
class StatusPacket:
    """A status packet ("gói tin trạng thái"): one agency's status for one document.

    In the SDK's packets these fields sit directly in `MessageHeader`, in this order.
    The schema requires `ResponseFor/OrganId` and `ResponseFor/DocumentId` here:
    without them a status can never be matched to its document.
    """

    from_: Organization = el("From")
    response_for: ResponseFor = el("ResponseFor")
    staff_info: StaffInfo | None = el("StaffInfo", None)
    status_code: StatusCode = el("StatusCode")
    description: str | None = el("Description", None)
    timestamp: dt.datetime = el("Timestamp")

    @property
    def sender(self) -> str:
        return self.from_.organ_id

    @property
    def document_id(self) -> str | None:
        return self.response_for.document_id


Packet = DocumentPacket | StatusPacket


def make_document_id(issuer: str, date: dt.date, code_number: str, code_notation: str) -> str:
    """`<issuer OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>` as in §3.2 (1.14)."""
    return f"{issuer},{date:%Y/%m/%d},{code_number}/{code_notation}"
