"""A packet's routing facts: the one place that reads them from an edXML tree.

Routing needs a dozen header fields; the full model (`read_packet`) costs about
as much as the signature check itself, so only those are read here. The hub
reads them from the tree its verifier returns as signed; the SDK reads them
from a packet it is about to submit (the hub checks them again, signed).

Callers may rely on `routing_facts` returning `RoutingFacts` or raising
`PacketError` (SCHEMA_INVALID for a missing header or sender, INVALID_FIELD for
a priority that is not 0 to 4), and on codes being returned as written
(stripped), never canonicalised: that is the caller's policy.
"""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from axis.edxml.ns import q
from axis.edxml.safe import parse_xml
from axis.edxml.schema import PacketKind, detect_kind
from axis.refusals import PacketError, RefusalCode

MAX_PRIORITY = 4  # edXML Priority: 0 normal … 4 (the transport's priorities are the same numbers)

_HEADER = f"{q('edXMLEnvelope')}/{q('edXMLHeader')}"
_MESSAGE_HEADER = q("MessageHeader")


@dataclass(frozen=True)
class RoutingFacts:
    kind: str                              # "document" | "status"
    sender: str                            # From/OrganId
    document_id: str                       # documents: DocumentId; statuses: ResponseFor/DocumentId
    priority: int = 0                      # OtherInfo/Priority; 0 for status packets
    recipients: tuple[str, ...] = ()       # documents: every To/OrganId, in order, repeats kept
    business_type: int = 0                 # documents: Bussiness/BussinessDocType (0 when absent)
    business_document_id: str | None = None  # the document a recall/update/replacement targets
    answers_sender: str | None = None      # statuses: ResponseFor/OrganId
    status_code: str | None = None
    status_timestamp: str | None = None


def _text(node: etree._Element, *names: str) -> str:
    found = node.find("/".join(q(name) for name in names))
    return "" if found is None or found.text is None else found.text.strip()


def _business(header: etree._Element) -> etree._Element | None:
    """`Bussiness` as the standard spells it, or `Business` as some systems do."""
    trace = header.find(q("TraceHeaderList"))
    if trace is None:
        return None
    found = trace.find(q("Bussiness"))
    return found if found is not None else trace.find(q("Business"))


def _number(text: str, what: str) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        raise PacketError(RefusalCode.INVALID_FIELD, f"{what} is {text!r}, not a number") from None


def routing_facts(packet: bytes | etree._Element) -> RoutingFacts:
    """The routing facts of a packet (its bytes, parsed safely, or a parsed root)."""
    root = parse_xml(bytes(packet)) if isinstance(packet, bytes | bytearray | memoryview) else packet
    kind = detect_kind(root)  # NOT_EDXML for another root
    header = root.find(_HEADER)
    message = header.find(_MESSAGE_HEADER) if header is not None else None
    if header is None or message is None:
        raise PacketError(RefusalCode.SCHEMA_INVALID, "edXMLEnvelope/edXMLHeader/MessageHeader is missing")
    sender = _text(message, "From", "OrganId")
    if not sender:
        raise PacketError(RefusalCode.SCHEMA_INVALID, "MessageHeader/From/OrganId is missing or empty")
    if kind is PacketKind.STATUS:
        return RoutingFacts(kind="status", sender=sender, document_id=_text(message, "ResponseFor", "DocumentId"),
                            answers_sender=_text(message, "ResponseFor", "OrganId"),
                            status_code=_text(message, "StatusCode"),
                            status_timestamp=_text(message, "Timestamp"))
    priority = _number(_text(message, "OtherInfo", "Priority"), "OtherInfo/Priority")
    if not 0 <= priority <= MAX_PRIORITY:
        raise PacketError(RefusalCode.INVALID_FIELD, f"OtherInfo/Priority is {priority}, not from 0 to {MAX_PRIORITY}")
    business = _business(header)
    business_type, business_document_id = 0, None
    if business is not None:
        doc_type = _text(business, "BussinessDocType") or _text(business, "BusinessDocType")
        business_type = _number(doc_type, "BussinessDocType")
        business_document_id = _text(business, "DocumentId") or None
    return RoutingFacts(kind="document", sender=sender, document_id=_text(message, "DocumentId"),
                        priority=priority, recipients=tuple(_text(to, "OrganId") for to in message.iterfind(q("To"))),
                        business_type=business_type, business_document_id=business_document_id)
