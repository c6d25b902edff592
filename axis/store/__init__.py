"""Axis store: registry, documents, deliveries, receipts, credentials, submissions, de-duplication, audit.

Open with `open_store(url)` (SQLite file by default, PostgreSQL by URL;
`create=True` to create a SQLite file that does not exist yet); write
inside `with store.write() as tx:`; read with the store's methods, which return
frozen dataclasses. See docs/store.md for the data model, the delivery state
machine, locking and the audit chain format.
"""
from axis.store.audit import GENESIS_HASH, canonical_json, verify_chain
from axis.store.db import normalise_url, open_store
from axis.store.errors import AlreadyExists, DuplicateDocument, MissingDatabase, NotFound, StoreError
from axis.store.records import (
    Agency,
    AgencyAlias,
    AuditEntry,
    AuditReport,
    AuditSigner,
    Certificate,
    Checkpoint,
    CheckpointStamp,
    Credential,
    Decision,
    Delivery,
    DeliveryFacts,
    Document,
    InboxItem,
    LogKey,
    NewAuditEntry,
    NewDocument,
    NewReceipt,
    NewSubmission,
    Receipt,
    RefusedSubmission,
    Submission,
)
from axis.store.states import DeliveryState, can_transition, state_for_status
from axis.store.store import BodyPieces, Snapshot, Store, WriteTx

__all__ = [
    "GENESIS_HASH",
    "Agency",
    "AgencyAlias",
    "AlreadyExists",
    "AuditEntry",
    "AuditReport",
    "AuditSigner",
    "BodyPieces",
    "Certificate",
    "Checkpoint",
    "CheckpointStamp",
    "Credential",
    "Decision",
    "Delivery",
    "DeliveryFacts",
    "DeliveryState",
    "Document",
    "DuplicateDocument",
    "InboxItem",
    "LogKey",
    "MissingDatabase",
    "NewAuditEntry",
    "NewDocument",
    "NewReceipt",
    "NewSubmission",
    "NotFound",
    "Receipt",
    "RefusedSubmission",
    "Snapshot",
    "Store",
    "StoreError",
    "Submission",
    "WriteTx",
    "can_transition",
    "canonical_json",
    "normalise_url",
    "open_store",
    "state_for_status",
    "verify_chain",
]
