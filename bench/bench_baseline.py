"""The hand-written pipeline of issue 12: what a user would write instead of Axis, on the same RabbitMQ and
PostgreSQL, measured with the same packets as bench_hub.py so that the two compare.

    .venv/bin/pip install -e '.[bench]'     # asyncpg: this bench's only extra dependency (the `bench` extra)
    .venv/bin/python bench/bench_baseline.py --docs 3000 --latency-docs 300 --recipients 1,10 [--prefetch 10]
    .venv/bin/python bench/bench_hub.py --baseline ...    # the hub, this pipeline and the goals table in one run

The pipeline runs in a process of its own, imports nothing of Axis, and does, one message at a time:
consume (aio-pika, a consumer prefetch of `--prefetch`, 10 by default: still one message processed at a
time, but the next ones already on their way, as a user tuning it at all would set; `--prefetch 1` is the
literal one-in-flight pipeline) -> parse with lxml (no entities, no network) -> look the sender up by the
packet's From and verify with signxml against that sender's certificate (`XMLVerifier().verify(body,
x509_cert=...)`, the same call as bench_hub's raw floor) -> read the recipients from the signed part ->
insert one row with asyncpg into a fresh PostgreSQL database -> publish the packet to each recipient's
queue (persistent, publisher confirms, the K publishes awaited together) -> ack. It checks less than
Axis: no chain, no CRL, no schema, no duplicate check, no log, no receipt.

Phases, as in bench_hub: N packets are queued on a plain durable queue of a fresh vhost first, then the
pipeline starts and the clock runs from its first consume to its Nth ack (documents/s, deliveries/s =
documents/s x K); then packets are published one at a time at half that rate, and latency is from each
publish (before its confirm) to the pipeline's ack of it (p50, p99; both clocks are the machine's
monotonic clock). CPU per document over the throughput phase: the pipeline process, the RabbitMQ server
(the process listening on the broker's port: it also serves anyone else's tests running meanwhile) and
the pipeline's own PostgreSQL backend (the server's shared writers, WAL and checkpoints, are not in it).
At the end the bench checks that the database holds a row per packet and each recipient's queue a copy of
each packet.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
from cpu_usage import cpu_seconds, listening_pid, machine_busy  # bench/, the script's folder
from hub_inputs import (
    RECIPIENTS,
    SENDER,
    make_packets,
    make_pki,
    pg_database,
    raw_transport_rate,
    raw_verify_rate,
    vhost,
)

INBOX = "baseline.in"
NS = {"e": "http://www.mic.gov.vn/TBT/QCVN_102_2016"}
TABLE = """CREATE TABLE documents (
    id uuid PRIMARY KEY, sender text NOT NULL, code text NOT NULL, recipients text[] NOT NULL,
    body bytea NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"""
INSERT = "INSERT INTO documents (id, sender, code, recipients, body) VALUES ($1, $2, $3, $4, $5)"


def recipient_queue(code: str) -> str:
    return f"baseline.to.{code}"


# ---- the pipeline (its own process; nothing of Axis) ---------------------------------------------------

def pipeline_process(control: Connection, amqp: str, pg: str, certificates: dict[str, str], prefetch: int,
                     throughput_docs: int, latency_docs: int) -> None:
    asyncio.run(_pipeline(control, amqp, pg, certificates, prefetch, throughput_docs, latency_docs))


async def _pipeline(control: Connection, amqp: str, pg: str, certificates: dict[str, str], prefetch: int,
                    throughput_docs: int, latency_docs: int) -> None:
    import asyncpg
    from cryptography import x509
    from lxml import etree
    from signxml import XMLVerifier

    certs = {code: x509.load_pem_x509_certificate(pem.encode()) for code, pem in certificates.items()}
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    verifier = XMLVerifier()
    db = await asyncpg.connect(pg)
    connection = await aio_pika.connect(amqp)
    # on_return_raises: a copy the broker could not route (a recipient without a queue) fails the publish.
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=prefetch)
    inbox = await channel.declare_queue(INBOX, durable=True)
    control.send(("ready", await db.fetchval("SELECT pg_backend_pid()")))
    control.recv()  # go

    done, refused, latencies = 0, 0, []
    cpu_start, start = time.process_time(), time.perf_counter()
    async with inbox.iterator() as messages:
        async for message in messages:
            try:
                root = etree.fromstring(message.body, parser)
                sender = root.findtext("e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader/e:From/e:OrganId",
                                       namespaces=NS)
                signed = verifier.verify(message.body, x509_cert=certs[sender]).signed_xml
                header = signed.find("e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader", NS)
                if header.findtext("e:From/e:OrganId", namespaces=NS) != sender:
                    raise ValueError("the signed sender is not the one the certificate was chosen by")
                recipients = [to.text for to in header.iterfind("e:To/e:OrganId", NS)]
                code = header.findtext("e:Code/e:CodeNumber", namespaces=NS)
            except Exception:  # noqa: BLE001 - any bad packet is refused the same way; the count says how many
                await message.reject()
                refused += 1
            else:
                await db.execute(INSERT, uuid.uuid4(), sender, code, recipients, message.body)
                await asyncio.gather(*(channel.default_exchange.publish(
                    aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=uuid.uuid4().hex),
                    routing_key=recipient_queue(to)) for to in recipients))
                await message.ack()
            if done >= throughput_docs and "sent" in (message.headers or {}):
                latencies.append(time.monotonic() - float(message.headers["sent"]))  # type: ignore[arg-type]
            done += 1
            if done == throughput_docs:
                control.send(("throughput", time.perf_counter() - start, time.process_time() - cpu_start, refused))
            if done == throughput_docs + latency_docs:
                break
    control.send(("latency", latencies, refused))
    await connection.close()
    await db.close()


# ---- the bench (producer, clock, accounting) -----------------------------------------------------------

async def publish_confirmed(channel: aio_pika.abc.AbstractChannel, bodies: list[bytes], window: int = 200) -> None:
    for i in range(0, len(bodies), window):
        await asyncio.gather(*(channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=uuid.uuid4().hex),
            routing_key=INBOX) for body in bodies[i:i + window]))


async def run_baseline(amqp: str, pg: str, root: Path, packets: list[bytes], recipients: list[str],
                       latency_docs: int, prefetch: int = 10) -> dict:
    """The pipeline over `packets` (the last `latency_docs` of them paced for latency) on this vhost and
    this (fresh) database."""
    import asyncpg
    load = os.getloadavg()[0]
    db = await asyncpg.connect(pg)
    await db.execute(TABLE)
    connection = await aio_pika.connect(amqp)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(INBOX, durable=True)
    for code in recipients:
        await channel.declare_queue(recipient_queue(code), durable=True)
    throughput_packets, latency_packets = packets[:len(packets) - latency_docs], packets[len(packets) - latency_docs:]
    n = len(throughput_packets)
    await publish_confirmed(channel, throughput_packets)

    certificates = {SENDER: (root / "keys" / f"{SENDER}.cert.pem").read_text()}
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=pipeline_process, daemon=True,
                              args=(theirs, amqp, pg, certificates, prefetch, n, latency_docs))
    process.start()
    try:
        _, backend_pid = await asyncio.to_thread(_receive, ours, "ready")
        broker = [pid] if (pid := listening_pid(urlparse(amqp).port or 5672)) else []
        before = cpu_seconds(broker), cpu_seconds([backend_pid]), machine_busy()
        ours.send("go")
        _, elapsed, pipeline_cpu, refused = await asyncio.to_thread(_receive, ours, "throughput")
        broker_cpu, pg_cpu = cpu_seconds(broker) - before[0], cpu_seconds([backend_pid]) - before[1]
        busy, total = (after - b for after, b in zip(machine_busy(), before[2], strict=True))
        throughput = n / elapsed

        interval = 2.0 / throughput  # half the measured rate
        for body in latency_packets:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=uuid.uuid4().hex,
                                 headers={"sent": time.monotonic()}), routing_key=INBOX)
            await asyncio.sleep(interval)
        _, latencies, refused = await asyncio.to_thread(_receive, ours, "latency")
        await asyncio.to_thread(process.join, 30)
    finally:
        if process.is_alive():
            process.kill()
    rows = await db.fetchval("SELECT count(*) FROM documents")
    copies = {code: (await channel.declare_queue(recipient_queue(code), passive=True)).declaration_result.message_count
              for code in recipients}
    await connection.close()
    await db.close()
    expected = len(packets) - refused
    if refused or rows != expected or any(count != expected for count in copies.values()):
        raise RuntimeError(f"the pipeline lost or refused work: {refused} refused, {rows} rows and copies {copies}"
                           f" for {len(packets)} packets")
    latencies.sort()
    return {"docs": n, "recipients": len(recipients), "prefetch": prefetch, "seconds": elapsed,
            "throughput": throughput, "deliveries": throughput * len(recipients),
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "pipeline_ms": 1000 * pipeline_cpu / n, "broker_ms": 1000 * broker_cpu / n if broker else float("nan"),
            "postgres_ms": 1000 * pg_cpu / n, "machine_busy": busy / total if total else 0.0, "load": load}


def _receive(connection: Connection, expected: str, timeout: float = 600) -> tuple:
    if not connection.poll(timeout):
        raise TimeoutError(f"the pipeline sent no {expected!r} in {timeout:.0f} s")
    message = connection.recv()
    if message[0] != expected:
        raise RuntimeError(f"the pipeline sent {message[0]!r}, expected {expected!r}")
    return message


async def baseline_on_fresh_servers(root: Path, packets: list[bytes], recipients: list[str], latency_docs: int,
                                    prefetch: int) -> dict:
    """The pipeline on a fresh vhost and a fresh database, with the raw transport floor measured on the vhost."""
    db, drop_db = pg_database()
    try:
        amqp, drop_vhost = vhost()
        try:
            raw_transport = await raw_transport_rate(amqp, packets[:1000])
            row = await run_baseline(amqp, db, root, packets, recipients, latency_docs, prefetch)
        finally:
            drop_vhost()
    finally:
        drop_db()
    row["raw_transport"] = raw_transport
    return row


def describe(row: dict) -> str:
    return (f"  hand-written pipeline (prefetch {row['prefetch']}) {row['throughput']:7.0f} docs/s,"
            f" {row['deliveries']:7.0f} deliveries/s | latency p50 {row['p50_ms']:6.1f} ms, p99 {row['p99_ms']:7.1f} ms"
            f" | CPU per doc: pipeline {row['pipeline_ms']:.2f} ms, broker {row['broker_ms']:.2f} ms,"
            f" its PostgreSQL backend {row['postgres_ms']:.2f} ms | machine busy {100 * row['machine_busy']:.0f}%"
            f" | load before {row['load']:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="documents for the throughput run")
    parser.add_argument("--latency-docs", type=int, default=300)
    parser.add_argument("--recipients", default="1,10", help="comma-separated recipient counts")
    parser.add_argument("--prefetch", type=int, default=10, help="the pipeline's consumer prefetch (1: one in flight)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="axis-bench-") as tmp:
        root = Path(tmp)
        make_pki(root)
        print(f"machine: {os.cpu_count()} cores; {args.docs} documents per throughput run, "
              f"{args.latency_docs} for latency; load {os.getloadavg()}", flush=True)
        print("\n| recipients | prefetch | docs/s | deliveries/s | × raw verify | ÷ raw transport | p50 ms | p99 ms |"
              " CPU ms/doc: pipeline, broker, its PG backend | raw verify/s | raw transport msg/s | load before |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for count in [int(c) for c in args.recipients.split(",")]:
            packets = make_packets(root, args.docs + args.latency_docs, RECIPIENTS[:count])
            raw = raw_verify_rate(root, packets)
            r = await baseline_on_fresh_servers(root, packets, RECIPIENTS[:count], args.latency_docs, args.prefetch)
            print(f"| {count} | {r['prefetch']} | {r['throughput']:.0f} | {r['deliveries']:.0f}"
                  f" | {r['throughput'] / raw:.2f} | {r['deliveries'] / r['raw_transport']:.2f}"
                  f" | {r['p50_ms']:.1f} | {r['p99_ms']:.1f}"
                  f" | {r['pipeline_ms']:.2f}, {r['broker_ms']:.2f}, {r['postgres_ms']:.2f}"
                  f" | {raw:.0f} | {r['raw_transport']:.0f} | {r['load']:.2f} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
