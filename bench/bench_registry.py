"""The registry at a country's scale: importing 100,000 agencies, and intake with them registered.

    python bench/bench_registry.py                          # embedded and RabbitMQ+PostgreSQL
    python bench/bench_registry.py --config embedded --agencies 100000 --docs 2000 --rounds 2

What is measured:
- import: `axis agency import CATALOGUE.csv` run as an operator runs it (its own process, sealing its
  audit entries with the axis key), on a fresh database, for a catalogue of --agencies codes in three
  levels written in a shuffled order (children before their parents as often as after); then the same
  catalogue again (nothing to add: the idempotent re-run). Rate = agencies / wall-clock seconds, process
  start-up included; the audit log's rows and size after it.
- intake with the registry full vs nearly empty: bench/bench_hub.py's throughput run (its packets, its
  hub settings, its clock) on a store holding only the sender and the recipients (11 agencies) and on a
  store holding them plus the imported catalogue. The two alternate for --rounds rounds (the machine is
  shared: what else runs moves both alike) and the medians are compared; the goal is a ratio of at
  least 0.90. CPU per document (hub process + its verification workers) is printed next to it: it does
  not move with the machine's other load the way wall-clock throughput does.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from bench_hub import RECIPIENTS, configurations, make_packets, make_pki, run_config

from axis.store import open_store

AXIS = Path(sys.executable).with_name("axis")


def catalogue_codes(count: int) -> list[tuple[str, str, str | None]]:
    """(code, name, parent) for `count` QCVN 102 codes in three levels, parents before children; group letters
    A-F, so none is the bench's sender (G22) or recipients (H41)."""
    tops = [f"000.00.00.{letter}{n:02d}" for letter in "ABCDEF" for n in range(1, 100)]
    rows: list[tuple[str, str, str | None]] = [(code, f"Cơ quan {code}", None) for code in tops]
    seconds = [(f"000.00.{m:02d}.{top[-3:]}", top) for top in tops for m in range(1, 14)]
    rows += [(code, f"Đơn vị {code}", parent) for code, parent in seconds]
    rows += [(f"000.{k:02d}.{code[7:]}", f"Phòng {k} của {code}", code) for code, _ in seconds for k in range(1, 13)]
    if count > len(rows):
        raise SystemExit(f"at most {len(rows)} agencies")
    return rows[:count]


def write_catalogue(path: Path, count: int) -> None:
    rows = catalogue_codes(count)
    random.Random(11).shuffle(rows)
    with path.open("w", encoding="utf-8") as out:
        out.write("code,name,parent\n")
        out.writelines(f"{code},{name},{parent or ''}\n" for code, name, parent in rows)


def import_catalogue(catalogue: Path, db: str, root: Path) -> tuple[float, str]:
    env = {**os.environ, "AXIS_DATA": str(root / "data"), "AXIS_KEY": str(root / "keys" / "AXIS.key.pem"),
           "AXIS_CERT": str(root / "keys" / "AXIS.cert.pem"), "AXIS_SIGNER": str(root / "no-signer.sock")}
    start = time.perf_counter()
    done = subprocess.run([str(AXIS), "agency", "import", str(catalogue), "--db", db], env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"axis agency import failed ({done.returncode}): {done.stderr or done.stdout}")
    return elapsed, done.stdout.strip()


def checkpoint(db: str, root: Path) -> float:
    """Seconds to sign the first checkpoint over the import's entries, as a running hub does within
    AXIS_CHECKPOINT_SECONDS of them: done before the throughput clock, so that it measures intake, not the
    one-off checkpoint of 10⁵ entries (which this times on its own)."""
    from axis.audit.checkpoints import CheckpointWriter
    from axis.signer import LocalSigner

    store = open_store(db, migrate=False)
    try:
        start = time.perf_counter()
        CheckpointWriter(store, LocalSigner.from_files(root / "keys" / "AXIS.key.pem",
                                                       root / "keys" / "AXIS.cert.pem")).write()
        return time.perf_counter() - start
    finally:
        store.close()


def audit_size(db: str) -> tuple[int, int]:
    """(rows, bytes) of the audit log: bytes of its rows' text on SQLite, of the table with its indexes on
    PostgreSQL."""
    store = open_store(db, migrate=False)
    try:
        with store.engine.connect() as c:
            rows = c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
            if store.dialect == "postgresql":
                size = c.execute(sa.text("SELECT pg_total_relation_size('audit_log')")).scalar_one()
            else:
                size = c.execute(sa.text("SELECT sum(length(data) + length(hash) + length(prev_hash) + "
                                         "coalesce(length(bound), 0) + coalesce(length(seal), 0) + "
                                         "length(action) + coalesce(length(subject), 0)) FROM audit_log")
                                 ).scalar_one()
    finally:
        store.close()
    return int(rows), int(size or 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agencies", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=2000, help="documents per throughput run")
    parser.add_argument("--latency-docs", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="throughput runs per registry size, alternating")
    parser.add_argument("--config", choices=["embedded", "rabbitmq", "all"], default="all")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the hub's stall reports on a loaded machine would bury the figures
    recipients = RECIPIENTS[:args.recipients]
    with tempfile.TemporaryDirectory(prefix="axis-bench-registry-") as tmp:
        root = Path(tmp)
        make_pki(root)
        catalogue = root / "catalogue.csv"
        write_catalogue(catalogue, args.agencies)
        packets = make_packets(root, args.docs + args.latency_docs, recipients)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.agencies} agencies; "
              f"{args.docs} documents to {len(recipients)} recipient(s) per throughput run", flush=True)
        rows = []
        for name, make in configurations(args.config, root):
            runs: dict[str, list[float]] = {"11": [], f"{args.agencies + 11}": []}
            cpu: dict[str, list[float]] = {size_name: [] for size_name in runs}
            load = os.getloadavg()[0]
            db, broker, cleanup = make()
            try:
                seconds, said = import_catalogue(catalogue, db, root)
                again, said_again = import_catalogue(catalogue, db, root)
                entries, size = audit_size(db)
                signing = checkpoint(db, root)
            finally:
                cleanup()
            print(f"  {name}: import {args.agencies} in {seconds:.1f} s = {args.agencies / seconds:.0f} agencies/s "
                  f"({said}); again {again:.1f} s ({said_again}); audit log {entries} entries, "
                  f"{size / 1e6:.1f} MB, its first checkpoint {signing:.1f} s; load before {load:.2f}", flush=True)
            for _ in range(args.rounds):
                for size_name in runs:
                    db, broker, cleanup = make()
                    try:
                        if size_name != "11":
                            import_catalogue(catalogue, db, root)
                            checkpoint(db, root)
                        row = await run_config(name, db, broker, root, packets, recipients, args.latency_docs)
                    finally:
                        cleanup()
                    runs[size_name].append(row["throughput"])
                    cpu[size_name].append(row["main_ms"] + row["workers_ms"])
                    print(f"    {size_name:>7} agencies registered: {row['throughput']:6.0f} docs/s, CPU "
                          f"{row['main_ms']:.2f} + {row['workers_ms']:.2f} ms/doc (hub + workers) "
                          f"(p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, load before {row['load']:.2f},"
                          f" outcomes {row['outcomes']})", flush=True)
            small, big = (statistics.median(v) for v in runs.values())
            cpu_small, cpu_big = (statistics.median(v) for v in cpu.values())
            rows.append((name, args.agencies, seconds, again, entries, size, small, big, cpu_small, cpu_big, load))
        print("\n| config | agencies | import s | agencies/s | re-run s | audit entries | audit MB |"
              " docs/s with 11 | docs/s with 10⁵ | ratio | CPU ms/doc with 11 | with 10⁵ | load before |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, count, seconds, again, entries, size, small, big, cpu_small, cpu_big, load in rows:
            print(f"| {name} | {count} | {seconds:.1f} | {count / seconds:.0f} | {again:.1f} | {entries} |"
                  f" {size / 1e6:.1f} | {small:.0f} | {big:.0f} | {big / small:.3f} | {cpu_small:.2f} |"
                  f" {cpu_big:.2f} | {load:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
