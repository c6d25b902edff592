"""An in-process hub on real parts: a real PKI, SQLite or PostgreSQL, the embedded transport or RabbitMQ."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from axis import wire
from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document
from axis.gateway import AgencyService, Caller, Outcome, Served
from axis.hub import Hub, HubSettings, TrustSettings
from axis.hub.workers import WorkerPool
from axis.receipt import Receipt, read_receipt
from axis.signer import AxisSigner, LocalSigner, SignerChild, SignerClient
from axis.store import open_store
from axis.transport import RetryPolicy, open_transport
from axis.trust import Signer, Verifier, pki
from tests.store.conftest import fresh_rabbitmq_and_postgres, pg_template  # noqa: F401 - fixture reused

AGENCIES = {"000.00.00.G22": "Văn phòng Chính phủ", "000.00.00.H41": "UBND Tỉnh Nghệ An",
            "000.00.00.H14": "UBND Tỉnh Cao Bằng", "000.00.00.G17": "Bộ Thông tin và Truyền thông"}
UNREGISTERED = "000.00.00.H99"


@dataclass
class World:
    root: Path
    hub: Hub
    signers: dict[str, Signer]
    verifier: Verifier
    service: AgencyService              # the gateway's operations, in process
    signer_process: SignerChild | None = None   # the signer process, when the hub has worker processes
    counter: list[int] = field(default_factory=lambda: [0])

    @property
    def transport(self):
        return self.hub.transport

    @property
    def store(self):
        return self.hub.store

    def document(self, sender: str, recipients: list[str], *, priority: int = 0, number: str | None = None,
                 signer: str | None = None, business: int = 0, business_document_id: str | None = None,
                 attachment: bytes = b"%PDF-1.4 " + bytes(range(256))) -> bytes:
        self.counter[0] += 1
        packet = new_document(
            Organization(sender, organ_name=AGENCIES.get(sender, "?")),
            [Organization(code) for code in recipients],
            code_number=number or str(self.counter[0]), code_notation="VPCP-TTĐT", subject="Về việc thử nghiệm",
            signer=SignerInfo(full_name="Nguyễn Văn A"), priority=priority, business=business,
            business_document_id=business_document_id,
            attachments=[Attachment(content_id="cid:1", attachment_name="a.pdf", content_type="application/pdf",
                                    data=attachment)])
        return self.signers[signer or sender].sign(packet_to_bytes(packet))

    @staticmethod
    def caller(code: str) -> Caller:
        return Caller(credential_id=f"test-{code}", role="agency", agency=code)

    async def submit(self, body: bytes, sender: str, submission: str | None = None) -> str:
        """Publish straight to the intake queue, as anyone who can write to the broker could (no row)."""
        submission = submission or wire.new_submission_id()
        await self.transport.publish(wire.INTAKE_QUEUE, body, message_id=submission,
                                     headers={wire.H_SUBMISSION: submission})
        return submission

    async def outcome(self, submission: str, timeout: float = 20.0) -> tuple[Outcome, Receipt | None, str | None]:
        """The hub's decision on `submission` and its intake receipt (verified, read) with its signer."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            row = self.store.submissions([submission]).get(submission)
            if row is not None and row.outcome is not None:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"submission {submission} not decided in {timeout} s; {await self.situation()}")
            await asyncio.sleep(0.02)
        outcome = Outcome.of(row)
        if outcome.receipt is None:
            return outcome, None, None
        result = self.verifier.verify_receipt(outcome.receipt)
        return outcome, read_receipt(result.signed_root), result.signer_code

    async def situation(self) -> str:
        """Where things stand, for a test that waited in vain."""
        depth = await self.transport.depth(wire.INTAKE_QUEUE)
        states = collections.Counter(d.state for d in self.store.list_deliveries(limit=100_000))
        tasks = {t.get_name(): ("running" if not t.done() else repr(t.exception()) if not t.cancelled()
                                else "cancelled") for t in self.hub._tasks}
        return f"intake depth {depth}; delivery states {dict(states)}; hub tasks {tasks}"

    async def inbox(self, code: str, count: int, timeout: float = 20.0) -> list[Served]:
        """The first `count` deliveries waiting for `code` (urgent first), as the gateway serves them."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            items, _ = await self.service.inbox(self.caller(code), limit=max(count, 1))
            if len(items) >= count:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(items)} of {count} deliveries for {code}; {await self.situation()}")
            await asyncio.sleep(0.02)
        return [await self.service.fetch(self.caller(code), item.axis_id) for item in items[:count]]


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    pki.init_ca(root / "ca")
    for code in [*AGENCIES, UNREGISTERED, wire.HUB_IDENTITY]:
        pki.issue(code, root / "ca", root / "keys")
    return root


@contextlib.asynccontextmanager
async def running_world(tmp_path: Path, pki_dir: Path, *, store_url: str | None = None,
                        transport_url: str | None = None, intake_at: str = "gateway",
                        **settings) -> AsyncIterator[World]:
    """A started hub on a fresh SQLite store and embedded transport, or on the empty store and transport
    the URLs name. Its `service` decides submissions where they arrive (one intake thread), as the
    gateway does by default; `intake_at="hub"` queues every submission for the hub. With `workers=0`
    (the default) everything signs with a `LocalSigner` in this process; with worker processes, through
    a real signer process, as `axis serve` does."""
    ca, keys = pki_dir / "ca", pki_dir / "keys"
    store = open_store(store_url or f"sqlite:///{tmp_path / 'axis.db'}", create=True)
    transport = await open_transport(transport_url or f"embedded:///{tmp_path / 'transport.db'}",
                                     retry=RetryPolicy(base_delay=0.05, max_attempts=3))
    with store.write() as tx:
        for code, name in AGENCIES.items():
            tx.add_agency(code, name)
            tx.add_certificate(code, (keys / f"{code}.cert.pem").read_text())
    settings = HubSettings(trust=TrustSettings(trust_roots=ca / "ca.pem", crl=ca / "crl.pem"),
                           **{"workers": 0, **settings})
    signer_child = None
    signer: AxisSigner
    if settings.workers == 0:
        signer = LocalSigner.from_files(keys / "AXIS.key.pem", keys / "AXIS.cert.pem")
    else:
        signer_child = SignerChild(keys / "AXIS.key.pem", keys / "AXIS.cert.pem")
        await asyncio.to_thread(signer_child.start)
        signer = SignerClient(signer_child.socket)
    hub = Hub(settings, store, transport, signer=signer)
    await hub.start()
    signers = {code: Signer.from_files(keys / f"{code}.key.pem", keys / f"{code}.cert.pem")
               for code in [*AGENCIES, UNREGISTERED]}
    verifier = Verifier.from_files(ca / "ca.pem", ca / "crl.pem")
    pool = None
    if intake_at == "gateway":
        pool = WorkerPool(settings.trust, 0, signer=signer,
                          store_url=store.engine.url.render_as_string(hide_password=False))
        await pool.start()
    service = AgencyService(store, transport, signer=signer, verifier=verifier, intake=pool)
    try:
        yield World(tmp_path, hub, signers, verifier, service, signer_child)
    finally:
        await service.close()
        if pool is not None:
            await asyncio.to_thread(pool.close)
        await hub.stop()
        await transport.close()
        store.close()
        if signer_child is not None:
            signer_child.stop()


@pytest.fixture
async def world(tmp_path: Path, pki_dir: Path) -> AsyncIterator[World]:
    async with running_world(tmp_path, pki_dir) as world:
        yield world


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["embedded+sqlite", pytest.param("rabbitmq+postgres",
                                                        marks=[pytest.mark.rabbitmq, pytest.mark.postgres])])
def urls(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None]]:
    """(store URL, transport URL) of a fresh deployment of its own; None, None: the embedded defaults."""
    if request.param == "embedded+sqlite":
        yield None, None
        return
    with fresh_rabbitmq_and_postgres(request, "axis-hub") as (db, broker):
        yield db, broker
