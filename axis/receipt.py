"""Axis's own receipts: what Axis (or a recipient's adapter) asserts about a packet.

A receipt never rewrites the packet it speaks of; it names it (axis id,
DocumentId, SHA-256 digest of the exact bytes) and is signed by its issuer:
intake and error receipts by the hub's key, delivery receipts by the recipient
agency's key. Schema: `schemas/axis-receipt.xsd`.

    <axr:Receipt xmlns:axr="urn:axis:receipt:1" version="1">
      <axr:Kind>intake|delivery|error</axr:Kind>
      <axr:Outcome>accepted|refused|duplicate|delivered|failed</axr:Outcome>
      <axr:AxisId/>? <axr:Submission/>? <axr:Sender/>? <axr:Recipient/>? <axr:DocumentId/>?
      <axr:Digest Algorithm="sha256"/>?
      <axr:Refusal code="301" name="SIGNATURE_INVALID">detail</axr:Refusal>?
      <axr:Time>2026-11-23T01:02:03Z</axr:Time>
      <axr:Issuer>AXIS</axr:Issuer>
      <ds:Signature/>   (added by axis.trust, enveloped, last child)
    </axr:Receipt>

Callers may rely on `read_receipt(build_receipt(r)) == r` and on `read_receipt`
refusing anything else with a `PacketError`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree

from axis.edxml.safe import Limits, parse_xml
from axis.refusals import PacketError, RefusalCode

NS = "urn:axis:receipt:1"
KINDS = ("intake", "delivery", "error")
OUTCOMES = ("accepted", "refused", "duplicate", "delivered", "failed")
_LIMITS = Limits(max_bytes=1024 * 1024, max_depth=16, max_elements=200)
_FIELDS = (("axis_id", "AxisId"), ("submission", "Submission"), ("sender", "Sender"),
           ("recipient", "Recipient"), ("document_id", "DocumentId"))


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


@dataclass(frozen=True)
class Receipt:
    kind: str
    outcome: str
    issuer: str
    time: dt.datetime                      # aware, UTC, whole seconds
    axis_id: str | None = None
    submission: str | None = None
    sender: str | None = None
    recipient: str | None = None
    document_id: str | None = None
    digest: str | None = None              # sha256 hex of the packet's exact bytes
    refusal_code: int | None = None
    refusal_name: str | None = None
    refusal_detail: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"receipt kind {self.kind!r} is not one of {KINDS}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"receipt outcome {self.outcome!r} is not one of {OUTCOMES}")

    @property
    def accepted(self) -> bool:
        return self.outcome in ("accepted", "duplicate", "delivered")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def build_receipt(receipt: Receipt) -> bytes:
    """The unsigned receipt XML (sign it with `axis.trust.Signer.sign_receipt`)."""
    root = etree.Element(_q("Receipt"), nsmap={"axr": NS}, version="1")
    etree.SubElement(root, _q("Kind")).text = receipt.kind
    etree.SubElement(root, _q("Outcome")).text = receipt.outcome
    for attr, name in _FIELDS:
        value = getattr(receipt, attr)
        if value is not None:
            etree.SubElement(root, _q(name)).text = value
    if receipt.digest is not None:
        etree.SubElement(root, _q("Digest"), Algorithm="sha256").text = receipt.digest
    if receipt.refusal_code is not None:
        refusal = etree.SubElement(root, _q("Refusal"), code=str(receipt.refusal_code),
                                   name=receipt.refusal_name or "")
        refusal.text = receipt.refusal_detail or ""
    etree.SubElement(root, _q("Time")).text = receipt.time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    etree.SubElement(root, _q("Issuer")).text = receipt.issuer
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def read_receipt(data: bytes | etree._Element) -> Receipt:
    """The receipt in `data` (bytes, or the signed tree a verifier returned)."""
    root = parse_xml(bytes(data), _LIMITS) if isinstance(data, (bytes, bytearray)) else data
    if root.tag != _q("Receipt"):
        raise PacketError(RefusalCode.NOT_EDXML, f"not an Axis receipt: root is {root.tag!r}")

    def text(name: str) -> str | None:
        found = root.find(_q(name))
        return None if found is None else (found.text or "")

    try:
        values = {attr: text(name) for attr, name in _FIELDS}
        digest = text("Digest")
        refusal = root.find(_q("Refusal"))
        time_text, kind, outcome, issuer = text("Time"), text("Kind"), text("Outcome"), text("Issuer")
        if time_text is None or kind is None or outcome is None or issuer is None:
            raise ValueError("Kind, Outcome, Time and Issuer are required")
        return Receipt(
            kind=kind, outcome=outcome, issuer=issuer,
            time=dt.datetime.strptime(time_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC),
            digest=digest,
            refusal_code=int(refusal.get("code")) if refusal is not None else None,
            refusal_name=refusal.get("name") if refusal is not None else None,
            refusal_detail=(refusal.text or "") if refusal is not None else None,
            **values)
    except (ValueError, TypeError) as exc:
        raise PacketError(RefusalCode.SCHEMA_INVALID, f"Axis receipt: {exc}") from None
