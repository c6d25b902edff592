"""Retention: what the hub removes once nobody needs it, each removal recorded in the audit log.

Three things grow with the traffic and are kept only for a while (docs/retention.md says why each is safe):

- document bodies: once every delivery of the document is `delivered` or beyond, or can never happen
  (`refused`, `recalled`, `failed`), and the document was received more than `bodies_days` ago. The
  sender and every recipient hold the signed packet; the axis keeps its digest, its seal, every receipt
  and the log.
- decided submissions, `submissions_days` after the decision: the agency loses its outcome lookup (its
  answer was the intake receipt it got back); the document and its receipts stay.
- the consumers' de-duplication keys (`inbox`), `inbox_days` after they were seen: far beyond any
  redelivery (the broker redelivers within minutes; an adapter re-sends a receipt after a crash).

Every row removed is named, in the unit of work that deletes it, by an audit entry (action
`retention-removed`) about the row's document: `data.removed` lists `[table, key, digest of the row
removed]`, and the entry binds `[table, key, null]`. `axis audit verify` accepts a missing evidence row
only where such an entry removed it, with the digest the log had recorded for it (axis/audit/verify.py).
Inbox keys are not evidence: one entry counts them by consumer.

A count of days of 0 keeps that table for ever. Removing frees pages that the database reuses (the file
stops growing); `vacuum` gives them back to the file system.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from axis.store.audit import format_at
from axis.store.store import Store

log = logging.getLogger("axis.retention")

BATCH = 200  # rows removed per unit of work: short transactions, so intake never waits long for the lock


@dataclass(frozen=True)
class RetentionPolicy:
    bodies_days: float = 90
    submissions_days: float = 90
    inbox_days: float = 30
    every: float = 3600.0   # seconds between two runs of the hub's task

    def cutoff(self, days: float, now: datetime) -> datetime | None:
        return now - timedelta(days=days) if days > 0 else None


@dataclass
class RetentionReport:
    dry_run: bool
    bodies: int = 0
    body_bytes: int = 0
    submissions: int = 0
    inbox: int = 0
    kept_differing: list[str] = field(default_factory=list)  # bodies without their document's digest: kept
    database_bytes: int | None = None
    free_bytes: int | None = None   # SQLite: bytes in free pages, which later writes reuse (None: PostgreSQL)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def run_retention(store: Store, policy: RetentionPolicy, *, actor: str = "hub", dry_run: bool = False,
                  batch: int = BATCH) -> RetentionReport:
    """Remove (or, `dry_run`, count) what `policy` no longer keeps, as of the store's clock."""
    now = store.clock()
    bodies_before = policy.cutoff(policy.bodies_days, now)
    submissions_before = policy.cutoff(policy.submissions_days, now)
    inbox_before = policy.cutoff(policy.inbox_days, now)
    report = RetentionReport(dry_run=dry_run)
    if dry_run:
        counts = store.removable_counts(bodies_before, submissions_before, inbox_before)
        report.bodies, report.body_bytes = counts["bodies"], counts["body_bytes"]
        report.submissions, report.inbox = counts["submissions"], counts["inbox"]
    else:
        if bodies_before is not None:
            _remove_bodies(store, bodies_before, policy.bodies_days, actor, batch, report)
        if submissions_before is not None:
            why = {"retention": "submissions", "days": policy.submissions_days, "before": format_at(submissions_before)}
            while True:
                with store.write() as tx:
                    ids = tx.removable_submissions(submissions_before, batch)
                    removed = tx.remove_submissions(ids, submissions_before, actor, why) if ids else 0
                report.submissions += removed
                if len(ids) < batch or not removed:
                    break
        if inbox_before is not None:
            why = {"retention": "inbox", "days": policy.inbox_days, "before": format_at(inbox_before)}
            with store.write() as tx:
                report.inbox = sum(tx.forget_seen(inbox_before, actor, why).values())
    report.database_bytes, report.free_bytes = database_space(store)
    if report.bodies or report.submissions or report.inbox:
        log.info("retention %s %d bodies (%d bytes), %d submissions, %d inbox keys",
                 "would remove" if dry_run else "removed", report.bodies, report.body_bytes, report.submissions,
                 report.inbox)
    return report


def _remove_bodies(store: Store, before: datetime, days: float, actor: str, batch: int,
                   report: RetentionReport) -> None:
    why = {"retention": "bodies", "days": days, "before": format_at(before)}
    while True:
        with store.write() as tx:
            candidates = dict(tx.removable_bodies(before, batch))
            removed, differing = tx.remove_bodies(candidates, before, actor, why) if candidates else ({}, [])
        report.bodies += len(removed)
        report.body_bytes += sum(removed.values())
        for axis_id in differing:
            if axis_id not in report.kept_differing:
                report.kept_differing.append(axis_id)
                log.error("the body of %s does not have its document's digest: kept (evidence of tampering; "
                          "run `axis audit verify`)", axis_id)
        if len(candidates) < batch or not removed:
            return


async def retain_periodically(store: Store, policy: RetentionPolicy) -> None:
    """The hub's task: a run at start, then every `policy.every` seconds; a failed run is logged and the next
    one tries again (what it did not remove is still there)."""
    while True:
        try:
            await asyncio.to_thread(run_retention, store, policy)
        except Exception:
            log.exception("retention failed; it runs again in %.0f s", policy.every)
        await asyncio.sleep(policy.every)


def database_space(store: Store) -> tuple[int, int | None]:
    """(the database's size in bytes, bytes in free pages: SQLite only, None on PostgreSQL)."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()), None
        page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
        return page * pages, page * free


def vacuum(store: Store) -> None:
    """Give free space back to the file system. SQLite: VACUUM rewrites the whole file under the write lock (it
    needs as much free disk again), then the WAL is truncated. PostgreSQL: VACUUM (ANALYZE) of the tables
    retention deletes from, which makes their space reusable at once and returns the pages at their end."""
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM (ANALYZE) document_bodies, submissions, inbox"))
        return
    raw = store.engine.raw_connection()  # outside any transaction (the store's connections BEGIN themselves)
    try:
        cursor = raw.cursor()
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        raw.close()
