"""Where a signed document keeps its signature and names its signer.

Two kinds of document are signed on Axis, each with one `Placement`:

- `EDXML_PACKET`: the standard (QCVN 102:2016 §3.4, as the national SDK writes
  it) puts one enveloped XML-DSig `Signature` inside
  `edXML/edXMLEnvelope/edXMLHeader`, after `TraceHeaderList`; status packets
  have no TraceHeaderList, so it follows `MessageHeader`. The sender is
  `edXMLHeader/MessageHeader/From/OrganId` in both document and status packets.
- `AXIS_RECEIPT`: Axis's own receipts (`axis/receipt.py`, namespace
  `urn:axis:receipt:1`) carry the signature as the last child of the root
  `Receipt`; the signer is named by the root's `Issuer` child.

Callers may rely on:
- `placement.signature_parent(root)` returns the element the one signature must
  be a child of, or raises `PacketError(NOT_EDXML)` for another kind of document,
  or `TrustError(SIGNATURE_MISPLACED)` when the document repeats the elements
  that hold it (the signature's place would be ambiguous);
- `placement.signed_sender(signed_root)` returns the signer's agency code as the
  signed tree names it, or raises `TrustError(SIGNER_NOT_SENDER)` when it names
  none or several;
- `placement.signxml_location` is the signxml `SignatureConfiguration.location`
  that pins the signature to that parent.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from axis.edxml.ns import NS as EDXML_NS
from axis.edxml.safe import DEFAULT_LIMITS, Limits
from axis.refusals import PacketError, RefusalCode, TrustError

RECEIPT_NS = "urn:axis:receipt:1"  # axis.receipt.NS; trust does not import the receipt module
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
RECEIPT = f"{{{RECEIPT_NS}}}Receipt"
ISSUER = f"{{{RECEIPT_NS}}}Issuer"

# signxml appends "ds:Signature" to this path; "./" is the edXML root.
SIGNXML_LOCATION = f"./{ENVELOPE}/{HEADER}/"
_SENDER_PATH = f"{ENVELOPE}/{HEADER}/{MESSAGE_HEADER}/{edxml('From')}/{edxml('OrganId')}"


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
    """The element a packet's signature follows: TraceHeaderList, else MessageHeader."""
    anchor = header.find(TRACE_HEADER_LIST)
    if anchor is None:
        anchor = header.find(MESSAGE_HEADER)
    if anchor is None:
        raise PacketError(RefusalCode.SCHEMA_INVALID,
                          "edXMLHeader has neither MessageHeader nor TraceHeaderList; there is nothing to sign")
    return anchor


def _single_code(found: list[etree._Element], what: str) -> str:
    if len(found) != 1:
        raise TrustError(RefusalCode.SIGNER_NOT_SENDER,
                         f"the signed document names no signer ({what})" if not found else
                         f"the signed document names {len(found)} signers ({what}); exactly one is allowed")
    element = found[0]
    if len(element):
        raise TrustError(RefusalCode.SIGNER_NOT_SENDER, f"{what} contains elements instead of a code")
    return (element.text or "").strip()


def sender_of(root: etree._Element) -> str:
    """The From/OrganId of a packet tree (use the signed tree); see the module docstring."""
    return _single_code(root.findall(_SENDER_PATH), "edXMLHeader/MessageHeader/From/OrganId")


def _first_text(found: etree._Element | None) -> str:
    return (found.text or "").strip() if found is not None else ""


def _receipt_root(root: etree._Element) -> etree._Element:
    if root.tag != RECEIPT:
        raise PacketError(RefusalCode.NOT_EDXML, f"not an Axis receipt: the root is {root.tag!r}, not {RECEIPT}")
    return root


@dataclass(frozen=True)
class Placement:
    """Where one kind of signed document keeps its signature and names its signer."""

    kind: str                                                   # "packet", "receipt": for messages
    parent_name: str                                            # the signature's parent, for messages
    sender_name: str                                            # the element naming the signer, for messages
    limits: Limits                                              # parse_xml limits for this kind
    signxml_location: str
    signature_parent: Callable[[etree._Element], etree._Element]
    signed_sender: Callable[[etree._Element], str]               # from the SIGNED tree
    claimed_sender: Callable[[etree._Element], str]              # unverified: only to pick a policy
    place_signature: Callable[[etree._Element, etree._Element], None]  # (parent, placeholder), for signing


def _after_anchor(header: etree._Element, placeholder: etree._Element) -> None:
    anchor = signature_anchor(header)
    anchor.addnext(placeholder)
    # Layout only: the signature takes the anchor's indentation, the anchor its sibling's.
    previous = anchor.getprevious()
    placeholder.tail = anchor.tail
    anchor.tail = previous.tail if previous is not None else header.text


def _last_child(root: etree._Element, placeholder: etree._Element) -> None:
    root.append(placeholder)


EDXML_PACKET = Placement(
    kind="packet",
    parent_name="edXMLHeader",
    sender_name="From/OrganId",
    limits=DEFAULT_LIMITS,
    signxml_location=SIGNXML_LOCATION,
    signature_parent=header_of,
    signed_sender=sender_of,
    claimed_sender=lambda root: _first_text(root.find(_SENDER_PATH)),
    place_signature=_after_anchor,
)

AXIS_RECEIPT = Placement(
    kind="receipt",
    parent_name="Receipt",
    sender_name="Issuer",
    # A receipt is a few fields and a signature: bounds to match axis/receipt.py's reader.
    limits=Limits(max_bytes=1024 * 1024, max_depth=16, max_elements=200),
    signxml_location="./",
    signature_parent=_receipt_root,
    signed_sender=lambda root: _single_code(root.findall(ISSUER), "Receipt/Issuer"),
    claimed_sender=lambda root: _first_text(root.find(ISSUER)),
    place_signature=_last_child,
)
