"""An in-process hub on real parts: a real PKI, SQLite or PostgreSQL, the embedded transport or RabbitMQ."""
from __future__ import annotations

import collections
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from axis import wire
from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document
from axis.hub import Hub, HubSettings, TrustSettings, declare_agency_queues
from axis.receipt import read_receipt
from axis.store import open_store
from axis.transport import RetryPolicy, open_transport
from axis.trust import Signer, Verifier, pki
from tests.transport.support import take

AGENCIES = {"000.00.00.G22": "Văn phòng Chính phủ", "000.00.00.H41": "UBND Tỉnh Nghệ An",
            "000.00.00.H14": "UBND Tỉnh Cao Bằng", "000.00.00.G17": "Bộ Thông tin và Truyền thông"}
UNREGISTERED = "000.00.00.H99"


@dataclass
class World:
    root: Path
    hub: Hub
    signers: dict[str, Signer]
    verifier: Verifier
    counter: list[int] = field(default_factory=lambda: [0])

    @property
    def transport(self):
        return self.hub.transport

    @property
    def store(self):
        return self.hub.store

    def document(self, sender: str, recipients: list[str], *, priority: int = 0, number: str | None = None,
                 signer: str | None = None, business: int = 0, business_document_id: str | None = None) -> bytes:
        self.counter[0] += 1
        packet = new_document(
            Organization(sender, organ_name=AGENCIES.get(sender, "?")),
            [Organization(code) for code in recipients],
            code_number=number or str(self.counter[0]), code_notation="VPCP-TTĐT", subject="Về việc thử nghiệm",
            signer=SignerInfo(full_name="Nguyễn Văn A"), priority=priority, business=business,
            business_document_id=business_document_id,
            attachments=[Attachment(content_id="cid:1", attachment_name="a.pdf", content_type="application/pdf",
                                    data=b"%PDF-1.4 " + bytes(range(256)))])
        return self.signers[signer or sender].sign(packet_to_bytes(packet))

    async def submit(self, body: bytes, sender: str, submission: str | None = None) -> str:
        submission = submission or wire.new_submission_id()
        await self.transport.publish(wire.INTAKE_QUEUE, body, message_id=submission,
                                     headers={wire.H_SUBMISSION: submission,
                                              wire.H_REPLY_TO: wire.receipts_queue(sender)})
        return submission

    async def receipts(self, code: str, count: int, timeout: float = 20.0) -> list:
        """`count` receipts from the agency's receipts queue, verified and read."""
        got = []
        async with self.transport.consume(wire.receipts_queue(code), prefetch=max(50, count)) as c:
            try:
                deliveries = await take(c, count, timeout)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: receipts for {code}; {await self.situation(code)}") from None
            for delivery in deliveries:
                result = self.verifier.verify_receipt(delivery.body)
                got.append((dict(delivery.headers), read_receipt(result.signed_root), result.signer_code))
                await delivery.ack()
        return got

    async def situation(self, code: str) -> str:
        """Where things stand, for a test that waited in vain."""
        queues = (wire.INTAKE_QUEUE, wire.RECEIPTS_QUEUE, wire.receipts_queue(code),
                  *(wire.inbox_queue(c) for c in AGENCIES))
        depths = {q: await self.transport.depth(q) for q in queues}
        states = collections.Counter(d.state for d in self.store.list_deliveries(limit=100_000))
        tasks = {t.get_name(): ("running" if not t.done() else repr(t.exception()) if not t.cancelled()
                                else "cancelled") for t in self.hub._tasks}
        return (f"ready messages {depths}; delivery states {dict(states)}; relay published "
                f"{self.hub.relay.published}; hub tasks {tasks}")

    async def inbox(self, code: str, count: int, timeout: float = 20.0, *, ack: bool = True) -> list:
        async with self.transport.consume(wire.inbox_queue(code), prefetch=1) as consumer:
            got = await take(consumer, count, timeout)
            for delivery in got if ack else ():
                await delivery.ack()
        return got


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    pki.init_ca(root / "ca")
    for code in [*AGENCIES, UNREGISTERED, wire.HUB_IDENTITY]:
        pki.issue(code, root / "ca", root / "keys")
    return root


@contextlib.asynccontextmanager
async def running_world(tmp_path: Path, pki_dir: Path, *, store_url: str | None = None,
                        transport_url: str | None = None, **settings) -> AsyncIterator[World]:
    """A started hub on a fresh SQLite store and embedded transport, or on the empty store and transport
    the URLs name."""
    ca, keys = pki_dir / "ca", pki_dir / "keys"
    store = open_store(store_url or f"sqlite:///{tmp_path / 'axis.db'}", create=True)
    transport = await open_transport(transport_url or f"embedded:///{tmp_path / 'transport.db'}",
                                     retry=RetryPolicy(base_delay=0.05, max_attempts=3))
    with store.write() as tx:
        for code, name in AGENCIES.items():
            tx.add_agency(code, name)
            tx.add_certificate(code, (keys / f"{code}.cert.pem").read_text())
    settings = HubSettings(trust=TrustSettings(trust_roots=ca / "ca.pem", crl=ca / "crl.pem",
                                               hub_key=keys / "AXIS.key.pem", hub_cert=keys / "AXIS.cert.pem"),
                           **{"workers": 0, **settings})
    hub = Hub(settings, store, transport)
    for code in [*AGENCIES, UNREGISTERED]:
        await declare_agency_queues(transport, code)
    await hub.start()
    signers = {code: Signer.from_files(keys / f"{code}.key.pem", keys / f"{code}.cert.pem")
               for code in [*AGENCIES, UNREGISTERED]}
    try:
        yield World(tmp_path, hub, signers, Verifier.from_files(ca / "ca.pem", ca / "crl.pem"))
    finally:
        await hub.stop()
        await transport.close()
        store.close()


@pytest.fixture
async def world(tmp_path: Path, pki_dir: Path) -> AsyncIterator[World]:
    async with running_world(tmp_path, pki_dir) as world:
        yield world


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
