"""The reads behind `axis traffic` and `axis queues`: documents newest first with their deliveries, refused
submissions, and what waits for each recipient.

`TrafficReads` is mixed into `Store`. Each read is one page on a connection of its own, newest first, with
the (time, key) of the last row passed back as `before` for the next page, so paging never skips or repeats
a row that was already there. Which indexes serve them: documents by `received_at` (ix_documents_received_at),
narrowed by sender through uq_documents_key and by recipient and state through ix_deliveries_inbox; refused
submissions by `agency_code` when one is named, else a scan of `submissions` (no index on its time: an
operator's page, not a hot path). Following the traffic live (`axis traffic tail`) reads the audit log by
its primary key (`ReportReads.audit_page`), where every decision and state change is written anyway.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from axis.store.records import Delivery, Document, Submission
from axis.store.schema import deliveries, documents, submissions

WAITING_STATES = ("queued", "published")  # a delivery its recipient has not fetched and acknowledged yet


def _record(cls: Any, row: sa.Row[Any]) -> Any:
    return cls(**row._mapping)


class TrafficReads:
    """Operator reads of the traffic; needs the `engine` of `Store`."""

    engine: sa.Engine

    @contextmanager
    def _traffic_reading(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def traffic(self, *, sender: str | None = None, recipient: str | None = None, state: str | None = None,
                since: datetime | None = None, before: tuple[datetime, str] | None = None,
                limit: int = 50) -> list[tuple[Document, list[Delivery]]]:
        """Documents (kind 'document') received at or after `since`, newest first, each with every one of its
        deliveries; only those from `sender`, and only those with a delivery to `recipient` and/or in
        `state` (one delivery meeting both). `before` is the (received_at, axis_id) of the previous page's
        last document."""
        d, dl = documents, deliveries
        q = sa.select(d).where(d.c.kind == "document")
        if sender is not None:
            q = q.where(d.c.sender_code == sender)
        if since is not None:
            q = q.where(d.c.received_at >= since)
        if before is not None:
            q = q.where(sa.or_(d.c.received_at < before[0],
                               sa.and_(d.c.received_at == before[0], d.c.axis_id < before[1])))
        if recipient is not None or state is not None:
            match = sa.select(dl.c.axis_id).where(dl.c.axis_id == d.c.axis_id)
            if recipient is not None:
                match = match.where(dl.c.recipient_code == recipient)
            if state is not None:
                match = match.where(dl.c.state == state)
            q = q.where(match.exists())
        q = q.order_by(d.c.received_at.desc(), d.c.axis_id.desc()).limit(limit)
        with self._traffic_reading() as c:
            docs = [_record(Document, r) for r in c.execute(q)]
            by_doc: dict[str, list[Delivery]] = {doc.axis_id: [] for doc in docs}
            if by_doc:
                rows = c.execute(sa.select(dl).where(dl.c.axis_id.in_(list(by_doc))).order_by(dl.c.recipient_code))
                for r in rows:
                    by_doc[r.axis_id].append(_record(Delivery, r))
        return [(doc, by_doc[doc.axis_id]) for doc in docs]

    def refused(self, *, agency: str | None = None, since: datetime | None = None,
                before: tuple[datetime, str] | None = None, limit: int = 50) -> list[Submission]:
        """Submissions intake refused, submitted at or after `since`, newest first; only those submitted with
        `agency`'s credential when given. `before` is the (created_at, id) of the previous page's last one."""
        s = submissions
        q = sa.select(s).where(s.c.outcome == "refused")
        if agency is not None:
            q = q.where(s.c.agency_code == agency)
        if since is not None:
            q = q.where(s.c.created_at >= since)
        if before is not None:
            q = q.where(sa.or_(s.c.created_at < before[0], sa.and_(s.c.created_at == before[0], s.c.id < before[1])))
        with self._traffic_reading() as c:
            return [_record(Submission, r) for r in c.execute(q.order_by(s.c.created_at.desc(), s.c.id.desc())
                                                               .limit(limit))]

    def waiting(self) -> dict[str, tuple[int, datetime]]:
        """Per recipient with deliveries waiting (queued or published): how many, and since when the oldest
        of them has waited (its last change)."""
        dl = deliveries
        q = sa.select(dl.c.recipient_code, sa.func.count(), sa.func.min(dl.c.updated_at)).where(
            dl.c.state.in_(WAITING_STATES)).group_by(dl.c.recipient_code)
        with self._traffic_reading() as c:
            return {code: (n, oldest) for code, n, oldest in c.execute(q)}
