"""What comes back after delivery: recipients' delivery receipts, and dead letters.

- A delivery receipt says "I stored these bytes": signed by the recipient (its
  adapter sends it with its ack through the gateway), or by the hub when the
  agency acknowledged without one. It is recorded only when it matches the
  store: the signer is a recipient of that axis id, and the digest is the digest
  of the bytes the sender signed. `record_delivery_receipt` moves the delivery to
  `delivered` in the caller's transaction; recording it twice is harmless.
- Dead letters: the only queue Axis consumes is `axis.intake` (deliveries wait in
  the store), so a dead letter is a submission that could not be handled at
  all (a poison message). The hub logs and audits each one from the transport's
  dead-letter feed; it stays parked for operators (`axis dlq list axis.intake`, then `replay` or
  `purge`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Sequence

from axis import wire
from axis.receipt import Receipt
from axis.store import DeliveryState, Document, Store
from axis.transport import Delivery

log = logging.getLogger("axis.hub.acknowledgements")

RECEIPTS_CONSUMER = "hub.delivery-receipts"
DEAD_LETTER_CONSUMER = "hub.dead-letters"


class DeadLetters:
    """Records each parked letter once: a warning in the log and a `dead-letter` audit entry."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def process(self, batch: Sequence[Delivery]) -> int:
        """Record a batch of feed deliveries; returns how many were new."""
        return await asyncio.to_thread(self._commit, [d.letter for d in batch if d.letter is not None])

    def _commit(self, letters: Sequence) -> int:
        count = 0
        with self._store.write() as tx:
            for letter in letters:
                digest = hashlib.sha256(letter.body).hexdigest()
                key = hashlib.sha256(f"{letter.queue}\0{letter.message_id}\0{digest}".encode()).hexdigest()
                if not tx.mark_seen(DEAD_LETTER_CONSUMER, key):
                    continue  # the feed delivered it again
                tx.audit("hub", "dead-letter", letter.message_id[:255],
                         {"queue": letter.queue, "attempts": letter.attempts, "reason": letter.reason[:300],
                          "digest": digest})
                log.warning("a message on %s was dead-lettered after %d attempt(s): %s; it stays parked "
                            "(axis dlq list %s)", letter.queue, letter.attempts, letter.reason[:300], letter.queue)
                count += 1
        return count


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


def record_delivery_receipt(tx, body: bytes, signer: str, receipt: Receipt, *,
                            credential: str | None = None) -> str | None:
    """Record a verified delivery receipt of recipient `signer` (state, timeline, audit) in `tx`;
    None, or why it does not match the store (then nothing but an audit entry is written).

    `receipt` is the agency's own, signed by `signer`, or one the hub signed for it (issuer AXIS)
    when the agency acknowledged through the gateway with `credential` and sent none.
    """
    document = tx.get_document(receipt.axis_id or "")
    if document is None:
        return f"no document {receipt.axis_id}"
    checked = dataclasses.replace(receipt, issuer=signer) if receipt.issuer == wire.HUB_IDENTITY else receipt
    mismatch = delivery_receipt_mismatch(document, [d.recipient_code for d in tx.deliveries(document.axis_id)],
                                         signer, checked)
    if mismatch is not None:
        if mismatch.startswith("digest"):
            # Proof that the recipient holds other bytes than the sender signed: record it, never "delivered".
            tx.audit("hub", "delivery-digest-mismatch", document.axis_id,
                     {"recipient": signer, "expected": document.digest, "received": receipt.digest})
        return mismatch
    if not tx.mark_seen(RECEIPTS_CONSUMER, f"{document.axis_id}:{signer}"):
        return None  # already recorded: the adapter re-sent it after a crash
    vouched = receipt.issuer == wire.HUB_IDENTITY
    tx.add_receipt(document.axis_id, "delivery", body, recipient=signer, code="delivered",
                   detail=(f"acknowledged by credential {credential}; receipt signed by Axis" if vouched
                           else f"stored {receipt.time.isoformat()}"))
    moved = tx.transition(document.axis_id, signer, DeliveryState.DELIVERED)
    data = {"recipient": signer, "digest": receipt.digest, "state": "delivered" if moved else "unchanged"}
    if credential is not None:
        data["credential"] = credential
    tx.audit("gateway" if credential is not None else "hub", "delivered", document.axis_id, data)
    return None
