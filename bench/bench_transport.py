"""Transport throughput, side by side with raw aio-pika in the same run.

    .venv/bin/python bench/bench_transport.py [--messages 5000] [--size 5120] [--rounds 3] [--json out.json]

Rows (each publishes N persistent messages, then consumes and acks them all):
- raw aio-pika: one channel with publisher confirms, a plain durable classic
  queue, publishes pipelined through a window of 200 unconfirmed messages,
  consumer with prefetch 200 acking each message: the floor our transport adds to;
- axis rabbitmq: `publish_many` (same window) and a `consume(prefetch=200)` loop;
- axis rabbitmq publish() awaited one by one (what a naive caller gets);
- axis embedded: `publish_many` in batches of 500, 200 concurrent `publish()`
  calls (group commit), `publish()` awaited one by one, and a consume loop.
RabbitMQ runs in a fresh vhost made through the management API and deleted
afterwards; the embedded transport in a temporary directory. Numbers are
messages per second of wall time (median of the rounds, with the range, since
broker and client share this machine and the spread is wide).

For the raw aio-pika row and Axis's publish_many + consume on RabbitMQ, the CPU each message
costs is reported too: this process (the AMQP client) and the RabbitMQ server's process, in ms
per message published with a confirm, then consumed and acked. They are the floor under anything
that moves messages through a broker on this machine (docs/performance.md uses them).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika
from cpu_usage import cpu_seconds, rabbitmq_pids
from yarl import URL

from axis.transport import OutgoingMessage, Transport, open_transport

AMQP_URL = os.environ.get("AXIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("AXIS_TEST_AMQP_MANAGEMENT_URL", "http://127.0.0.1:15672")
WINDOW = 200
PREFETCH = 200


def management(method: str, path: str, body: object = None) -> None:
    parsed = URL(AMQP_URL)
    request = urllib.request.Request(MANAGEMENT_URL.rstrip("/") + "/api" + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    token = f"{parsed.user or 'guest'}:{parsed.password or 'guest'}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=10).read()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


class CpuPerMessage:
    """CPU ms per message of this process (the client) and of the broker, from creation to `stop()`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.broker = rabbitmq_pids()
        self._start = time.process_time(), cpu_seconds(self.broker)

    def stop(self) -> dict[str, float]:
        client = time.process_time() - self._start[0]
        broker = cpu_seconds(self.broker) - self._start[1] if self.broker else float("nan")
        return {"CPU ms/msg: client": 1000 * client / self.n, "CPU ms/msg: broker": 1000 * broker / self.n}


async def raw_aio_pika(url: str, n: int, body: bytes) -> dict[str, float]:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue("bench.raw", durable=True)
    window = asyncio.Semaphore(WINDOW)
    cpu = CpuPerMessage(n)

    async def one(i: int) -> None:
        async with window:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(i)),
                routing_key=queue.name)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    published = time.perf_counter() - started

    await channel.set_qos(prefetch_count=PREFETCH)
    done = asyncio.Event()
    count = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal count
        await message.ack()
        count += 1
        if count == n:
            done.set()

    started = time.perf_counter()
    tag = await queue.consume(on_message)
    await asyncio.wait_for(done.wait(), 600)
    consumed = time.perf_counter() - started
    costs = cpu.stop()
    await queue.cancel(tag)
    await connection.close()
    return {"publish": rate(n, published), "consume": rate(n, consumed), **costs}


async def consume_all(transport: Transport, queue: str, n: int) -> float:
    started = time.perf_counter()
    count = 0
    async with transport.consume(queue, prefetch=PREFETCH) as deliveries:
        async for delivery in deliveries:
            await delivery.ack()
            count += 1
            if count == n:
                break
    return rate(n, time.perf_counter() - started)


async def axis_rows(transport: Transport, n: int, body: bytes, *, embedded: bool) -> dict[str, float]:
    queue = "000.00.00.G22"
    await transport.declare_queue(queue)
    out: dict[str, float] = {}

    batch_size = 500 if embedded else n
    cpu = CpuPerMessage(n)
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        outcomes = await transport.publish_many(
            [OutgoingMessage(queue, body, f"m{i}") for i in range(start, min(n, start + batch_size))])
        assert all(o is None for o in outcomes), outcomes
    out["publish_many"] = rate(n, time.perf_counter() - started)
    out["consume"] = await consume_all(transport, queue, n)
    costs = cpu.stop()
    if not embedded:  # the embedded transport's broker is this process: no separate broker CPU
        out.update(costs)

    if embedded:
        window = asyncio.Semaphore(WINDOW)

        async def one(i: int) -> None:
            async with window:
                await transport.publish(queue, body, message_id=f"c{i}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        out["publish() x200 concurrent"] = rate(n, time.perf_counter() - started)
        await consume_all(transport, queue, n)

    sequential = max(100, n // 10)
    started = time.perf_counter()
    for i in range(sequential):
        await transport.publish(queue, body, message_id=f"s{i}")
    out["publish() one by one"] = rate(sequential, time.perf_counter() - started)
    await consume_all(transport, queue, sequential)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=5 * 1024, help="body size in bytes (default 5 KiB)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything; report the median")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    n, body = args.messages, os.urandom(args.size)

    runs: dict[str, dict[str, list[float]]] = {}

    def record(name: str, rows: dict[str, float]) -> None:
        for operation, value in rows.items():
            runs.setdefault(name, {}).setdefault(operation, []).append(value)

    for _ in range(args.rounds):
        vhost = f"axis-bench-{uuid.uuid4().hex[:8]}"
        management("PUT", f"/vhosts/{quote(vhost, safe='')}", {})
        management("PUT", f"/permissions/{quote(vhost, safe='')}/{URL(AMQP_URL).user or 'guest'}",
                   {"configure": ".*", "write": ".*", "read": ".*"})
        url = str(URL(AMQP_URL).with_path("/" + vhost))
        try:
            record("raw aio-pika", await raw_aio_pika(url, n, body))
            transport = await open_transport(url, name="axis-bench")
            try:
                record("axis rabbitmq", await axis_rows(transport, n, body, embedded=False))
            finally:
                await transport.close()
        finally:
            management("DELETE", f"/vhosts/{quote(vhost, safe='')}")

        with tempfile.TemporaryDirectory() as tmp:
            transport = await open_transport(f"embedded://{tmp}/bench.db")
            try:
                record("axis embedded", await axis_rows(transport, n, body, embedded=True))
            finally:
                await transport.close()

    print(f"{n} messages of {args.size} bytes, persistent, {args.rounds} rounds (median, min-max); "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, aio-pika {aio_pika.__version__}")
    print(f"{'transport':<16} {'operation':<28} {'msg/s':>8}   {'range':<15}")
    for name, rows in runs.items():
        for operation, values in rows.items():
            digits = ".2f" if operation.startswith("CPU") else ",.0f"
            print(f"{name:<16} {operation:<28} {statistics.median(values):>8{digits}}   "
                  f"{min(values):{digits}}-{max(values):{digits}}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"messages": n, "size": args.size, "runs": runs}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
