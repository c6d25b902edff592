"""Plain, frozen values going into and coming out of the store.

Reads never return live ORM objects: these dataclasses hold everything, so a
caller in another thread (the hub runs the store through asyncio.to_thread)
never triggers a lazy load or touches a session. Datetimes are timezone-aware
UTC. Callers may rely on field names and types; new optional fields may be
added at the end.

A record read from a table (Agency, Certificate, Document, Delivery, Receipt,
AuditEntry) has exactly its table's columns as fields, in the same order, with
the column's Python type (`X | None` where the column is nullable): the store
builds it from the row by name, and tests/store/test_store_schema.py keeps the
two in step with `schema.py`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# ---- registry -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Agency:
    code: str
    name: str
    parent_code: str | None
    state: str                      # 'active' | 'suspended'
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Certificate:
    id: int
    agency_code: str
    fingerprint: str                # sha256 of the DER, lowercase hex
    certificate: str                # PEM
    not_before: datetime
    not_after: datetime
    state: str                      # 'active' | 'revoked' (by its CA) | 'withdrawn' (by an operator)
    added_at: datetime


@dataclass(frozen=True, slots=True)
class AgencyAlias:
    old_code: str                   # renamed away from ...
    new_code: str                   # ... to this: documents to old_code go here until `until`
    created_at: datetime
    until: datetime


# ---- documents and deliveries ---------------------------------------------

@dataclass(frozen=True, slots=True)
class NewDocument:
    """A verified packet the hub accepts; digest and size are computed from the body."""
    axis_id: str
    sender_code: str
    document_id: str
    kind: str = "document"          # 'document' | 'status'
    business_type: int | None = None
    priority: int = 0
    signer_fingerprint: str | None = None
    response_for: str | None = None  # axis_id answered by a status packet
    received_at: datetime | None = None  # None: now
    seal: str | None = None         # the hub's seal (axis/seal.py), served with every delivery


@dataclass(frozen=True, slots=True)
class Document:
    axis_id: str
    sender_code: str
    document_id: str
    kind: str
    business_type: int | None
    digest: str                     # sha256 hex of the exact signed bytes
    size: int
    priority: int
    received_at: datetime
    signer_fingerprint: str | None
    response_for: str | None
    seal: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    axis_id: str
    recipient_code: str
    state: str
    attempts: int
    updated_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class NewReceipt:
    axis_id: str
    kind: str                       # 'intake' | 'delivery' | 'status' | 'error'
    body: bytes                     # the signed receipt or status packet, opaque
    recipient_code: str | None = None  # None for intake receipts
    code: str | None = None         # status '01'..'16', refusal number, ...
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    id: int
    axis_id: str
    recipient_code: str | None
    kind: str
    code: str | None
    detail: str | None
    body: bytes
    digest: str                     # sha256 hex of body
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A delivery waiting for its recipient, with the facts of its document (gateway GET /v1/inbox)."""
    axis_id: str
    kind: str                       # 'document' | 'status'
    sender_code: str
    document_id: str                # for a status packet: "<DocumentId>#<code>#<time>" (its key)
    priority: int
    size: int
    digest: str
    received_at: datetime
    response_for: str | None


# ---- gateway --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Credential:
    id: str
    role: str                       # 'agency' | 'operator' | 'auditor'
    agency_code: str | None         # set exactly for role 'agency'
    token_sha256: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewSubmission:
    id: str
    agency_code: str | None
    credential_id: str | None
    digest: str | None


@dataclass(frozen=True, slots=True)
class Submission:
    id: str
    agency_code: str | None
    credential_id: str | None
    digest: str | None
    created_at: datetime
    outcome: str | None             # None while queued; accepted | duplicate | refused
    axis_id: str | None
    code: int | None                # the refusal number (AXnnn) of a refused one
    detail: str | None
    receipt: bytes | None           # the signed intake receipt
    decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The hub's outcome of one submission (`WriteTx.decide_submissions`)."""
    id: str
    agency_code: str | None         # who may read it, if the row does not exist yet
    outcome: str
    axis_id: str | None
    code: int | None
    detail: str | None
    receipt: bytes | None


# ---- audit ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewAuditEntry:
    actor: str
    action: str
    subject: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str
    bound: list[list[str | None]] | None   # [table, key, row digest] of the rows it binds (bindings.py)
    sealed_from: int | None = None         # on the last entry of a unit of work: the seal's first entry,
    seal_key: str | None = None            # the log key that sealed it (audit_log_keys),
    seal: bytes | None = None              # and its Ed25519 signature (axis/store/audit.py, `seal_message`)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head of the audit log (axis/audit/checkpoints.py has the format)."""
    size: int
    root: str                       # hex
    head_hash: str                  # the chain hash of entry `size`
    at: datetime
    note: str                       # the exact signed text
    signature: bytes
    signer: str                     # SHA-256 (hex) of the signing certificate's DER (audit_signers)
    frontier: list[str]             # the tree's compact range at `size`, hex


@dataclass(frozen=True, slots=True)
class CheckpointStamp:
    """The RFC 3161 timestamp (the whole TimeStampResp, DER) over a checkpoint's signature."""
    size: int
    token: bytes
    tsa: str
    stamped_at: datetime


@dataclass(frozen=True, slots=True)
class LogKey:
    """A writer's log key, as certified by the axis key (axis/audit/logkeys.py has the format)."""
    key_id: str                     # SHA-256 (hex) of the raw Ed25519 public key
    public_key: bytes               # raw, 32 bytes
    created_at: datetime
    writer: str                     # who made it: "hub", "gateway", "operator" ...
    statement: str                  # the exact text the axis key signed
    signature: bytes
    signer: str                     # SHA-256 (hex) of the certifying certificate (audit_signers)


@dataclass(frozen=True, slots=True)
class AuditSigner:
    """A certificate that signed checkpoints: PEM, the leaf first, then its chain."""
    fingerprint: str
    certificates: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Result of recomputing the chain.

    entries: how many entries verified before the first bad one (all when ok).
    head_hash: hash of the last entry that verified (64 zeros for none).
    """
    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str
    head_hash: str


# ---- the auditor's reports (axis/store/reports.py) ------------------------

@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    """A delivery of a document (kind 'document'), with when its receipts were first recorded."""
    axis_id: str
    document_id: str
    sender_code: str
    recipient_code: str
    priority: int
    received_at: datetime
    state: str                      # the delivery's state now
    updated_at: datetime            # when it reached that state
    delivered_at: datetime | None   # the recipient's delivery receipt
    statuses: Mapping[str, datetime]  # status code ('01', '02', '13', ...) -> first recorded for this recipient


@dataclass(frozen=True, slots=True)
class RefusedSubmission:
    id: str
    agency_code: str | None         # whose credential submitted it (None: nobody known)
    created_at: datetime
    code: int | None                # the refusal number (AXnnn)
