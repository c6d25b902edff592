"""Helpers for the adapter tests: packets from a real PKI, and the hub's half of the wire contract.

The hub is written elsewhere; these tests play its part with the real
transport and real signatures: they deliver signed packets to an agency's
inbox queue with the headers of `axis.wire`, publish signed receipts to its
receipts queue, and read what the client published.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from axis import wire
from axis.edxml import DocumentPacket, Organization, SignerInfo, StatusCode, load_packet, packet_to_bytes, read_packet
from axis.edxml.compose import new_document, new_status
from axis.receipt import Receipt, build_receipt, now_utc
from axis.refusals import Refusal
from axis.seal import Sealer
from axis.transport import Delivery, OutgoingMessage, RetryPolicy, Transport, open_transport
from axis.trust import Signer, Verifier
from tests.transport.support import take

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
HUB = wire.HUB_IDENTITY
POLICY = RetryPolicy(base_delay=0.05, max_attempts=3)   # retries and dead-lettering within ~0.2 s
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


@dataclass
class Message:
    body: bytes
    message_id: str
    headers: dict[str, str]
    priority: int


class HubSide:
    """What the hub does on the wire, done directly with the transport."""

    def __init__(self, transport: Transport, pki: DevPKI | None, *, sealer: Sealer | None = None) -> None:
        self.transport = transport
        self.pki = pki
        # Deliveries carry the hub's seal, as intake makes it (`axis.seal`).
        if sealer is None:
            assert pki is not None, "HubSide needs the PKI or a Sealer to seal deliveries"
            sealer = Sealer.from_files(pki.key_paths[HUB], pki.cert_paths[HUB])
        self.sealer = sealer

    def _seal(self, axis_id: str, to: str, digest: str) -> dict[str, str]:
        """The seal headers as the relay publishes them (certificate attached)."""
        return self.sealer.certificate.attach(self.sealer.seal(axis_id, [to], digest))

    async def declare(self, *codes: str) -> None:
        await self.transport.declare_queue(wire.INTAKE_QUEUE)
        await self.transport.declare_queue(wire.RECEIPTS_QUEUE)
        for code in codes:
            await self.transport.declare_queue(wire.inbox_queue(code))
            await self.transport.declare_queue(wire.receipts_queue(code))

    async def deliver(self, packet: bytes, to: str, *, sender: str = G22, axis_id: str | None = None,
                      digest: str | None = None, kind: str = "document", document_id: str = "-") -> str:
        axis_id = axis_id or wire.new_axis_id()
        await self.transport.publish(
            wire.inbox_queue(to), packet, message_id=wire.delivery_message_id(axis_id, to),
            headers={wire.H_AXIS_ID: axis_id, wire.H_KIND: kind, wire.H_SENDER: sender, wire.H_RECIPIENT: to,
                     wire.H_DOCUMENT_ID: document_id, wire.H_DIGEST: digest or hashlib.sha256(packet).hexdigest(),
                     **self._seal(axis_id, to, digest or hashlib.sha256(packet).hexdigest())})
        return axis_id

    async def deliver_many(self, packets: list[bytes], to: str, *, sender: str = G22) -> list[str]:
        """Deliver many packets in one batch; their axis ids in order."""
        axis_ids = [wire.new_axis_id() for _ in packets]
        outcomes = await self.transport.publish_many([
            OutgoingMessage(wire.inbox_queue(to), packet, wire.delivery_message_id(axis_id, to), 0,
                            {wire.H_AXIS_ID: axis_id, wire.H_KIND: "document", wire.H_SENDER: sender,
                             wire.H_RECIPIENT: to, wire.H_DIGEST: hashlib.sha256(packet).hexdigest(),
                             **self._seal(axis_id, to, hashlib.sha256(packet).hexdigest())})
            for axis_id, packet in zip(axis_ids, packets, strict=True)])
        assert outcomes == [None] * len(packets), outcomes
        return axis_ids

    def receipt(self, *, submission: str | None, outcome: str = "accepted", axis_id: str | None = None,
                sender: str = G22, issuer: str = HUB, kind: str = "intake", recipient: str | None = None,
                refusal: tuple[int, str, str] | None = None, signer: str = HUB,
                document_id: str | None = None) -> bytes:
        code, name, detail = refusal or (None, None, None)
        receipt = Receipt(kind=kind, outcome=outcome, issuer=issuer, time=now_utc(), axis_id=axis_id,
                          submission=submission, sender=sender, recipient=recipient, refusal_code=code,
                          refusal_name=name, refusal_detail=detail, document_id=document_id)
        return self.pki.signers[signer].sign_receipt(build_receipt(receipt))

    async def send_receipt(self, to: str, body: bytes, *, submission: str | None, kind: str = "intake",
                           axis_id: str = "-") -> None:
        headers = {wire.H_RECEIPT_KIND: kind}
        if submission is not None:
            headers[wire.H_SUBMISSION] = submission
        await self.transport.publish(wire.receipts_queue(to), body,
                                     message_id=wire.receipt_message_id(kind, axis_id, submission or to),
                                     headers=headers)

    async def take(self, queue: str, count: int, *, timeout: float = STEP) -> list[Message]:
        """Consume and ack `count` messages from `queue` (fails the test if they do not come)."""
        taken: list[Message] = []
        if count == 0:
            return taken
        async with self.transport.consume(queue, prefetch=max(count, 1)) as consumer:
            for delivery in await take(consumer, count, timeout):
                taken.append(Message(delivery.body, delivery.message_id, dict(delivery.headers), delivery.priority))
                await delivery.ack()
        return taken


class IntakeResponder:
    """The hub's intake, reduced to what the agency side can observe, in a thread of its own.

    It consumes `axis.intake` from its own transport, verifies each packet with
    the real verifier, and answers on the submission's reply-to queue: accepted
    (a new axis id), refused (the refusal's code), or, for a DocumentId it has
    accepted before, the FIRST receipt's bytes under the new submission id.
    `refuse_all` makes it refuse everything (to test refusal paths).
    """

    def __init__(self, url: str, pki: DevPKI, *, refuse_all: tuple[int, str, str] | None = None) -> None:
        self.url, self.pki, self.refuse_all = url, pki, refuse_all
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._first: dict[str, bytes] = {}
        self.error: BaseException | None = None

    def __enter__(self) -> IntakeResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(STEP)
        if self.error is not None:
            raise self.error

    def _answer(self, hub: HubSide, submission: str, packet: bytes, sender: str) -> bytes:
        if self.refuse_all is not None:
            return hub.receipt(submission=submission, outcome="refused", refusal=self.refuse_all, sender=sender)
        try:
            result = self.pki.verifier.verify(packet)
        except Refusal as refusal:
            return hub.receipt(submission=submission, outcome="refused", sender=sender,
                               refusal=(refusal.code.number, refusal.code.name, refusal.detail))
        parsed = read_packet(result.signed_root)
        key = f"{parsed.sender}:{parsed.document_id}" if isinstance(parsed, DocumentPacket) else None
        if key in self._first:
            return self._first[key]
        body = hub.receipt(submission=submission, axis_id=wire.new_axis_id(), sender=result.signer_code)
        if key is not None:
            self._first[key] = body
        return body

    async def _main(self) -> None:
        transport = await open_transport(self.url, retry=POLICY, lease=LEASE, name="axis-test-intake")
        hub = HubSide(transport, self.pki)
        try:
            async with transport.consume(wire.INTAKE_QUEUE) as consumer:
                while not self._stop.is_set():
                    for delivery in await consumer.receive(1, 0.1):
                        await self._handle(hub, delivery)
        except Exception as exc:  # noqa: BLE001 - surfaced in __exit__, so a broken responder fails the test
            self.error = exc
        finally:
            await transport.close()

    async def _handle(self, hub: HubSide, delivery: Delivery) -> None:
        submission = delivery.headers[wire.H_SUBMISSION]
        reply_to = delivery.headers[wire.H_REPLY_TO].removesuffix(".receipts")
        body = self._answer(hub, submission, delivery.body, reply_to)
        await hub.send_receipt(reply_to, body, submission=submission)
        await delivery.ack()
        self.answered += 1




def run_hub(url: str, pki: DevPKI, action: Callable[[HubSide], Awaitable[_T]]) -> _T:
    """Run `action(hub)` on a transport of its own, from synchronous code (CLI and subprocess tests)."""
    async def main() -> _T:
        transport = await open_transport(url, retry=POLICY, lease=LEASE)
        try:
            return await action(HubSide(transport, pki))
        finally:
            await transport.close()

    return asyncio.run(main())
