"""The hub: consumes the intake queue and the dead-letter feed.

A hub process holds no state of its own: everything it knows is in the store
and the broker, so any number of hub processes can run against RabbitMQ and
PostgreSQL. (With SQLite the store allows one writer at a time; several hub
processes are safe but do not add throughput.)

The intake consumer takes submissions in batches: when a worker is free, a batch
takes whatever is ready (up to `batch_size`), so a batch closes when the queue is
empty, not when a timer fires, and grows only while the workers are busy (the
gateway batches its requests the same way). It acknowledges them only after
one transaction per batch has committed: an intake batch goes whole to a worker
process (`workers.py`), which checks, decides, signs and commits it. A failure
before the commit leaves the batch unacknowledged: the broker delivers it again
and the duplicate checks make the second pass harmless. Deliveries are not
published anywhere: they wait in the store, where the gateway serves them
(`axis.gateway`), and so do the outcomes of submissions. Dead letters come from
the transport's one dead-letter feed (`acknowledgements.DeadLetters`).
"""
from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from axis import wire
from axis.audit.checkpoints import CheckpointWriter
from axis.audit.logkeys import seal_store
from axis.hub.acknowledgements import DeadLetters
from axis.hub.intake import Submission, log_decisions
from axis.hub.verification import TrustSettings
from axis.hub.workers import WorkerPool
from axis.refusals import RefusalCode
from axis.retry import retrying
from axis.signer import AxisSigner
from axis.store import Store
from axis.store.retention import RetentionPolicy, retain_periodically
from axis.timestamp import request_timestamp
from axis.transport import DEAD_LETTER_FEED, Consumer, Delivery, Transport, TransportError

log = logging.getLogger("axis.hub")


@dataclass(frozen=True)
class HubSettings:
    trust: TrustSettings
    workers: int | None = None          # worker processes; None = one per core; 0 = a thread
    batch_size: int = 200
    batch_wait: float = 0.0             # seconds a batch may wait for more once it has one (0: it takes what is ready)
    in_flight: int | None = None        # batches being processed at once; None = one per worker
    prefetch: int = 800
    batch_idle: float = 1.0             # seconds a consumer waits for a delivery before it checks on itself
    stall_after: float = 10.0           # seconds after which a batch is reported as overdue
    checkpoint_entries: int = 1000      # a signed checkpoint of the audit log at least every N entries ...
    checkpoint_seconds: float = 10.0    # ... and every T seconds while entries are written
    tsa_url: str | None = None          # the RFC 3161 TSA that stamps checkpoints; None: kept unstamped
    retention: RetentionPolicy | None = None  # what the hub removes, and how often (None: nothing)


class Hub:
    def __init__(self, settings: HubSettings, store: Store, transport: Transport, *, signer: AxisSigner) -> None:
        """`signer`: the axis's signer, which the workers sign and seal with (a `SignerClient` of the signer
        process; an in-process `LocalSigner` only with `workers=0`). Other code of the hub's process that
        needs the axis key's signature (`sign_bytes`) uses `self.signer`, from a thread."""
        self.settings = settings
        self.store = store
        self.transport = transport
        self.signer = signer
        # Intake runs in the workers, each with its own connection to the same store.
        self.pool = WorkerPool(settings.trust, settings.workers, signer=signer,
                               store_url=store.engine.url.render_as_string(hide_password=False))
        self.dead_letters = DeadLetters(store)
        self.checkpoints = _checkpoint_writer(settings, store, signer)
        self._tasks: list[asyncio.Task] = []
        self._running: dict[str, dict[asyncio.Task, float]] = {}  # per queue: batch -> loop time it started
        self.started = asyncio.Event()      # set once the queues are declared and consumers run

    async def declare_queues(self) -> None:
        """The one queue the hub consumes (its dead-letter queue and the feed come with the transport)."""
        await self.transport.declare_queue(wire.INTAKE_QUEUE)

    async def start(self) -> None:
        if not self.store.sealed:  # the dead letters and receipts this process records, it seals
            await retrying("certifying the hub's log key")(asyncio.to_thread)(seal_store, self.store, self.signer,
                                                                                "hub")
        await self.declare_queues()
        await self.pool.start()
        self._tasks = [
            asyncio.create_task(self._consume(wire.INTAKE_QUEUE, self._handle_intake), name="intake"),
            asyncio.create_task(self._consume(DEAD_LETTER_FEED, self._handle_dead_letters, lambda: (
                self.transport.consume_dead_letters(prefetch=self.settings.batch_size))), name="dead-letters"),
            asyncio.create_task(self._watch_overdue(), name="watch"),
            asyncio.create_task(self.checkpoints.run(), name="checkpoints"),
        ]
        if self.settings.retention is not None:
            self._tasks.append(asyncio.create_task(retain_periodically(self.store, self.settings.retention),
                                                   name="retention"))
        self.started.set()

    async def run(self) -> None:
        """Start and run until cancelled."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            # Asked again each second: a cancellation can be lost in a race below us (a timeout expiring
            # as the cancel arrives, seen once in a few hundred stops on RabbitMQ), and the consumer loop
            # would then go on receiving for good.
            _, pending = await asyncio.wait(pending, timeout=1.0)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                log.debug("hub task %s ended with %r", task.get_name(), task.exception())
        self._tasks = []
        await asyncio.to_thread(self.pool.close)
        try:  # the last entries signed now rather than at the next start: a stopped axis leaves none unsigned
            await asyncio.to_thread(self.checkpoints.write)
            await asyncio.to_thread(self.checkpoints.stamp_pending)
        except Exception as exc:  # noqa: BLE001 - the next hub to start signs them
            log.warning("no final checkpoint (%s: %s); the next hub to start signs the entries", type(exc).__name__,
                        exc)

    # ----------------------------------------------------------- consumers

    async def _consume(self, queue: str, handle: Callable[[list[Delivery]], Awaitable[None]],
                       open_consumer: Callable[[], Consumer] | None = None) -> None:
        """Batch deliveries from `queue` into `handle`, up to `in_flight` batches at once.

        Overlapping batches keeps every core busy: each worker works on its own batch
        while the hub settles the ones before. If a batch fails, the consumer is
        closed, so its unsettled messages are delivered again.
        """
        running = self._running.setdefault(queue, {})  # batch -> when it started, for _watch_overdue
        if open_consumer is None:
            def open_consumer() -> Consumer:
                return self.transport.consume(queue, prefetch=self.settings.prefetch)
        while True:
            failed = asyncio.Event()
            # One batch per worker, taken only once a slot is free: what arrives while every worker is busy
            # waits in the consumer and leaves with the next batch, none queued behind a busy worker.
            slots = asyncio.Semaphore(self.settings.in_flight or max(1, self.pool.workers))
            try:
                async with open_consumer() as consumer:
                    while not failed.is_set() and not consumer.closed:
                        await slots.acquire()
                        try:
                            # A bounded wait, only so that a failed batch is noticed while the queue is idle.
                            batch = await consumer.receive(self.settings.batch_size, self.settings.batch_idle,
                                                           linger=self.settings.batch_wait)
                        except BaseException:
                            slots.release()
                            raise
                        if not batch:
                            slots.release()
                            continue
                        task = asyncio.create_task(self._run_batch(queue, handle, batch, failed, slots))
                        running[task] = asyncio.get_running_loop().time()
                        task.add_done_callback(running.pop)
                    await asyncio.gather(*running, return_exceptions=True)
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                for task in running:
                    task.cancel()
                raise
            except Exception:
                log.exception("consumer of %s failed; its unsettled messages will be delivered again", queue)
                await asyncio.sleep(1.0)

    @staticmethod
    async def _run_batch(queue: str, handle: Callable[[list[Delivery]], Awaitable[None]], batch: list[Delivery],
                         failed: asyncio.Event, slots: asyncio.Semaphore) -> None:
        try:
            await handle(batch)
        except Exception:
            log.exception("a batch from %s failed; its messages will be delivered again", queue)
            failed.set()
        finally:
            slots.release()

    async def _handle_intake(self, batch: list[Delivery]) -> None:
        ids = [d.headers.get(wire.H_SUBMISSION) or d.message_id for d in batch]
        # A submission too large for the broker waits in the store: copied to a private file for the worker,
        # which parses it from there (`check_packet`) and stores it from there, never whole in memory.
        kept = {i for i, d in enumerate(batch) if d.headers.get(wire.H_BODY) == wire.BODY_IN_STORE}
        files: dict[int, Path] = {}
        missing: dict[int, str] = {}  # a message whose body is not in the store as it says: dead-lettered alone
        try:
            for i in kept:
                try:
                    files[i] = await retrying(f"reading the kept body of submission {ids[i]}")(asyncio.to_thread)(
                        self._kept_body, ids[i], batch[i].headers.get(wire.H_DIGEST))
                except (LookupError, ValueError) as exc:  # not an outage: failing the batch would fail the rest
                    missing[i] = f"{RefusalCode.SENDER_UNKNOWN.label}: no receipt sent ({exc})"
            live = [i for i in range(len(batch)) if i not in missing]
            submissions = [Submission(submission_id=ids[i], body=files.get(i, batch[i].body)) for i in live]
            # An outage is waited out while the batch is held: no redelivery is counted, nothing turns poison.
            outcomes = await retrying(f"an intake batch of {len(batch)}")(self.pool.intake)(submissions) \
                if submissions else []
        finally:
            for path in files.values():
                path.unlink(missing_ok=True)
        log_decisions(outcomes)
        await _settle([*(batch[i] for i in live), *(batch[i] for i in missing)],
                      [*(outcome.dead_letter for outcome in outcomes), *missing.values()])
        if files:
            # Decided (the first outcome is kept): the body now lives in document_bodies, or was refused. A body
            # that did not match its message stays: the message may be a forgery of a queued submission's.
            await retrying("removing kept submission bodies")(asyncio.to_thread)(
                self._forget_kept, [ids[i] for i in files])

    def _kept_body(self, submission_id: str, digest: str | None) -> Path:
        descriptor, name = tempfile.mkstemp(prefix="axis-kept-", suffix=".edxml")
        os.close(descriptor)
        path = Path(name)
        try:
            found = self.store.submission_body_to(submission_id, path)
            if found is None:
                raise LookupError(f"submission {submission_id} says its body is in the store, and it is not")
            if digest is not None and found[1] != digest:
                raise ValueError(f"the kept body of submission {submission_id} does not have its digest")
            log.info("submission %s: its body (%d bytes) waited in the store, not on the broker", submission_id,
                     found[0])
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _forget_kept(self, submission_ids: list[str]) -> None:
        with self.store.write() as tx:
            tx.forget_submission_bodies(submission_ids)

    async def _watch_overdue(self) -> None:
        """A batch that takes longer than `stall_after` is reported once, with every stack."""
        reported: set[tuple[asyncio.Task, float]] = set()
        while True:
            await asyncio.sleep(self.settings.stall_after / 2)
            for queue, running in list(self._running.items()):
                self._report_overdue(running, f"a batch from {queue}", reported)

    def _report_overdue(self, under_way: dict[asyncio.Task, float], what: str,
                        reported: set[tuple[asyncio.Task, float]]) -> None:
        """Log once, with every stack, each piece of work (task -> loop time it started) older than
        `stall_after`. It is left running: it may be slow, not lost."""
        now = asyncio.get_running_loop().time()
        for task, since in list(under_way.items()):
            if now - since > self.settings.stall_after and (task, since) not in reported:
                reported.add((task, since))
                log.warning("%s has been running for %.0f s%s", what, now - since, _stacks())

    async def _handle_dead_letters(self, batch: list[Delivery]) -> None:
        await retrying(f"a batch of {len(batch)} dead letters")(self.dead_letters.process)(batch)
        await _settle(batch, [None] * len(batch))


def _checkpoint_writer(settings: HubSettings, store: Store, signer: AxisSigner) -> CheckpointWriter:
    stamp = None
    if settings.tsa_url is not None:
        stamp = functools.partial(request_timestamp, settings.tsa_url)
    return CheckpointWriter(store, signer, every_entries=settings.checkpoint_entries,
                            every_seconds=settings.checkpoint_seconds, stamp=stamp, tsa=settings.tsa_url or "")


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
