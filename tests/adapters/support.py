"""Helpers for the adapter tests: packets from a real PKI, and the hub's half of the wire contract.

The hub is written elsewhere; these tests play its part with the real
transport and real signatures: they deliver signed packets to an agency's
inbox queue with the headers of `axis.wire`, publish signed receipts to its
receipts queue, and read what the client published.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axis import wire
from axis.edxml import Organization, SignerInfo, StatusCode, packet_to_bytes
from axis.edxml.compose import new_document, new_status
from axis.receipt import Receipt, build_receipt, now_utc
from axis.transport import RetryPolicy, Transport
from axis.trust import Signer, Verifier

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
HUB = wire.HUB_IDENTITY
POLICY = RetryPolicy(base_delay=0.05, max_attempts=3)   # retries and dead-lettering within ~0.2 s
LEASE = 1.0
STEP = 20.0  # upper bound of any single wait; never reached when things work


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
    from axis.edxml import load_packet

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

    def __init__(self, transport: Transport, pki: DevPKI) -> None:
        self.transport = transport
        self.pki = pki

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
                     wire.H_DOCUMENT_ID: document_id,
                     wire.H_DIGEST: digest or hashlib.sha256(packet).hexdigest()})
        return axis_id

    def receipt(self, *, submission: str | None, outcome: str = "accepted", axis_id: str | None = None,
                sender: str = G22, issuer: str = HUB, kind: str = "intake", recipient: str | None = None,
                refusal: tuple[int, str, str] | None = None, signer: str = HUB) -> bytes:
        code, name, detail = refusal or (None, None, None)
        receipt = Receipt(kind=kind, outcome=outcome, issuer=issuer, time=now_utc(), axis_id=axis_id,
                          submission=submission, sender=sender, recipient=recipient, refusal_code=code,
                          refusal_name=name, refusal_detail=detail)
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
        async with self.transport.consume(queue, prefetch=500) as consumer:
            async def loop() -> None:
                async for delivery in consumer:
                    taken.append(Message(delivery.body, delivery.message_id, dict(delivery.headers),
                                         delivery.priority))
                    await delivery.ack()
                    if len(taken) == count:
                        return

            await asyncio.wait_for(loop(), timeout)
        return taken
