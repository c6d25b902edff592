"""What an agency (or an operator, or an auditor) may do at the axis's edge, whatever carries the request.

`AgencyService` holds every operation of the gateway (`app.py` maps them to HTTP)
and of the operator's local client; authorisation lives here, so both behave
the same. Every operation takes the `Caller` the credential proved:

- an agency caller acts for exactly its agency: it submits packets whose sender
  is its agency, reads its own inbox, sent list, submissions and the timelines
  of documents it sent or received;
- an auditor reads everything (bodies included) and changes nothing; it alone asks the auditor's
  questions (the audit log, overdue deliveries, traffic statistics: `auditing.py`);
- an operator reads the directory and the timelines and changes nothing here
  (operators act through the `axis` command on the axis's own machine).

What callers may rely on:
- Another agency's axis id or submission raises `NotFound`, exactly as an
  unknown one does: a caller learns nothing about traffic that is not its own.
- `send` decides a submission where it arrives when the service has intake
  workers (`intake=`, the gateway's own worker processes running the hub's
  `Intake`: the same checks, the same transaction): it returns the outcome,
  the signed intake receipt included, as soon as that transaction commits.
  When the decision takes longer than the caller waits, or the caller does not
  wait, or the service has no intake workers, the submission is queued
  (`submit`: recorded, and held by the broker) for the hubs, and `outcome`
  reports their decision later. A submission decided twice (in the gateway
  and by a hub) keeps its first outcome. A packet intake refuses (not XML,
  not signed, another agency's: AX416, …) is an outcome, `refused`, with its
  code and signed receipt, never an error: the edge checks only the
  credential, the size and a reused submission id before intake reads it.
- `fetch` serves the exact bytes the sender signed, with the hub's seal; `ack`
  records a delivery receipt (the agency's own, verified, or one Axis signs
  naming the credential, through the axis's signer: the service holds an
  `AxisSigner`, never the key) and moves the delivery to `delivered`, in one
  transaction with its audit entry. Repeating an ack is harmless.
- Every failure is a `GatewayError` subclass with an HTTP status and a stable
  code (`GWnnn`, or the `AXnnn` of a refusal).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from axis import wire
from axis.auditor.deadlines import Rules
from axis.auditor.overdue import load_rules
from axis.edxml import parse_xml_file, routing_facts
from axis.gateway.auditing import AuditQueries, QueryError
from axis.hub.acknowledgements import record_delivery_receipt
from axis.hub.intake import Outcome as IntakeOutcome
from axis.hub.intake import Submission as IntakeSubmission
from axis.hub.intake import log_decisions
from axis.hub.verification import TrustSettings, file_digest
from axis.hub.workers import WorkerPool
from axis.logs import traffic
from axis.receipt import Receipt, build_receipt, now_utc, read_receipt
from axis.refusals import Refusal, RefusalCode
from axis.retry import is_transient, publish_all, retrying
from axis.seal import SealCertificate
from axis.settings import Settings
from axis.signer import AxisSigner, SignerClient, SignerStartError
from axis.store import (
    BodyPieces,
    Delivery,
    DeliveryState,
    Document,
    InboxItem,
    NewReceipt,
    NewSubmission,
    Store,
    Submission,
    WriteTx,
)
from axis.transport import OutgoingMessage, Transport, TransportError
from axis.trust import Verifier, certificate_agency_code

log = logging.getLogger("axis.gateway")

ROLES = ("agency", "operator", "auditor")
MAX_LIMIT = 1000
SUBMISSION_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
POLL_FIRST = 0.02          # seconds between the first looks at the store while a caller waits
POLL_MAX = 0.5             # ... growing to this
WRITE_BATCH = 500          # submission rows recorded in one transaction at most
WATCH_TICK = 0.01          # seconds between two looks at the outcomes callers wait for, while outcomes come
READ_ON_LOOP = 64 * 1024   # bytes: a packet up to this size has its routing facts read without a thread
DECIDE_BATCH = 200         # submissions decided in one intake transaction at most (the hub's batch_size)
SERVE_WHOLE = 8 * 1024 * 1024  # bytes: a delivery larger than this is served from the store a piece at a time


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: proved by a credential (`credentials.py`), or the operator's own machine."""

    credential_id: str
    role: str                      # agency | operator | auditor
    agency: str | None = None      # set exactly for role "agency"

    @property
    def reads_everything(self) -> bool:
        return self.role in ("auditor", "operator")


class GatewayError(Exception):
    """A request the edge refuses: `status` (HTTP), a stable `code` and a one-line `message`."""

    status = 400
    default_code = "GW400"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class Unauthorized(GatewayError):
    status, default_code = 401, "GW401"


class Forbidden(GatewayError):
    status, default_code = 403, "GW403"


class NotFound(GatewayError):
    status, default_code = 404, "GW404"


class Conflict(GatewayError):
    status, default_code = 409, "GW409"


class TooLarge(GatewayError):
    status, default_code = 413, "AX202"


class Invalid(GatewayError):
    status, default_code = 422, "GW422"


class RateLimited(GatewayError):
    status, default_code = 429, "GW429"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(GatewayError):
    status, default_code = 503, "GW503"


@dataclass(frozen=True)
class Outcome:
    """A submission as the caller sees it: `queued` until the hub decided it."""

    submission: str
    outcome: str                   # queued | accepted | duplicate | refused
    axis_id: str | None = None
    code: str | None = None        # AXnnn of a refusal
    message: str | None = None
    receipt: bytes | None = None   # the hub's signed intake receipt

    @classmethod
    def of(cls, row: Submission) -> Outcome:
        if row.outcome is None:
            return cls(row.id, "queued")
        code = f"AX{row.code}" if row.code is not None else None
        return cls(row.id, row.outcome, row.axis_id, code, row.detail, row.receipt)

    @property
    def decided(self) -> bool:
        return self.outcome != "queued"


@dataclass(frozen=True)
class Served:
    """A delivery's exact bytes, with the headers that let the recipient check them (the hub's seal)."""

    axis_id: str
    body: bytes | BodyPieces       # a large body is read from the store a piece at a time as it is sent
    digest: str
    headers: dict[str, str] = field(default_factory=dict)


def _state_in(tx: WriteTx, axis_id: str, agency: str) -> str:
    """The state of `agency`'s delivery of `axis_id` as the unit of work `tx` sees it."""
    return next((d.state for d in tx.deliveries(axis_id) if d.recipient_code == agency), "unknown")


def encode_cursor(*parts: Any) -> str:
    text = "\x1f".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid(f"the cursor {cursor[:40]!r} is not one this gateway gave out", "GW422") from None
    if len(parts) != count:
        raise Invalid(f"the cursor {cursor[:40]!r} is not one this gateway gave out", "GW422")
    return parts


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{text[:40]!r} is not an ISO 8601 time", "GW422") from None
    if value.tzinfo is None:
        raise Invalid(f"{text[:40]!r} has no time zone; add Z or +07:00", "GW422")
    return value


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be 1..{MAX_LIMIT}, not {limit}", "GW422")
    return limit


class _GroupWriter:
    """Callers' rows written together: each `add` returns once its row is committed.

    A row that arrives while a transaction is under way waits for the next one, which takes every
    row that came meanwhile (at most `limit`): one commit (one fsync, one turn of SQLite's single
    writer) for many requests under load, and no added wait for a lone request. Measured with
    bench/bench_gateway.py (embedded, one recipient, 64 requests in flight): one transaction per
    submission held the gateway to ~180 documents/s, its threads queueing on SQLite's write lock.
    """

    def __init__(self, write: Any, what: str, limit: int = WRITE_BATCH) -> None:
        self._write = write
        self._what = what
        self._limit = limit
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"writing: {self._what}")
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self._limit], self._pending[self._limit:]
                try:
                    await self._commit(batch)
                except Exception:  # noqa: BLE001 - a row the store refuses must not fail the others: each alone
                    for one in batch:
                        await self._commit([one])
        finally:
            self._task = None

    async def _commit(self, batch: list[tuple[Any, asyncio.Future[None]]]) -> None:
        """Write `batch` in one transaction; its callers learn the outcome.

        Raises only when the store refused a batch of several rows for a reason that is not an outage
        (then each row is tried alone); an outage that outlasted the retry policy fails them all at once.
        """
        try:
            await retrying(self._what)(asyncio.to_thread)(self._write, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and not is_transient(exc):
                raise
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)


class _Waiter:
    __slots__ = ("future", "ready", "row", "seen")

    def __init__(self, future: asyncio.Future[Submission | None], ready: Any) -> None:
        self.future, self.ready = future, ready
        self.row: Submission | None = None
        self.seen = False


class _OutcomeWatch:
    """One reader for every caller waiting for an outcome: one query per tick, whatever their number.

    While callers wait, one task reads the rows of all their submissions every `WATCH_TICK` seconds
    and wakes each caller whose row is `ready` (decided; or missing or not the caller's, which it
    learns at the first look); when a look wakes nobody and nobody new waits, the pause doubles (to
    `POLL_MAX`). Measured with bench/bench_gateway.py (embedded, one recipient): each caller polling
    on its own (a first read, then pauses doubling from 20 ms) made a read per caller per look, and
    answered up to twice the hub's decision time late.
    """

    def __init__(self, read: Any) -> None:
        self._read = read                     # ids -> {id: Submission}
        self._waiting: dict[str, list[_Waiter]] = {}
        self._task: asyncio.Task[None] | None = None
        self._fresh = asyncio.Event()

    async def wait(self, submission: str, timeout: float, ready: Any) -> Submission | None:
        """The row of `submission` once `ready(row)` (row None: there is none), or as last seen after `timeout`."""
        waiter = _Waiter(asyncio.get_running_loop().create_future(), ready)
        self._waiting.setdefault(submission, []).append(waiter)
        self._fresh.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watching outcomes")
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            if waiter.seen:
                return waiter.row
            rows = await self._read([submission])
            return rows.get(submission)
        finally:
            waiters = self._waiting.get(submission)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[submission]

    async def _run(self) -> None:
        pause = WATCH_TICK
        try:
            while self._waiting:
                self._fresh.clear()
                ids = list(self._waiting)
                try:
                    rows = await self._read(ids)
                except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error, as if it read alone
                    for waiters in self._waiting.values():
                        for waiter in waiters:
                            if not waiter.future.done():
                                waiter.future.set_exception(exc)
                    return
                woke = False
                for submission in ids:
                    row = rows.get(submission)
                    for waiter in list(self._waiting.get(submission, ())):
                        waiter.row, waiter.seen = row, True
                        if waiter.ready(row) and not waiter.future.done():
                            waiter.future.set_result(row)
                            woke = True
                pause = WATCH_TICK if woke or self._fresh.is_set() else min(pause * 2, POLL_MAX)
                try:  # a new caller cuts a long pause short
                    await asyncio.wait_for(self._fresh.wait(), pause)
                    await asyncio.sleep(WATCH_TICK)
                except TimeoutError:
                    pass
        finally:
            self._task = None


@dataclass(frozen=True)
class _Admitted:
    """A packet the edge takes: what its checks found."""

    agency: str
    digest: str
    known: Submission | None       # the row of a caller-chosen submission id used before
    size: int = 0


def _spooled(data: bytes) -> Path:
    """`data` in a private temporary file (a large packet given as bytes, kept in the store from a file)."""
    descriptor, name = tempfile.mkstemp(prefix="axis-upload-", suffix=".edxml")
    with open(descriptor, "wb") as file:
        file.write(data)
    return Path(name)


def _remove_when_read(path: Path, readers: list[asyncio.Future[IntakeOutcome]]) -> None:
    """Remove a spooled upload now, or once the intake batches that may still read it have ended."""
    def remove(_: object = None) -> None:
        path.unlink(missing_ok=True)

    pending = [future for future in readers if not future.done()]
    if pending:
        pending[0].add_done_callback(remove)
    else:
        remove()


class _Decider:
    """Submissions decided where they arrive: batched into the gateway's intake workers.

    Each `decide` joins the next batch. A batch leaves as soon as a worker is free, never on a timer, and
    takes every submission that came meanwhile (at most `limit`): a lone request waits for nothing, and
    under load one transaction decides many. No batch queues behind a busy worker: waiting for the
    worker, the next batch grows instead, and a transaction's commit (an fsync on SQLite) costs the same
    for ten submissions as for two hundred (measured: the workers' CPU per document fell by 5-10 %,
    documents/s rose ~6 %, against two batches per worker). The hub's consumer batches from the queue
    (`Hub._consume`); here the broker hop in, the broker hop out and the outcome's row polling are gone
    (measured in docs/performance.md).
    """

    def __init__(self, pool: WorkerPool, limit: int = DECIDE_BATCH) -> None:
        self._pool = pool
        self._limit = limit
        self._pending: list[tuple[IntakeSubmission, asyncio.Future[IntakeOutcome]]] = []
        self._slots = asyncio.Semaphore(max(1, pool.workers))
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    def decide(self, submission: IntakeSubmission) -> asyncio.Future[IntakeOutcome]:
        """A future of the submission's outcome (committed when it resolves); it raises what the batch raised."""
        future: asyncio.Future[IntakeOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, future))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._feed(), name="deciding submissions")
        return future

    async def _feed(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()
                batch, self._pending = self._pending[:self._limit], self._pending[self._limit:]
                task = asyncio.create_task(self._run(batch))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)

    async def _run(self, batch: list[tuple[IntakeSubmission, asyncio.Future[IntakeOutcome]]]) -> None:
        try:
            # An outage is waited out (the one retry policy): the batch commits once the store is back.
            outcomes = await retrying(f"deciding {len(batch)} submissions")(self._pool.intake)(
                [submission for submission, _ in batch])
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error and answers 503
            log.warning("a batch of %d submissions could not be decided here (%s); they are queued for the hubs",
                        len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            log_decisions(outcomes)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
        finally:
            self._slots.release()

    async def close(self) -> None:
        for task in (self._task, *self._batches):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._task, *self._batches) if t is not None), return_exceptions=True)


class AgencyService:
    """The edge's operations over the store (reads, receipts) and the broker (submissions)."""

    def __init__(self, store: Store, transport: Transport, *, signer: AxisSigner, verifier: Verifier,
                 max_packet_bytes: int = 200 * 1024 * 1024, intake: WorkerPool | None = None,
                 deadline_rules: Rules | None = None, inline_body_bytes: int = 8 * 1024 * 1024) -> None:
        """`signer`: the axis's signer (the receipts Axis signs here; its certificate is served with every
        seal), asked once here for its certificate. `intake`: started worker processes that decide
        submissions where they arrive (see `send`); without them every submission is queued for the hubs.
        `deadline_rules`: the overdue report's (None: read from the settings when an auditor first asks)."""
        self.store = store
        self.transport = transport
        self._signer = signer
        self._verifier = verifier
        self._seal_certificate = SealCertificate.from_pem(signer.certificates()[0])
        self._earlier_seal_certificates: list[SealCertificate] | None = None  # read at the first fetch
        self.max_packet_bytes = max_packet_bytes
        self.inline_body_bytes = inline_body_bytes
        self._submission_rows = _GroupWriter(self._record_submissions, "recording submissions")
        self._outcomes = _OutcomeWatch(lambda ids: self._read("reading submissions", self.store.submissions, ids))
        self._decider = _Decider(intake) if intake is not None else None
        self._audit = AuditQueries(store, deadline_rules)

    async def close(self) -> None:
        """Stop deciding: batches under way are cancelled (their requests end; their senders send again)."""
        if self._decider is not None:
            await self._decider.close()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _agency(caller: Caller, what: str) -> str:
        if caller.role != "agency" or caller.agency is None:
            raise Forbidden(f"only an agency's credential may {what}; this one is an {caller.role}'s")
        return caller.agency

    async def _read(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        return await retrying(what)(asyncio.to_thread)(call, *args, **kwargs)

    async def _waiting(self, wait: float, look: Any) -> Any:
        """`look()` until it returns something truthy or `wait` seconds pass; the last answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait, 60.0))
        pause = POLL_FIRST
        while True:
            found = await look()
            if found or loop.time() >= deadline:
                return found
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, POLL_MAX)

    async def _document_for(self, caller: Caller, axis_id: str, *, as_recipient: bool, body: bool = False,
                            whole_up_to: int = SERVE_WHOLE
                            ) -> tuple[Document, list[Delivery], bytes | BodyPieces | None]:
        """The document, its deliveries and (with `body`) its bytes, if the caller may see it (its sender, a
        recipient, or one who reads everything); else NotFound, as for an unknown axis id. A body over
        `whole_up_to` bytes comes as `BodyPieces`, read from the store as it is sent."""
        if "\x00" in axis_id:  # no axis id has one, and PostgreSQL text takes none: unknown, not a 500
            raise NotFound(f"no document {axis_id[:80]!r}")
        document, deliveries, data = await self._read("reading a document", self.store.document_and_deliveries,
                                                      axis_id, body=body, whole_up_to=whole_up_to)
        if document is None:
            raise NotFound(f"no document {axis_id[:80]!r}")
        if caller.reads_everything and not as_recipient:
            return document, deliveries, data
        if caller.role == "agency" and (
                (not as_recipient and document.sender_code == caller.agency)
                or any(d.recipient_code == caller.agency for d in deliveries)):
            return document, deliveries, data
        raise NotFound(f"no document {axis_id[:80]!r}")

    # ------------------------------------------------------------------ submissions

    async def send(self, caller: Caller, body: bytes | Path, submission: str | None = None,
                   wait: float = 10.0) -> Outcome:
        """Submit one signed packet of the caller's agency; its outcome within `wait` seconds, else `queued`.

        With intake workers the packet is decided here (see the module docstring); if that takes longer
        than `wait`, or fails, the submission is queued for the hubs before this returns `queued`, so
        an answer of `queued` always means the broker holds it. `submission` is as for `submit`.

        `body` is the packet's bytes, or a private file holding them (a large upload the HTTP layer spooled
        to disk, so that the gateway never holds it in memory and the intake worker parses it from there).
        The file then belongs to this call: it is removed once nothing reads it any more, which may be after
        this returns (a worker still deciding a request that was answered `queued`).
        """
        if not isinstance(body, Path):
            return await self._send(caller, body, submission, wait, [])
        readers: list[asyncio.Future[IntakeOutcome]] = []
        try:
            return await self._send(caller, body, submission, wait, readers)
        finally:
            _remove_when_read(body, readers)

    async def _send(self, caller: Caller, body: bytes | Path, submission: str | None, wait: float,
                    readers: list[asyncio.Future[IntakeOutcome]]) -> Outcome:
        if self._decider is None or wait <= 0:
            chosen = await self.submit(caller, body, submission)
            return await self.outcome(caller, chosen, wait=wait)
        admitted = await self._admit(caller, body, submission)
        if admitted.known is not None and admitted.known.outcome is not None:
            return Outcome.of(admitted.known)  # a repeated request: the first outcome, again
        chosen = submission or wire.new_submission_id()
        future = self._decider.decide(IntakeSubmission(chosen, body if isinstance(body, Path) else bytes(body),
                                                       admitted.agency, caller.credential_id))
        readers.append(future)
        try:
            decided = await asyncio.wait_for(asyncio.shield(future), min(wait, 60.0))
        except TimeoutError:
            decided = None
        except Exception as exc:  # noqa: BLE001 - the hubs decide it instead; _Decider logged the batch's error
            log.debug("submission %s not decided here: %r", chosen, exc)
            decided = None
        if decided is None:
            await self._queue(caller, admitted, body, chosen)
            return Outcome(chosen, "queued")
        if decided.outcome == "duplicate":
            # The same id decided first elsewhere (a hub, another gateway) keeps that first outcome.
            row = (await self._read("reading a submission", self.store.submissions, [chosen])).get(chosen)
            if row is not None and row.outcome is not None:
                return Outcome.of(row)
        # DEBUG: the gateway's access-log line of the request names the submission and its outcome.
        log.debug("submission %s from %s (credential %s, %d bytes) %s", chosen, admitted.agency,
                  caller.credential_id, admitted.size, decided.outcome)
        code = f"AX{decided.refusal_code}" if decided.refusal_code is not None else None
        return Outcome(chosen, decided.outcome, decided.axis_id, code, decided.detail, decided.receipt)

    async def submit(self, caller: Caller, body: bytes | Path, submission: str | None = None) -> str:
        """Record and publish one signed packet from the caller's agency for the hubs; its submission id.

        `submission` lets the caller choose the id (`SUBMISSION_ID`: 32 hex digits or a UUID), so
        that a request repeated after a lost answer is the same submission, not a duplicate of
        it: the repeat publishes again (harmless: the hub keeps a submission's first outcome) and
        returns the same id. The same id with other bytes, or another agency's id, is a Conflict.
        """
        admitted = await self._admit(caller, body, submission)
        chosen = submission or wire.new_submission_id()
        await self._queue(caller, admitted, body, chosen)
        return chosen

    async def _admit(self, caller: Caller, body: bytes | Path, submission: str | None) -> _Admitted:
        """The checks before a packet is taken: who sends it, its size, a reused submission id.

        What the packet says, its sender included (AX416 when it is not the caller's agency), is intake's
        to judge, in a worker process that parses it once: a refusal is an outcome with its signed
        receipt, on either road. Reading the packet here as well cost the gateway a third of its CPU
        per document (docs/performance.md)."""
        agency = self._agency(caller, "submit packets")
        if submission is not None and not SUBMISSION_ID.fullmatch(submission):
            raise Invalid(f"a submission id is 32 hex digits or a UUID, not {submission[:80]!r}", "GW422")
        if isinstance(body, Path):
            digest, size = await asyncio.to_thread(file_digest, body)
        else:
            digest, size = hashlib.sha256(body).hexdigest(), len(body)
        if size > self.max_packet_bytes:
            raise TooLarge(f"the packet is {size} bytes; the limit is {self.max_packet_bytes}")
        known = None
        if submission is not None:
            known = (await self._read("reading a submission", self.store.submissions, [submission])).get(submission)
            if known is not None and (known.agency_code != agency or known.digest != digest):
                raise Conflict(f"submission {submission} was used for another packet; choose a new id", "GW409")
        return _Admitted(agency, digest, known, size)

    async def _queue(self, caller: Caller, admitted: _Admitted, body: bytes | Path, submission: str) -> None:
        """Record the submission, then hand it to the broker for the hubs: its bytes in the message, or, over
        `inline_body_bytes`, in the store (`submission_bodies`, written with its row) and only its id in the
        message (the broker's own limits and a large message stalling its queue: issue 12)."""
        kind, priority = await self._queue_order(body)
        headers = {wire.H_SUBMISSION: submission, wire.H_AGENCY: admitted.agency, wire.H_DIGEST: admitted.digest,
                   wire.H_KIND: kind}
        row = NewSubmission(submission, admitted.agency, caller.credential_id, admitted.digest)
        if admitted.size > self.inline_body_bytes:
            if not isinstance(body, Path):
                body = await asyncio.to_thread(_spooled, body)
                spooled: Path | None = body
            else:
                spooled = None
            try:
                await retrying(f"keeping the body of submission {submission}")(asyncio.to_thread)(
                    self._record_with_body, row, body)
            finally:
                if spooled is not None:
                    spooled.unlink(missing_ok=True)
            headers[wire.H_BODY] = wire.BODY_IN_STORE
            data = b""
        else:
            data = await asyncio.to_thread(body.read_bytes) if isinstance(body, Path) else bytes(body)
            await self._submission_rows.add(row)
        # Keyed by agency: with a sharded intake queue (a cluster), one agency's packets stay in order.
        message = OutgoingMessage(wire.INTAKE_QUEUE, data, submission, priority, headers, key=admitted.agency)
        try:
            outcomes = await publish_all(self.transport, [message], f"publishing submission {submission}")
        except TransportError as exc:
            await asyncio.to_thread(self._forget_submission, submission)
            raise Unavailable(f"the broker did not take the packet ({exc}); send it again") from None
        if outcomes[0] is not None:
            await asyncio.to_thread(self._forget_submission, submission)
            raise Unavailable("the hub's intake queue does not exist yet: is `axis serve` running?")
        traffic("queued", "submission %s from %s (credential %s, %d bytes, %s) queued for the hubs", submission,
                admitted.agency, caller.credential_id, admitted.size, kind, submission=submission,
                sender=admitted.agency, credential=caller.credential_id, size=admitted.size, kind=kind)

    def _record_with_body(self, row: NewSubmission, body: Path) -> None:
        with self.store.write() as tx:
            if tx.add_submissions([row]) == 0:
                tx.forget_submission_bodies([row.id])  # a repeated request: its body again, once
            tx.add_submission_body(row.id, body)

    @staticmethod
    async def _queue_order(body: bytes | Path) -> tuple[str, int]:
        """The kind and the priority a queued packet is published with (an urgent one overtakes a backlog).
        A packet they cannot be read from is queued as it is, at priority 0: the hub refuses it."""
        try:
            # A small packet is read on the event loop: handing it to a thread cost more than reading it.
            if isinstance(body, Path):
                facts = await asyncio.to_thread(lambda: routing_facts(parse_xml_file(body)))
            else:
                facts = (routing_facts(body) if len(body) <= READ_ON_LOOP
                         else await asyncio.to_thread(routing_facts, body))
        except Refusal:
            return "unreadable", 0
        return facts.kind, facts.priority

    def _record_submissions(self, items: list[NewSubmission]) -> None:
        unique = list({item.id: item for item in reversed(items)}.values())  # a repeated id: its first row
        with self.store.write() as tx:
            tx.add_submissions(unique)

    def _forget_submission(self, submission: str) -> None:
        try:
            with self.store.write() as tx:
                tx.forget_submission(submission)
        except Exception:  # the row stays queued; nothing was published under it, and nobody got its id
            log.warning("could not remove the row of unpublished submission %s", submission, exc_info=True)

    async def outcome(self, caller: Caller, submission: str, wait: float = 0.0) -> Outcome:
        """The hub's decision on a submission of the caller's agency (`queued` until there is one)."""
        def visible(row: Submission | None) -> bool:
            return row is not None and (caller.reads_everything or row.agency_code == caller.agency)

        if wait > 0:
            row = await self._outcomes.wait(submission, min(wait, 60.0),
                                            lambda row: not visible(row) or row.outcome is not None)
        else:
            row = (await self._read("reading a submission", self.store.submissions, [submission])).get(submission)
        if row is None or not visible(row):
            raise NotFound(f"no submission {submission[:80]!r} of yours (or it was decided long enough ago that "
                           "retention removed it: its receipt was the answer)")
        return Outcome.of(row)

    # ------------------------------------------------------------------ the inbox

    async def inbox(self, caller: Caller, *, kind: str | None = None, after: str | None = None, limit: int = 100,
                    wait: float = 0.0) -> tuple[list[InboxItem], str | None]:
        """What waits for the caller's agency, urgent first; the cursor of the next page (None: no more)."""
        agency = self._agency(caller, "read an inbox")
        if kind not in (None, "document", "status"):
            raise Invalid(f"kind must be document or status, not {kind!r}", "GW422")
        limit = _limit(limit)
        position = None
        if after is not None:
            priority, received_at, axis_id = _decode_cursor(after, 3)
            position = (int(priority) if priority.isdigit() else 0, _time(received_at), axis_id)

        async def look() -> list[InboxItem]:
            return await self._read("reading an inbox", self.store.inbox, agency, kind=kind, after=position,
                                    limit=limit + 1)
        items = await self._waiting(wait, look)
        more = len(items) > limit
        items = items[:limit]
        cursor = encode_cursor(items[-1].priority, items[-1].received_at, items[-1].axis_id) if more else None
        return items, cursor

    async def fetch(self, caller: Caller, axis_id: str) -> Served:
        """The exact signed bytes of a document delivered (or to be delivered) to the caller, with the seal."""
        return await self._served(caller, axis_id, SERVE_WHOLE)

    async def fetch_many(self, caller: Caller, axis_ids: Sequence[str]) -> list[Served | GatewayError]:
        """`fetch` for up to `wire.MAX_FETCH_BATCH` deliveries, answered in order, each on its own: its `Served`
        with the body whole (bytes), or the error `fetch` would raise for it (NotFound). A body that would take
        the answer over `wire.MAX_FETCH_BATCH_BYTES` is TooLarge (GW413) for that item, and is not read: fetch
        it alone, streamed."""
        if not 1 <= len(axis_ids) <= wire.MAX_FETCH_BATCH:
            raise Invalid(f"fetch 1 to {wire.MAX_FETCH_BATCH} deliveries at once, not {len(axis_ids)}")
        answers: list[Served | GatewayError] = []
        room = wire.MAX_FETCH_BATCH_BYTES
        for axis_id in axis_ids:
            try:
                served = await self._served(caller, axis_id, room)
            except NotFound as missing:
                answers.append(missing)
                continue
            if not isinstance(served.body, bytes):
                answers.append(TooLarge(f"{axis_id[:80]!r} is {served.body.size} bytes, more than this answer has "
                                        f"room for ({room} of {wire.MAX_FETCH_BATCH_BYTES}): fetch it alone",
                                        "GW413"))
                continue
            room -= len(served.body)
            answers.append(served)
        return answers

    async def _served(self, caller: Caller, axis_id: str, whole_up_to: int) -> Served:
        document, deliveries, body = await self._document_for(caller, axis_id, as_recipient=caller.role == "agency",
                                                              body=True, whole_up_to=whole_up_to)
        if body is None:
            raise NotFound(f"the body of {axis_id} was removed by retention after every recipient had it (its "
                           "digest, seal and receipts are kept)")
        headers = {wire.H_AXIS_ID: axis_id, wire.H_DIGEST: document.digest, wire.H_SENDER: document.sender_code,
                   wire.H_KIND: document.kind}
        if document.seal:
            to = ",".join(sorted(d.recipient_code for d in deliveries))
            certificate = await self._sealed_by(document.seal, axis_id, document.digest, to)
            headers.update({wire.H_SEAL: document.seal, wire.H_SEAL_TO: to, wire.H_SEAL_CERT: certificate.encoded})
        return Served(axis_id, body, document.digest, headers)

    async def _sealed_by(self, seal: str, axis_id: str, digest: str, to: str) -> SealCertificate:
        """The axis certificate whose key made `seal`: the signer's, or for a packet sealed before `axis key
        rotate`, an earlier axis certificate (every one certified log keys, so `audit_signers` keeps it). Only
        an axis that has had more than one key pays for the check; the agency's SDK judges the certificate."""
        if self._earlier_seal_certificates is None:
            self._earlier_seal_certificates = await self._read("reading the axis's earlier certificates",
                                                               self._earlier_axis_certificates)
        if self._earlier_seal_certificates and not self._seal_certificate.made(seal, axis_id, digest, to):
            for certificate in self._earlier_seal_certificates:
                if certificate.made(seal, axis_id, digest, to):
                    return certificate
        return self._seal_certificate

    def _earlier_axis_certificates(self) -> list[SealCertificate]:
        found = []
        for signer in self.store.audit_signers().values():
            leaf = x509.load_pem_x509_certificates(signer.certificates.encode("ascii"))[0]
            try:
                if certificate_agency_code(leaf) != wire.HUB_IDENTITY:
                    continue
            except Refusal:
                continue
            certificate = SealCertificate(leaf)
            if certificate.encoded != self._seal_certificate.encoded:
                found.append(certificate)
        return found

    async def ack(self, caller: Caller, axis_id: str, receipt: bytes | None) -> dict[str, Any]:
        """Record that the caller's agency stored `axis_id`: its own signed delivery receipt, or one Axis signs.

        A receipt that does not verify (AX413) or does not match this delivery (AX412: another signer,
        another axis id, another digest) changes nothing; the refusal is a warning in the log and a
        `receipt-refused` audit entry naming the credential, and the caller gets it as `Invalid`.
        """
        [done] = await self.ack_many(caller, [(axis_id, receipt)])
        if isinstance(done, GatewayError):
            raise done
        return done

    async def ack_many(self, caller: Caller, items: Sequence[tuple[str, bytes | None]]
                       ) -> list[dict[str, Any] | GatewayError]:
        """`ack` for up to `wire.MAX_ACK_BATCH` deliveries at once, each answered on its own and in order: its
        {"axis_id", "state", "receipt"}, or the error `ack` would raise for it (NotFound for a delivery that is
        not the caller's, Invalid for a refused receipt), which changes nothing for it and nothing for the
        others. The receipts are verified in one pass, the ones Axis signs are signed in one call, and the
        accepted ones are recorded in one transaction (one commit, where one ack a request costs one each)."""
        agency = self._agency(caller, "acknowledge deliveries")
        if not 1 <= len(items) <= wire.MAX_ACK_BATCH:
            raise Invalid(f"acknowledge 1 to {wire.MAX_ACK_BATCH} deliveries at once, not {len(items)}")
        results: list[dict[str, Any] | GatewayError | None] = [None] * len(items)
        documents: dict[int, Document] = {}
        for index, (axis_id, _) in enumerate(items):
            try:
                documents[index] = (await self._document_for(caller, axis_id, as_recipient=True))[0]
            except NotFound as missing:
                results[index] = missing

        def verify_all() -> dict[int, tuple[str, Receipt] | Refusal]:
            verified: dict[int, tuple[str, Receipt] | Refusal] = {}
            for index in documents:
                receipt = items[index][1]
                if receipt:
                    try:
                        checked = self._verifier.verify_receipt(receipt)
                        verified[index] = (checked.signer_code, read_receipt(checked.signed_root))
                    except Refusal as refusal:
                        verified[index] = refusal
            return verified

        verified = await asyncio.to_thread(verify_all) if any(items[i][1] for i in documents) else {}
        recorded: dict[int, tuple[bytes, Receipt]] = {}
        vouched: dict[int, Receipt] = {}
        for index, document in documents.items():
            axis_id, body = items[index]
            found = verified.get(index)
            if found is None:
                vouched[index] = Receipt(
                    kind="delivery", outcome="delivered", issuer=wire.HUB_IDENTITY, time=now_utc(), axis_id=axis_id,
                    sender=document.sender_code, recipient=agency,
                    document_id=document.document_id if document.kind == "document" else None,
                    digest=document.digest,
                    refusal_detail=f"acknowledged through the gateway by credential {caller.credential_id} "
                                   f"after it was served {document.digest}")
            elif isinstance(found, Refusal):
                results[index] = await self._refuse_ack(caller, axis_id, RefusalCode.RECEIPT_REFUSED, str(found))
            elif found[0] != agency:
                results[index] = await self._refuse_ack(
                    caller, axis_id, RefusalCode.RECEIPT_MISMATCH,
                    f"the receipt is signed by {found[0]}, and this credential acts for {agency}")
            elif found[1].axis_id != axis_id:
                results[index] = await self._refuse_ack(caller, axis_id, RefusalCode.RECEIPT_MISMATCH,
                                                        f"the receipt is about {found[1].axis_id}, not {axis_id}")
            else:
                assert body is not None  # verified, so given
                recorded[index] = (body, found[1])
        if vouched:
            signed = await self._sign_many([build_receipt(r) for r in vouched.values()])
            recorded.update({index: (body, vouched[index]) for index, body in zip(vouched, signed, strict=True)})

        def record() -> dict[int, tuple[str | None, str]]:
            with self.store.write() as tx:
                return {index: (record_delivery_receipt(tx, body, agency, parsed, credential=caller.credential_id),
                                _state_in(tx, parsed.axis_id or "", agency))
                        for index, (body, parsed) in recorded.items()}

        outcomes = await retrying("recording delivery receipts")(asyncio.to_thread)(record) if recorded else {}
        for index, (mismatch, state) in outcomes.items():
            axis_id = items[index][0]
            if mismatch is not None:
                results[index] = await self._refuse_ack(caller, axis_id, RefusalCode.RECEIPT_MISMATCH, mismatch)
                continue
            traffic("delivered", "delivered %s to %s (%s)", axis_id, agency, state, axis_id=axis_id,
                    recipient=agency, state=state, credential=caller.credential_id)
            results[index] = {"axis_id": axis_id, "state": state, "receipt": recorded[index][0]}
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    async def _sign(self, receipt: bytes) -> bytes:
        return (await self._sign_many([receipt]))[0]

    async def _sign_many(self, receipts: list[bytes]) -> list[bytes]:
        # A signer being restarted is waited for, as a store outage is (SignerUnavailable is transient).
        return list(await retrying("signing receipts")(asyncio.to_thread)(self._signer.sign_receipts, receipts))

    async def _refuse_ack(self, caller: Caller, axis_id: str, code: RefusalCode, detail: str) -> Invalid:
        """Log and audit a refused delivery receipt; the error to raise."""
        log.warning("ack of %s by credential %s (%s) refused: %s: %s", axis_id, caller.credential_id, caller.agency,
                    code.label, detail)

        def audit() -> None:
            with self.store.write() as tx:
                tx.audit("gateway", "receipt-refused", axis_id, {
                    "code": code.number, "name": code.name, "detail": detail[:300], "recipient": caller.agency,
                    "credential": caller.credential_id})
        await retrying("auditing a refused delivery receipt")(asyncio.to_thread)(audit)
        return Invalid(f"{code.label}: {detail}", code.label.split()[0])

    async def fail(self, caller: Caller, axis_id: str, reason: str) -> dict[str, Any]:
        """The caller's agency could not take `axis_id`: `parked` (for an operator's replay or purge), and an
        error receipt for its sender. A delivery the agency has already acknowledged does not move (GW409)."""
        agency = self._agency(caller, "report failed deliveries")
        document, _, _ = await self._document_for(caller, axis_id, as_recipient=True)
        reason = " ".join(str(reason or "no reason given").split())[:500]
        code = RefusalCode.DELIVERY_FAILED
        error = Receipt(kind="error", outcome="failed", issuer=wire.HUB_IDENTITY, time=now_utc(), axis_id=axis_id,
                        sender=document.sender_code, recipient=agency,
                        document_id=document.document_id if document.kind == "document" else None,
                        digest=document.digest, refusal_code=code.number, refusal_name=code.name,
                        refusal_detail=f"{agency} could not take it: {reason}"[:500])
        body = await self._sign(build_receipt(error))

        def record() -> tuple[bool, str]:
            with self.store.write() as tx:
                moved = tx.transition(axis_id, agency, DeliveryState.PARKED, error=reason)
                if moved:
                    tx.add_receipts([NewReceipt(axis_id=axis_id, kind="error", body=body, recipient_code=agency,
                                                code=str(code.number), detail=reason)])
                    tx.audit("gateway", "delivery-failed", axis_id, {"recipient": agency, "reason": reason[:300],
                                                                     "credential": caller.credential_id,
                                                                     "state": DeliveryState.PARKED.value})
                return moved, _state_in(tx, axis_id, agency)
        moved, state = await retrying("recording a failed delivery")(asyncio.to_thread)(record)
        if moved:
            traffic("parked", "delivery of %s to %s parked (its recipient could not take it): %s", axis_id, agency,
                    reason, axis_id=axis_id, recipient=agency, state=state, reason=reason)
        if not moved and state != DeliveryState.PARKED.value:
            raise Conflict(f"{axis_id} is {state} for {agency}; only a delivery waiting in the inbox can be "
                           "reported failed", "GW409")
        return {"axis_id": axis_id, "state": state}

    # ------------------------------------------------------------------ what was sent, timelines, directory

    async def sent(self, caller: Caller, *, since: str | None = None, after: str | None = None,
                   limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        agency = self._agency(caller, "list sent documents")
        limit = _limit(limit)
        since_time = _time(since) if since is not None else None
        position = None
        if after is not None:
            received_at, axis_id = _decode_cursor(after, 2)
            position = (_time(received_at), axis_id)
        rows = await self._read("listing sent documents", self.store.sent, agency, since=since_time, after=position,
                                limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [{"axis_id": doc.axis_id, "kind": doc.kind, "document_id": doc.document_id,
                  "received_at": doc.received_at, "priority": doc.priority, "digest": doc.digest,
                  "recipients": {d.recipient_code: d.state for d in deliveries}} for doc, deliveries in rows]
        cursor = encode_cursor(rows[-1][0].received_at, rows[-1][0].axis_id) if more else None
        return items, cursor

    async def receipts(self, caller: Caller, axis_id: str) -> list[dict[str, Any]]:
        """The timeline of a document: for its sender, its recipients, and those who read everything."""
        await self._document_for(caller, axis_id, as_recipient=False)
        receipts = await self._read("reading receipts", self.store.receipts, axis_id)
        return [{"kind": r.kind, "recipient": r.recipient_code, "code": r.code, "detail": r.detail,
                 "created_at": r.created_at, "digest": r.digest, "body": r.body} for r in receipts]

    async def agencies(self, caller: Caller) -> list[dict[str, Any]]:
        agencies = await self._read("reading the directory", self.store.list_agencies)
        return [{"code": a.code, "name": a.name, "parent": a.parent_code, "state": a.state} for a in agencies]

    # ------------------------------------------------------------------ the auditor's questions

    @staticmethod
    def _auditor(caller: Caller, what: str) -> None:
        if caller.role != "auditor":
            raise Forbidden(f"only an auditor's credential may {what}; this one is an {caller.role}'s")

    async def _ask(self, what: str, call: Any, **query: Any) -> Any:
        try:
            return await self._read(what, call, **query)
        except QueryError as exc:
            raise Invalid(str(exc), "GW422") from None

    async def audit_log(self, caller: Caller, *, agency: str | None = None, since: str | None = None,
                        until: str | None = None, kinds: list[str] | None = None, after: str | None = None,
                        limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the audit log, oldest first (`axis audit log`); the cursor of the next page."""
        self._auditor(caller, "read the audit log")
        position = 0
        if after is not None:
            (seq,) = _decode_cursor(after, 1)
            if not (seq.isascii() and seq.isdigit()):
                raise Invalid(f"the cursor {after[:40]!r} is not one this gateway gave out", "GW422")
            position = int(seq)
        items, last = await self._ask("reading the audit log", self._audit.log_page, agency=agency, since=since,
                                      until=until, kinds=list(kinds or ()), after=position, limit=_limit(limit))
        return items, encode_cursor(last) if last is not None else None

    async def overdue(self, caller: Caller, *, as_of: str | None = None, after: str | None = None,
                      limit: int = 100) -> dict[str, Any]:
        """The overdue report (`axis overdue`), a page of its rows, and `next`."""
        self._auditor(caller, "read the overdue report")
        position = None
        if after is not None:
            arrived, axis_id, recipient = _decode_cursor(after, 3)
            if "\x00" in axis_id + recipient:  # PostgreSQL text takes no NUL: a forged cursor, not a 500
                raise Invalid(f"the cursor {after[:40]!r} is not one this gateway gave out", "GW422")
            position = (_time(arrived), axis_id, recipient)
        report, last = await self._ask("judging overdue deliveries", self._audit.overdue_page, as_of=as_of,
                                       after=position, limit=_limit(limit))
        return {**report, "next": encode_cursor(*last) if last is not None else None}

    async def stats(self, caller: Caller, *, by: str = "agency", since: str | None = None,
                    until: str | None = None) -> dict[str, Any]:
        """Traffic statistics per agency or per day (`axis stats`)."""
        self._auditor(caller, "read traffic statistics")
        result: dict[str, Any] = await self._ask("counting traffic", self._audit.stats, by=by, since=since,
                                                 until=until)
        return result

    async def ready(self) -> dict[str, bool]:
        """Whether the store and the broker answer (for /readyz)."""
        async def store_ok() -> bool:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.store.agency_states, []), 5)
                return True
            except Exception:  # noqa: BLE001 - any failure means "not ready"; /readyz says which part
                return False

        async def broker_ok() -> bool:
            try:
                await asyncio.wait_for(self.transport.depth(wire.INTAKE_QUEUE), 5)
                return True
            except Exception:  # noqa: BLE001 - as above
                return False
        store, broker = await asyncio.gather(store_ok(), broker_ok())
        return {"store": store, "broker": broker}



@asynccontextmanager
async def open_service(settings: Settings, *, transport_name: str = "axis-gateway",
                       intake: TrustSettings | None = None) -> AsyncIterator[AgencyService]:
    """An `AgencyService` on the store, broker and signer `settings` name; closed when the block ends.

    `settings.signer` is the socket of the running signer (`axis gateway` and `axis serve` start one):
    SignerStartError without it, SignerUnavailable when nothing answers there. With `intake` (the trust
    the hubs decide with), `settings.workers` worker processes decide submissions where they arrive
    (`AgencyService.send`), signing through the same signer; they are started before this yields. The
    store must exist (MissingDatabase otherwise); the broker is waited for through an outage (the one
    retry policy). Trusted roots or a CRL that cannot be read raise OSError or ValueError. A holiday
    calendar (AXIS_DEADLINE_CALENDAR) that cannot be read or used raises CalendarError, a ValueError.
    """
    from axis.audit.logkeys import seal_store
    from axis.store import open_store
    from axis.transport import RetryPolicy, open_transport

    if settings.signer is None:
        raise SignerStartError("the gateway signs through a signer process: set AXIS_SIGNER (or --signer) to its "
                               "socket")
    signer = SignerClient(settings.signer)
    rules = load_rules(settings)  # a calendar that cannot be read stops the gateway here, not an auditor later
    verifier = Verifier.from_files(settings.trust_roots, settings.revocations)
    store = open_store(settings.store_url)
    pool = None
    try:
        await retrying("certifying the gateway's log key")(asyncio.to_thread)(seal_store, store, signer, "gateway")
        transport = await retrying("connecting to the broker")(open_transport)(
            settings.broker, name=transport_name,
            retry=RetryPolicy(base_delay=settings.retry_base, max_attempts=settings.retry_attempts),
            lease=settings.embedded_lease, default_embedded_path=settings.embedded_transport)
        try:
            if intake is not None:
                pool = WorkerPool(intake, settings.workers, signer=signer, store_url=settings.store_url)
                await pool.start()
            service = AgencyService(store, transport, signer=signer, verifier=verifier,
                                    max_packet_bytes=settings.max_packet_bytes, intake=pool, deadline_rules=rules,
                                    inline_body_bytes=settings.inline_body_bytes)
            try:
                yield service
            finally:
                await service.close()
        finally:
            await transport.close()
    finally:
        if pool is not None:
            await asyncio.to_thread(pool.close)
        store.close()
