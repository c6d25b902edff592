"""edXML packets (QCVN 102:2016): agency codes, models, safe parsing, schemas, reading and writing.

Knows XML, nothing of brokers or databases.
"""
from axis.edxml.codes import AgencyCode, CodeScheme, is_valid_agency_code, parse_agency_code
from axis.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    Code,
    DocumentPacket,
    DocumentType,
    ManifestReference,
    MessageHeader,
    Organization,
    OtherInfo,
    Packet,
    Priority,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusPacket,
    TraceHeader,
    make_document_id,
)
from axis.edxml.ns import NS
from axis.edxml.packet import build_tree, load_packet, packet_to_bytes, read_packet
from axis.edxml.routing import RoutingFacts, routing_facts
from axis.edxml.safe import DEFAULT_LIMITS, Limits, parse_xml, parse_xml_file
from axis.edxml.schema import PacketKind, detect_kind, validate

__all__ = [
    "DEFAULT_LIMITS",
    "NS",
    "AgencyCode",
    "Attachment",
    "Business",
    "BusinessDocType",
    "BusinessDocumentInfo",
    "Code",
    "CodeScheme",
    "DocumentPacket",
    "DocumentType",
    "Limits",
    "ManifestReference",
    "MessageHeader",
    "Organization",
    "OtherInfo",
    "Packet",
    "PacketKind",
    "Priority",
    "PromulgationInfo",
    "Receiver",
    "ReplacementInfo",
    "ResponseFor",
    "RoutingFacts",
    "SignerInfo",
    "StaffInfo",
    "StatusCode",
    "StatusPacket",
    "TraceHeader",
    "build_tree",
    "detect_kind",
    "is_valid_agency_code",
    "load_packet",
    "make_document_id",
    "packet_to_bytes",
    "parse_agency_code",
    "parse_xml",
    "parse_xml_file",
    "read_packet",
    "routing_facts",
    "validate",
]
