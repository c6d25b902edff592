"""What bench_hub.py and bench_baseline.py share, so that their figures compare: the PKI and the signed
5 KB packets, a fresh RabbitMQ vhost and a fresh PostgreSQL database per run, and the raw floors (signxml
verification on one core, the transport's publish+consume) every figure is divided by.
"""
from __future__ import annotations

import base64
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signxml import XMLVerifier

from axis import wire
from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document
from axis.transport import OutgoingMessage, open_transport
from axis.trust import Signer, keys, pki

SENDER = "000.00.00.G22"
RECIPIENTS = [f"000.00.{i:02d}.H41" for i in range(1, 11)]
AMQP = os.environ.get("AXIS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get("AXIS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def make_pki(root: Path) -> None:
    pki.init_ca(root / "ca")
    for code in [SENDER, *RECIPIENTS, wire.HUB_IDENTITY]:
        pki.issue(code, root / "ca", root / "keys")


def make_packets(root: Path, count: int, recipients: list[str]) -> list[bytes]:
    signer = Signer.from_files(root / "keys" / f"{SENDER}.key.pem", root / "keys" / f"{SENDER}.cert.pem")
    filler = os.urandom(1100)  # base64 → ~1.5 KB, so the signed packet is ~5 KB
    packets = []
    run = uuid.uuid4().hex[:8]
    for i in range(count):
        document = new_document(
            Organization(SENDER, organ_name="Văn phòng Chính phủ"), [Organization(c) for c in recipients],
            code_number=f"{run}{i}", code_notation="VPCP-TTĐT", subject="Đo thông lượng",
            signer=SignerInfo(full_name="Nguyễn Văn A"),
            attachments=[Attachment(content_id="cid:1", attachment_name="a.bin",
                                    content_type="application/octet-stream", data=filler)])
        packets.append(signer.sign(packet_to_bytes(document)))
    return packets


def raw_verify_rate(root: Path, packets: list[bytes], seconds: float = 3.0) -> float:
    leaf = keys.load_certificate(root / "keys" / f"{SENDER}.cert.pem")
    verifier = XMLVerifier()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        verifier.verify(packets[done % len(packets)], x509_cert=leaf)
        done += 1
    return done / (time.perf_counter() - start)


async def raw_transport_rate(url: str, packets: list[bytes]) -> float:
    transport = await open_transport(url)
    queue = f"bench.raw.{uuid.uuid4().hex[:8]}"
    await transport.declare_queue(queue)
    start = time.perf_counter()
    for i in range(0, len(packets), 500):
        await transport.publish_many([OutgoingMessage(queue=queue, body=p, message_id=uuid.uuid4().hex)
                                      for p in packets[i:i + 500]])
    got = 0
    async with transport.consume(queue, prefetch=300) as deliveries:
        async for delivery in deliveries:
            await delivery.ack()
            got += 1
            if got == len(packets):
                break
    rate = len(packets) / (time.perf_counter() - start)
    await transport.close()
    return rate


def pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh database on the PostgreSQL server: (its URL, drop)."""
    import psycopg
    name = f"axis_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return PG.rsplit("/", 1)[0] + f"/{name}", drop


def vhost() -> tuple[str, Callable[[], None]]:
    """A fresh vhost on the RabbitMQ server, made through its management API: (its AMQP URL, delete)."""
    name = f"axis-bench-{uuid.uuid4().hex[:8]}"
    auth = "Basic " + base64.b64encode(b"guest:guest").decode()

    def call(method: str, path: str, body: bytes | None = None) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:15672/api/{path}", data=body, method=method,
                                         headers={"Authorization": auth, "content-type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
    call("PUT", f"vhosts/{name}")
    call("PUT", f"permissions/{name}/guest", b'{"configure":".*","write":".*","read":".*"}')
    return AMQP.rstrip("/") + f"/{name}", lambda: call("DELETE", f"vhosts/{name}")


def server_cpu(db_url: str, broker_url: str) -> dict[str, dict[int, float]]:
    """CPU seconds so far of the servers a run uses: the RabbitMQ process listening on the broker URL's port
    and the PostgreSQL backends connected to the run's own database (by pid). Two snapshots' difference
    (`server_cpu_spent`) is their CPU in between; a backend that exits in between takes its CPU with it,
    and the database server's shared writers (WAL, checkpoints) are in neither."""
    from urllib.parse import urlparse

    from cpu_usage import cpu_seconds, listening_pid
    snapshot: dict[str, dict[int, float]] = {"broker": {}, "postgres": {}}
    broker = urlparse(broker_url)
    if broker.scheme.startswith("amqp") and (pid := listening_pid(broker.port or 5672)):
        snapshot["broker"][pid] = cpu_seconds([pid])
    if db_url.startswith("postgres"):
        import psycopg
        with psycopg.connect(PG, autocommit=True) as conn:
            pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                                   (db_url.rsplit("/", 1)[1],))]
        snapshot["postgres"] = {pid: cpu_seconds([pid]) for pid in pids}
    return snapshot


def server_cpu_spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each server spent between two `server_cpu` snapshots (NaN where it was not measured)."""
    return {name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items())
            if after[name] else float("nan") for name in after}
