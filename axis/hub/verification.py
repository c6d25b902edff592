"""What checking a packet means: parse, validate, verify, read the routing facts.

`check_packet` is the CPU-bound half of intake; the hub runs it in its worker
processes (`workers.py`), never on its event loop. Fields are read only from
the tree the signature verifier returns as signed
(`VerificationResult.signed_root`), never from the bytes as received.

Callers may rely on `check_packet` returning either a `Checked` (the packet is
authentic, well-formed and names valid agency codes) or a `Refused` (with a
stable refusal number), and never raising for bad input.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from axis.edxml import DEFAULT_LIMITS, Limits, parse_agency_code, parse_xml, parse_xml_file, routing_facts, validate
from axis.refusals import Refusal, RefusalCode
from axis.trust import Verifier


@dataclass(frozen=True)
class TrustSettings:
    """What a worker needs to verify packets (paths, so it pickles). It names no key: workers sign through
    the signer process (`axis.signer`)."""

    trust_roots: Path
    crl: Path | None
    allow_sha1_for: frozenset[str] = frozenset()
    lenient_codes: bool = False
    max_packet_bytes: int = DEFAULT_LIMITS.max_bytes


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


def _claimed_sender(data: bytes | Path) -> str | None:
    try:
        if isinstance(data, Path):
            return routing_facts(parse_xml_file(data, Limits(max_bytes=data.stat().st_size + 1))).sender[:64] or None
        return routing_facts(parse_xml(data, Limits(max_bytes=len(data) + 1))).sender[:64] or None
    except (Refusal, OSError):
        return None


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read in chunks."""
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256")
        return digest.hexdigest(), file.tell()


def _facts(root: etree._Element, digest: str, size: int, fingerprint: str, lenient: bool) -> Checked:
    """The routing facts of the signed tree (already schema-valid), codes in canonical form."""
    facts = routing_facts(root)
    sender = _code(facts.sender, lenient)
    if facts.kind == "status":
        return Checked(kind="status", sender=sender, fingerprint=fingerprint, digest=digest, size=size,
                       document_id=facts.document_id, answers_sender=_code(facts.answers_sender or "", lenient),
                       status_code=facts.status_code, status_timestamp=facts.status_timestamp)
    return Checked(kind="document", sender=sender, fingerprint=fingerprint, digest=digest, size=size,
                   document_id=facts.document_id, priority=facts.priority,
                   recipients=tuple(dict.fromkeys(_code(to, lenient) for to in facts.recipients)),
                   business_type=facts.business_type, business_document_id=facts.business_document_id)


def check_packet(verifier: Verifier, data: bytes | Path, settings: TrustSettings) -> Checked | Refused:
    """Check one submitted packet (see the module docstring): its bytes, or the file that holds them (a large
    upload the gateway spooled to disk, parsed from there so that its bytes are not in memory beside its tree)."""
    if isinstance(data, Path):
        # A file that cannot be read fails the batch (the gateway still holds it, or queues the submission):
        # refusing it would record a refusal of a packet nobody read.
        digest, size = file_digest(data)
    else:
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
    try:
        limits = Limits(max_bytes=settings.max_packet_bytes)
        root = parse_xml_file(data, limits) if isinstance(data, Path) else parse_xml(data, limits)
        validate(root)
        # Parsed once: the verifier takes the tree over and returns the signed tree to read from.
        result = verifier.verify(root)
        return _facts(result.signed_root, digest, size, result.fingerprint, settings.lenient_codes)
    except Refusal as refusal:
        return Refused(refusal.code.number, refusal.detail or refusal.code.message, digest, _claimed_sender(data))
    except OSError:
        raise  # the spooled file went away: the batch fails, nothing is decided about a packet nobody read
    except Exception as exc:  # noqa: BLE001 - a bug must not take the batch down; it is refused and logged
        return Refused(RefusalCode.INTERNAL.number, f"{type(exc).__name__}: {exc}", digest, None)
