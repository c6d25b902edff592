"""The store: one object per database, units of work, reads.

Callers may rely on:
- `Store` being safe to share between threads: every call takes its own
  pooled connection. A `WriteTx` is NOT: use it in the thread that opened it
  (the hub wraps a whole `with store.write() as tx:` block in one
  `asyncio.to_thread` call).
- `with store.write() as tx:` being one transaction: committed when the block
  ends, rolled back (nothing visible, ever) when it raises. On SQLite it
  starts with BEGIN IMMEDIATE; on PostgreSQL it runs at READ COMMITTED.
- Audit entries added with `tx.audit` being written at the end of the block,
  in the same transaction, under the audit lock (taken as late as possible);
  after the block, `tx.audit_seqs` holds their (first, last) seq.
- Every write method being idempotent where the brief says so (documents by
  key, receipts, submissions, inbox keys, deliveries) and reporting
  "already there" by its return value, never by an exception that would
  poison the transaction. The exception is `insert_document`, which raises
  `DuplicateDocument`; the transaction stays usable after it.
- Reads returning frozen `records` dataclasses, never ORM objects.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy.dialects import postgresql, sqlite

from axis.store import audit as chain
from axis.store import migrate as migrations
from axis.store.bindings import BINDINGS, row_digest, row_key, row_subject, uniform_digests
from axis.store.db import WRITE_OPTION
from axis.store.errors import AlreadyExists, DuplicateDocument, NotFound, StoreError
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
    Document,
    InboxItem,
    LogKey,
    NewAuditEntry,
    NewDocument,
    NewReceipt,
    NewSubmission,
    Receipt,
    Submission,
)
from axis.store.registry import RegistryReads
from axis.store.reports import ReportReads
from axis.store.schema import (
    AGENCY_STATES,
    CODE_LEN,
    CREDENTIAL_ROLES,
    DOCUMENT_KINDS,
    RECEIPT_KINDS,
    agencies,
    agency_aliases,
    audit_checkpoints,
    audit_log,
    audit_log_keys,
    audit_signers,
    audit_timestamps,
    bodies,
    credentials,
    documents,
    inbox,
    metadata,
    submission_bodies,
    submissions,
)
from axis.store.schema import certificates as certificates_t
from axis.store.schema import deliveries as deliveries_t
from axis.store.schema import receipts as receipts_t
from axis.store.states import DeliveryState, parse_state, sources_for
from axis.store.traffic import TrafficReads

# pg_advisory_xact_lock key serialising audit appends ("AXISAUDT").
AUDIT_LOCK_KEY = 0x4158_4953_4155_4454
# pg_advisory_xact_lock key: one checkpoint writer at a time, however many hubs run ("AXISCKPT").
CHECKPOINT_LOCK_KEY = 0x4158_4953_434B_5054
_IN_CHUNK = 5_000   # bound on IN (...) list sizes (SQLite allows 32766 variables)
_AUDIT_PAGE = 2_000
_BODY_PIECE = 1024 * 1024  # a body copied from a file into its row, a piece at a time
# PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): the
# signature, no flags, no header extension; a row is its field count then each field's length and bytes.
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_PG_COPY_TRAILER = struct.pack("!h", -1)
_FRESH = frozenset({"id", "agency_code", "credential_id", "digest", "created_at"})  # a submission nobody recorded

Clock = Callable[[], datetime]


# The delivery states in which the recipient has the document (delivered and beyond) or never will (refused,
# recalled, failed): a body whose every delivery is in one of these is no longer needed to deliver it. Any
# other state (queued, published, parked, or one added later) keeps the body.
BODY_NOT_NEEDED = ("delivered", "arrived", "accepted", "assigned", "processing", "done", "refused", "recalled",
                   "failed")
# The action of every entry that records a removal by retention (`data.removed`: [table, key, digest] of each
# row removed, which the entry binds as [table, key, null]; `data.inbox`: de-duplication keys by consumer).
REMOVED = "retention-removed"


def _needing_body(axis_id: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(deliveries_t.c.axis_id).where(deliveries_t.c.axis_id == axis_id,
                                                   deliveries_t.c.state.not_in(BODY_NOT_NEEDED))

def utcnow() -> datetime:
    return datetime.now(UTC)


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _check_code(code: str, what: str = "agency code") -> str:
    if not isinstance(code, str) or not code or len(code) > CODE_LEN:
        raise ValueError(f"{what} {code!r} must be 1..{CODE_LEN} characters")
    return code


# The reads of every delivery served and acknowledged, built once: building a statement and its cache key
# cost as much again as running it (110 µs against 60 µs a read on SQLite).
_DOCUMENT = sa.select(documents).where(documents.c.axis_id == sa.bindparam("axis_id"))
_DELIVERIES = sa.select(deliveries_t).where(deliveries_t.c.axis_id == sa.bindparam("axis_id")).order_by(
    deliveries_t.c.recipient_code)
_BODY = sa.select(bodies.c.body).where(bodies.c.axis_id == sa.bindparam("axis_id"))
# length() of a blob is read from its record's header: SQLite does not load the blob for it.
_BODY_SIZE = sa.select(sa.func.length(bodies.c.body)).where(bodies.c.axis_id == sa.bindparam("axis_id"))


@dataclasses.dataclass(frozen=True)
class BodyPieces:
    """A stored body too large to read whole: its size, and its bytes a piece at a time when iterated."""

    axis_id: str
    size: int
    read: Callable[[str], Iterator[bytes]]

    def __iter__(self) -> Iterator[bytes]:
        return self.read(self.axis_id)
# ... and what every unit of work that writes an audit entry runs.
_AUDIT_HEAD = sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")
# ... and intake's reads of every batch (the IN lists expand at execution: one cached statement each).
_AGENCY_STATES = sa.select(agencies.c.code, agencies.c.state).where(
    agencies.c.code.in_(sa.bindparam("codes", expanding=True)))
_AGENCY_ROUTES = sa.select(agencies.c.code, agencies.c.state, agency_aliases.c.new_code, agency_aliases.c.created_at,
                           agency_aliases.c.until).outerjoin(
    agency_aliases, agency_aliases.c.old_code == agencies.c.code).where(
    agencies.c.code.in_(sa.bindparam("codes", expanding=True)))
_FIND_DOCUMENTS = sa.select(documents).where(sa.tuple_(documents.c.sender_code, documents.c.document_id,
                                                       documents.c.kind).in_(sa.bindparam("keys", expanding=True)))
_SUBMISSION_ROWS = sa.select(submissions).where(
    submissions.c.id.in_(sa.bindparam("ids", expanding=True))).with_for_update()
_DECIDE_SUBMISSION = sa.update(submissions).where(submissions.c.id == sa.bindparam("b_id"),
                                                  submissions.c.outcome.is_(None)).values(
    outcome=sa.bindparam("b_outcome"), axis_id=sa.bindparam("b_axis_id"), code=sa.bindparam("b_code"),
    detail=sa.bindparam("b_detail"), receipt=sa.bindparam("b_receipt"), decided_at=sa.bindparam("b_decided_at"))
_SUBMISSION_AGENCIES = sa.select(submissions.c.id, submissions.c.agency_code).where(
    submissions.c.id.in_(sa.bindparam("ids", expanding=True)))


# ---- row -> record ---------------------------------------------------------

R = TypeVar("R")


def _record(cls: type[R], row: sa.Row[Any]) -> R:
    """The record of a table row: the records carry their table's columns as fields (schema.py)."""
    return cls(**{k: bytes(v) if isinstance(v, memoryview) else v for k, v in row._mapping.items()})


@functools.cache
def _unnest_insert(table: sa.Table, columns: tuple[str, ...], conflict: tuple[str, ...],
                   returning: sa.Column[Any]) -> Any:
    """PostgreSQL: INSERT INTO table (columns) SELECT * FROM unnest(:col1, :col2, ...) ON CONFLICT DO NOTHING.

    One array parameter per column, typed ARRAY(column type) so that the
    column's own bind processing (UTC checks, canonical JSON) applies to every
    element. Built once per shape: the bulk writers call it with a handful.
    """
    arrays = [sa.bindparam(name, type_=postgresql.ARRAY(table.c[name].type, dimensions=1)) for name in columns]
    unnested = sa.func.unnest(*arrays).table_valued(*columns).render_derived()
    return postgresql.insert(table).from_select(list(columns), sa.select(*unnested.c)).on_conflict_do_nothing(
        index_elements=list(conflict) or None).returning(returning)


@functools.cache
def _sqlite_insert_ignore(table: sa.Table, conflict: tuple[str, ...], returning: sa.Column[Any] | None) -> Any:
    """SQLite: INSERT ... ON CONFLICT DO NOTHING [RETURNING column], built once per shape (building it and its
    cache key cost as much as an intake batch's small insert)."""
    stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict) or None)
    return stmt.returning(returning) if returning is not None else stmt


_AUDIT_INSERT = sa.insert(audit_log)


class _Reads:
    """Queries shared by `Store` (fresh connection each) and `WriteTx` (its own transaction)."""

    _dialect: str

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        raise NotImplementedError
        yield  # pragma: no cover

    # ---- registry
    def get_agency(self, code: str) -> Agency | None:
        with self._reading() as c:
            row = c.execute(sa.select(agencies).where(agencies.c.code == code)).first()
        return _record(Agency, row) if row else None

    def list_agencies(self) -> list[Agency]:
        with self._reading() as c:
            return [_record(Agency, r) for r in c.execute(sa.select(agencies).order_by(agencies.c.code))]

    def agency_states(self, codes: Iterable[str]) -> dict[str, str]:
        """{code: state} for the codes that are registered (unknown codes are absent)."""
        wanted = sorted(set(codes))
        result: dict[str, str] = {}
        with self._reading() as c:
            for part in _chunks(wanted):
                result.update((code, state) for code, state in c.execute(_AGENCY_STATES, {"codes": part}))
        return result

    def certificates(self, code: str) -> list[Certificate]:
        with self._reading() as c:
            q = sa.select(certificates_t).where(certificates_t.c.agency_code == code).order_by(
                certificates_t.c.id)
            return [_record(Certificate, r) for r in c.execute(q)]

    def certificate_registered(self, code: str, fingerprint: str) -> bool:
        """True when `fingerprint` is an active certificate of agency `code`.

        Validity dates and CRLs are the trust layer's job; this is the registry
        binding only.
        """
        with self._reading() as c:
            q = sa.select(sa.literal(1)).where(certificates_t.c.agency_code == code,
                                               certificates_t.c.fingerprint == fingerprint.lower(),
                                               certificates_t.c.state == "active")
            return c.execute(q).first() is not None

    # ---- certificates and renamed codes (`axis cert`, `axis agency rename`)
    def certificate(self, fingerprint: str) -> Certificate | None:
        with self._reading() as c:
            row = c.execute(sa.select(certificates_t).where(
                certificates_t.c.fingerprint == fingerprint.lower())).first()
        return _record(Certificate, row) if row else None

    def certificates_like(self, prefix: str, limit: int = 2) -> list[Certificate]:
        """Certificates whose fingerprint starts with `prefix` (hex), at most `limit`: how an operator names one."""
        with self._reading() as c:
            q = sa.select(certificates_t).where(
                certificates_t.c.fingerprint.startswith(prefix.lower(), autoescape=True))
            return [_record(Certificate, r) for r in c.execute(q.order_by(certificates_t.c.id).limit(limit))]

    def list_certificates(self, code: str | None = None) -> list[Certificate]:
        """Every registered certificate (of agency `code`), by agency, oldest registration first."""
        q = sa.select(certificates_t)
        if code is not None:
            q = q.where(certificates_t.c.agency_code == code)
        with self._reading() as c:
            return [_record(Certificate, r) for r in c.execute(q.order_by(certificates_t.c.agency_code,
                                                                           certificates_t.c.id))]

    def aliases(self, codes: Iterable[str]) -> dict[str, AgencyAlias]:
        """{old code: its alias} for those of `codes` that were renamed (whether or not the alias still routes)."""
        wanted = sorted(set(codes))
        found: dict[str, AgencyAlias] = {}
        with self._reading() as c:
            for part in _chunks(wanted):
                q = sa.select(agency_aliases).where(agency_aliases.c.old_code.in_(part))
                found.update((r.old_code, _record(AgencyAlias, r)) for r in c.execute(q))
        return found

    def agency_routes(self, codes: Iterable[str]) -> tuple[dict[str, str], dict[str, AgencyAlias]]:
        """`agency_states(codes)` and `aliases(codes)` in one query (intake's registry look-up per batch, which
        a rename must not make cost a second round trip)."""
        wanted = sorted(set(codes))
        states: dict[str, str] = {}
        found: dict[str, AgencyAlias] = {}
        with self._reading() as c:
            for part in _chunks(wanted):
                for code, state, new_code, created_at, until in c.execute(_AGENCY_ROUTES, {"codes": part}):
                    states[code] = state
                    if new_code is not None:
                        found[code] = AgencyAlias(code, new_code, created_at, until)
        return states, found

    # ---- documents, deliveries, receipts
    def find_document(self, sender: str, document_id: str, kind: str = "document") -> Document | None:
        with self._reading() as c:
            q = sa.select(documents).where(documents.c.sender_code == sender,
                                           documents.c.document_id == document_id, documents.c.kind == kind)
            row = c.execute(q).first()
        return _record(Document, row) if row else None

    def find_documents(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Document]:
        """`find_document` for many (sender, document_id, kind) keys in a few queries; found ones only."""
        found: dict[tuple[str, str, str], Document] = {}
        with self._reading() as c:
            for chunk in _chunks(list(dict.fromkeys(keys)), 300):
                for row in c.execute(_FIND_DOCUMENTS, {"keys": chunk}):
                    doc = _record(Document, row)
                    found[(doc.sender_code, doc.document_id, doc.kind)] = doc
        return found

    def get_document(self, axis_id: str) -> Document | None:
        with self._reading() as c:
            row = c.execute(_DOCUMENT, {"axis_id": axis_id}).first()
        return _record(Document, row) if row else None

    def document_and_deliveries(self, axis_id: str, *, body: bool = False, whole_up_to: int | None = None
                                ) -> tuple[Document | None, list[Delivery], bytes | BodyPieces | None]:
        """A document, its deliveries (by recipient) and, with `body`, its signed bytes (None once retention
        removed them), read on one connection: what the gateway reads to serve or acknowledge a delivery.
        A body over `whole_up_to` bytes is not read here: `BodyPieces` reads it a piece at a time when
        iterated (each piece on a connection of its own, so on a `Store`, not in a unit of work)."""
        with self._reading() as c:
            row = c.execute(_DOCUMENT, {"axis_id": axis_id}).first()
            if row is None:
                return None, [], None
            found = [_record(Delivery, r) for r in c.execute(_DELIVERIES, {"axis_id": axis_id})]
            document = _record(Document, row)
            if body and whole_up_to is not None and document.size > whole_up_to:
                size = c.execute(_BODY_SIZE, {"axis_id": axis_id}).scalar()
                return document, found, None if size is None else BodyPieces(axis_id, int(size), self.body_pieces)
            data = c.execute(_BODY, {"axis_id": axis_id}).scalar() if body else None
        return document, found, None if data is None else bytes(data)

    def body_pieces(self, axis_id: str, piece: int = _BODY_PIECE) -> Iterator[bytes]:
        """The stored body of `axis_id` a piece at a time, each read when it is asked for on a connection of
        its own (SQLite: incremental blob I/O; PostgreSQL: substring, larger pieces, as each one detoasts the
        value on the server). Nothing for an unknown axis id."""
        return self._blob_pieces(bodies.c.axis_id, bodies.c.body, axis_id, piece)

    def submission_body_to(self, submission_id: str, target: Path) -> tuple[int, str] | None:
        """Write the body a queued submission left in the store (`WriteTx.add_submission_body`) to the file
        `target`, a piece at a time; its size and SHA-256, or None when there is none."""
        digest, size, found = hashlib.sha256(), 0, False
        with open(target, "wb") as file:
            for piece in self._blob_pieces(submission_bodies.c.submission_id, submission_bodies.c.body,
                                           submission_id, _BODY_PIECE):
                found = True
                digest.update(piece)
                file.write(piece)
                size += len(piece)
        if not found:
            exists = self._exists(submission_bodies.c.submission_id, submission_id)
            return (0, digest.hexdigest()) if exists else None
        return size, digest.hexdigest()

    def _exists(self, key: sa.Column[Any], value: str) -> bool:
        with self._reading() as c:
            return c.execute(sa.select(sa.literal(1)).where(key == value)).first() is not None

    def _blob_pieces(self, key: sa.Column[Any], column: sa.Column[Any], value: str, piece: int) -> Iterator[bytes]:
        table = key.table
        offset = 0
        while True:
            with self._reading() as c:
                if c.dialect.name == "sqlite":
                    rowid = c.execute(sa.select(sa.literal_column("rowid")).select_from(table)
                                      .where(key == value)).scalar()
                    if rowid is None:
                        return
                    raw: sqlite3.Connection = c.connection.driver_connection  # type: ignore[assignment]
                    with raw.blobopen(table.name, column.name, rowid, readonly=True) as blob:
                        blob.seek(offset)
                        data = blob.read(piece)
                else:
                    part = sa.func.substr(column, offset + 1, piece * 8, type_=sa.LargeBinary)
                    data = c.execute(sa.select(part).where(key == value)).scalar() or b""
            if not data:
                return
            yield bytes(data)
            offset += len(data)

    def find_by_document_id(self, document_id: str) -> list[Document]:
        """Every document or status packet carrying this edXML DocumentId (any sender)."""
        with self._reading() as c:
            q = sa.select(documents).where(documents.c.document_id == document_id).order_by(
                documents.c.received_at, documents.c.axis_id)
            return [_record(Document, r) for r in c.execute(q)]

    def answers(self, axis_id: str) -> list[Document]:
        """The status packets that answer `axis_id` (their `response_for`), in the order Axis received them."""
        with self._reading() as c:
            q = sa.select(documents).where(documents.c.response_for == axis_id).order_by(
                documents.c.received_at, documents.c.axis_id)
            return [_record(Document, r) for r in c.execute(q)]

    def document_body(self, axis_id: str) -> bytes:
        """The exact signed bytes accepted; NotFound if the axis id is unknown."""
        with self._reading() as c:
            body = c.execute(_BODY, {"axis_id": axis_id}).scalar()
        if body is None:
            raise NotFound(f"no document body for axis id {axis_id!r}")
        return bytes(body)

    def deliveries(self, axis_id: str) -> list[Delivery]:
        with self._reading() as c:
            return [_record(Delivery, r) for r in c.execute(_DELIVERIES, {"axis_id": axis_id})]

    def list_deliveries(self, *, state: str | DeliveryState | None = None, recipient: str | None = None,
                        limit: int = 100) -> list[Delivery]:
        """Deliveries in a state and/or to a recipient, most recently changed first (operators)."""
        q = sa.select(deliveries_t)
        if state is not None:
            q = q.where(deliveries_t.c.state == parse_state(state).value)
        if recipient is not None:
            q = q.where(deliveries_t.c.recipient_code == recipient)
        q = q.order_by(deliveries_t.c.updated_at.desc(), deliveries_t.c.axis_id).limit(limit)
        with self._reading() as c:
            return [_record(Delivery, r) for r in c.execute(q)]

    def receipts(self, axis_id: str) -> list[Receipt]:
        with self._reading() as c:
            q = sa.select(receipts_t).where(receipts_t.c.axis_id == axis_id).order_by(
                receipts_t.c.created_at, receipts_t.c.id)
            return [_record(Receipt, r) for r in c.execute(q)]

    def get_receipt(self, axis_id: str, kind: str, recipient: str | None = None,
                    code: str | None = None) -> Receipt | None:
        """The one receipt with this key (e.g. the first intake receipt, returned for a duplicate)."""
        with self._reading() as c:
            q = sa.select(receipts_t).where(
                receipts_t.c.axis_id == axis_id, receipts_t.c.kind == kind,
                sa.func.coalesce(receipts_t.c.recipient_code, "") == (recipient or ""),
                sa.func.coalesce(receipts_t.c.code, "") == (code or ""))
            row = c.execute(q).first()
        return _record(Receipt, row) if row else None

    def receipted(self, axis_ids: Iterable[str], kind: str, recipient: str | None = None,
                  code: str | None = None) -> set[str]:
        """Which of `axis_ids` hold a receipt with this key (`get_receipt` for many, in a few queries)."""
        found: set[str] = set()
        with self._reading() as c:
            for chunk in _chunks(list(dict.fromkeys(axis_ids)), 500):
                q = sa.select(receipts_t.c.axis_id).where(
                    receipts_t.c.axis_id.in_(chunk), receipts_t.c.kind == kind,
                    sa.func.coalesce(receipts_t.c.recipient_code, "") == (recipient or ""),
                    sa.func.coalesce(receipts_t.c.code, "") == (code or ""))
                found.update(c.execute(q).scalars())
        return found

    def timeline(self, axis_id: str) -> dict[str | None, list[Receipt]]:
        """Receipts per recipient (None: intake receipts), each list ordered by time."""
        result: dict[str | None, list[Receipt]] = {}
        for r in self.receipts(axis_id):
            result.setdefault(r.recipient_code, []).append(r)
        return result

    # ---- the gateway: an agency's inbox and sent list
    def inbox(self, recipient: str, *, kind: str | None = None,
              after: tuple[int, datetime, str] | None = None, limit: int = 100) -> list[InboxItem]:
        """Deliveries to `recipient` not yet acknowledged, urgent first, then oldest first.

        `after` is the (priority, received_at, axis_id) of the last item of the previous page.
        """
        waiting = (DeliveryState.QUEUED.value, DeliveryState.PUBLISHED.value)
        d = documents
        q = sa.select(d.c.axis_id, d.c.kind, d.c.sender_code, d.c.document_id, d.c.priority, d.c.size, d.c.digest,
                      d.c.received_at, d.c.response_for).join(
            deliveries_t, deliveries_t.c.axis_id == d.c.axis_id).where(
            deliveries_t.c.recipient_code == recipient, deliveries_t.c.state.in_(waiting))
        if kind is not None:
            q = q.where(d.c.kind == kind)
        if after is not None:
            priority, received_at, axis_id = after
            q = q.where(sa.or_(d.c.priority < priority, sa.and_(d.c.priority == priority, sa.or_(
                d.c.received_at > received_at, sa.and_(d.c.received_at == received_at, d.c.axis_id > axis_id)))))
        q = q.order_by(d.c.priority.desc(), d.c.received_at, d.c.axis_id).limit(limit)
        with self._reading() as c:
            return [InboxItem(*r) for r in c.execute(q)]

    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each state (metrics)."""
        with self._reading() as c:
            q = sa.select(deliveries_t.c.state, sa.func.count()).group_by(deliveries_t.c.state)
            return {state: n for state, n in c.execute(q)}

    def waiting_counts(self) -> dict[str, int]:
        """How many deliveries wait for each agency that has any (metrics: inbox sizes)."""
        waiting = (DeliveryState.QUEUED.value, DeliveryState.PUBLISHED.value)
        with self._reading() as c:
            q = sa.select(deliveries_t.c.recipient_code, sa.func.count()).where(
                deliveries_t.c.state.in_(waiting)).group_by(deliveries_t.c.recipient_code)
            return {code: n for code, n in c.execute(q)}

    def sent(self, sender: str, *, since: datetime | None = None, after: tuple[datetime, str] | None = None,
             limit: int = 100) -> list[tuple[Document, list[Delivery]]]:
        """The documents and status packets `sender` sent, oldest first, each with its deliveries.

        `after` is the (received_at, axis_id) of the last item of the previous page.
        """
        d = documents
        q = sa.select(d).where(d.c.sender_code == sender)
        if since is not None:
            q = q.where(d.c.received_at >= since)
        if after is not None:
            q = q.where(sa.or_(d.c.received_at > after[0],
                               sa.and_(d.c.received_at == after[0], d.c.axis_id > after[1])))
        q = q.order_by(d.c.received_at, d.c.axis_id).limit(limit)
        with self._reading() as c:
            docs = [_record(Document, r) for r in c.execute(q)]
            by_doc: dict[str, list[Delivery]] = {doc.axis_id: [] for doc in docs}
            for chunk in _chunks(list(by_doc), 500):
                rows = c.execute(sa.select(deliveries_t).where(deliveries_t.c.axis_id.in_(chunk)).order_by(
                    deliveries_t.c.recipient_code))
                for r in rows:
                    by_doc[r.axis_id].append(_record(Delivery, r))
        return [(doc, by_doc[doc.axis_id]) for doc in docs]

    # ---- credentials and submissions
    def credential_for_token(self, token_sha256: str) -> Credential | None:
        """The credential (active or revoked) whose token has this SHA-256."""
        with self._reading() as c:
            row = c.execute(sa.select(credentials).where(credentials.c.token_sha256 == token_sha256)).first()
        return _record(Credential, row) if row else None

    def get_credential(self, credential_id: str) -> Credential | None:
        with self._reading() as c:
            row = c.execute(sa.select(credentials).where(credentials.c.id == credential_id)).first()
        return _record(Credential, row) if row else None

    def list_credentials(self, agency: str | None = None) -> list[Credential]:
        q = sa.select(credentials)
        if agency is not None:
            q = q.where(credentials.c.agency_code == agency)
        with self._reading() as c:
            return [_record(Credential, r) for r in c.execute(q.order_by(credentials.c.created_at, credentials.c.id))]

    def submissions(self, ids: Iterable[str]) -> dict[str, Submission]:
        found: dict[str, Submission] = {}
        with self._reading() as c:
            for chunk in _chunks(list(dict.fromkeys(ids)), 500):
                for r in c.execute(sa.select(submissions).where(submissions.c.id.in_(chunk))):
                    found[r.id] = _record(Submission, r)
        return found

    def submission_agencies(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Who submitted each of `ids` (the caller the gateway authenticated), for those with a row."""
        found: dict[str, str | None] = {}
        with self._reading() as c:
            for chunk in _chunks(list(dict.fromkeys(ids)), 500):
                found.update((i, a) for i, a in c.execute(_SUBMISSION_AGENCIES, {"ids": chunk}))
        return found

    # ---- audit
    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, 64 zeros) for an empty log."""
        with self._reading() as c:
            row = c.execute(_AUDIT_HEAD).first()
        return (row[0], row[1]) if row else (0, chain.GENESIS_HASH)

    def audit_entries(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[AuditEntry]:
        """Entries from `from_seq` on, in seq order, read page by page (constant memory)."""
        next_seq = from_seq
        while True:
            q = sa.select(audit_log).where(audit_log.c.seq >= next_seq)
            if to_seq is not None:
                q = q.where(audit_log.c.seq <= to_seq)
            with self._reading() as c:
                page = [_record(AuditEntry, r) for r in c.execute(q.order_by(audit_log.c.seq).limit(_AUDIT_PAGE))]
            yield from page
            if len(page) < _AUDIT_PAGE:
                return
            next_seq = page[-1].seq + 1

    def audit_entries_about(self, subject: str) -> list[AuditEntry]:
        """Every entry whose subject is `subject` (an axis id, a submission id, an agency code), in seq order."""
        with self._reading() as c:
            return [_record(AuditEntry, r) for r in c.execute(
                sa.select(audit_log).where(audit_log.c.subject == subject).order_by(audit_log.c.seq))]

    def audit_links(self, from_seq: int, to_seq: int) -> list[tuple[int, str, str]]:
        """(seq, prev_hash, hash) of entries from_seq..to_seq, in seq order: the chain's links without the
        entries' content (what a checkpoint is made of)."""
        with self._reading() as c:
            return [(seq, prev, digest) for seq, prev, digest in c.execute(
                sa.select(audit_log.c.seq, audit_log.c.prev_hash, audit_log.c.hash).where(
                    audit_log.c.seq >= from_seq, audit_log.c.seq <= to_seq).order_by(audit_log.c.seq))]

    def audit_hashes(self, to_seq: int) -> list[str]:
        """The chain hashes of entries 1..to_seq (the Merkle tree's leaves are made of them)."""
        hashes: list[str] = []
        while len(hashes) < to_seq:
            q = sa.select(audit_log.c.hash).where(audit_log.c.seq > len(hashes), audit_log.c.seq <= to_seq) \
                .order_by(audit_log.c.seq).limit(50_000)
            with self._reading() as c:
                page = list(c.execute(q).scalars())
            if not page:
                break
            hashes += page
        return hashes

    def latest_checkpoint(self) -> Checkpoint | None:
        with self._reading() as c:
            row = c.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)).first()
        return None if row is None else _record(Checkpoint, row)

    def checkpoint_at(self, size: int) -> Checkpoint | None:
        with self._reading() as c:
            row = c.execute(sa.select(audit_checkpoints).where(audit_checkpoints.c.size == size)).first()
        return None if row is None else _record(Checkpoint, row)

    def checkpoint_covering(self, seq: int) -> Checkpoint | None:
        """The first checkpoint whose tree holds entry `seq`."""
        with self._reading() as c:
            row = c.execute(sa.select(audit_checkpoints).where(audit_checkpoints.c.size >= seq)
                            .order_by(audit_checkpoints.c.size).limit(1)).first()
        return None if row is None else _record(Checkpoint, row)

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every checkpoint, smallest first, page by page."""
        after = 0
        while True:
            with self._reading() as c:
                page = [_record(Checkpoint, r) for r in c.execute(
                    sa.select(audit_checkpoints).where(audit_checkpoints.c.size > after)
                    .order_by(audit_checkpoints.c.size).limit(_AUDIT_PAGE))]
            yield from page
            if len(page) < _AUDIT_PAGE:
                return
            after = page[-1].size

    def checkpoint_stamp(self, size: int) -> CheckpointStamp | None:
        with self._reading() as c:
            row = c.execute(sa.select(audit_timestamps).where(audit_timestamps.c.size == size)).first()
        return None if row is None else _record(CheckpointStamp, row)

    def checkpoint_stamps(self) -> dict[int, CheckpointStamp]:
        with self._reading() as c:
            return {r.size: _record(CheckpointStamp, r) for r in c.execute(sa.select(audit_timestamps))}

    def unstamped_checkpoints(self, limit: int = 100) -> list[Checkpoint]:
        """Checkpoints still waiting for a timestamp, oldest first."""
        q = sa.select(audit_checkpoints).outerjoin(audit_timestamps, audit_timestamps.c.size ==
                                                   audit_checkpoints.c.size).where(
            audit_timestamps.c.size.is_(None)).order_by(audit_checkpoints.c.size).limit(limit)
        with self._reading() as c:
            return [_record(Checkpoint, r) for r in c.execute(q)]

    def checkpoint_lag(self, now: datetime) -> tuple[int, int, int, float]:
        """(entries, entries no checkpoint covers yet, checkpoints waiting for a timestamp, age in seconds of
        the oldest of those): how far the signing and the timestamping are behind the log."""
        with self._reading() as c:
            entries = c.execute(sa.select(sa.func.coalesce(sa.func.max(audit_log.c.seq), 0))).scalar_one()
            covered = c.execute(sa.select(sa.func.coalesce(sa.func.max(audit_checkpoints.c.size), 0))).scalar_one()
            waiting, oldest = c.execute(
                sa.select(sa.func.count(), sa.func.min(audit_checkpoints.c.at)).select_from(
                    audit_checkpoints.outerjoin(audit_timestamps, audit_timestamps.c.size == audit_checkpoints.c.size))
                .where(audit_timestamps.c.size.is_(None))).one()
        if isinstance(oldest, str):  # SQLite returns an aggregate of a DateTime column as text
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        return int(entries), int(entries) - int(covered), int(waiting), max(0.0, age)

    def audit_signers(self) -> dict[str, AuditSigner]:
        with self._reading() as c:
            return {r.fingerprint: _record(AuditSigner, r) for r in c.execute(sa.select(audit_signers))}

    def log_keys(self) -> dict[str, LogKey]:
        """Every writer's log key, by key id (axis/audit/logkeys.py)."""
        with self._reading() as c:
            return {r.key_id: _record(LogKey, r) for r in c.execute(sa.select(audit_log_keys))}

    def evidence_rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Every row of an evidence table (bindings.BINDINGS) as a dict, in key order, page by page."""
        t = metadata.tables[table]
        key = [sa.func.coalesce(t.c[name], "") for name in BINDINGS[table].key]  # NULL sorts as ""
        last: tuple[Any, ...] | None = None
        while True:
            q = sa.select(t).order_by(*key).limit(_AUDIT_PAGE)
            if last is not None:
                q = q.where(sa.tuple_(*key) > tuple("" if v is None else v for v in last))
            with self._reading() as c:
                page = [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in r._mapping.items()}
                        for r in c.execute(q)]
            yield from page
            if len(page) < _AUDIT_PAGE:
                return
            last = tuple(page[-1][name] for name in BINDINGS[table].key)

    def body_digests(self) -> Iterator[tuple[str, str]]:
        """(axis id, SHA-256 of the stored body) of every document body, page by page."""
        after = ""
        while True:
            with self._reading() as c:
                page = [(a, hashlib.sha256(b).hexdigest()) for a, b in c.execute(
                    sa.select(bodies.c.axis_id, bodies.c.body).where(bodies.c.axis_id > after)
                    .order_by(bodies.c.axis_id).limit(500))]
            yield from page
            if len(page) < 500:
                return
            after = page[-1][0]

    # ---- retention (axis/store/retention.py decides when; these say what is removable and remove it)
    def removable_bodies(self, received_before: datetime, limit: int) -> list[tuple[str, str]]:
        """(axis id, document digest) of up to `limit` documents, oldest first, received before `received_before`,
        that still have a body and no delivery that may still need it (`BODY_NOT_NEEDED`)."""
        q = (sa.select(documents.c.axis_id, documents.c.digest)
             .join(bodies, bodies.c.axis_id == documents.c.axis_id)
             .where(documents.c.received_at < received_before, ~sa.exists(_needing_body(documents.c.axis_id)))
             .order_by(documents.c.received_at, documents.c.axis_id).limit(limit))
        with self._reading() as c:
            return [(a, d) for a, d in c.execute(q)]

    def removable_submissions(self, decided_before: datetime, limit: int) -> list[str]:
        """The ids of up to `limit` submissions decided before `decided_before`."""
        q = (sa.select(submissions.c.id).where(submissions.c.outcome.is_not(None),
                                               submissions.c.decided_at < decided_before)
             .order_by(submissions.c.decided_at, submissions.c.id).limit(limit))
        with self._reading() as c:
            return list(c.execute(q).scalars())

    def removable_counts(self, bodies_before: datetime | None, submissions_before: datetime | None,
                         inbox_before: datetime | None) -> dict[str, int]:
        """What a retention run with these cut-offs (None: that table is kept) would remove: bodies and their
        bytes, submissions, inbox keys."""
        counts = {"bodies": 0, "body_bytes": 0, "submissions": 0, "inbox": 0}
        with self._reading() as c:
            if bodies_before is not None:
                q = (sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.length(bodies.c.body)), 0))
                     .select_from(documents.join(bodies, bodies.c.axis_id == documents.c.axis_id))
                     .where(documents.c.received_at < bodies_before,
                            ~sa.exists(_needing_body(documents.c.axis_id))))
                counts["bodies"], counts["body_bytes"] = (int(v) for v in c.execute(q).one())
            if submissions_before is not None:
                counts["submissions"] = c.execute(sa.select(sa.func.count()).where(
                    submissions.c.outcome.is_not(None), submissions.c.decided_at < submissions_before)).scalar_one()
            if inbox_before is not None:
                counts["inbox"] = c.execute(sa.select(sa.func.count()).where(
                    inbox.c.seen_at < inbox_before)).scalar_one()
        return counts


class WriteTx(_Reads):
    """One unit of work; obtain it from `Store.write()`. Not thread-safe."""

    def __init__(self, conn: sa.Connection, clock: Clock, sealer: chain.Sealer | None = None) -> None:
        self._conn = conn
        self._clock = clock
        self._sealer = sealer
        self._dialect = conn.dialect.name
        self._pending_audit: list[tuple[str, str, str | None, dict[str, Any]]] = []
        # (subject, [table, key, digest]) of every evidence row written: bound to the log at the end.
        self._bound: list[tuple[str | None, list[str | None]]] = []
        self._open = True
        self.audit_seqs: tuple[int, int] | None = None

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        yield self._c

    @property
    def _c(self) -> sa.Connection:
        if not self._open:
            raise StoreError("this unit of work has ended; open a new one with store.write()")
        return self._conn

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    def _insert_ignore(self, table: sa.Table, rows: list[dict[str, Any]], conflict: list[str] | None,
                       returning: sa.Column[Any]) -> list[Any]:
        """INSERT rows ON CONFLICT DO NOTHING; the `returning` value of each row actually inserted.

        `conflict` names the unique columns (None: any unique index). On
        PostgreSQL one INSERT ... SELECT FROM unnest(<one array per column>),
        whose text is short and the same for every batch: SQLAlchemy's
        multi-VALUES form makes statements of ~100 KB per 600 rows, which
        psycopg re-parses in Python every time (it caches only short queries),
        and that, not the server, bounded a batch of 200 documents.
        """
        if not rows:
            return []
        if self._dialect != "postgresql":
            return list(self._c.execute(_sqlite_insert_ignore(table, tuple(conflict or ()), returning), rows).scalars())
        columns = tuple(rows[0])
        stmt = _unnest_insert(table, columns, tuple(conflict or ()), returning)
        return list(self._c.execute(stmt, {name: [r[name] for r in rows] for name in columns}).scalars())

    def _insert_ignore_count(self, table: sa.Table, rows: list[dict[str, Any]], conflict: list[str] | None,
                             returning: sa.Column[Any]) -> int:
        """`_insert_ignore` when only the number of new rows matters.

        SQLite: one executemany without RETURNING (pysqlite sums the rows each
        statement changed, and an ignored row changes none), which spares
        SQLAlchemy's multi-VALUES rewriting of every batch.
        """
        if not rows:
            return 0
        if self._dialect != "sqlite":
            return len(self._insert_ignore(table, rows, conflict, returning))
        return self._c.execute(_sqlite_insert_ignore(table, tuple(conflict or ()), None), rows).rowcount

    def _inserted(self, stmt: Any, column: sa.Column[Any]) -> bool:
        # RETURNING, not rowcount: SQLAlchemy 2.1 does not keep rowcount for
        # INSERT on psycopg (it reports -1), while RETURNING works everywhere.
        return self._c.execute(stmt.returning(column)).first() is not None

    def _bind(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record each row as it now stands, for the audit entries of this unit of work (bindings.py)."""
        for row in rows:
            self._bound.append((row_subject(table, row), [table, row_key(table, row), row_digest(table, row)]))

    def _bind_new(self, table: sa.Table, rows: list[dict[str, Any]], added: int) -> None:
        """Bind the rows an INSERT ... ON CONFLICT DO NOTHING added (`added` of `rows`).

        When some were already there, the rows are read back: a row bound is
        one that reads exactly as written (one that was there, identical in
        every column, binds to the same digest, which changes nothing).
        """
        if added == len(rows):
            self._bind(table.name, rows)
            return
        if not added:
            return
        binding = BINDINGS[table.name]
        key_of = {row_key(table.name, row): row for row in rows}
        columns = [sa.func.coalesce(sa.cast(table.c[name], sa.String), "") for name in binding.key]
        stored: dict[str, str] = {}
        for part in _chunks(list(key_of), 500):
            tuples = [tuple(key.split("/")) if len(binding.key) > 1 else (key,) for key in part]
            q = sa.select(table).where(sa.tuple_(*columns).in_(tuples))
            for r in self._c.execute(q):
                found = dict(r._mapping)
                stored[row_key(table.name, found)] = row_digest(table.name, found)
        self._bind(table.name, [row for key, row in key_of.items()
                                if stored.get(key) == row_digest(table.name, row)])

    # ---- registry
    def add_agency(self, code: str, name: str, parent: str | None = None, state: str = "active") -> Agency:
        """Register an agency; AlreadyExists if the code is taken, NotFound if the parent is unknown."""
        _check_code(code)
        if state not in AGENCY_STATES:
            raise ValueError(f"agency state {state!r} must be one of {AGENCY_STATES}")
        if parent is not None and self.get_agency(_check_code(parent, "parent code")) is None:
            raise NotFound(f"parent agency {parent!r} is not registered; add it first")
        now = self._clock()
        stmt = self._insert(agencies).values(code=code, name=name, parent_code=parent, state=state,
                                             created_at=now, updated_at=now)
        if not self._inserted(stmt.on_conflict_do_nothing(index_elements=["code"]), agencies.c.code):
            raise AlreadyExists(f"agency {code} is already registered")
        agency = Agency(code, name, parent, state, now, now)
        self._bind("agencies", [dataclasses.asdict(agency)])
        return agency

    def add_agencies(self, items: Iterable[tuple[str, str, str | None]]) -> int:
        """Bulk register (code, name, parent) triples, e.g. the national list.

        Codes already registered are skipped (returns how many were new). A
        parent must be registered already or appear earlier in `items`;
        NotFound otherwise.
        """
        now = self._clock()
        triples = [(_check_code(code), name, parent) for code, name, parent in items]
        rows = [{"code": code, "name": name, "parent_code": parent, "state": "active",
                 "created_at": now, "updated_at": now} for code, name, parent in triples]
        codes = {code for code, _, _ in triples}
        outside = {parent for _, _, parent in triples if parent and parent not in codes}
        missing = outside - set(self.agency_states(outside))
        if missing:
            raise NotFound(f"parent agencies not registered: {', '.join(sorted(missing))}; add them first")
        if not rows:
            return 0
        added = self._insert_ignore_count(agencies, rows, ["code"], agencies.c.code)
        self._bind_new(agencies, rows, added)
        return added

    def set_agency_state(self, code: str, state: str) -> bool:
        """Suspend or reactivate; False when it already was in that state."""
        if state not in AGENCY_STATES:
            raise ValueError(f"agency state {state!r} must be one of {AGENCY_STATES}")
        stmt = sa.update(agencies).where(agencies.c.code == code, agencies.c.state != state).values(
            state=state, updated_at=self._clock())
        if self._updated("agencies", stmt):
            return True
        if self.get_agency(code) is None:
            raise NotFound(f"agency {code!r} is not registered")
        return False

    def add_certificate(self, code: str, pem: str | bytes) -> str:
        """Register a certificate for agency `code`; returns its SHA-256 fingerprint (hex).

        Idempotent for the same agency. AlreadyExists if the certificate is
        registered to another agency or was revoked; ValueError if the PEM
        cannot be read.
        """
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise ValueError(f"the certificate for {code} is not a readable PEM X.509 certificate: {exc}") \
                from None
        fingerprint = cert.fingerprint(hashes.SHA256()).hex()
        if self.get_agency(code) is None:
            raise NotFound(f"agency {code!r} is not registered; add the agency before its certificate")
        row = {"agency_code": code, "fingerprint": fingerprint,
               "certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
               "not_before": cert.not_valid_before_utc, "not_after": cert.not_valid_after_utc, "state": "active",
               "added_at": self._clock()}
        stmt = self._insert(certificates_t).values(**row)
        if self._inserted(stmt.on_conflict_do_nothing(index_elements=["fingerprint"]), certificates_t.c.id):
            self._bind("agency_certificates", [row])
        else:
            owner, state = self._c.execute(sa.select(certificates_t.c.agency_code, certificates_t.c.state).where(
                certificates_t.c.fingerprint == fingerprint)).one()
            if owner != code:
                raise AlreadyExists(f"certificate {fingerprint} is already registered to agency {owner}")
            if state != "active":
                raise AlreadyExists(f"certificate {fingerprint} of {code} was {state} and cannot be "
                                    "registered again; issue a new certificate")
        return fingerprint

    def revoke_certificate(self, fingerprint: str) -> bool:
        """Mark a certificate revoked in the registry; False if it already was."""
        stmt = sa.update(certificates_t).where(certificates_t.c.fingerprint == fingerprint.lower(),
                                               certificates_t.c.state == "active").values(state="revoked")
        if self._updated("agency_certificates", stmt):
            return True
        exists = self._c.execute(sa.select(sa.literal(1)).where(
            certificates_t.c.fingerprint == fingerprint.lower())).first()
        if exists is None:
            raise NotFound(f"no certificate with fingerprint {fingerprint}")
        return False

    def withdraw_certificate(self, fingerprint: str) -> bool:
        """An operator takes an active certificate out of use (`axis cert withdraw`); False when it was not
        active (withdrawn or revoked already), NotFound when there is none."""
        stmt = sa.update(certificates_t).where(certificates_t.c.fingerprint == fingerprint.lower(),
                                               certificates_t.c.state == "active").values(state="withdrawn")
        if self._updated("agency_certificates", stmt):
            return True
        if self.certificate(fingerprint) is None:
            raise NotFound(f"no certificate with fingerprint {fingerprint}")
        return False

    def add_alias(self, old: str, new: str, until: datetime) -> AgencyAlias:
        """Route documents addressed to `old` to `new` until `until` (`axis agency rename`). Both must be
        registered (NotFound); AlreadyExists when `old` was renamed before. Which renames make sense (no
        chain back to a renamed code, no merger into an agency by accident) is the caller's rule
        (cli/certs.py)."""
        for code in (old, new):
            if self.get_agency(_check_code(code)) is None:
                raise NotFound(f"agency {code!r} is not registered")
        if until.tzinfo is None:
            raise ValueError("until is a naive datetime; pass an aware UTC datetime")
        alias = AgencyAlias(old_code=old, new_code=new, created_at=self._clock(), until=until)
        stmt = self._insert(agency_aliases).values(**dataclasses.asdict(alias))
        if not self._inserted(stmt.on_conflict_do_nothing(index_elements=["old_code"]), agency_aliases.c.old_code):
            raise AlreadyExists(f"{old} was already renamed")
        self._bind("agency_aliases", [dataclasses.asdict(alias)])
        return alias

    # ---- documents
    def insert_document(self, doc: NewDocument, body: bytes) -> Document:
        """Store one accepted document and its exact bytes.

        Raises DuplicateDocument(existing_axis_id) when (sender, DocumentId,
        kind) is already stored; nothing is written then and the unit of work
        stays usable.
        """
        result = self.insert_documents([(doc, body)])[0]
        if isinstance(result, DuplicateDocument):
            raise result
        return result

    def insert_documents(self, items: Sequence[tuple[NewDocument, bytes | Path]]
                         ) -> list[Document | DuplicateDocument]:
        """Bulk `insert_document`: one result per item, in order.

        A duplicate (of a stored document, or of an earlier item in the same
        batch) yields a DuplicateDocument value instead of a Document; it is
        returned, not raised, and nothing is written for it.

        A body may be given as a file holding the exact bytes (a large upload): it is copied into its row a
        piece at a time (`_copy_blob`), so it is never whole in memory.
        """
        if not items:
            return []
        now = self._clock()
        rows: list[dict[str, Any]] = []
        for doc, body in items:
            rows.append(self._document_row(doc, body, now))
        inserted = set(self._insert_ignore(documents, rows, ["sender_code", "document_id", "kind"],
                                           documents.c.axis_id))
        self._bind("documents", [row for row in rows if row["axis_id"] in inserted])
        if inserted:
            new = [(row, body) for row, (_, body) in zip(rows, items, strict=True) if row["axis_id"] in inserted]
            held = [{"axis_id": row["axis_id"], "body": body} for row, body in new if not isinstance(body, Path)]
            if held:
                self._c.execute(sa.insert(bodies), held)
            for row, body in new:
                if isinstance(body, Path):
                    self._copy_blob(bodies.c.axis_id, bodies.c.body, row["axis_id"], body, row["size"],
                                    row["digest"])
        missing = [row for row in rows if row["axis_id"] not in inserted]
        existing: dict[tuple[str, str, str], str] = {}
        for part in _chunks(missing, 1_000):
            keys = [(r["sender_code"], r["document_id"], r["kind"]) for r in part]
            q = sa.select(documents.c.sender_code, documents.c.document_id, documents.c.kind,
                          documents.c.axis_id).where(
                sa.tuple_(documents.c.sender_code, documents.c.document_id, documents.c.kind).in_(keys))
            existing.update(((s, d, k), a) for s, d, k, a in self._c.execute(q))
        results: list[Document | DuplicateDocument] = []
        first_in_batch: set[tuple[str, str, str]] = set()
        for row in rows:
            key = (row["sender_code"], row["document_id"], row["kind"])
            if row["axis_id"] in inserted and key not in first_in_batch:
                first_in_batch.add(key)
                existing[key] = row["axis_id"]
                results.append(Document(**row))
            else:
                results.append(DuplicateDocument(existing[key], *key))
        return results

    def _copy_blob(self, key: sa.Column[Any], column: sa.Column[Any], value: str, path: Path, size: int,
                   digest: str) -> None:
        """Insert the row (`key` = `value`, `column` = the bytes of the file `path`) in this transaction, the
        file read a piece at a time so the bytes are never whole in this process. The bytes copied must be those
        `size` and `digest` describe, or the transaction fails.

        SQLite: a blob of zeroes of that size, then sqlite3's incremental blob I/O. PostgreSQL: one binary
        `COPY ... FROM STDIN` row, whose field lengths are known before its bytes are sent (psycopg's writer
        waits for libpq to flush every MiB); the server assembles the value, not us."""
        table = key.table
        copied = hashlib.sha256()
        with open(path, "rb") as file:
            if self._dialect == "sqlite":
                self._c.execute(sa.insert(table).values({key.name: value, column.name: sa.func.zeroblob(size)}))
                rowid: int = self._c.execute(sa.select(sa.literal_column("rowid")).select_from(table)
                                             .where(key == value)).scalar_one()
                raw: sqlite3.Connection = self._c.connection.driver_connection  # type: ignore[assignment]
                with raw.blobopen(table.name, column.name, rowid) as blob:
                    while piece := file.read(_BODY_PIECE):
                        copied.update(piece)
                        blob.write(piece)
            else:
                name = value.encode()
                connection: Any = self._c.connection.driver_connection   # a psycopg.Connection
                # The names are our schema's, never input: the COPY statement cannot take them as parameters.
                statement = f"COPY {table.name} ({key.name}, {column.name}) FROM STDIN (FORMAT BINARY)"
                with connection.cursor() as cursor, cursor.copy(statement) as copy:
                    copy.write(_PG_COPY_HEADER + struct.pack("!hi", 2, len(name)) + name + struct.pack("!i", size))
                    sent = 0
                    while sent < size and (piece := file.read(min(_BODY_PIECE, size - sent))):
                        copied.update(piece)
                        copy.write(piece)
                        sent += len(piece)
                    if sent != size:   # a short file: say so here, not as a malformed COPY from the server
                        raise StoreError(f"the file of {value} changed while it was stored; nothing was stored")
                    copy.write(_PG_COPY_TRAILER)
            file_size = file.seek(0, 2)
        if copied.hexdigest() != digest or file_size != size:
            raise StoreError(f"the file of {value} changed while it was stored; nothing was stored")

    def add_submission_body(self, submission_id: str, path: Path) -> tuple[int, str]:
        """Keep the bytes of a queued submission too large for the broker (see `schema.submission_bodies`),
        from the file that holds them, a piece at a time; their size and SHA-256."""
        with open(path, "rb") as file:
            digest, size = hashlib.file_digest(file, "sha256").hexdigest(), file.tell()
        self._copy_blob(submission_bodies.c.submission_id, submission_bodies.c.body, submission_id, path, size,
                        digest)
        return size, digest

    def forget_submission_bodies(self, submission_ids: Iterable[str]) -> None:
        """Remove the kept bytes of submissions that were decided."""
        for part in _chunks(list(submission_ids), _IN_CHUNK):
            self._c.execute(sa.delete(submission_bodies).where(submission_bodies.c.submission_id.in_(part)))

    @staticmethod
    def _document_row(doc: NewDocument, body: bytes | Path, now: datetime) -> dict[str, Any]:
        if doc.kind not in DOCUMENT_KINDS:
            raise ValueError(f"document kind {doc.kind!r} must be one of {DOCUMENT_KINDS}")
        if not 0 <= doc.priority <= 4:
            raise ValueError(f"priority {doc.priority} must be 0..4 (edXML Priority)")
        if doc.business_type is not None and not 0 <= doc.business_type <= 3:
            raise ValueError(f"business_type {doc.business_type} must be 0..3 or None")
        if not isinstance(body, (bytes, bytearray, memoryview, Path)):
            raise TypeError("the document body must be the exact signed bytes (or a file holding them)")
        _check_code(doc.sender_code, "sender code")
        if doc.received_at is not None and doc.received_at.tzinfo is None:
            raise ValueError("received_at is a naive datetime; pass an aware UTC datetime")
        if isinstance(body, Path):
            with open(body, "rb") as file:
                digest, size = hashlib.file_digest(file, "sha256").hexdigest(), file.tell()
        else:
            body = bytes(body)
            digest, size = hashlib.sha256(body).hexdigest(), len(body)
        return {"axis_id": doc.axis_id, "sender_code": doc.sender_code, "document_id": doc.document_id,
                "kind": doc.kind, "business_type": doc.business_type,
                "digest": digest, "size": size, "priority": doc.priority,
                "received_at": doc.received_at or now, "signer_fingerprint": doc.signer_fingerprint,
                "response_for": doc.response_for, "seal": doc.seal}

    # ---- deliveries
    def insert_deliveries(self, axis_id: str, recipients: Iterable[str],
                          state: str | DeliveryState = DeliveryState.QUEUED) -> int:
        """One delivery per recipient; existing (axis_id, recipient) pairs are left alone. Returns rows added."""
        return self.insert_deliveries_many({axis_id: recipients}, state)

    def insert_deliveries_many(self, by_document: Mapping[str, Iterable[str]],
                               state: str | DeliveryState = DeliveryState.QUEUED) -> int:
        state = parse_state(state)
        now = self._clock()
        pairs = [(axis_id, r) for axis_id, recipients in by_document.items() for r in dict.fromkeys(recipients)]
        rows: list[dict[str, Any]] = [{"axis_id": axis_id, "recipient_code": r, "state": state.value, "attempts": 0,
                                       "updated_at": now, "last_error": None} for axis_id, r in pairs]
        if not rows:
            return 0
        added = self._insert_ignore_count(deliveries_t, rows, ["axis_id", "recipient_code"], deliveries_t.c.axis_id)
        if added == len(rows):  # the usual case: every row is new, and all share every value but these two
            digests = uniform_digests("deliveries", rows, ("axis_id", "recipient_code"))
            self._bound.extend((axis_id, ["deliveries", f"{axis_id}/{r}", digest])
                               for (axis_id, r), digest in zip(pairs, digests, strict=True))
        else:
            self._bind_new(deliveries_t, rows, added)
        return added

    def transition(self, axis_id: str, recipient: str, new_state: str | DeliveryState,
                   error: str | None = None, *, attempts: int | None = None) -> bool:
        """Move one delivery to `new_state` if the state machine allows it.

        Compare-and-set in one UPDATE (WHERE state IN allowed sources), so two
        workers racing on the same delivery cannot both win or regress it.
        False when refused (terminal, regression, repeat); NotFound when the
        delivery does not exist. `error` is recorded as last_error and
        `attempts` (e.g. a dead letter's delivery count) as the delivery's
        attempts, both only when the delivery moves.
        """
        new = parse_state(new_state)
        values: dict[str, Any] = {"state": new.value, "updated_at": self._clock()}
        if error is not None:
            values["last_error"] = error
        if attempts is not None:
            if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
                raise ValueError(f"attempts {attempts!r} must be a count (an int >= 0)")
            values["attempts"] = attempts
        stmt = sa.update(deliveries_t).where(
            deliveries_t.c.axis_id == axis_id, deliveries_t.c.recipient_code == recipient,
            deliveries_t.c.state.in_(sorted(s.value for s in sources_for(new)))).values(**values)
        if self._updated("deliveries", stmt):
            return True
        self._require_delivery(axis_id, recipient)
        return False

    def _require_delivery(self, axis_id: str, recipient: str) -> None:
        found = self._c.execute(sa.select(sa.literal(1)).where(
            deliveries_t.c.axis_id == axis_id, deliveries_t.c.recipient_code == recipient)).first()
        if found is None:
            raise NotFound(f"no delivery of {axis_id} to {recipient}")

    # ---- receipts
    def add_receipt(self, axis_id: str, kind: str, body: bytes, recipient: str | None = None,
                    code: str | None = None, detail: str | None = None) -> bool:
        """Store a signed receipt; False when one with the same (axis_id, recipient, kind, code) exists."""
        return self.add_receipts([NewReceipt(axis_id, kind, body, recipient, code, detail)]) == 1

    def add_receipts(self, items: Iterable[NewReceipt]) -> int:
        """Bulk `add_receipt`; returns how many were new."""
        now = self._clock()
        rows = []
        for r in items:
            if r.kind not in RECEIPT_KINDS:
                raise ValueError(f"receipt kind {r.kind!r} must be one of {RECEIPT_KINDS}")
            body = bytes(r.body)
            rows.append({"axis_id": r.axis_id, "recipient_code": r.recipient_code, "kind": r.kind,
                         "code": r.code, "detail": r.detail, "body": body,
                         "digest": hashlib.sha256(body).hexdigest(), "created_at": now})
        if not rows:
            return 0
        # No conflict target: the key is an expression index (coalesce), which
        # both dialects honour with a bare ON CONFLICT DO NOTHING.
        added = self._insert_ignore_count(receipts_t, rows, None, receipts_t.c.id)
        self._bind_new(receipts_t, rows, added)
        return added

    # ---- credentials and submissions
    def add_credential(self, credential_id: str, role: str, agency: str | None, token_sha256: str,
                       label: str | None = None) -> Credential:
        if role not in CREDENTIAL_ROLES:
            raise ValueError(f"role {role!r} must be one of {CREDENTIAL_ROLES}")
        if (role == "agency") != (agency is not None):
            raise ValueError("an agency credential names exactly one agency; operator and auditor ones none")
        if agency is not None and self.get_agency(agency) is None:
            raise NotFound(f"agency {agency} is not registered")
        credential = Credential(id=credential_id, role=role, agency_code=agency, token_sha256=token_sha256,
                                label=label, created_at=self._clock(), revoked_at=None)
        row = {c.name: getattr(credential, c.name) for c in credentials.columns}
        self._c.execute(sa.insert(credentials), row)
        self._bind("credentials", [row])
        return credential

    def revoke_credential(self, credential_id: str) -> bool:
        """Revoke a credential; False when it was already revoked, NotFound when there is none."""
        stmt = sa.update(credentials).where(credentials.c.id == credential_id,
                                            credentials.c.revoked_at.is_(None)).values(revoked_at=self._clock())
        if self._updated("credentials", stmt):
            return True
        if self.get_credential(credential_id) is None:
            raise NotFound(f"no credential {credential_id!r}")
        return False

    def add_submissions(self, items: Iterable[NewSubmission]) -> int:
        """Record submissions as queued (before they are published); existing ids are left alone."""
        now = self._clock()
        rows = [{"id": s.id, "agency_code": s.agency_code, "credential_id": s.credential_id, "digest": s.digest,
                 "created_at": now} for s in items]
        return self._insert_ignore_count(submissions, rows, ["id"], submissions.c.id)

    def forget_submission(self, submission_id: str) -> None:
        """Delete a queued submission that was never published (its publish failed)."""
        self._c.execute(sa.delete(submissions).where(submissions.c.id == submission_id,
                                                     submissions.c.outcome.is_(None)))
        self._c.execute(sa.delete(submission_bodies).where(submission_bodies.c.submission_id == submission_id))

    def decide_submissions(self, decisions: Iterable[Decision]) -> None:
        """Record the hub's outcomes: fill in queued rows, insert the rows nobody wrote first.

        A row already decided keeps its first outcome (a redelivered submission is decided again).
        """
        decisions = list(decisions)
        if not decisions:
            return
        now = self._clock()
        # Each row as it stands, locked until COMMIT: a row still undecided here is decided by this unit
        # of work, which binds it as decided (a concurrent hub worker waits, then finds it decided).
        rows = self._submission_rows([d.id for d in decisions])
        fresh = {d.id: {"id": d.id, "agency_code": d.agency_code, "credential_id": None, "digest": None,
                        "created_at": now, "outcome": None, "axis_id": None, "code": None, "detail": None,
                        "receipt": None, "decided_at": None}
                 for d in decisions if d.id not in rows}
        inserted = self._insert_ignore_count(submissions, [{k: v for k, v in r.items() if k in _FRESH}
                                                           for r in fresh.values()], ["id"], submissions.c.id)
        rows.update(fresh if inserted == len(fresh) else self._submission_rows(list(fresh)))
        decided: dict[str, dict[str, Any]] = {}
        for d in decisions:
            row = rows.get(d.id)
            if row is not None and row["outcome"] is None and d.id not in decided:
                decided[d.id] = {**row, "outcome": d.outcome, "axis_id": d.axis_id, "code": d.code,
                                 "detail": d.detail, "receipt": d.receipt, "decided_at": now}
        self._bind("submissions", decided.values())
        self._c.execute(_DECIDE_SUBMISSION, [{"b_id": d.id, "b_outcome": d.outcome, "b_axis_id": d.axis_id,
                                              "b_code": d.code, "b_detail": d.detail, "b_receipt": d.receipt,
                                              "b_decided_at": now} for d in decisions])

    def _submission_rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids, 500):
            found.update((r.id, {k: bytes(v) if isinstance(v, memoryview) else v for k, v in r._mapping.items()})
                         for r in self._c.execute(_SUBMISSION_ROWS, {"ids": chunk}))
        return found

    def _updated(self, table: str, stmt: Any) -> bool:
        """Run an UPDATE of at most one row; bind the row it changed. False when it changed none."""
        row = self._c.execute(stmt.returning(*metadata.tables[table].c)).first()
        if row is None:
            return False
        self._bind(table, [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in row._mapping.items()}])
        return True

    # ---- checkpoints
    def add_checkpoint(self, checkpoint: Checkpoint, certificates: str, follows: int) -> bool:
        """Append `checkpoint`, which follows the checkpoint of size `follows` (0: none), if that is still the
        latest; False when another writer appended one first. `certificates`: the signer's PEM chain, kept
        once per certificate."""
        c = self._c
        if self._dialect == "postgresql":
            c.execute(_ADVISORY_LOCK, {"key": CHECKPOINT_LOCK_KEY})
        latest = self.latest_checkpoint()
        if (latest.size if latest else 0) != follows or checkpoint.size <= follows:
            return False
        stmt = self._insert(audit_signers).values(fingerprint=checkpoint.signer, certificates=certificates,
                                                  added_at=self._clock())
        c.execute(stmt.on_conflict_do_nothing(index_elements=["fingerprint"]))
        c.execute(sa.insert(audit_checkpoints), dataclasses.asdict(checkpoint))
        return True

    def add_log_key(self, key: LogKey, certificates: str) -> None:
        """Register a writer's log key; `certificates`: the certifying certificate's PEM chain."""
        stmt = self._insert(audit_signers).values(fingerprint=key.signer, certificates=certificates,
                                                  added_at=self._clock())
        self._c.execute(stmt.on_conflict_do_nothing(index_elements=["fingerprint"]))
        self._c.execute(sa.insert(audit_log_keys), dataclasses.asdict(key))

    def add_checkpoint_stamp(self, stamp: CheckpointStamp) -> bool:
        """Keep a checkpoint's timestamp token; False when it already has one."""
        stmt = self._insert(audit_timestamps).values(**dataclasses.asdict(stamp))
        return self._inserted(stmt.on_conflict_do_nothing(index_elements=["size"]), audit_timestamps.c.size)

    # ---- consumer de-duplication
    def mark_seen(self, consumer: str, dedup_key: str) -> bool:
        """Record that `consumer` handled `dedup_key`; False when it already had (a duplicate)."""
        stmt = self._insert(inbox).values(consumer=consumer, dedup_key=dedup_key, seen_at=self._clock())
        return self._inserted(stmt.on_conflict_do_nothing(index_elements=["consumer", "dedup_key"]), inbox.c.consumer)

    # ---- retention: each removal bound as removed ([table, key, null]) to an entry naming what it removed. A
    # unit of work removes from one table only: an entry takes the bindings of every row about its subject.
    def remove_bodies(self, candidates: Mapping[str, str], received_before: datetime, actor: str,
                      why: Mapping[str, Any]) -> tuple[dict[str, int], list[str]]:
        """Delete the bodies of `candidates` ({axis id: document digest}, from `removable_bodies`) that are still
        removable; each in an entry about its document whose `removed` names the SHA-256 of the body deleted.
        A body that does not have its document's digest is kept (it is evidence of tampering: `axis audit
        verify` names it). Returns ({axis id: size} of the bodies removed, those kept because they differ)."""
        hashed: dict[str, tuple[str, int]] = {}
        for axis_id in candidates:
            body = self._c.execute(sa.select(bodies.c.body).where(bodies.c.axis_id == axis_id)).scalar()
            if body is not None:
                hashed[axis_id] = (hashlib.sha256(body).hexdigest(), len(body))
        differing = sorted(a for a, (digest, _) in hashed.items() if digest != candidates[a])
        removed: list[str] = []
        for chunk in _chunks(sorted(set(hashed) - set(differing)), 500):
            old = sa.exists().where(documents.c.axis_id == bodies.c.axis_id, documents.c.received_at < received_before)
            stmt = (sa.delete(bodies).where(bodies.c.axis_id.in_(chunk), old,
                                            ~sa.exists(_needing_body(bodies.c.axis_id)))
                    .returning(bodies.c.axis_id))
            removed += self._c.execute(stmt).scalars()
        for axis_id in sorted(removed):
            self._removed(axis_id, [["document_bodies", axis_id, hashed[axis_id][0]]], actor, why)
        return {axis_id: hashed[axis_id][1] for axis_id in sorted(removed)}, differing

    def remove_submissions(self, ids: Sequence[str], decided_before: datetime, actor: str,
                           why: Mapping[str, Any]) -> int:
        """Delete the submissions of `ids` decided before `decided_before`; each in an entry about what the row
        was about (its document, else the submission) whose `removed` names the digest of the row deleted."""
        by_subject: dict[str | None, list[list[str | None]]] = {}
        for chunk in _chunks(list(ids), 500):
            stmt = (sa.delete(submissions).where(submissions.c.id.in_(chunk), submissions.c.outcome.is_not(None),
                                                 submissions.c.decided_at < decided_before)
                    .returning(*submissions.c))
            for r in self._c.execute(stmt):
                row = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in r._mapping.items()}
                by_subject.setdefault(row_subject("submissions", row), []).append(
                    ["submissions", row_key("submissions", row), row_digest("submissions", row)])
        for subject, removed in sorted(by_subject.items(), key=lambda item: str(item[0])):
            self._removed(subject, sorted(removed, key=str), actor, why)
        # The body a hub killed between settling a queued submission and forgetting its body left behind (see
        # `schema.submission_bodies`) goes with its submission's row, or now if that row is gone.
        its_row = sa.select(submissions.c.id).where(submissions.c.id == submission_bodies.c.submission_id)
        self._c.execute(sa.delete(submission_bodies).where(~sa.exists(its_row)))
        return sum(len(removed) for removed in by_subject.values())

    def forget_seen(self, seen_before: datetime, actor: str, why: Mapping[str, Any]) -> dict[str, int]:
        """Delete the de-duplication keys seen before `seen_before`; one entry counts them by consumer (the
        inbox is bookkeeping, not evidence: no row of it is bound)."""
        q = (sa.select(inbox.c.consumer, sa.func.count()).where(inbox.c.seen_at < seen_before)
             .group_by(inbox.c.consumer))
        counts = {consumer: int(n) for consumer, n in self._c.execute(q)}
        if counts:
            self._c.execute(sa.delete(inbox).where(inbox.c.seen_at < seen_before))
            self.audit(actor, REMOVED, None, {**why, "inbox": counts})
        return counts

    def _removed(self, subject: str | None, removed: list[list[str | None]], actor: str,
                 why: Mapping[str, Any]) -> None:
        for table, key, _ in removed:
            self._bound.append((subject, [table, key, None]))
        self.audit(actor, REMOVED, subject, {**why, "removed": removed})

    # ---- audit
    def audit(self, actor: str, action: str, subject: str | None = None,
              data: Mapping[str, Any] | None = None) -> None:
        """Append an audit entry when this unit of work commits (never if it rolls back)."""
        self.audit_many([NewAuditEntry(actor, action, subject, data or {})])

    def audit_many(self, entries: Iterable[NewAuditEntry]) -> None:
        self._c  # noqa: B018  (refuse on a finished unit of work)
        for e in entries:
            if not e.actor or not e.action:
                raise ValueError("an audit entry needs an actor and an action")
            self._pending_audit.append((e.actor, e.action, e.subject, chain.check_data(e.data)))

    def _flush_audit(self) -> None:
        if not self._pending_audit and not self._bound:
            return
        c = self._c
        if self._dialect == "postgresql":
            # Last thing before COMMIT, so the global audit lock is held for as
            # short a time as possible; SQLite already holds its write lock.
            c.execute(_ADVISORY_LOCK, {"key": AUDIT_LOCK_KEY})
        head = c.execute(_AUDIT_HEAD).first()
        seq, prev = (head[0], head[1]) if head else (0, chain.GENESIS_HASH)
        at = self._clock()
        rows = []
        first = seq + 1
        entries = list(self._entries())
        key = self._sealer.key_id if self._sealer is not None else None
        for n, (actor, action, subject, data, bound) in enumerate(entries, 1):
            seq += 1
            # The unit's last entry names its seal (inside the hash, so a seal cannot be stripped unseen).
            sealed_from, seal_key = (first, key) if key is not None and n == len(entries) else (None, None)
            body = chain.entry_body(seq, at, actor, action, subject, data, prev, bound, sealed_from, seal_key)
            digest = chain.entry_hash(prev, body)
            rows.append({"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
                         "data": data, "prev_hash": prev, "hash": digest, "bound": bound,
                         "sealed_from": sealed_from, "seal_key": seal_key, "seal": None})
            prev = digest
        if self._sealer is not None:
            rows[-1]["seal"] = self._sealer.sign(chain.seal_message(self._sealer.key_id, first, seq, prev))
        c.execute(_AUDIT_INSERT, rows)
        self._pending_audit.clear()
        self._bound.clear()
        self.audit_seqs = (first, seq)

    def _entries(self) -> Iterator[tuple[str, str, str | None, dict[str, Any], list[list[str | None]] | None]]:
        """The entries to append: each row binding goes with the first entry about the same subject;
        rows no entry is about get an entry of their own ("recorded"), by the unit of work's actor."""
        by_subject: dict[str | None, list[list[str | None]]] = {}
        for subject, fact in self._bound:
            by_subject.setdefault(subject, []).append(fact)
        for actor, action, subject, data in self._pending_audit:
            yield actor, action, subject, data, by_subject.pop(subject, None)
        actor = self._pending_audit[0][0] if self._pending_audit else "axis"
        for subject, facts in by_subject.items():
            yield actor, "recorded", subject, {}, facts

    def _close(self) -> None:
        self._open = False


class Snapshot(_Reads):
    """Reads in one transaction (`Store.snapshot()`)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._dialect = conn.dialect.name

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        yield self._conn


class Store(_Reads, ReportReads, TrafficReads, RegistryReads):
    """The database behind Axis. Thread-safe; see the module docstring (reports' paged reads: `reports.py`)."""

    def __init__(self, engine: sa.Engine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._dialect = engine.dialect.name
        self._sealer: chain.Sealer | None = None

    def seal_with(self, sealer: chain.Sealer) -> None:
        """Seal every unit of work written from now on with `sealer` (a log key: axis/audit/logkeys.py), so
        the verifier can tell the entries Axis wrote from entries added behind its back. Set once, at start,
        before the store is shared between threads."""
        self._sealer = sealer

    @property
    def sealed(self) -> bool:
        return self._sealer is not None

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._dialect

    def migrate(self) -> None:
        """Bring the schema to the latest revision (alembic upgrade head)."""
        migrations.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """A unit of work: one transaction, committed on exit, rolled back on exception."""
        with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            tx = WriteTx(conn, self.clock, self._sealer)
            try:
                with conn.begin():
                    yield tx
                    tx._flush_audit()
            finally:
                tx._close()

    # ---- the audit log
    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """Reads that all see one moment of the database (one transaction; PostgreSQL REPEATABLE READ),
        while writers go on: what a verifier needs to compare the log with the tables it binds."""
        with self.engine.connect() as conn:
            if self._dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield Snapshot(conn)

    def verify_audit(self) -> AuditReport:
        """Recompute the whole chain in one snapshot; the report names the first bad entry.

        A chain alone cannot show entries cut from its end: that takes a head
        kept elsewhere, checked with `audit.verify_chain(entries, checkpoints)`.
        """
        with self.engine.connect() as conn:
            if self._dialect == "postgresql":
                # One snapshot for the whole scan, while writers keep appending.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")

            def entries() -> Iterator[AuditEntry]:
                last = 0
                while True:
                    q = sa.select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(
                        _AUDIT_PAGE)
                    page = conn.execute(q).all()
                    for row in page:
                        yield _record(AuditEntry, row)
                    if len(page) < _AUDIT_PAGE:
                        return
                    last = page[-1].seq

            return chain.verify_chain(entries())
