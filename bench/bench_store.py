"""Store throughput: documents accepted per second, as the hub writes them.

One accepted document = document row + exact body + 3 deliveries + intake
receipt + the submission's outcome + audit entry, all in the unit of work that
accepts it. Documents are grouped 1, 50 or 200 per transaction (the hub batches
what its intake queue hands it).

    .venv/bin/python bench/bench_store.py                 # SQLite + PostgreSQL
    .venv/bin/python bench/bench_store.py --only sqlite --docs 2000 --body-size 16384

PostgreSQL: a fresh database axis_bench_<random> is created through
AXIS_BENCH_PG_URL (default: AXIS_TEST_PG_URL, then
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards.
Durability settings are the store's own (SQLite synchronous=FULL, PostgreSQL
synchronous_commit as configured on the server); nothing is relaxed for speed.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from axis.store import Decision, NewAuditEntry, NewDocument, NewReceipt, Store, open_store

SENDER = "000.00.00.G22"
RECIPIENTS = ("000.00.00.H01", "000.00.00.H02", "000.00.00.H03")
PG_URL = os.environ.get("AXIS_BENCH_PG_URL",
                        os.environ.get("AXIS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))


@dataclass
class Result:
    backend: str
    batch: int
    threads: int
    docs: int
    seconds: float

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds

    @property
    def ms_per_tx(self) -> float:
        return 1000 * self.seconds / (self.docs / self.batch) * self.threads


def accept_batch(store: Store, prefix: str, start: int, batch: int, body: bytes, receipt: bytes) -> None:
    docs = [NewDocument(axis_id=f"{prefix}-{n}", sender_code=SENDER, document_id=f"{prefix}-{n}/VPCP",
                        priority=n % 4) for n in range(start, start + batch)]
    with store.write() as tx:
        results = tx.insert_documents([(d, body) for d in docs])
        accepted = [r.axis_id for r in results if not isinstance(r, Exception)]
        tx.insert_deliveries_many({a: RECIPIENTS for a in accepted})
        tx.add_receipts([NewReceipt(a, "intake", receipt, code="accepted") for a in accepted])
        tx.decide_submissions([Decision(f"s-{a}", SENDER, "accepted", a, None, None, receipt) for a in accepted])
        tx.audit_many([NewAuditEntry("hub", "document.accepted", a, {"recipients": list(RECIPIENTS)})
                       for a in accepted])


def run_accept(store: Store, backend: str, batch: int, docs: int, threads: int, body: bytes,
               receipt: bytes) -> Result:
    per_thread = docs // threads // batch * batch
    barrier = threading.Barrier(threads + 1)
    tag = secrets.token_hex(3)

    def worker(t: int) -> None:
        barrier.wait()
        for start in range(0, per_thread, batch):
            accept_batch(store, f"b{batch}t{t}{tag}", start, batch, body, receipt)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    began = time.perf_counter()
    for th in pool:
        th.join()
    return Result(backend, batch, threads, per_thread * threads, time.perf_counter() - began)


@contextmanager
def backend_store(backend: str) -> Iterator[Store]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="axis-bench-") as tmp:
            store = open_store(str(Path(tmp) / "axis.db"), create=True)
            try:
                yield store
            finally:
                store.close()
        return
    name = f"axis_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(sa.make_url(PG_URL).set(drivername="postgresql+psycopg"),
                             isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        store = open_store(sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
        try:
            yield store
        finally:
            store.close()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["sqlite", "postgresql"], help="one backend only")
    ap.add_argument("--docs", type=int, default=2000, help="documents per batched run (default 2000)")
    ap.add_argument("--docs-single", type=int, default=300,
                    help="documents for the batch-of-1 run (one commit each; default 300)")
    ap.add_argument("--body-size", type=int, default=8192, help="signed packet size in bytes (default 8 KiB)")
    ap.add_argument("--pg-threads", type=int, default=4, help="extra PostgreSQL run with N writer threads")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()

    body = (b"<edXMLEnvelope>" + b"x" * args.body_size)[: args.body_size]
    receipt = b"<axisReceipt>" + b"r" * 1500 + b"</axisReceipt>"
    backends = [args.only] if args.only else ["sqlite", "postgresql"]
    results: list[Result] = []
    for backend in backends:
        try:
            with backend_store(backend) as store:
                with store.write() as tx:
                    tx.add_agencies([(SENDER, "sender", None)] + [(r, r, SENDER) for r in RECIPIENTS])
                accept_batch(store, "warmup", 0, 20, body, receipt)
                for batch in (1, 50, 200):
                    n = args.docs_single if batch == 1 else args.docs
                    results.append(run_accept(store, backend, batch, n, 1, body, receipt))
                    print(f"  {backend:<10} batch {batch:>3}: {results[-1].docs_per_s:8.0f} docs/s", file=sys.stderr)
                if backend == "postgresql" and args.pg_threads > 1:
                    for batch in (1, 50):
                        n = args.docs_single * args.pg_threads if batch == 1 else args.docs
                        results.append(run_accept(store, backend, batch, n, args.pg_threads, body, receipt))
                report = store.verify_audit()
                assert report.ok, report
        except sa.exc.OperationalError as exc:
            print(f"{backend}: skipped, database unreachable ({exc.orig})", file=sys.stderr)

    print(f"\nStore accept throughput: document + {args.body_size} B body + {len(RECIPIENTS)} deliveries + "
          "intake receipt + the submission's outcome + audit entry per document")
    print(f"{'backend':<11}{'docs/tx':>8}{'threads':>8}{'docs':>7}{'seconds':>9}{'docs/s':>9}{'ms/tx':>8}")
    for r in results:
        print(f"{r.backend:<11}{r.batch:>8}{r.threads:>8}{r.docs:>7}{r.seconds:>9.2f}{r.docs_per_s:>9.0f}"
              f"{r.ms_per_tx:>8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "accept": [{**asdict(r), "docs_per_s": r.docs_per_s} for r in results],
            "body_size": args.body_size}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
