"""What one HTTP request costs the agency side's client, in CPU: httpx (the SDK's, `adapters.edge.GatewayEdge`) and,
when it is installed, aiohttp, side by side in the same run.

    .venv/bin/python bench/bench_http_client.py [--requests 3000] [--rounds 3]

A bare asyncio HTTP/1.1 server in a process of its own answers every request with a 5 KB body (a delivery's
size), so its cost is not counted. Each client sends `--requests` POSTs of a 2 KB body (a delivery receipt's
size) on one kept-alive connection, the way `GatewayEdge._call` does (a bearer header, a content type, a
timeout), and reads each answer whole. The figure is this process's CPU (user + sys) per request, median of
the rounds. It is the floor under what each request of `axis inbox pull` costs the agency (docs/performance.md,
"Fewer requests per delivery").
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import statistics

BODY = b"x" * 5000
RECEIPT = b"<r/>" * 500


def _serve(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/xml\r\n\r\n"
                             % len(BODY) + BODY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _httpx(url: str, count: int) -> float:
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer x"}) as client:
        for _ in range(50):
            (await client.post("/v1/inbox/ack", content=RECEIPT)).read()
        start = _cpu()
        for _ in range(count):
            response = await client.request("POST", "/v1/inbox/ack", content=RECEIPT,
                                            headers={"Content-Type": "application/xml"},
                                            timeout=httpx.Timeout(30.0, connect=30.0))
            response.read()
        return (_cpu() - start) / count * 1000


async def _aiohttp(url: str, count: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(url, headers={"Authorization": "Bearer x"}) as session:
        for _ in range(50):
            async with session.post("/v1/inbox/ack", data=RECEIPT) as response:
                await response.read()
        start = _cpu()
        for _ in range(count):
            async with session.post("/v1/inbox/ack", data=RECEIPT, headers={"Content-Type": "application/xml"},
                                    timeout=aiohttp.ClientTimeout(total=30.0)) as response:
                await response.read()
        return (_cpu() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", 0))
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    clients = {"httpx": _httpx}
    try:
        import aiohttp  # noqa: F401 - only whether it is there
        clients["aiohttp"] = _aiohttp
    except ImportError:
        print("aiohttp is not installed: its row is left out (pip install aiohttp)")
    figures: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(args.rounds):
        for name, run in clients.items():  # alternately, so that a change in the machine hits both
            figures[name].append(asyncio.run(run(url, args.requests)))
    server.terminate()
    print("| client | CPU ms per request (median) | rounds |")
    print("|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
