"""The hub: consumes intake and delivery receipts, relays the outbox, sweeps dead letters.

A hub process holds no state of its own: everything it knows is in the store
and the broker, so any number of hub processes can run against RabbitMQ and
PostgreSQL. (With SQLite the store allows one writer at a time; several hub
processes are safe but do not add throughput.)

Each consumer takes messages in batches (up to `batch_size`, or whatever
arrived within `batch_wait` seconds) and acknowledges them only after one
transaction per batch has committed: an intake batch goes whole to a worker
process (`workers.py`), which checks, decides, signs and commits it; a batch
of delivery receipts is verified in the workers and committed here. A
failure before the commit leaves the batch unacknowledged: the broker delivers
it again and the duplicate checks make the second pass harmless.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from axis import wire
from axis.hub.acknowledgements import DeadLetterSweep, DeliveryReceipts
from axis.hub.intake import Submission
from axis.hub.relay import Relay
from axis.hub.verification import TrustSettings
from axis.hub.workers import WorkerPool
from axis.retry import retrying
from axis.store import Store
from axis.transport import Delivery, Transport, TransportError

log = logging.getLogger("axis.hub")


@dataclass(frozen=True)
class HubSettings:
    trust: TrustSettings
    workers: int | None = None          # worker processes; None = one per core; 0 = a thread
    batch_size: int = 200
    batch_wait: float = 0.05            # seconds to wait for a batch to fill
    in_flight: int | None = None        # batches being processed at once; None = two per worker
    prefetch: int = 800
    relay_batch: int = 500              # outbox rows the relay publishes per pass
    relay_passes: int = 2               # relay passes running at once
    outbox_retention: float = 3600.0    # seconds a published outbox row is kept before the relay purges it
    dead_letter_sweep: float = 2.0      # seconds between dead-letter sweeps
    stall_after: float = 10.0           # seconds a consumer may hand out nothing while messages wait


class Hub:
    def __init__(self, settings: HubSettings, store: Store, transport: Transport) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        # Intake runs in the workers, each with its own connection to the same store.
        self.pool = WorkerPool(settings.trust, settings.workers,
                               store_url=store.engine.url.render_as_string(hide_password=False))
        self.delivery_receipts = DeliveryReceipts(store, self.pool)
        self.relay = Relay(store, transport, batch=settings.relay_batch, passes=settings.relay_passes,
                           retention=settings.outbox_retention)
        self.sweep = DeadLetterSweep(store, transport, self.pool)
        self._tasks: list[asyncio.Task] = []
        self.started = asyncio.Event()      # set once the queues are declared and consumers run

    async def declare_queues(self) -> None:
        """The hub's own queues and every registered agency's pair of queues."""
        await self.transport.declare_queue(wire.INTAKE_QUEUE)
        await self.transport.declare_queue(wire.RECEIPTS_QUEUE)
        for agency in await asyncio.to_thread(self.store.list_agencies):
            await declare_agency_queues(self.transport, agency.code)

    async def start(self) -> None:
        await self.declare_queues()
        await self.pool.start()
        self._tasks = [
            asyncio.create_task(self._consume(wire.INTAKE_QUEUE, self._handle_intake), name="intake"),
            asyncio.create_task(self._consume(wire.RECEIPTS_QUEUE, self._handle_receipts), name="receipts"),
            asyncio.create_task(self.relay.run(), name="relay"),
            asyncio.create_task(self._sweep_forever(), name="dead-letters"),
            asyncio.create_task(self._watch_relay(), name="relay-watch"),
        ]
        self.started.set()

    async def run(self) -> None:
        """Start and run until cancelled."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await asyncio.to_thread(self.pool.close)

    # ----------------------------------------------------------- consumers

    async def _consume(self, queue: str, handle: Callable[[list[Delivery]], Awaitable[None]]) -> None:
        """Batch deliveries from `queue` into `handle`, up to `in_flight` batches at once.

        Overlapping batches keeps every core busy: each worker works on its own batch
        while the hub settles the ones before. If a batch fails, the consumer is
        closed, so its unsettled messages are delivered again.
        """
        while True:
            failed = asyncio.Event()
            running: dict[asyncio.Task, float] = {}  # batch -> when it started
            # Two batches per worker: one being worked on, the next already queued behind it.
            slots = asyncio.Semaphore(self.settings.in_flight or max(2, 2 * self.pool.workers))

            async def run(batch: list[Delivery]) -> None:
                try:
                    await handle(batch)
                except Exception:
                    log.exception("a batch from %s failed; its messages will be delivered again", queue)
                    failed.set()
                finally:
                    slots.release()

            activity = [asyncio.get_running_loop().time()]
            pending: list[asyncio.Future] = []  # a request for the next delivery, still waiting
            watchdog = asyncio.create_task(self._watch(queue, activity, running, failed))
            try:
                async with self.transport.consume(queue, prefetch=self.settings.prefetch) as deliveries:
                    iterator = deliveries.__aiter__()
                    while not failed.is_set():
                        batch = await self._next_batch(iterator, failed, pending)
                        if batch:
                            activity[0] = asyncio.get_running_loop().time()
                            await slots.acquire()
                            task = asyncio.create_task(run(batch))
                            running[task] = asyncio.get_running_loop().time()
                            task.add_done_callback(lambda t: running.pop(t, None))
                    await asyncio.gather(*running, return_exceptions=True)
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                for task in running:
                    task.cancel()
                raise
            except StopAsyncIteration:
                await asyncio.sleep(0.2)
            except Exception:
                log.exception("consumer of %s failed; its unsettled messages will be delivered again", queue)
                await asyncio.sleep(1.0)
            finally:
                watchdog.cancel()
                for request in pending:  # its consumer is closed by now: nothing it holds can be lost
                    request.cancel()

    async def _watch(self, queue: str, activity: list[float], running: dict[asyncio.Task, float],
                     failed: asyncio.Event) -> None:
        """Liveness: a consumer that hands out nothing while its queue has ready messages is restarted.

        It should never fire; when it does, it says so, with the stacks of every task and thread,
        because something below lost track of messages. A batch that runs longer than
        `stall_after` is reported the same way (once), and left running: it may be slow, not lost.
        """
        loop = asyncio.get_running_loop()
        reported: set[tuple[asyncio.Task, float]] = set()
        while not failed.is_set():
            await asyncio.sleep(self.settings.stall_after / 2)
            self._report_overdue(running, f"a batch from {queue}", reported)
            now = loop.time()
            idle = now - activity[0]
            if idle < self.settings.stall_after or running:
                continue
            try:
                ready = await self.transport.depth(queue)
            except TransportError:
                continue
            if ready:
                log.warning("the consumer of %s handed out nothing for %.0f s while %d messages were ready; "
                            "restarting it%s", queue, idle, ready, _stacks())
                failed.set()

    async def _next_batch(self, iterator, failed: asyncio.Event,
                          pending: list[asyncio.Future]) -> list[Delivery]:
        """The next delivery, then whatever else arrives within `batch_wait`, up to `batch_size`.

        A request for the next delivery is never cancelled: when the batch closes (or the
        consumer is stopped) while one is still waiting, it is kept in `pending` and is the
        first of the next batch. Cancelling it could lose a delivery it had already taken,
        and on Python 3.11 it once left the batcher waiting forever on a request that had
        swallowed its cancellation, with a half-collected batch never settled.
        """
        first = pending.pop() if pending else _next_delivery(iterator)
        stop = asyncio.ensure_future(failed.wait())
        try:
            done, _ = await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if first not in done:
            pending.append(first)
            return []
        batch = [first.result()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.batch_wait
        while len(batch) < self.settings.batch_size:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            following = _next_delivery(iterator)
            done, _ = await asyncio.wait({following}, timeout=timeout)
            if not done:
                pending.append(following)
                break
            batch.append(following.result())
        return batch

    async def _handle_intake(self, batch: list[Delivery]) -> None:
        submissions = [Submission(submission_id=d.headers.get(wire.H_SUBMISSION) or d.message_id, body=d.body,
                                  reply_to=d.headers.get(wire.H_REPLY_TO), proof=_proof(d)) for d in batch]
        # An outage is waited out while the batch is held: no redelivery is counted, nothing turns poison.
        outcomes = await retrying(f"an intake batch of {len(batch)}")(self.pool.intake)(submissions)
        self.relay.wake()
        await _settle(batch, [outcome.dead_letter for outcome in outcomes])

    async def _handle_receipts(self, batch: list[Delivery]) -> None:
        verdicts = await retrying(f"a batch of {len(batch)} delivery receipts")(self.delivery_receipts.process)(batch)
        self.relay.wake()
        await _settle(batch, verdicts)

    async def _watch_relay(self) -> None:
        """A relay pass that takes longer than `stall_after` is reported once, with every stack."""
        reported: set[tuple[asyncio.Task, float]] = set()
        while True:
            await asyncio.sleep(self.settings.stall_after / 2)
            self._report_overdue(self.relay.in_pass, "a relay pass", reported)

    def _report_overdue(self, under_way: dict[asyncio.Task, float], what: str,
                        reported: set[tuple[asyncio.Task, float]]) -> None:
        """Log once, with every stack, each piece of work (task -> loop time it started) older than
        `stall_after`. It is left running: it may be slow, not lost."""
        now = asyncio.get_running_loop().time()
        for task, since in list(under_way.items()):
            if now - since > self.settings.stall_after and (task, since) not in reported:
                reported.add((task, since))
                log.warning("%s has been running for %.0f s%s", what, now - since, _stacks())

    async def _sweep_forever(self) -> None:
        while True:
            try:
                if await retrying("a dead-letter sweep")(self.sweep.sweep)():
                    self.relay.wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dead-letter sweep failed; trying again")
            await asyncio.sleep(self.settings.dead_letter_sweep)


def _next_delivery(iterator) -> asyncio.Future:
    """A request for the consumer's next delivery; its end (the consumer closed) is never reported as lost."""
    request = asyncio.ensure_future(iterator.__anext__())
    request.add_done_callback(lambda f: f.cancelled() or f.exception())
    return request


def _stacks() -> str:
    """Every asyncio task's and thread's stack, for a report that should never be needed."""
    out = io.StringIO()
    out.write("\n--- tasks\n")
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    out.write("--- threads\n")
    frames = sys._current_frames()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if frame is not None:
            out.write(f"thread {thread.name}:\n{''.join(traceback.format_stack(frame, limit=12))}")
    return out.getvalue()


async def _settle(batch: Sequence[Delivery], verdicts: Sequence[str | None]) -> None:
    """Ack what was handled, dead-letter what never can be; a lost ack only means a harmless redelivery."""
    async def one(delivery: Delivery, verdict: str | None) -> None:
        try:
            await (delivery.ack() if verdict is None else delivery.dead_letter(verdict))
        except TransportError as exc:
            log.warning("could not settle %s (%s); it will be delivered again", delivery.message_id, exc)
    await asyncio.gather(*(one(d, v) for d, v in zip(batch, verdicts, strict=True)))


def _proof(delivery: Delivery) -> bytes | None:
    """A status's copy of its sender's delivery receipt (`wire.H_PROOF`); unreadable means none."""
    text = delivery.headers.get(wire.H_PROOF)
    try:
        return base64.b64decode(text, validate=True) if text else None
    except ValueError:
        return None


async def declare_agency_queues(transport: Transport, code: str) -> None:
    await transport.declare_queue(wire.inbox_queue(code))
    await transport.declare_queue(wire.receipts_queue(code))
