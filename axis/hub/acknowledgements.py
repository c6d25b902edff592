"""What comes back after delivery: recipients' delivery receipts, and deliveries that failed for good.

- A delivery receipt, signed by the recipient, says "I stored these bytes": the
  hub checks the signer is the recipient, that the digest is the digest of the
  bytes the sender signed, records it, moves the delivery to `delivered` and
  forwards the signed receipt to the sender.
- A delivery the recipient's adapter could not take after every retry sits in
  that agency's dead-letter queue: the hub marks it `failed` and sends the
  sender an error receipt, signed by the hub. The message stays parked for an
  operator to replay.

Both are idempotent: each is recorded once per (document, recipient), in one
transaction with its audit entry and the outgoing message.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from axis import wire
from axis.hub.verification import Refused
from axis.hub.workers import WorkerPool
from axis.receipt import Receipt, now_utc, read_receipt
from axis.refusals import Refusal, RefusalCode
from axis.store import DeliveryState, Document, NewAuditEntry, NewOutboxMessage, NewReceipt, Store
from axis.transport import Delivery, Transport

log = logging.getLogger("axis.hub.acknowledgements")

RECEIPTS_CONSUMER = "hub.delivery-receipts"
DEAD_LETTER_CONSUMER = "hub.dead-letters"


class DeliveryReceipts:
    """Handles batches from `axis.receipts`; returns which deliveries to ack and which to dead-letter.

    A receipt changes state only when it matches the store: a verified signature, the signer the
    recipient of a delivery of that axis id, the digest of the bytes the sender signed. Anything
    else is refused, never silently: one warning line with the code, an audit entry, an `error`
    record on the document's timeline for that recipient (once per recipient and code; only when
    the document and a delivery to that recipient exist), and the dead-letter reason.
    """

    def __init__(self, store: Store, pool: WorkerPool) -> None:
        self._store = store
        self._pool = pool

    async def process(self, batch: Sequence[Delivery]) -> list[str | None]:
        """One entry per delivery: None to ack, or the reason to dead-letter it."""
        verified = await self._pool.verify_receipts([d.body for d in batch])
        return await asyncio.to_thread(self._commit, batch, verified)

    def _commit(self, batch: Sequence[Delivery], verified: list) -> list[str | None]:
        verdicts: list[str | None] = []
        with self._store.write() as tx:
            for delivery, result in zip(batch, verified, strict=True):
                # Until the signature verifies, the headers are only what the message claims.
                claimed = (delivery.headers.get(wire.H_AXIS_ID), delivery.headers.get(wire.H_RECIPIENT))
                if isinstance(result, Refused):
                    verdicts.append(self._refuse(tx, delivery, RefusalCode.RECEIPT_REFUSED,
                                                 f"AX{result.code}: {result.detail}", *claimed))
                    continue
                signer, signed_xml = result
                try:
                    receipt = read_receipt(signed_xml)
                except Refusal as refusal:
                    verdicts.append(self._refuse(tx, delivery, RefusalCode.RECEIPT_REFUSED, str(refusal), *claimed))
                    continue
                mismatch = record_delivery_receipt(tx, delivery.body, signer, receipt)
                verdicts.append(None if mismatch is None else self._refuse(
                    tx, delivery, RefusalCode.RECEIPT_MISMATCH, mismatch, receipt.axis_id, signer))
        return verdicts

    @staticmethod
    def _refuse(tx, delivery: Delivery, code: RefusalCode, detail: str, axis_id: str | None,
                recipient: str | None) -> str:
        reason = f"{code.label}: {detail}"[:500]
        log.warning("delivery receipt %s refused: %s", delivery.message_id, reason)
        document = tx.get_document(axis_id) if axis_id else None
        on_timeline = document is not None and any(d.recipient_code == recipient
                                                    for d in tx.deliveries(document.axis_id))
        if on_timeline and document is not None:
            tx.add_receipt(document.axis_id, "error", delivery.body, recipient=recipient, code=str(code.number),
                           detail=f"delivery receipt refused: {reason}")
        tx.audit("hub", "receipt-refused", axis_id if on_timeline else delivery.message_id,
                 {"code": code.number, "name": code.name, "detail": detail[:300], "recipient": recipient,
                  "message_id": delivery.message_id})
        return reason


def delivery_receipt_mismatch(document: Document, delivered_to: Iterable[str], signer: str,
                              receipt: Receipt) -> str | None:
    """Why a verified delivery receipt does not match what the store holds, or None."""
    if receipt.kind != "delivery" or receipt.outcome != "delivered":
        return f"expected a delivery receipt, got {receipt.kind}/{receipt.outcome}"
    if receipt.recipient != signer or receipt.issuer != signer:
        return f"a delivery receipt for {receipt.recipient} signed by {signer}"
    if receipt.axis_id != document.axis_id:
        return f"a delivery receipt for {receipt.axis_id}, not {document.axis_id}"
    if signer not in delivered_to:
        return f"{document.axis_id} was not delivered to {signer}"
    if receipt.sender is not None and receipt.sender != document.sender_code:
        return f"{document.axis_id} was sent by {document.sender_code}, not {receipt.sender}"
    if receipt.digest != document.digest:
        return f"digest {receipt.digest} differs from the signed packet's {document.digest}"
    return None


def record_delivery_receipt(tx, body: bytes, signer: str, receipt: Receipt) -> str | None:
    """Record a verified delivery receipt (state, timeline, forward to the sender, audit) in `tx`;
    None, or why it does not match the store (then nothing but an audit entry is written)."""
    document = tx.get_document(receipt.axis_id or "")
    if document is None:
        return f"no document {receipt.axis_id}"
    mismatch = delivery_receipt_mismatch(document, [d.recipient_code for d in tx.deliveries(document.axis_id)],
                                         signer, receipt)
    if mismatch is not None:
        if mismatch.startswith("digest"):
            # Proof that the recipient holds other bytes than the sender signed: record it, never "delivered".
            tx.audit("hub", "delivery-digest-mismatch", document.axis_id,
                     {"recipient": signer, "expected": document.digest, "received": receipt.digest})
        return mismatch
    if not tx.mark_seen(RECEIPTS_CONSUMER, f"{document.axis_id}:{signer}"):
        return None  # already recorded: the adapter re-sent it after a crash
    tx.add_receipt(document.axis_id, "delivery", body, recipient=signer, code="delivered",
                   detail=f"stored {receipt.time.isoformat()}")
    moved = tx.transition(document.axis_id, signer, DeliveryState.DELIVERED)
    tx.enqueue(wire.receipts_queue(document.sender_code),
               wire.receipt_message_id("delivery", document.axis_id, signer),
               payload=body,
               headers={wire.H_RECEIPT_KIND: "delivery", wire.H_AXIS_ID: document.axis_id,
                        wire.H_RECIPIENT: signer})
    tx.audit("hub", "delivered", document.axis_id,
             {"recipient": signer, "digest": receipt.digest, "state": "delivered" if moved else "unchanged"})
    return None


class DeadLetterSweep:
    """Turns dead-lettered deliveries into `failed` states and error receipts to their senders."""

    def __init__(self, store: Store, transport: Transport, pool: WorkerPool) -> None:
        self._store = store
        self._transport = transport
        self._pool = pool

    async def sweep(self) -> int:
        """One pass over every agency's dead-letter queue; returns how many new failures were recorded."""
        agencies = await asyncio.to_thread(self._store.list_agencies)
        recorded = 0
        for agency in agencies:
            letters = await self._transport.dead_letters(wire.inbox_queue(agency.code))
            letters = [letter for letter in letters if letter.headers.get(wire.H_AXIS_ID)]
            # Parked letters stay in the queue for operators; sign an error receipt only for new ones.
            fresh = await asyncio.to_thread(self._unrecorded, agency.code, letters)
            if not fresh:
                continue
            receipts = [Receipt(kind="error", outcome="failed", issuer=wire.HUB_IDENTITY, time=now_utc(),
                                axis_id=letter.headers[wire.H_AXIS_ID], sender=letter.headers.get(wire.H_SENDER),
                                recipient=agency.code, document_id=letter.headers.get(wire.H_DOCUMENT_ID),
                                digest=letter.headers.get(wire.H_DIGEST),
                                refusal_code=RefusalCode.DELIVERY_FAILED.number,
                                refusal_name=RefusalCode.DELIVERY_FAILED.name,
                                refusal_detail=f"after {letter.attempts} attempts: {letter.reason}"[:500])
                        for letter in fresh]
            signed = await self._pool.sign(receipts)
            recorded += await asyncio.to_thread(self._commit, agency.code, fresh, receipts, signed)
        return recorded

    def _unrecorded(self, code: str, letters: list) -> list:
        recorded = self._store.receipted([letter.headers[wire.H_AXIS_ID] for letter in letters], "error",
                                         recipient=code, code=str(RefusalCode.DELIVERY_FAILED.number))
        return [letter for letter in letters if letter.headers[wire.H_AXIS_ID] not in recorded]

    def _commit(self, code: str, letters, receipts: list[Receipt], signed: list[bytes]) -> int:
        count = 0
        with self._store.write() as tx:
            for letter, receipt, body in zip(letters, receipts, signed, strict=True):
                axis_id = receipt.axis_id or ""
                if not tx.mark_seen(DEAD_LETTER_CONSUMER, f"{axis_id}:{code}"):
                    continue
                document = tx.get_document(axis_id)
                if document is None:
                    continue
                moved = tx.transition(axis_id, code, DeliveryState.FAILED, error=letter.reason[:500])
                tx.add_receipts([NewReceipt(axis_id=axis_id, kind="error", body=body, recipient_code=code,
                                            code=str(RefusalCode.DELIVERY_FAILED.number),
                                            detail=letter.reason[:500])])
                tx.enqueue_many([NewOutboxMessage(
                    queue=wire.receipts_queue(document.sender_code),
                    message_id=wire.receipt_message_id("error", axis_id, code), payload=body,
                    headers={wire.H_RECEIPT_KIND: "error", wire.H_AXIS_ID: axis_id, wire.H_RECIPIENT: code})])
                tx.audit_many([NewAuditEntry("hub", "delivery-failed", axis_id, {
                    "recipient": code, "attempts": letter.attempts, "reason": letter.reason[:300],
                    "state": "failed" if moved else "unchanged"})])
                count += 1
        if count:
            log.warning("%d deliveries to %s failed for good; error receipts sent", count, code)
        return count
