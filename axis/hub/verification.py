"""What checking a packet means: parse, validate, verify, read the routing facts.

`check_packet` is the CPU-bound half of intake; the hub runs it in its worker
processes (`workers.py`), never on its event loop. Fields are read only from
the tree the signature verifier returns as signed
(`VerificationResult.signed_root`), never from the bytes as received.

Callers may rely on `check_packet` returning either a `Checked` (the packet is
authentic, well-formed and names valid agency codes) or a `Refused` (with a
stable refusal number), and never raising for bad input; `check_receipt` is
the same for receipts agencies sign.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from axis.edxml import Limits, parse_agency_code, parse_xml, validate
from axis.refusals import Refusal, RefusalCode
from axis.trust import Verifier


@dataclass(frozen=True)
class TrustSettings:
    """What a worker needs to verify packets and sign receipts (paths, so it pickles)."""

    trust_roots: Path
    crl: Path | None
    hub_key: Path
    hub_cert: Path
    allow_sha1_for: frozenset[str] = frozenset()
    lenient_codes: bool = False
    max_packet_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Checked:
    """An authentic packet, as its signed tree says."""

    kind: str                          # "document" | "status"
    sender: str                        # canonical agency code; equals the signer's certificate code
    fingerprint: str                   # the signer certificate's SHA-256
    document_id: str                   # documents: DocumentId; statuses: ResponseFor/DocumentId
    digest: str                        # SHA-256 of the exact bytes received
    size: int
    priority: int = 0
    recipients: tuple[str, ...] = ()   # documents: the To list, canonical codes, in order, no repeats
    business_type: int | None = None
    business_document_id: str | None = None  # the document a recall/update/replacement targets
    answers_sender: str | None = None  # statuses: ResponseFor/OrganId
    status_code: str | None = None
    status_timestamp: str | None = None


@dataclass(frozen=True)
class Refused:
    code: int
    detail: str
    digest: str
    claimed_sender: str | None = None  # unverified, for the audit entry only


def _code(text: str, lenient: bool) -> str:
    return parse_agency_code(text, lenient=lenient).text


def _claimed_sender(data: bytes) -> str | None:
    try:
        root = parse_xml(data, Limits(max_bytes=len(data) + 1))
        found = root.find(".//{*}MessageHeader/{*}From/{*}OrganId")
        return None if found is None else (found.text or "").strip()[:64] or None
    except Refusal:
        return None


_NS = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"
_HEADER = f"{_NS}edXMLEnvelope/{_NS}edXMLHeader"


def _text(node, path: str) -> str:
    found = node.find(path)
    return "" if found is None or found.text is None else found.text.strip()


def _business(header):
    """`Bussiness` as the standard spells it, or `Business` as some systems do."""
    trace = header.find(f"{_NS}TraceHeaderList")
    if trace is None:
        return None
    found = trace.find(f"{_NS}Bussiness")
    return found if found is not None else trace.find(f"{_NS}Business")


def _facts(root, digest: str, size: int, fingerprint: str, lenient: bool) -> Checked:
    """The routing facts, read from the signed tree (already schema-valid) with a few lookups.

    The full model (`read_packet`) costs about as much as the signature check itself;
    routing needs a dozen fields.
    """
    header = root.find(_HEADER)
    message = header.find(f"{_NS}MessageHeader")
    sender = _code(_text(message, f"{_NS}From/{_NS}OrganId"), lenient)
    status_code = _text(message, f"{_NS}StatusCode")
    if status_code:
        return Checked(kind="status", sender=sender, fingerprint=fingerprint, digest=digest, size=size,
                       document_id=_text(message, f"{_NS}ResponseFor/{_NS}DocumentId"),
                       answers_sender=_code(_text(message, f"{_NS}ResponseFor/{_NS}OrganId"), lenient),
                       status_code=status_code, status_timestamp=_text(message, f"{_NS}Timestamp"))
    recipients = tuple(dict.fromkeys(_code(_text(to, f"{_NS}OrganId"), lenient)
                                     for to in message.iterfind(f"{_NS}To")))
    priority = _text(message, f"{_NS}OtherInfo/{_NS}Priority")
    business = _business(header)
    business_type, business_document_id = 0, None
    if business is not None:
        doc_type = _text(business, f"{_NS}BussinessDocType") or _text(business, f"{_NS}BusinessDocType")
        business_type = int(doc_type) if doc_type else 0
        business_document_id = _text(business, f"{_NS}DocumentId") or None
    return Checked(kind="document", sender=sender, fingerprint=fingerprint, digest=digest, size=size,
                   document_id=_text(message, f"{_NS}DocumentId"), priority=int(priority) if priority else 0,
                   recipients=recipients, business_type=business_type,
                   business_document_id=business_document_id)


def check_packet(verifier: Verifier, data: bytes, settings: TrustSettings) -> Checked | Refused:
    """Check one submitted packet (see the module docstring)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        root = parse_xml(data, Limits(max_bytes=settings.max_packet_bytes))
        validate(root)
        # Parsed once: the verifier takes the tree over and returns the signed tree to read from.
        result = verifier.verify(root)
        return _facts(result.signed_root, digest, len(data), result.fingerprint, settings.lenient_codes)
    except Refusal as refusal:
        return Refused(refusal.code.number, refusal.detail or refusal.code.message, digest, _claimed_sender(data))
    except Exception as exc:  # noqa: BLE001 - a bug must not take the batch down; it is refused and logged
        return Refused(RefusalCode.INTERNAL.number, f"{type(exc).__name__}: {exc}", digest, None)


def check_receipt(verifier: Verifier, data: bytes) -> tuple[str, bytes] | Refused:
    """Check one receipt an agency signed: (signer code, the signed receipt XML) or Refused."""
    try:
        result = verifier.verify_receipt(data)
        return result.signer_code, etree.tostring(result.signed_root)
    except Refusal as refusal:
        return Refused(refusal.code.number, refusal.detail or refusal.code.message,
                       hashlib.sha256(data).hexdigest())
