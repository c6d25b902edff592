"""The outbox relay: publishes what a committed transaction promised, then marks it published.

Rows are claimed with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several
hub processes share the work; SQLite: one writer). A row is marked published
only after the broker confirmed the message; a crash between the two re-publishes
it after the lease, and consumers de-duplicate on the message id. So the relay
is at-least-once and never loses a row.

Published rows are kept for `retention` seconds (what was sent, and when, while
anyone still asks), then purged so that the table holds the backlog and recent
history only; rows not yet published are never purged.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from axis import wire
from axis.retry import publish_all, retrying
from axis.seal import SealCertificate
from axis.store import DeliveryState, OutboxItem, Store
from axis.transport import OutgoingMessage, Transport, TransportError

log = logging.getLogger("axis.hub.relay")
_PURGE_SLICE = 5_000

UNROUTABLE_WAIT = 5.0  # seconds before a row whose queue did not exist is tried again


class Relay:
    def __init__(self, store: Store, transport: Transport, *, batch: int = 500, lease_seconds: float = 30.0,
                 idle_poll: float = 0.25, passes: int = 2, retention: float = 3600.0,
                 seal_certificate: SealCertificate | None = None) -> None:
        self._store = store
        self._attach = seal_certificate.attach if seal_certificate is not None else dict
        self._transport = transport
        self._batch = batch
        self._lease = lease_seconds
        self._idle_poll = idle_poll
        self._passes = passes
        self._retention = timedelta(seconds=retention)
        # Often enough that a purge deletes a small slice, never more than once a minute.
        self._purge_every = min(max(retention / 10, 1.0), 60.0)
        self.in_pass: dict[asyncio.Task, float] = {}  # passes under way -> when they started (loop time)
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled, `passes` passes at a time.

        Passes overlap so that one claims from the store while another publishes to
        the broker; their leases keep them from ever taking the same rows.
        """
        await asyncio.gather(self._purge_loop(), *(self._loop() for _ in range(self._passes)))

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self._purge_every)
            try:
                await retrying("purging the outbox")(asyncio.to_thread)(self.purge)
            except Exception:
                log.exception("outbox purge failed; trying again in %.0f s", self._purge_every)

    def purge(self) -> int:
        """Delete the rows published more than `retention` ago; returns how many."""
        before = self._store.clock() - self._retention
        purged = 0
        while True:
            # Bounded slices, each its own short transaction: writers never wait long.
            with self._store.write() as tx:
                count = tx.purge_outbox(before, limit=_PURGE_SLICE)
            purged += count
            if count < _PURGE_SLICE:
                return purged

    async def _loop(self) -> None:
        me = asyncio.current_task()
        assert me is not None  # always inside a task here (run() gathers the loops)
        loop = asyncio.get_running_loop()
        while True:
            self.in_pass[me] = loop.time()
            try:
                count: int | None = await self.relay_once()
            except Exception:
                log.exception("relay pass failed; retrying")
                count = None
            finally:
                del self.in_pass[me]
            if count is None:
                await asyncio.sleep(1.0)
            elif count < self._batch:
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._idle_poll):  # not wait_for: see transport/embedded.py
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def relay_once(self) -> int:
        """Publish one claimed batch; returns how many rows were claimed.

        Database and broker errors are retried by the policy (axis.retry) within the
        pass; publishing is retried only while the rows' lease lasts, after which any
        pass may claim them again.
        """
        loop = asyncio.get_running_loop()
        items = await retrying("claiming outbox rows")(asyncio.to_thread)(
            self._store.claim_outbox, self._batch, self._lease)
        if not items:
            return 0
        lease_ends = loop.time() + self._lease
        try:
            outcomes = await publish_all(self._transport, [
                OutgoingMessage(queue=item.queue, body=item.body, message_id=item.message_id, priority=item.priority,
                                headers=self._attach({k: str(v) for k, v in item.headers.items()}))
                for item in items], f"relaying {len(items)} outbox rows", until=lambda: loop.time() >= lease_ends)
        except TransportError as exc:
            log.warning("%d outbox rows were not all confirmed within their lease (%s); they are claimed again",
                        len(items), exc)
            return len(items)
        published = [item for item, error in zip(items, outcomes, strict=True) if error is None]
        if published:
            await retrying("marking outbox rows published")(asyncio.to_thread)(self._mark_published, published)
            self.published += len(published)
        unroutable = [(item, error) for item, error in zip(items, outcomes, strict=True) if error is not None]
        if unroutable:
            for item, error in unroutable[:3]:
                log.warning("could not publish %s to %s: %s", item.message_id, item.queue, error)
            # Not an outage: the message waits for its queue to be declared (an agency being added).
            await retrying("releasing unroutable outbox rows")(asyncio.to_thread)(
                self._store.release, [item.id for item, _ in unroutable], UNROUTABLE_WAIT)
        return len(items)

    def _mark_published(self, items: list[OutboxItem]) -> None:
        """Outbox rows and the deliveries they carried move together."""
        with self._store.write() as tx:
            tx.mark_published([item.id for item in items])
            tx.transition_many([(item.body_ref, item.headers[wire.H_RECIPIENT]) for item in items
                                if item.body_ref and item.headers.get(wire.H_RECIPIENT)
                                and item.headers.get(wire.H_KIND) in ("document", "status")],
                               DeliveryState.PUBLISHED)
