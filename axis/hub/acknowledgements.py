"""What comes back after delivery: recipients' delivery receipts, and deliveries that failed for good.

- A delivery receipt, signed by the recipient, says "I stored these bytes": the
  hub checks the signer is the recipient, that the digest is the digest of the
  bytes the sender signed, records it, moves the delivery to `delivered` and
  forwards the signed receipt to the sender.
- A delivery the recipient's adapter could not take after every retry sits in
  that agency's dead-letter queue, and its copy comes to the hub on the
  transport's dead-letter feed: if it matches the store, the hub marks it
  `failed` and sends the sender an error receipt, signed by the hub. The message
  stays parked for an operator to replay.

Both are idempotent: each is recorded once per (document, recipient), in one
transaction with its audit entry and the outgoing message.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from axis import wire
from axis.hub.verification import Refused
from axis.hub.workers import WorkerPool
from axis.receipt import Receipt, now_utc, read_receipt
from axis.refusals import Refusal, RefusalCode
from axis.store import DeliveryState, Document, NewAuditEntry, NewOutboxMessage, NewReceipt, Store, WriteTx
from axis.transport import DeadLetter, Delivery

log = logging.getLogger("axis.hub.acknowledgements")

RECEIPTS_CONSUMER = "hub.delivery-receipts"
DEAD_LETTER_CONSUMER = "hub.dead-letters"
DEAD_LETTER_REFUSALS = "hub.dead-letter-refusals"


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


class DeadLetters:
    """Turns the transport's dead-letter feed into `failed` states and error receipts to senders.

    A dead letter is a claim, not a proof (anyone who can write to the broker can put one on the
    feed), so it changes state only when it matches what the store holds: the axis id names a
    document, that document was delivered to the agency whose queue the letter died on, and the
    SHA-256 of the letter's body is the document's digest. Anything else changes no table but the
    audit log (one `dead-letter-refused` entry, AX415) and says so in the log. The letter itself
    stays parked in its dead-letter queue for operators (`axis dlq list`), whatever happens here.
    """

    def __init__(self, store: Store, pool: WorkerPool) -> None:
        self._store = store
        self._pool = pool

    async def process(self, batch: Sequence[Delivery]) -> int:
        """Record a batch of feed deliveries; returns how many new failures were recorded."""
        letters = [d.letter for d in batch if d.letter is not None]
        checked = await asyncio.to_thread(self._check, letters)
        genuine = [c for c in checked if c.document is not None and not c.recorded]
        signed = await self._pool.sign([self._error_receipt(c) for c in genuine]) if genuine else []
        return await asyncio.to_thread(self._commit, checked, dict(zip(map(id, genuine), signed, strict=True)))

    def _check(self, letters: Sequence[DeadLetter]) -> list[_Checked]:
        """What the store says of each letter (read-only; `_commit` checks again in its transaction)."""
        checked = []
        for letter in letters:
            if not _is_inbox(letter.queue):
                log.warning("a message on %s was dead-lettered after %d attempt(s): %s; it stays parked "
                            "(axis dlq list %s)", letter.queue, letter.attempts, letter.reason[:300], letter.queue)
                continue
            document, why = self._match(self._store, letter)
            checked.append(_Checked(letter, document, why))
        failed = str(RefusalCode.DELIVERY_FAILED.number)
        for code in {c.letter.queue for c in checked if c.document is not None}:
            mine = [c for c in checked if c.document is not None and c.letter.queue == code]
            done = self._store.receipted([c.document.axis_id for c in mine if c.document], "error",
                                         recipient=code, code=failed)
            for c in mine:
                c.recorded = c.document is not None and c.document.axis_id in done
        return checked

    @staticmethod
    def _match(reads: Store | WriteTx, letter: DeadLetter) -> tuple[Document | None, str]:
        """The document a letter is a genuine dead delivery of, or None and why not."""
        axis_id = letter.headers.get(wire.H_AXIS_ID) or ""
        document = reads.get_document(axis_id) if axis_id else None
        if document is None:
            return None, f"no document has axis id {axis_id!r}"
        if not any(d.recipient_code == letter.queue for d in reads.deliveries(axis_id)):
            return None, f"{axis_id} was never delivered to {letter.queue}"
        digest = hashlib.sha256(letter.body).hexdigest()
        if digest != document.digest:
            return None, f"the body's SHA-256 {digest} is not the digest {document.digest} of {axis_id}"
        return document, ""

    @staticmethod
    def _error_receipt(checked: _Checked) -> Receipt:
        letter, document = checked.letter, checked.document
        assert document is not None
        return Receipt(kind="error", outcome="failed", issuer=wire.HUB_IDENTITY, time=now_utc(),
                       axis_id=document.axis_id, sender=document.sender_code, recipient=letter.queue,
                       document_id=document.document_id if document.kind == "document" else None,
                       digest=document.digest, refusal_code=RefusalCode.DELIVERY_FAILED.number,
                       refusal_name=RefusalCode.DELIVERY_FAILED.name,
                       refusal_detail=f"after {letter.attempts} attempts: {letter.reason}"[:500])

    def _commit(self, checked: Sequence[_Checked], signed: dict[int, bytes]) -> int:
        count = 0
        with self._store.write() as tx:
            for c in checked:
                letter = c.letter
                if c.document is None:
                    self._refuse(tx, letter, c.why)
                    continue
                body = signed.get(id(c))
                if body is None:  # recorded before: a replayed letter that died again, or a redelivery
                    continue
                document, why = self._match(tx, letter)
                if document is None:
                    self._refuse(tx, letter, why)
                    continue
                code = letter.queue
                if not tx.mark_seen(DEAD_LETTER_CONSUMER, f"{document.axis_id}:{code}"):
                    continue
                moved = _transition_failed(tx, document.axis_id, code, letter)
                tx.add_receipts([NewReceipt(axis_id=document.axis_id, kind="error", body=body, recipient_code=code,
                                            code=str(RefusalCode.DELIVERY_FAILED.number),
                                            detail=letter.reason[:500])])
                tx.enqueue_many([NewOutboxMessage(
                    queue=wire.receipts_queue(document.sender_code),
                    message_id=wire.receipt_message_id("error", document.axis_id, code), payload=body,
                    headers={wire.H_RECEIPT_KIND: "error", wire.H_AXIS_ID: document.axis_id,
                             wire.H_RECIPIENT: code})])
                tx.audit_many([NewAuditEntry("hub", "delivery-failed", document.axis_id, {
                    "recipient": code, "attempts": letter.attempts, "reason": letter.reason[:300],
                    "state": "failed" if moved else "unchanged"})])
                count += 1
        if count:
            log.warning("%d deliveries failed for good; error receipts sent to their senders", count)
        return count

    @staticmethod
    def _refuse(tx: WriteTx, letter: DeadLetter, why: str) -> None:
        digest = hashlib.sha256(letter.body).hexdigest()
        key = hashlib.sha256(f"{letter.queue}\0{letter.message_id}\0{digest}".encode()).hexdigest()
        if not tx.mark_seen(DEAD_LETTER_REFUSALS, key):
            return  # the same forgery delivered again: refused once
        code = RefusalCode.DEAD_LETTER_UNMATCHED
        tx.audit("hub", "dead-letter-refused", letter.headers.get(wire.H_AXIS_ID) or letter.message_id,
                 {"code": code.number, "queue": letter.queue, "message_id": letter.message_id[:255],
                  "digest": digest, "detail": why[:300]})
        log.warning("%s: a dead letter on %s.dlq (message id %r) matches no delivery: %s; nothing changed",
                    code.label, letter.queue, letter.message_id[:255], why)


@dataclass
class _Checked:
    letter: DeadLetter
    document: Document | None   # the document it is a genuine dead delivery of, or None
    why: str                    # why not, when document is None
    recorded: bool = False      # its failure was recorded before


def _is_inbox(queue: str) -> bool:
    """Whether `queue` is an agency's inbox (documents and statuses), the only queue whose dead letters
    are failed deliveries."""
    return queue not in (wire.INTAKE_QUEUE, wire.RECEIPTS_QUEUE) and not queue.endswith(".receipts")


def _transition_failed(tx: WriteTx, axis_id: str, code: str, letter: DeadLetter) -> bool:
    return tx.transition(axis_id, code, DeliveryState.FAILED, error=letter.reason[:500], attempts=letter.attempts)
