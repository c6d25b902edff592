"""Where the signature and the sender live in an edXML packet.

The standard (QCVN 102:2016 §3.4, as the national SDK writes it) puts one
enveloped XML-DSig `Signature` inside `edXML/edXMLEnvelope/edXMLHeader`, after
`TraceHeaderList`; status packets have no TraceHeaderList, so it follows
`MessageHeader`. The sender is `edXMLHeader/MessageHeader/From/OrganId` in both
document and status packets.

Callers may rely on:
- `header_of(root)` returns the single edXMLHeader of a single edXMLEnvelope
  of an `edXML` root, or raises `PacketError(NOT_EDXML)`, or
  `TrustError(SIGNATURE_MISPLACED)` when there are several (the signature's
  place would be ambiguous);
- `sender_of(root)` returns the text of the single From/OrganId or raises
  `TrustError(SIGNER_NOT_SENDER)` when the packet names no sender or several;
- `SIGNXML_LOCATION` is the signxml `SignatureConfiguration.location` that pins
  the signature to edXMLHeader.
"""
from __future__ import annotations

from lxml import etree

from axis.refusals import PacketError, RefusalCode, TrustError

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"


def edxml(tag: str) -> str:
    return f"{{{EDXML_NS}}}{tag}"


def ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


ROOT = edxml("edXML")
ENVELOPE = edxml("edXMLEnvelope")
HEADER = edxml("edXMLHeader")
MESSAGE_HEADER = edxml("MessageHeader")
TRACE_HEADER_LIST = edxml("TraceHeaderList")
DIGITAL_SIGNATURE = edxml("DigitalSignature")  # the empty placeholder some builders write
SIGNATURE = ds("Signature")

# signxml appends "ds:Signature" to this path; "./" is the edXML root.
SIGNXML_LOCATION = f"./{ENVELOPE}/{HEADER}/"


def header_of(root: etree._Element) -> etree._Element:
    """The edXMLHeader of a packet; see the module docstring."""
    if root.tag != ROOT:
        raise PacketError(RefusalCode.NOT_EDXML,
                          f"the root element is {root.tag!r}, not {{{EDXML_NS}}}edXML")
    envelopes = root.findall(ENVELOPE)
    if not envelopes:
        raise PacketError(RefusalCode.NOT_EDXML, "the packet has no edXMLEnvelope under its edXML root")
    if len(envelopes) > 1:
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"the packet has {len(envelopes)} edXMLEnvelope elements; exactly one is allowed")
    headers = envelopes[0].findall(HEADER)
    if not headers:
        raise PacketError(RefusalCode.NOT_EDXML, "the edXMLEnvelope has no edXMLHeader")
    if len(headers) > 1:
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"the edXMLEnvelope has {len(headers)} edXMLHeader elements; exactly one is allowed")
    return headers[0]


def signature_anchor(header: etree._Element) -> etree._Element:
    """The element the signature follows: TraceHeaderList, else MessageHeader."""
    anchor = header.find(TRACE_HEADER_LIST)
    if anchor is None:
        anchor = header.find(MESSAGE_HEADER)
    if anchor is None:
        raise PacketError(RefusalCode.SCHEMA_INVALID,
                          "edXMLHeader has neither MessageHeader nor TraceHeaderList; there is nothing to sign")
    return anchor


def sender_of(root: etree._Element) -> str:
    """The From/OrganId text of a packet tree (use the signed tree); see the module docstring."""
    found = root.findall(f"{ENVELOPE}/{HEADER}/{MESSAGE_HEADER}/{edxml('From')}/{edxml('OrganId')}")
    if len(found) != 1:
        raise TrustError(RefusalCode.SIGNER_NOT_SENDER,
                         "the signed packet names no sender (edXMLHeader/MessageHeader/From/OrganId)"
                         if not found else
                         f"the signed packet names {len(found)} senders (From/OrganId); exactly one is allowed")
    organ_id = found[0]
    if len(organ_id):
        raise TrustError(RefusalCode.SIGNER_NOT_SENDER, "From/OrganId contains elements instead of a code")
    return (organ_id.text or "").strip()
