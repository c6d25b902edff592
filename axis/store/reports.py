"""The reads behind the auditor's reports: the audit log filtered, deliveries with their receipt times,
refused submissions, and a stored packet's first bytes.

`ReportReads` is mixed into `Store`. Every read is one page, ordered by a key the caller passes back as
`after` for the next page, on a connection of its own: a report walks any amount of history in
constant memory and holds no transaction open between pages (a page sees what was committed when it
ran). What the figures mean is the auditor's business (`axis/auditor`); here they are only read.

Callers may rely on: pages in a stable order (audit entries by seq; deliveries by (received_at, axis_id,
recipient); refused submissions by (created_at, id)); time bounds `since` inclusive and `until`
exclusive; `agency` matching an audit entry exactly when its subject is the code or a string anywhere
in its data (a value or a key, nested or not) is exactly the code, on both databases.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from axis.store.records import AuditEntry, DeliveryFacts, RefusedSubmission
from axis.store.schema import audit_log, bodies, deliveries, documents, receipts, submissions

_RECEIPT_CHUNK = 500   # axis ids per receipts query (a page of deliveries names at most this many documents)


def _record_entry(row: sa.Row[Any]) -> AuditEntry:
    return AuditEntry(**row._mapping)


class ReportReads:
    """Paged reads for reports; needs the `engine` and `_dialect` of `Store`."""

    engine: sa.Engine
    _dialect: str

    @contextmanager
    def _report_reading(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    # ---- the audit log
    def audit_page(self, *, after: int = 0, agency: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, actions: Collection[str] = (), limit: int = 500) -> list[AuditEntry]:
        """Audit entries after seq `after`, oldest first, at most `limit`: those written in [since, until),
        whose action is one of `actions` (any when empty), naming `agency` (see the module docstring)."""
        q = sa.select(audit_log).where(audit_log.c.seq > after)
        if since is not None:
            q = q.where(audit_log.c.at >= since)
        if until is not None:
            q = q.where(audit_log.c.at < until)
        if actions:
            q = q.where(audit_log.c.action.in_(sorted(set(actions))))
        if agency is not None:
            # The data is stored in its canonical JSON form (no spaces, strings quoted and escaped), so a
            # string equal to the code is exactly the text "CODE" with its quotes: an escaped quote inside a
            # longer string is preceded by a backslash and never closes the match. instr/strpos, not LIKE:
            # LIKE ignores case on SQLite.
            text = sa.cast(audit_log.c.data, sa.Text)
            needle = sa.literal(f'"{agency}"', sa.Text)
            found = sa.func.strpos(text, needle) if self._dialect == "postgresql" else sa.func.instr(text, needle)
            q = q.where(sa.or_(audit_log.c.subject == agency, found > 0))
        with self._report_reading() as c:
            return [_record_entry(r) for r in c.execute(q.order_by(audit_log.c.seq).limit(limit))]

    # ---- deliveries
    def first_arrival(self) -> datetime | None:
        """When the oldest document (kind 'document') arrived; None when there is none."""
        with self._report_reading() as c:
            return c.execute(sa.select(sa.func.min(documents.c.received_at)).where(
                documents.c.kind == "document")).scalar()

    def delivery_facts(self, *, since: datetime | None = None, until: datetime | None = None,
                       receipts_until: datetime | None = None, after: tuple[datetime, str, str] | None = None,
                       limit: int = 500) -> list[DeliveryFacts]:
        """Deliveries of documents received in [since, until), after the (received_at, axis_id, recipient)
        `after`, with the first time each status code and the delivery receipt were recorded for their
        recipient (only receipts recorded at or before `receipts_until`, when given)."""
        d, dl = documents, deliveries
        q = sa.select(d.c.axis_id, d.c.document_id, d.c.sender_code, dl.c.recipient_code, d.c.priority,
                      d.c.received_at, dl.c.state, dl.c.updated_at).join(dl, dl.c.axis_id == d.c.axis_id).where(
            d.c.kind == "document")
        if since is not None:
            q = q.where(d.c.received_at >= since)
        if until is not None:
            q = q.where(d.c.received_at < until)
        if after is not None:
            at, axis_id, recipient = after
            q = q.where(sa.or_(d.c.received_at > at, sa.and_(d.c.received_at == at, sa.or_(
                d.c.axis_id > axis_id, sa.and_(d.c.axis_id == axis_id, dl.c.recipient_code > recipient)))))
        q = q.order_by(d.c.received_at, d.c.axis_id, dl.c.recipient_code).limit(limit)
        with self._report_reading() as c:
            rows = c.execute(q).all()
            times = self._receipt_times(c, list(dict.fromkeys(r.axis_id for r in rows)), receipts_until)
        return [DeliveryFacts(axis_id=r.axis_id, document_id=r.document_id, sender_code=r.sender_code,
                              recipient_code=r.recipient_code, priority=r.priority, received_at=r.received_at,
                              state=r.state, updated_at=r.updated_at,
                              delivered_at=times.get((r.axis_id, r.recipient_code), {}).get(("delivery", None)),
                              statuses={code: at for (kind, code), at in
                                        times.get((r.axis_id, r.recipient_code), {}).items()
                                        if kind == "status" and code is not None})
                for r in rows]

    @staticmethod
    def _receipt_times(c: sa.Connection, axis_ids: list[str], until: datetime | None
                       ) -> dict[tuple[str, str], dict[tuple[str, str | None], datetime]]:
        """{(axis_id, recipient): {("delivery", None) | ("status", code): first created_at}}."""
        found: dict[tuple[str, str], dict[tuple[str, str | None], datetime]] = {}
        r = receipts
        for start in range(0, len(axis_ids), _RECEIPT_CHUNK):
            q = sa.select(r.c.axis_id, r.c.recipient_code, r.c.kind, r.c.code, sa.func.min(r.c.created_at)).where(
                r.c.axis_id.in_(axis_ids[start:start + _RECEIPT_CHUNK]), r.c.kind.in_(("delivery", "status")),
                r.c.recipient_code.is_not(None))
            if until is not None:
                q = q.where(r.c.created_at <= until)
            q = q.group_by(r.c.axis_id, r.c.recipient_code, r.c.kind, r.c.code)
            for axis_id, recipient, kind, code, first in c.execute(q):
                key = (kind, None if kind == "delivery" else code)
                mine = found.setdefault((axis_id, recipient), {})
                if key not in mine or first < mine[key]:
                    mine[key] = first
        return found

    # ---- submissions
    def refused_submissions(self, *, since: datetime | None = None, until: datetime | None = None,
                            after: tuple[datetime, str] | None = None, limit: int = 500) -> list[RefusedSubmission]:
        """Submissions intake refused, submitted in [since, until), after the (created_at, id) `after`."""
        s = submissions
        q = sa.select(s.c.id, s.c.agency_code, s.c.created_at, s.c.code).where(s.c.outcome == "refused")
        if since is not None:
            q = q.where(s.c.created_at >= since)
        if until is not None:
            q = q.where(s.c.created_at < until)
        if after is not None:
            # Spelled out rather than a row-value comparison, so that the time is bound through the
            # column's own type (UTC on SQLite's text timestamps).
            q = q.where(sa.or_(s.c.created_at > after[0], sa.and_(s.c.created_at == after[0], s.c.id > after[1])))
        with self._report_reading() as c:
            return [RefusedSubmission(*row) for row in c.execute(q.order_by(s.c.created_at, s.c.id).limit(limit))]

    # ---- bodies
    def document_body_pieces(self, axis_id: str, size: int = 64 * 1024) -> Iterator[bytes]:
        """The stored body of `axis_id` in pieces of `size` bytes, read one at a time as they are consumed
        (a header field of a large packet costs its first piece); nothing for an unknown axis id."""
        offset = 0
        while True:
            part = sa.func.substr(bodies.c.body, offset + 1, size, type_=sa.LargeBinary)
            with self._report_reading() as c:
                piece = c.execute(sa.select(part).where(bodies.c.axis_id == axis_id)).scalar()
            if not piece:
                return
            yield bytes(piece)
            if len(piece) < size:
                return
            offset += size
