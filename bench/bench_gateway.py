"""The gateway end to end, driven over HTTP from another process, beside bench_hub.py in the same run.

    python bench/bench_gateway.py                       # embedded and RabbitMQ+PostgreSQL, 1 and 10 recipients
    python bench/bench_gateway.py --config embedded --recipients 1 --docs 2000 --concurrency 64

For each configuration and recipient count, on a fresh store and broker each time (a new SQLite file and
embedded transport, or a new PostgreSQL database and RabbitMQ vhost):

1. bench_hub.py's measurement (`bench_hub.run_config`): submissions queued on `axis.intake` first, the
   hub's documents/s until every outcome row is decided and every delivery waits in the store, and its
   latency at half that rate;
2. the same packets through a real gateway: the hub runs in this process (with its worker processes,
   as `axis serve` runs it), the gateway in a process of its own (`axis gateway`), and a load generator
   in a third process (a minimal HTTP/1.1 client; `--client httpx` for httpx.AsyncClient) POSTs
   `/v1/packets?wait=30` with a Bearer credential of the sender's agency, `--concurrency` requests in
   flight at all times. Each answer is the outcome (200, accepted); documents/s = packets / seconds from
   the first request to the last answer (after `--warmup` packets that are not counted), and every
   outcome row and delivery is checked in the store afterwards. p50 and p99 are those requests' times
   (under full load, so they include queueing behind the other requests in flight);
3. the gateway's latency at half load: `--latency-docs` packets sent at half the gateway's measured
   documents/s, one request each as its time comes (as bench_hub's latency phase does at half the
   hub's): p50, p99;
4. the ratio gateway documents/s ÷ hub documents/s (issue 9 asks for ≥ 0.75; `--rounds N` measures each row
   N times, hub and gateway in turn, and gives the median), and CPU ms per
   document in each process (hub, its workers, the gateway, the load generator) and how busy the
   machine was.

Everything shares the machine: the load generator's CPU is CPU the hub and the gateway do not get
(httpx cost ~1.5-2 ms per request here, the minimal client ~0.07 ms). `--gateways N` starts N gateway
processes and shares the connections between them.
The gateway's rate limit is raised for the bench (`AXIS_GATEWAY_RATE`, `AXIS_GATEWAY_BURST`): one
agency's credential sends every packet.

`--gateway-command` runs another gateway command (`{port}` is replaced), e.g. to compare builds.
`python bench/bench_gateway.py loadgen --help` is the load generator alone, for use against any gateway.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_hub  # bench/, the script's folder
from bench_hub import SENDER
from cpu_usage import children, cpu_seconds, machine_busy

from axis import wire
from axis.hub import Hub
from axis.signer import SignerClient
from axis.transport import open_transport

PYTHON = sys.executable
AXIS = str(Path(PYTHON).with_name("axis"))


# ------------------------------------------------------------------ the packets file the load generator reads

def write_packets(path: Path, packets: list[bytes]) -> None:
    with path.open("wb") as f:
        for body in packets:
            f.write(struct.pack(">I", len(body)))
            f.write(body)


def read_packets(path: Path) -> list[bytes]:
    data, packets, at = path.read_bytes(), [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        packets.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return packets


# ------------------------------------------------------------------ the load generator (its own process)

class RawClient:
    """A minimal HTTP/1.1 client (keep-alive connections, Content-Length or chunked answers), for load.

    httpx costs ~1.5-2 ms of CPU per request here, as much as the gateway itself; on a 2-core machine
    that CPU is taken from the gateway and the hub it measures. This client costs a tenth of it.
    """

    def __init__(self, url: str, headers: dict[str, str], max_connections: int) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{self.host}:{self.port}", **headers}.items())
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        async with self.slots:
            reader, writer = self.free.pop() if self.free else await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(f"POST {self.path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
                             .encode("latin-1") + body)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                fields = {k.strip().lower(): v.strip()
                          for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while size := int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                        data += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                else:
                    data = await reader.readexactly(int(fields.get("content-length", "0")))
            except BaseException:
                writer.close()
                raise
            if fields.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.free.append((reader, writer))
            return status, data

    async def aclose(self) -> None:
        for _, writer in self.free:
            writer.close()
        self.free.clear()


async def loadgen(args: argparse.Namespace) -> dict:
    """POST each packet to /v1/packets?wait=…; at fixed concurrency, or paced at --rate per second."""
    import httpx

    packets = read_packets(Path(args.packets))
    token = Path(args.credential_file).read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    urls = [f"{url.rstrip('/')}/v1/packets?wait={args.wait:g}" for url in args.url]
    if args.client == "raw":  # one client per gateway, the connections shared out
        share = 100_000 if args.rate else max(1, -(-args.concurrency // len(urls)))
        clients: list = [RawClient(url, headers, max_connections=share) for url in urls]
    else:
        per_client = max(1, args.connections_per_client)
        clients = [httpx.AsyncClient(base_url=urls[k % len(urls)], timeout=args.wait + 30, headers=headers,
                                     limits=httpx.Limits(max_connections=per_client,
                                                         max_keepalive_connections=per_client))
                   for k in range(max(len(urls), -(-args.concurrency // per_client)))]
    statuses: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    errors: list[str] = []

    async def send(i: int, body: bytes) -> tuple[int, bytes]:
        client = clients[i % len(clients)]
        if isinstance(client, RawClient):
            return await asyncio.wait_for(client.post(body), args.wait + 30)
        response = await client.post("", content=body)
        return response.status_code, response.content

    async def post(i: int, body: bytes) -> float:
        started = time.perf_counter()
        try:
            status, data = await send(i, body)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            statuses["error"] = statuses.get("error", 0) + 1
            return time.perf_counter() - started
        elapsed = time.perf_counter() - started
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            outcome = json.loads(data)["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        elif len(errors) < 20:
            errors.append(f"{status}: {data[:200]!r}")
        return elapsed

    async def closed_loop(bodies: list[bytes]) -> list[float]:
        latencies: list[float] = []
        feed = iter(enumerate(bodies))

        async def worker() -> None:
            for i, body in feed:
                latencies.append(await post(i, body))
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return latencies

    async def paced(bodies: list[bytes], rate: float) -> list[float]:
        tasks = []
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i, body)))
        return list(await asyncio.gather(*tasks))

    warmup, timed = packets[:args.warmup], packets[args.warmup:]
    if warmup:
        await closed_loop(warmup)
    statuses.clear()
    outcomes.clear()
    cpu_before = time.process_time()
    start = time.perf_counter()
    latencies = await (paced(timed, args.rate) if args.rate else closed_loop(timed))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    for client in clients:
        await client.aclose()
    return {"requests": len(timed), "seconds": elapsed, "latencies": sorted(latencies), "statuses": statuses,
            "outcomes": outcomes, "errors": errors[:20], "cpu_seconds": cpu}


def loadgen_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_gateway.py loadgen",
                                     description="POST signed packets to a gateway; prints a JSON summary.")
    parser.add_argument("--url", required=True, action="append",
                        help="a gateway, e.g. http://127.0.0.1:8080 (repeat it: requests go round the gateways)")
    parser.add_argument("--credential-file", required=True)
    parser.add_argument("--packets", required=True, help="a file of packets, each a 4-byte big-endian length "
                                                         "and the signed bytes")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (closed loop)")
    parser.add_argument("--rate", type=float, default=0.0, help="instead: one request every 1/RATE s (open loop)")
    parser.add_argument("--warmup", type=int, default=0, help="packets sent first and not counted")
    parser.add_argument("--wait", type=float, default=30.0, help="the ?wait= of each request")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="raw: a minimal HTTP/1.1 client (default, cheap); httpx: httpx.AsyncClient")
    parser.add_argument("--connections-per-client", type=int, default=16,
                        help="httpx: connections per AsyncClient (the load is spread over several)")
    return parser


# ------------------------------------------------------------------ the gateway (its own process)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_environment(root: Path, db: str, broker: str, intake_at: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXIS_")}
    env.update({
        "AXIS_DATA": str(root / "data"), "AXIS_DB": db, "AXIS_BROKER": broker,
        "AXIS_TRUST": str(root / "ca" / "ca.pem"), "AXIS_CRL": str(root / "ca" / "crl.pem"),
        "AXIS_KEY": str(root / "keys" / "AXIS.key.pem"), "AXIS_CERT": str(root / "keys" / "AXIS.cert.pem"),
        # One agency's credential sends everything: the per-credential limit would measure itself.
        "AXIS_GATEWAY_RATE": "1000000", "AXIS_GATEWAY_BURST": "1000000",
        "AXIS_INTAKE_AT": intake_at,
    })
    if os.environ.get("AXIS_BENCH_GATEWAY_LOG"):  # else the gateway's default level, access log included
        env["AXIS_LOG"] = os.environ["AXIS_BENCH_GATEWAY_LOG"]
    return env


async def start_gateway(command: str, env: dict[str, str], port: int, log: Path) -> asyncio.subprocess.Process:
    import httpx

    argv = shlex.split(command.format(port=port, python=PYTHON, axis=AXIS))
    out = log.open("ab")
    process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=out,
                                                   start_new_session=True)
    deadline = time.perf_counter() + 60
    async with httpx.AsyncClient() as client:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the gateway exited ({process.returncode}): {log.read_text()[-2000:]}")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the gateway did not become ready in 60 s: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.2)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


# ------------------------------------------------------------------ one configuration through the gateway

async def run_gateway(name: str, db_url: str, broker_url: str, root: Path, packets: list[bytes],
                      recipients: list[str], *, warmup: int, paced_docs: int, paced_rate: float,
                      concurrency: int, command: str, workdir: Path, client: str = "raw",
                      gateways: int = 1, intake_at: str = "gateway") -> dict:
    load = os.getloadavg()[0]
    store = bench_hub.prepare_store(db_url, root, [SENDER, *recipients])
    token = "axis_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    credential_id = "cred_" + secrets.token_hex(6)
    with store.write() as tx:
        tx.add_credential(credential_id, "agency", SENDER, hashlib.sha256(token.encode()).hexdigest(),
                          label="bench")
    credential_file = workdir / f"{credential_id}.credential"
    credential_file.write_text(token)
    credential_file.chmod(0o600)
    transport = await open_transport(broker_url)
    await transport.declare_queue(wire.INTAKE_QUEUE)
    signer = bench_hub.start_signer(root)
    hub = Hub(bench_hub.hub_settings(root), store, transport, signer=SignerClient(signer.socket))
    await hub.start()
    workers = bench_hub._worker_pids(hub)
    ports = [free_port() for _ in range(gateways)]
    started = []
    try:
        for port in ports:  # the store exists (prepare_store), as `axis gateway` requires
            started.append(await start_gateway(command, gateway_environment(root, db_url, broker_url, intake_at),
                                               port,
                                               workdir / f"gateway-{port}.log"))
        throughput_packets = packets[:len(packets) - paced_docs]
        timed = len(throughput_packets) - warmup
        packets_file = workdir / "throughput.packets"
        write_packets(packets_file, throughput_packets)
        common = [*(a for port in ports for a in ("--url", f"http://127.0.0.1:{port}")),
                  "--credential-file", str(credential_file), "--client", client]
        # The clock of the throughput run is the load generator's; CPU is read around it here.
        process = await asyncio.create_subprocess_exec(
            PYTHON, __file__, "loadgen", *common, "--packets", str(packets_file), "--warmup", str(warmup),
            "--concurrency", str(concurrency), stdout=asyncio.subprocess.PIPE)
        # CPU from the start of the load generator (its warm-up included in the CPU, not in the clock):
        # a slight overstatement per document, the same for every process.
        # A gateway's children are its intake workers and its own signer, whose signing processes are its
        # children in turn (`axis gateway` starts one, as each machine runs its own).
        gateway_children = children([g.pid for g in started])
        pids = {"gateway": [g.pid for g in started], "loadgen": [process.pid], "workers": workers,
                "gateway workers": gateway_children + children(gateway_children),
                "hub signer": bench_hub.signer_pids(signer)}
        cpu_before = time.process_time(), {k: cpu_seconds(v) for k, v in pids.items()}, machine_busy()
        out, _ = await process.communicate()
        cpu_after = time.process_time(), {k: cpu_seconds(v) for k, v in pids.items()}, machine_busy()
        if process.returncode:
            raise RuntimeError(f"the load generator failed ({process.returncode})")
        result = json.loads(out)
        counted = timed + warmup
        cpu_ms = {"hub": 1000 * (cpu_after[0] - cpu_before[0]) / counted}
        cpu_ms.update({k: 1000 * (cpu_after[1][k] - cpu_before[1][k]) / counted for k in pids})
        cpu_ms["loadgen"] = 1000 * result["cpu_seconds"] / timed  # its own count, the timed part only
        busy, total = (a - b for a, b in zip(cpu_after[2], cpu_before[2], strict=True))
        # Every answer was a decided outcome; the store must hold each row and each delivery.
        decided = bench_hub.count_decided(store)
        deliveries = bench_hub.count_deliveries(store)

        paced = None
        paced_rate = paced_rate or timed / result["seconds"] / 2  # default: half the gateway's own rate
        if paced_docs:
            packets_file = workdir / "paced.packets"
            write_packets(packets_file, packets[len(packets) - paced_docs:])
            process = await asyncio.create_subprocess_exec(
                PYTHON, __file__, "loadgen", *common, "--packets", str(packets_file),
                "--rate", f"{paced_rate:.3f}", stdout=asyncio.subprocess.PIPE)
            out, _ = await process.communicate()
            if process.returncode:
                raise RuntimeError(f"the load generator failed ({process.returncode})")
            paced = json.loads(out)
        audit_ok = store.verify_audit().ok
        outcomes = bench_hub.outcome_counts(store)
    finally:
        for gateway in started:
            await stop_process(gateway)
        await hub.stop()
        signer.stop()
        await transport.close()
        store.close()
    latencies = result["latencies"]
    row = {"config": name, "recipients": len(recipients), "docs": timed, "concurrency": concurrency,
           "gateways": gateways, "intake_at": intake_at,
           "seconds": result["seconds"], "throughput": timed / result["seconds"],
           "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * _p99(latencies),
           "statuses": result["statuses"], "answered": result["outcomes"], "errors": result["errors"],
           "store_ok": decided == counted and deliveries == counted * len(recipients),
           "decided": decided, "deliveries": deliveries, "outcomes": outcomes, "audit_ok": audit_ok,
           "cpu_ms": cpu_ms, "machine_busy": busy / total if total else 0.0, "load": load}
    if paced:
        row.update(paced_rate=paced_rate, paced_p50_ms=1000 * statistics.median(paced["latencies"]),
                   paced_p99_ms=1000 * _p99(paced["latencies"]), paced_statuses=paced["statuses"])
    return row


def _p99(values: list[float]) -> float:
    return values[int(0.99 * (len(values) - 1))]


# ------------------------------------------------------------------ main

async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="documents per throughput run (hub and gateway)")
    parser.add_argument("--latency-docs", type=int, default=300, help="paced documents for latency (both)")
    parser.add_argument("--warmup", type=int, default=200, help="gateway packets sent first, not counted")
    parser.add_argument("--concurrency", type=int, default=64, help="gateway requests in flight")
    parser.add_argument("--config", choices=["embedded", "rabbitmq", "all"], default="all")
    parser.add_argument("--recipients", default="1,10", help="comma-separated recipient counts")
    parser.add_argument("--gateway-command", default="{axis} gateway --host 127.0.0.1 --port {port}",
                        help="how to start a gateway; {port}, {python} and {axis} are replaced")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="the load generator's HTTP client: raw (a minimal one, default) or httpx")
    parser.add_argument("--gateways", type=int, default=1,
                        help="gateway processes (each on its own port; the load goes round them)")
    parser.add_argument("--intake-at", choices=["gateway", "hub", "both"], default="both",
                        help="where the gateway's submissions are decided (AXIS_INTAKE_AT): in the gateway's own "
                             "workers, queued for the hub, or a run of each (default)")
    parser.add_argument("--json", type=Path, help="also write every row, with the raw figures, to this file")
    parser.add_argument("--no-hub", action="store_true", help="skip bench_hub's measurement (no ratio)")
    parser.add_argument("--paced-rate", type=float, default=0.0,
                        help="the pace of the gateway's latency run (default: half its measured documents/s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each row this many times, the hub and the gateway in turn; the table gives "
                             "the median ratio and every round's (the machine's speed drifts between runs)")
    parser.add_argument("--hub", action="append", default=[], metavar="KEY=VALUE",
                        help="a HubSettings override for both runs, e.g. --hub batch_wait=0.02")
    args = parser.parse_args(argv)
    bench_hub.HUB_OPTIONS.update({key: (float if "." in value else int)(value)
                                  for key, value in (option.split("=", 1) for option in args.hub)})
    with tempfile.TemporaryDirectory(prefix="axis-bench-gw-") as tmp:
        root = Path(tmp)
        bench_hub.make_pki(root)
        (root / "data").mkdir()
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.docs} documents per "
              f"throughput run (+{args.warmup} warm-up through the gateway), {args.latency_docs} paced for latency; "
              f"gateway concurrency {args.concurrency}, {args.gateways} gateway process(es)", flush=True)
        rows = []
        for count in [int(c) for c in args.recipients.split(",")]:
            recipients = bench_hub.RECIPIENTS[:count]
            packets = bench_hub.make_packets(root, args.warmup + args.docs + args.latency_docs, recipients)
            size = sum(map(len, packets)) / len(packets)
            raw = bench_hub.raw_verify_rate(root, packets)
            print(f"\n{count} recipient(s), packets {size / 1024:.1f} KB; raw signxml verify on one core: "
                  f"{raw:.0f}/s", flush=True)
            for name, make, round_ in ((n, m, r) for n, m in bench_hub.configurations(args.config, root)
                                       for r in range(1, args.rounds + 1)):
                hub_row = None
                if not args.no_hub:
                    db, broker, cleanup = make()
                    try:
                        raw_transport = await bench_hub.raw_transport_rate(broker, packets[:1000])
                        hub_row = await bench_hub.run_config(name, db, broker, root, packets[args.warmup:],
                                                             recipients, args.latency_docs)
                    finally:
                        cleanup()
                    hub_row.update(raw_verify=raw, raw_transport=raw_transport, size_kb=size / 1024)
                    print(f"  hub     {name:20s} {hub_row['throughput']:7.0f} docs/s"
                          f" | p50 {hub_row['p50_ms']:6.1f} ms, p99 {hub_row['p99_ms']:7.1f} ms"
                          f" (paced at {hub_row['throughput'] / 2:.0f}/s) | load before {hub_row['load']:.2f}",
                          flush=True)
                for intake_at in (["gateway", "hub"] if args.intake_at == "both" else [args.intake_at]):
                    db, broker, cleanup = make()
                    try:
                        with tempfile.TemporaryDirectory(prefix="run-", dir=root) as work:
                            row = await run_gateway(name, db, broker, root, packets, recipients, warmup=args.warmup,
                                                    paced_docs=args.latency_docs, paced_rate=args.paced_rate,
                                                    concurrency=args.concurrency, command=args.gateway_command,
                                                    workdir=Path(work), client=args.client, gateways=args.gateways,
                                                    intake_at=intake_at)
                    finally:
                        cleanup()
                    row["hub"] = hub_row
                    row["raw_verify"] = raw
                    row["round"] = round_
                    rows.append(row)
                    ratio = f" = {row['throughput'] / hub_row['throughput']:.2f}× hub" if hub_row else ""
                    cpu = ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms"].items())
                    label = f"{name} #{round_}" if args.rounds > 1 else name
                    print(f"  gateway {label:20s} intake at {intake_at:7s} {row['throughput']:7.0f} docs/s{ratio}"
                          f" | p50 {row['p50_ms']:6.1f} ms, p99 {row['p99_ms']:7.1f} ms at {args.concurrency} in flight"
                          + (f" | paced at {row['paced_rate']:.0f}/s: p50 {row['paced_p50_ms']:.1f} ms,"
                             f" p99 {row['paced_p99_ms']:.1f} ms" if "paced_rate" in row else "")
                          + f" | answers {row['statuses']} {row['answered']} | store ok {row['store_ok']}"
                          f" | audit ok {row['audit_ok']} | CPU ms/doc: {cpu}"
                          f" | machine busy {100 * row['machine_busy']:.0f}% | load before {row['load']:.2f}",
                          flush=True)
                    for error in row["errors"][:5]:
                        print(f"    error: {error}", flush=True)
        print_table(rows, args.concurrency)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1, default=str))


def print_table(rows: list[dict], concurrency: int) -> None:
    """One line per configuration, recipient count and layout: with several rounds, the round of the median
    ratio, followed by every round's ratio."""
    print(f"\n| config | recipients | intake at | hub docs/s | gateway docs/s ({concurrency} in flight) |"
          " gateway ÷ hub | hub p50 / p99 ms (paced) | gateway p50 / p99 ms (paced) |"
          " gateway p50 / p99 ms (full load) |"
          " CPU ms/doc: hub, hub workers, gateway, gateway workers, load generator | machine busy | load before |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["config"], r["recipients"], r["intake_at"]), []).append(r)
    for rounds in groups.values():
        if len(rounds) == 1 or any(r["hub"] is None for r in rounds):
            for r in rounds:
                _print_row(r, "")
            continue
        ratios = sorted((r["throughput"] / r["hub"]["throughput"], n) for n, r in enumerate(rounds))
        median = ratios[(len(ratios) - 1) // 2][1]  # the lower median: a real round, never an average
        every = ", ".join(f"{r['throughput'] / r['hub']['throughput']:.2f}" for r in rounds)
        _print_row(rounds[median], f" (median of {len(rounds)} rounds: {every})")


def _print_row(r: dict, rounds: str) -> None:
    h = r["hub"]
    c = r["cpu_ms"]
    print(f"| {r['config']} | {r['recipients']} | {r['intake_at']} | {h['throughput']:,.0f}"
          f" | {r['throughput']:,.0f}"
          f" | {r['throughput'] / h['throughput']:.2f}{rounds} | {h['p50_ms']:.1f} / {h['p99_ms']:.1f}"
          f" | {r.get('paced_p50_ms', float('nan')):.1f} / {r.get('paced_p99_ms', float('nan')):.1f}"
          f" | {r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
          f" | {c['hub']:.2f}, {c['workers']:.2f}, {c['gateway']:.2f}, {c['gateway workers']:.2f},"
          f" {c['loadgen']:.2f}"
          f" | {100 * r['machine_busy']:.0f} % | {h['load']:.2f}, {r['load']:.2f} |" if h else
          f"| {r['config']} | {r['recipients']} | {r['intake_at']} | – | {r['throughput']:,.0f} | – | – | – |"
          f" {r['p50_ms']:.1f} / {r['p99_ms']:.1f} | | | {r['load']:.2f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["loadgen"]:
        summary = asyncio.run(loadgen(loadgen_parser().parse_args(sys.argv[2:])))
        sys.stdout.write(json.dumps(summary))
    else:
        asyncio.run(main(sys.argv[1:]))
