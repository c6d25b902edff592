"""Helpers for the adapter tests: a real PKI, and a whole axis in process that agencies reach through an edge.

`Axis` is the real thing on a fresh store and broker: the hub (`axis.hub.Hub`,
verification in process), the service the gateway serves
(`axis.gateway.AgencyService`), and, for the `gateway` road, the real FastAPI
app (`axis.gateway.app`) reached over httpx (in process through
`httpx.ASGITransport`, or over TCP when `serve_http()` started uvicorn). An
agency's edge is `LocalEdge` on the `local` road and `GatewayEdge` with a real
credential on the `gateway` road: the SDK under test cannot tell the hub is in
the same process.

`AxisThread` runs the same in a thread of its own, for the commands
(`CliRunner` and subprocesses run their own event loops).
"""
from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from adapters.edge import Edge, EdgeError, GatewayEdge, LocalEdge
from axis import wire
from axis.edxml import Organization, SignerInfo, StatusCode, load_packet, packet_to_bytes
from axis.edxml.compose import new_document, new_status
from axis.gateway import AgencyService
from axis.hub import Hub, HubSettings, TrustSettings
from axis.signer import LocalSigner
from axis.store import Store, open_store
from axis.transport import RetryPolicy, Transport, open_transport
from axis.trust import Signer, Verifier

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
AGENCIES = {G22: "Văn phòng Chính phủ", H41: "UBND Tỉnh Nghệ An", H14: "UBND Tỉnh Cao Bằng"}
HUB = wire.HUB_IDENTITY
POLICY = RetryPolicy(base_delay=0.05, max_attempts=3)
LEASE = 1.0
STEP = 20.0  # upper bound of any single wait; never reached when things work
_T = TypeVar("_T")


@dataclass
class DevPKI:
    directory: Path
    verifier: Verifier
    signers: dict[str, Signer]
    key_paths: dict[str, Path]
    cert_paths: dict[str, Path]
    outsider: Signer  # G22's code in a certificate from a CA the verifier does not trust
    other_roots: Verifier  # a verifier that trusts only that other CA


def document(sender: str, recipients: list[str], number: int, *, priority: int = 0,
             subject: str = "V/v thử nghiệm trục liên thông") -> bytes:
    """An unsigned document packet (its DocumentId is `<sender>,<today>,<number>/VPCP-TTĐT`)."""
    packet = new_document(Organization(sender), [Organization(r) for r in recipients],
                          code_number=str(number), code_notation="VPCP-TTĐT", subject=subject,
                          signer=SignerInfo(position="Thứ trưởng", full_name="Nguyễn Văn A"), priority=priority)
    return packet_to_bytes(packet)


def signed_document(pki: DevPKI, sender: str, recipients: list[str], number: int, **options: Any) -> bytes:
    return pki.signers[sender].sign(document(sender, recipients, number, **options))


def signed_status(pki: DevPKI, sender: str, document_packet: bytes, code: str = "01") -> bytes:
    packet = new_status(Organization(sender), load_packet(document_packet), StatusCode(code))
    return pki.signers[sender].sign(packet_to_bytes(packet))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Axis:
    """A running axis (see the module docstring). `road`: how agencies reach it, `local` or `gateway`."""

    pki: DevPKI
    store_url: str
    transport_url: str
    road: str = "local"
    store: Store = field(init=False)
    transport: Transport = field(init=False)
    hub: Hub | None = field(init=False, default=None)
    service: AgencyService = field(init=False)
    app: Any = field(init=False, default=None)
    url: str | None = field(init=False, default=None)       # http://127.0.0.1:PORT once serve_http() ran
    tokens: dict[str, str] = field(init=False, default_factory=dict)
    _edges: list[Edge] = field(init=False, default_factory=list)
    _clients: list[httpx.AsyncClient] = field(init=False, default_factory=list)
    _server: Any = field(init=False, default=None)
    _server_task: asyncio.Task | None = field(init=False, default=None)

    async def start(self, *, register: tuple[str, ...] = (G22, H41, H14), hub: bool = True) -> Axis:
        self.store = open_store(self.store_url, create=True)
        self.transport = await open_transport(self.transport_url, retry=POLICY, lease=LEASE, timeout=10.0,
                                              name="axis-test-hub")
        with self.store.write() as tx:
            for code in register:
                if self.store.get_agency(code) is None:
                    tx.add_agency(code, AGENCIES.get(code, code))
                    tx.add_certificate(code, self.pki.cert_paths[code].read_text())
        keys = self.pki
        self.service = AgencyService(self.store, self.transport, signer=self.signer(), verifier=keys.verifier)
        if self.road == "gateway":
            from axis.gateway.app import create_app
            from axis.gateway.credentials import Authenticator

            self.app = create_app(self.service, Authenticator(self.store, cache_seconds=0))
        if hub:
            await self.start_hub()
        return self

    def hub_settings(self) -> HubSettings:
        trust = TrustSettings(trust_roots=self.pki.directory / "ca.pem", crl=self.pki.directory / "crl.pem")
        return HubSettings(trust=trust, workers=0)

    def signer(self) -> LocalSigner:
        """The axis key in this process: the hub runs in a thread here (workers=0)."""
        return LocalSigner.from_files(self.pki.key_paths[HUB], self.pki.cert_paths[HUB])

    async def start_hub(self) -> None:
        self.hub = Hub(self.hub_settings(), self.store, self.transport, signer=self.signer())
        await self.hub.start()

    async def stop_hub(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None

    async def serve_http(self) -> str:
        """Serve the gateway app over TCP (uvicorn, a free loopback port); its base URL."""
        import uvicorn

        assert self.app is not None, "serve_http needs the gateway road"
        sock = free_socket()
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._server_task.done():
                await self._server_task
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def credential(self, code: str, *, role: str = "agency") -> str:
        """A real credential for `code` (issued once per agency)."""
        if code not in self.tokens:
            from axis.gateway.credentials import issue

            self.tokens[code] = issue(self.store, role, code if role == "agency" else None).token
        return self.tokens[code]

    def edge(self, code: str, *, road: str | None = None) -> Edge:
        """How agency `code` reaches this axis on `road` (default: the axis's road)."""
        road = road or self.road
        edge: Edge
        if road == "local":
            edge = LocalEdge(self.service, code, credential_id=f"test-{code}")
        else:
            token = self.credential(code)
            if self.url is not None:
                edge = GatewayEdge(self.url, token)
            else:
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 5000)),
                                           base_url="http://gateway.test")
                edge = GatewayEdge("http://gateway.test", token, client=client)
                self._clients.append(client)
        self._edges.append(edge)
        return edge

    async def decided(self, submission: str, timeout: float = STEP) -> Any:
        """The hub's decision on a submission (failing the test after `timeout`)."""
        from axis.gateway import Caller

        outcome = await self.service.outcome(Caller("test", "auditor"), submission, wait=timeout)
        assert outcome.decided, f"submission {submission} was not decided within {timeout} s"
        return outcome

    async def close(self) -> None:
        for edge in self._edges:
            await edge.aclose()
        for client in self._clients:
            await client.aclose()
        if self._server is not None:
            self._server.should_exit = True
            assert self._server_task is not None
            await self._server_task
        stuck = None
        tasks = list(self.hub._tasks) if self.hub is not None else []
        try:
            # Bounded: Hub.stop() on RabbitMQ has been seen (rarely) never to return, its intake task stuck
            # "cancelling" in Hub._consume; a test must then fail in its teardown, not hang the run.
            await asyncio.wait_for(self.stop_hub(), STEP)
        except TimeoutError:
            pass
        left = [t.get_name() for t in tasks if not t.done()]
        if left:
            stuck = f"Hub.stop() left its tasks {left} running after {STEP:g} s"
        await self.transport.close()
        self.store.close()
        if stuck:
            raise AssertionError(stuck)


class AxisThread:
    """An `Axis` (hub and, on the gateway road, the gateway over TCP) running in a thread with its own loop."""

    def __init__(self, pki: DevPKI, store_url: str, transport_url: str, *, road: str = "local",
                 hub: bool = True) -> None:
        self.axis = Axis(pki, store_url, transport_url, road)
        self.with_hub = hub
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="axis-test-server")
        self.error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.axis.start(hub=self.with_hub)
            if self.axis.road == "gateway":
                await self.axis.serve_http()
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.axis.close()

    def call(self, action: Callable[[Axis], Awaitable[_T]], timeout: float = 60.0) -> _T:
        """Run `await action(axis)` on the server's loop, from the test's thread."""
        return asyncio.run_coroutine_threadsafe(action(self.axis), self._loop).result(timeout)

    def __enter__(self) -> AxisThread:
        self._thread.start()
        self._ready.wait(STEP)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STEP)


class Relay(Edge):
    """An edge that passes every call to `inner`; subclasses change one (fault injection at the edge)."""

    def __init__(self, inner: Edge) -> None:
        self.inner = inner

    async def submit(self, packet: bytes, *, wait: float = 0.0, submission: str | None = None) -> Any:
        return await self.inner.submit(packet, wait=wait, submission=submission)

    async def outcome(self, submission: str, *, wait: float = 0.0) -> Any:
        return await self.inner.outcome(submission, wait=wait)

    async def inbox(self, *, kind: str | None = None, after: str | None = None, limit: int = 100,
                    wait: float = 0.0) -> Any:
        return await self.inner.inbox(kind=kind, after=after, limit=limit, wait=wait)

    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        return await self.inner.fetch(axis_id)

    async def fetch_many(self, axis_ids: Sequence[str]) -> list[tuple[bytes, dict[str, str]] | EdgeError]:
        # Each through `fetch`, so that a relay that changes `fetch` changes what a batch brings too.
        answers: list[tuple[bytes, dict[str, str]] | EdgeError] = []
        for axis_id in axis_ids:
            try:
                answers.append(await self.fetch(axis_id))
            except EdgeError as exc:
                answers.append(exc)
        return answers

    async def ack_many(self, items: Sequence[tuple[str, bytes | None]]) -> list[dict[str, Any] | EdgeError]:
        return await self.inner.ack_many(items)

    async def fail(self, axis_id: str, reason: str) -> dict[str, Any]:
        return await self.inner.fail(axis_id, reason)

    async def sent(self, *, since: str | None = None, after: str | None = None, limit: int = 100) -> Any:
        return await self.inner.sent(since=since, after=after, limit=limit)

    async def receipts(self, axis_id: str) -> list[dict[str, Any]]:
        return await self.inner.receipts(axis_id)

    async def agencies(self) -> list[dict[str, Any]]:
        return await self.inner.agencies()
