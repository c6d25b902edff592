"""Parked deliveries: what a recipient reported it could not take, waiting for an operator.

A delivery becomes `parked` when its recipient reports through the gateway that
it cannot take the document (`AgencyService.fail`). Only an operator moves it on
(`axis dlq`): `replay` puts it back in the recipient's inbox as a new delivery
attempt (parked -> queued, attempts + 1), `purge` gives up on it for good
(parked -> failed). Each writes its audit entry (`delivery-replayed`,
`delivery-purged`) in the caller's transaction, so neither state change can
happen unlogged. Both go through `WriteTx.transition`, i.e. the state machine
(`axis.store.states`): a delivery the recipient has acknowledged meanwhile is
not parked any more and is left alone.

Callers may rely on: `parked` pages in (parked at, axis id, recipient) order,
oldest first; `replay` and `purge` returning False, and writing nothing, for a
delivery that is not parked.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from axis.store.schema import deliveries, documents
from axis.store.states import DeliveryState
from axis.store.store import Store, WriteTx

DELIVERY_REPLAYED, DELIVERY_PURGED = "delivery-replayed", "delivery-purged"


@dataclass(frozen=True, slots=True)
class ParkedDelivery:
    axis_id: str
    recipient_code: str
    sender_code: str
    document_id: str
    kind: str                # document | status
    received_at: datetime    # when the axis accepted the document
    parked_at: datetime      # when the recipient's report parked it
    attempts: int            # replays so far
    reason: str | None       # what the recipient reported


def parked(store: Store, *, recipient: str | None = None, axis_id: str | None = None,
           after: tuple[datetime, str, str] | None = None, limit: int = 1000) -> list[ParkedDelivery]:
    """Parked deliveries (to `recipient`, of `axis_id`), oldest first; `after` is the last of the previous page."""
    d, dl = documents, deliveries
    q = sa.select(dl.c.axis_id, dl.c.recipient_code, d.c.sender_code, d.c.document_id, d.c.kind, d.c.received_at,
                  dl.c.updated_at, dl.c.attempts, dl.c.last_error).join(d, d.c.axis_id == dl.c.axis_id).where(
        dl.c.state == DeliveryState.PARKED.value)
    if recipient is not None:
        q = q.where(dl.c.recipient_code == recipient)
    if axis_id is not None:
        q = q.where(dl.c.axis_id == axis_id)
    if after is not None:
        at, last_id, last_recipient = after
        q = q.where(sa.or_(dl.c.updated_at > at, sa.and_(dl.c.updated_at == at, sa.or_(
            dl.c.axis_id > last_id, sa.and_(dl.c.axis_id == last_id, dl.c.recipient_code > last_recipient)))))
    q = q.order_by(dl.c.updated_at, dl.c.axis_id, dl.c.recipient_code).limit(limit)
    with store.engine.connect() as c:
        return [ParkedDelivery(*row) for row in c.execute(q)]


def replay(tx: WriteTx, axis_id: str, recipient: str, *, actor: str) -> bool:
    """Put a parked delivery back in its recipient's inbox: a new attempt, audited. False if it is not parked."""
    current = next((d for d in tx.deliveries(axis_id) if d.recipient_code == recipient), None)
    if current is None or current.state != DeliveryState.PARKED.value:
        return False
    attempt = current.attempts + 1
    if not tx.transition(axis_id, recipient, DeliveryState.QUEUED, attempts=attempt):
        return False  # acknowledged (or replayed) since it was read
    tx.audit(actor, DELIVERY_REPLAYED, axis_id, {"recipient": recipient, "attempt": attempt,
                                                 "reason": (current.last_error or "")[:300]})
    return True


def purge(tx: WriteTx, axis_id: str, recipient: str, *, actor: str) -> bool:
    """Give up on a parked delivery: `failed` for good, audited. False if it is not parked."""
    current = next((d for d in tx.deliveries(axis_id) if d.recipient_code == recipient), None)
    if current is None or current.state != DeliveryState.PARKED.value:
        return False
    if not tx.transition(axis_id, recipient, DeliveryState.FAILED):
        return False
    tx.audit(actor, DELIVERY_PURGED, axis_id, {"recipient": recipient, "attempts": current.attempts,
                                               "reason": (current.last_error or "")[:300]})
    return True
