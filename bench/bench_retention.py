"""Retention: the space 4,000 documents take, what a retention run gives back, and that the file stops growing.

Each document as the hub stores it (bench_store.accept_batch: row, body, 3 deliveries, intake receipt, the
submission's outcome with its receipt, audit entry), then delivered to its 3 recipients (3 delivery receipts,
3 state changes, 3 de-duplication keys); the clock moved 91 days on; then:

1. `run_retention` with the default policy (bodies 90 days, submissions 90, inbox keys 30): the time it takes
   and the database size before and after (SQLite: the file, WAL checkpointed, and its free pages);
2. as many documents again (SQLite reuses the free pages: the file should not grow by much);
3. retention again, 91 days later (the second lot's bodies), then `vacuum`: SQLite VACUUM / PostgreSQL
   VACUUM (ANALYZE), and the size after.

    .venv/bin/python bench/bench_retention.py                    # SQLite + PostgreSQL
    .venv/bin/python bench/bench_retention.py --only sqlite --docs 4000 --body-size 30000

PostgreSQL: a fresh database through AXIS_BENCH_PG_URL (see bench_store.py), dropped afterwards; its size is
pg_database_size (autovacuum runs on its own schedule: step 2 shows what it had reclaimed by then).
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from datetime import timedelta

import sqlalchemy as sa
from bench_store import RECIPIENTS, SENDER, accept_batch, backend_store  # bench/, the script's folder

from axis.store import Store
from axis.store.retention import RetentionPolicy, database_space, run_retention, vacuum

BATCH = 200


class Clock:
    def __init__(self) -> None:
        from axis.store.store import utcnow
        self.offset = timedelta()
        self._now = utcnow

    def __call__(self):
        return self._now() + self.offset


def fill(store: Store, prefix: str, docs: int, body: bytes, receipt: bytes) -> None:
    for start in range(0, docs, BATCH):
        accept_batch(store, prefix, start, BATCH, body, receipt)
        with store.write() as tx:
            for n in range(start, start + BATCH):
                axis_id = f"{prefix}-{n}"
                for recipient in RECIPIENTS:
                    tx.add_receipt(axis_id, "delivery", receipt, recipient, "delivered")
                    tx.transition(axis_id, recipient, "delivered")
                    tx.mark_seen("hub.delivery-receipts", f"{axis_id}:{recipient}")


def size(store: Store) -> tuple[int, int | None]:
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return database_space(store)


def mib(count: int | None) -> str:
    return "-" if count is None else f"{count / 2**20:8.1f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["sqlite", "postgresql"], help="one backend only")
    ap.add_argument("--docs", type=int, default=4000, help="documents (default 4000)")
    ap.add_argument("--body-size", type=int, default=30_000, help="signed packet size in bytes (default 30,000)")
    args = ap.parse_args()
    # Base64 of random bytes, as a signed packet's attachments are: PostgreSQL's TOAST cannot compress it away.
    body = (b"<edXMLEnvelope>" + base64.b64encode(os.urandom(args.body_size)))[: args.body_size]
    receipt = b"<axisReceipt>" + b"r" * 3000 + b"</axisReceipt>"
    for backend in [args.only] if args.only else ["sqlite", "postgresql"]:
        try:
            with backend_store(backend) as store:
                clock = Clock()
                store.clock = clock
                with store.write() as tx:
                    tx.add_agencies([(SENDER, "sender", None)] + [(r, r, SENDER) for r in RECIPIENTS])
                fill(store, "old", args.docs, body, receipt)
                full, _ = size(store)
                clock.offset = timedelta(days=91)
                began = time.perf_counter()
                report = run_retention(store, RetentionPolicy())
                seconds = time.perf_counter() - began
                after, free = size(store)
                fill(store, "new", args.docs, body, receipt)
                refilled, refree = size(store)
                clock.offset = timedelta(days=182)
                second = run_retention(store, RetentionPolicy())
                emptied, _ = size(store)
                vacuum(store)
                vacuumed, _ = size(store)
                assert store.verify_audit().ok
        except sa.exc.OperationalError as exc:
            print(f"{backend}: skipped, database unreachable ({exc.orig})", file=sys.stderr)
            continue
        print(f"\n{backend}: {args.docs} documents of {args.body_size} B, each delivered to {len(RECIPIENTS)}")
        print(f"  database after {args.docs} documents           {mib(full)}")
        print(f"  retention: {report.bodies} bodies ({mib(report.body_bytes).strip()}), {report.submissions} "
              f"submissions, {report.inbox} inbox keys in {seconds:.2f} s ({report.bodies / seconds:.0f} bodies/s)")
        print(f"  database after retention             {mib(after)}  (free pages {mib(free).strip()})")
        print(f"  after {args.docs} more documents          {mib(refilled)}  (free pages {mib(refree).strip()})")
        print(f"  retention again (the new bodies): {second.bodies}    {mib(emptied)}")
        print(f"  then vacuum                          {mib(vacuumed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
