"""The transport interface: durable named queues of opaque byte messages.

Everything above this line (hub, relay, adapters, CLI) moves messages only through
`Transport`; two implementations sit below it (`rabbitmq.RabbitMQTransport` for
production, `embedded.EmbeddedTransport` for one machine without a broker), and
`tests/transport/` is the contract both pass. At this layer there are plain
primitives only: a queue is a `str`, a body is `bytes`, headers are `str -> str`.
No edXML, no agency objects, no database models.

What callers may rely on
------------------------
Queues
  `declare_queue(name)` is idempotent and creates a durable queue together with
  its own dead-letter queue. Names are 1-200 characters of `A-Z a-z 0-9 . _ : -`,
  start with a letter or digit, and must not end in `.dlq` or start with
  `axis.retry`, `axis.dead` or `amq.` (those belong to the transport or the broker).

Publishing
  `publish()` returns only once the message is durably stored: it survives a
  restart of the broker or of every process. It raises `UnroutableError` if the
  queue does not exist (nothing was stored) and `TransportError` on any other
  failure, including a lost connection; it never hangs past its timeout and never
  drops a message silently. After a `TransportError` the message may or may not
  be stored, so the caller retries and consumers de-duplicate on `message_id`
  (and on business keys in `headers`). `publish_many()` does the same for a batch,
  pipelining the confirmations, and reports one outcome per message.

Receiving
  `consumer.receive(max_messages, wait, linger=0.0)` returns a list of at most
  `max_messages` deliveries:
  - it waits up to `wait` seconds (None: as long as it takes) for the first
    one, and returns `[]` if none came;
  - once it has one, it adds whatever else is ready at once, and waits at most
    `linger` more seconds for further ones, returning as soon as it holds
    `max_messages`;
  - a closed consumer (closed before or during the call) returns `[]` at once,
    and `consumer.closed` says so; what it had taken goes back to the queue;
  - a failure of the broker or database while fetching raises `TransportError`
    (the consumer may then be closed and opened again; nothing is lost).
  Cancelling a receive at any point loses nothing and strands nothing: a
  receive takes deliveries out of the consumer in one step without awaiting
  anything, just before it returns, so a cancelled one has taken none, and what
  the consumer fetched meanwhile is there for the next receive (or goes back to
  the queue when the consumer closes). `async for delivery in consumer` is
  `receive(1, None)` until the consumer is closed.

Delivery
  At-least-once. A consumer receives `Delivery` objects and settles each exactly
  once with `ack()` (done: removed for good), `retry(reason)` (delivered again
  after `base_delay * 2**(attempt-1)` seconds with `attempt + 1`; on the last
  allowed attempt it goes to the dead-letter queue instead) or
  `dead_letter(reason)` (straight to the dead-letter queue). `retry()` and
  `dead_letter()` return once the message is durably in its retry delay or
  dead-letter queue. `ack()` hands the acknowledgement over without waiting for
  it to be recorded (AMQP acks are never confirmed; the embedded transport does
  the same so that acking one message at a time costs no fsync each): if it is
  lost in a crash, the message is simply delivered again. A delivery not settled when its consumer is closed,
  crashes or loses its connection is delivered again with `redelivered=True`
  and `attempt + 1`; a message that reaches `max_attempts` deliveries without
  ever being settled (a "poison" message that kills its consumer) goes to the
  dead-letter queue. Settling can raise `TransportError` when the delivery can no
  longer be settled (connection lost, lease expired); the message is then
  delivered again, which the consumer's de-duplication absorbs. After the first
  settling call, successful or not, the `Delivery` is spent.

Order
  Among ready messages a higher priority (0..4; edXML Priority, 3 and 4 urgent)
  is delivered first, and equal priorities come roughly in publish order. (RabbitMQ's
  quorum queues have two levels, urgent before the rest, and a sharded queue keeps
  publish order per shard, i.e. per `key`.) Nothing stronger: retries and
  redeliveries re-enter the queue behind newer messages, and a consumer's prefetch
  buffer is never reordered (but for the urgent lanes), so an urgent message can
  wait behind at most `prefetch` messages already handed to that consumer. Use a
  small prefetch where priority matters more than throughput.

Dead letters
  A dead letter stays parked in its queue's dead-letter queue, for operators:
  `dead_letters(queue)` lists them (body, headers, message id, reason, attempts)
  without removing them; `replay_dead_letters(queue, message_ids)` moves them back
  to the queue with `attempt` reset to 1; `purge_dead_letters(queue, message_ids)`
  removes them for good. Operators never touch the broker or the
  database by hand. In the same durable step, a copy of every dead letter, from
  any queue, is put on one feed, `consume_dead_letters()`: an ordinary consumer
  whose deliveries carry the parked letter in `Delivery.letter` (origin queue,
  reason, attempts). Whoever must react to dead letters consumes that one feed,
  however many queues there are; acking a feed delivery leaves the parked letter
  where it is. A feed delivery is a claim, not a proof: anyone who can write to
  the broker can put a message there.

Concurrency
  A transport object belongs to the event loop that opened it; every method may
  be called concurrently from tasks on that loop. Open one transport per process.
  `depth()` is a snapshot (ready messages only: not in flight, not waiting for a
  retry delay); `queue_stats()` is a snapshot for operators, each figure read on
  its own (they need not add up at any one instant).
"""
from __future__ import annotations

import abc
import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

from .errors import TransportError

MAX_PRIORITY = 4
"""Priorities are 0..4, the range of edXML `Priority`."""

_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_RESERVED_HEADER_PREFIXES = ("x-", "axis-")
_RESERVED_QUEUE_PREFIXES = ("axis.retry", "axis.dead", "amq.")
_RESERVED_QUEUE_SUFFIX = re.compile(r"\.(dlq|urgent|shard-[0-9]+)$")  # a queue's dead letters, lanes and shards

DEAD_LETTER_FEED = "axis.dead-letters"
"""The queue that carries a copy of every dead letter (`Transport.consume_dead_letters`)."""


@dataclass(frozen=True)
class RetryPolicy:
    """When `Delivery.retry()` delivers again, and when it gives up.

    The n-th retry waits `base_delay * 2**(n-1)` seconds; the delivery whose
    `attempt == max_attempts` goes to the dead-letter queue when retried.
    """

    base_delay: float = 10.0
    max_attempts: int = 6

    def __post_init__(self) -> None:
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ValueError(f"max_attempts must be an integer >= 1, not {self.max_attempts!r}")
        if not (math.isfinite(self.base_delay) and self.base_delay >= 0.001):
            raise ValueError(f"base_delay must be a number of seconds >= 0.001, not {self.base_delay!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before delivering again after `attempt` failed."""
        return self.base_delay * 2 ** (attempt - 1)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message for `Transport.publish_many()`; same meaning as `publish()`'s arguments."""

    queue: str
    body: bytes
    message_id: str
    priority: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    key: str = ""
    """Messages with the same key keep their relative order when a queue is sharded (RabbitMQ's `shards=`):
    they go to the same shard. Empty: the message id."""


@dataclass(frozen=True)
class QueueStats:
    """A queue at a glance, for operators (`Transport.queue_stats`); None where the transport cannot tell."""

    queue: str
    ready: int                      # waiting to be handed out now
    in_flight: int | None           # handed to a consumer and not settled yet
    consumers: int | None           # consumers attached now
    oldest_age: float | None        # seconds since the oldest message still in the queue was (re)published
    dead_letters: int               # parked in its dead-letter queue


@dataclass(frozen=True)
class DeadLetter:
    """A message parked in a queue's dead-letter queue, as operators see it."""

    queue: str
    message_id: str
    body: bytes
    headers: Mapping[str, str]
    priority: int
    reason: str
    attempts: int
    dead_at: datetime | None


class Delivery(abc.ABC):
    """A message handed to a consumer; settle it exactly once."""

    def __init__(
        self,
        *,
        queue: str,
        body: bytes,
        message_id: str,
        headers: Mapping[str, str],
        priority: int,
        attempt: int,
        redelivered: bool,
        letter: DeadLetter | None = None,
    ) -> None:
        self.queue = queue
        self.body = body
        self.message_id = message_id
        self.headers = headers
        self.priority = priority
        self.attempt = attempt
        self.redelivered = redelivered
        self.letter = letter
        """On the dead-letter feed: the parked letter this delivery announces; otherwise None."""
        self._spent = False

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} queue={self.queue!r} message_id={self.message_id!r} "
                f"attempt={self.attempt} redelivered={self.redelivered} {len(self.body)} bytes>")

    @property
    def settled(self) -> bool:
        """True once ack/retry/dead_letter has been called (whether or not it succeeded)."""
        return self._spent

    def _spend(self) -> None:
        if self._spent:
            raise RuntimeError(f"{self!r} was already settled; settle each delivery exactly once")
        self._spent = True

    async def ack(self) -> None:
        """The message is handled: remove it for good (handed over, not confirmed; see module docstring)."""
        self._spend()
        await self._ack()

    async def retry(self, reason: str = "") -> None:
        """Deliver again after the backoff, or dead-letter it (with `reason`) if this was the last attempt."""
        self._spend()
        await self._retry(reason or "retry limit reached")

    async def dead_letter(self, reason: str) -> None:
        """Move the message to the queue's dead-letter queue now, recording `reason`."""
        if not reason:
            raise ValueError("dead_letter() needs a reason that tells the operator what went wrong")
        self._spend()
        await self._dead_letter(reason)

    @abc.abstractmethod
    async def _ack(self) -> None: ...

    @abc.abstractmethod
    async def _retry(self, reason: str) -> None: ...

    @abc.abstractmethod
    async def _dead_letter(self, reason: str) -> None: ...


class Consumer(abc.ABC, AsyncIterator[Delivery]):
    """Deliveries from one queue: `async with transport.consume(q) as c: batch = await c.receive(100, 5.0)`.

    Leaving the `async with` block (or `close()`) stops the consumer: `receive`
    returns `[]`, iteration ends, and every delivery not yet settled is delivered
    again to someone else. See the module docstring for `receive`'s rules.
    """

    async def __aenter__(self) -> Consumer:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        """The next delivery; waits for one. Raises `StopAsyncIteration` once closed."""
        got = await self.receive(1, None)
        if not got:
            raise StopAsyncIteration
        return got[0]

    async def receive(self, max_messages: int = 1, wait: float | None = None, *,
                      linger: float = 0.0) -> list[Delivery]:
        """Up to `max_messages` deliveries: the first within `wait` seconds (None: no limit), then
        whatever is ready at once or arrives within `linger` more seconds. `[]` if none came in time
        or the consumer is closed. Safe to cancel at any point (see the module docstring)."""
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be an int >= 1, not {max_messages!r}")
        for name, value in (("wait", wait), ("linger", linger)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        self._check_open()
        loop = asyncio.get_running_loop()
        first_by = None if wait is None else loop.time() + wait
        last_by: float | None = None
        while True:
            # Nothing is taken out of the consumer before the one synchronous step below, so a
            # cancellation at any await here leaves every delivery where the next receive finds it.
            ready = self._ready_count()
            if self.closed:
                return []
            if ready and (ready >= max_messages or (last_by is not None and loop.time() >= last_by)
                          or not linger):
                got = self._take_ready(max_messages)
                if got:
                    return got
                continue  # another receive on this consumer took them first
            if ready and last_by is None:
                last_by = loop.time() + linger
            until = last_by if ready else first_by
            remaining = None if until is None else until - loop.time()
            if remaining is not None and remaining <= 0:
                return self._take_ready(max_messages) if ready else []
            await self._until_ready(remaining)

    _state = "new"  # "open" once open() succeeded, "closed" for good after close(): set by the implementations

    @property
    def closed(self) -> bool:
        """True once the consumer was closed (closing the transport closes its consumers)."""
        return self._state == "closed"

    def _check_open(self) -> None:
        if self._state == "new":
            raise RuntimeError("open the consumer first: async with transport.consume(queue) as deliveries")

    @abc.abstractmethod
    def _ready_count(self) -> int:
        """How many deliveries the consumer holds ready to hand out now."""

    @abc.abstractmethod
    def _take_ready(self, limit: int) -> list[Delivery]:
        """Hand out up to `limit` ready deliveries, best first. Synchronous: it must not await."""

    @abc.abstractmethod
    async def _until_ready(self, timeout: float | None) -> None:
        """Return when more may be ready, when closed, or after `timeout` seconds, whichever is first.

        It may fetch from the queue, but whatever it fetches it keeps in the consumer even if
        cancelled, and it raises nothing when the time runs out.
        """

    @abc.abstractmethod
    async def open(self) -> None:
        """Start consuming; raises `UnroutableError` if the queue does not exist."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop; unsettled deliveries go back to the queue. Idempotent."""


class Transport(abc.ABC):
    """Durable named queues; see the module docstring for the guarantees."""

    retry_policy: RetryPolicy

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (or open the database) and declare the base topology; `open_transport` calls it."""

    @abc.abstractmethod
    async def declare_queue(self, name: str) -> None:
        """Create the durable queue `name` and its dead-letter queue, if missing."""

    @abc.abstractmethod
    async def publish(self, queue: str, body: bytes, *, message_id: str, priority: int = 0,
                      headers: Mapping[str, str] | None = None, key: str = "") -> None:
        """Store one message durably in `queue`; returns once it is stored. `key`: see `OutgoingMessage.key`."""

    @abc.abstractmethod
    async def publish_many(self, messages: Iterable[OutgoingMessage]) -> list[TransportError | None]:
        """Store many messages, pipelined; one outcome per message, in order.

        `None` means durably stored; an `UnroutableError` means not stored (no such
        queue); any other `TransportError` means maybe stored. Invalid arguments
        raise `ValueError` before anything is sent.
        """

    @abc.abstractmethod
    def consume(self, queue: str, *, prefetch: int = 100) -> Consumer:
        """A consumer holding at most `prefetch` unsettled deliveries; use it with `async with`."""

    @abc.abstractmethod
    def consume_dead_letters(self, *, prefetch: int = 100) -> Consumer:
        """A consumer of the dead-letter feed: a copy of every dead letter of every queue, each with
        `Delivery.letter` set. Acking one leaves the parked letter in its dead-letter queue."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        """The first `limit` messages in `queue`'s dead-letter queue, oldest first, left in place."""

    @abc.abstractmethod
    async def replay_dead_letters(self, queue: str, message_ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or those with these message ids) back to `queue`; returns how many."""

    @abc.abstractmethod
    async def purge_dead_letters(self, queue: str, message_ids: Iterable[str] | None = None) -> int:
        """Remove dead letters (all, or those with these message ids) for good; returns how many."""

    @abc.abstractmethod
    async def depth(self, queue: str) -> int:
        """Messages ready for delivery in `queue` (not in flight, not waiting for a retry)."""

    @abc.abstractmethod
    async def queue_stats(self, queues: Iterable[str]) -> list[QueueStats]:
        """A snapshot of each of `queues` (that exists; the others are left out), in the order given."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consumers and release the connection or database. Idempotent."""


# Argument checks shared by the implementations, so both refuse the same inputs
# with the same message before touching the broker or the database.

def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise ValueError(f"invalid queue name {name!r}: use 1-200 characters of A-Z a-z 0-9 . _ : - "
                         "starting with a letter or digit (an agency code such as 000.00.00.G22 fits)")
    if _RESERVED_QUEUE_SUFFIX.search(name) or name.startswith(_RESERVED_QUEUE_PREFIXES):
        raise ValueError(f"invalid queue name {name!r}: names ending in .dlq, .urgent or .shard-N or starting "
                         "with axis.retry, axis.dead or amq. are reserved for the transport and the broker")
    return name


def check_message(queue: str, body: bytes, message_id: str, priority: int,
                  headers: Mapping[str, str] | None) -> dict[str, str]:
    """Validate one message's arguments; returns the headers as a plain dict."""
    check_queue_name(queue)
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ValueError(f"body must be bytes, not {type(body).__name__}")
    if not isinstance(message_id, str) or not message_id or len(_utf8(message_id, "message_id")) > 255:
        raise ValueError(f"message_id must be a non-empty str of at most 255 UTF-8 bytes, not {message_id!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be an int from 0 to {MAX_PRIORITY} (edXML Priority), not {priority!r}")
    plain: dict[str, str] = {}
    # Every publish passes here, relayed deliveries with a dozen headers each: ASCII text (nearly
    # all of it) is valid UTF-8 of its own length, so only other text is encoded to be checked.
    for key, value in (headers or {}).items():
        if not isinstance(key, str) or not key or _utf8_length(key, "a header name") > 255:
            raise ValueError(f"header name {key!r} must be a non-empty str of at most 255 UTF-8 bytes")
        if key.lower().startswith(_RESERVED_HEADER_PREFIXES):
            raise ValueError(f"header name {key!r} is reserved: names starting with 'x-' or 'axis-' "
                             "belong to the transport and the broker")
        if not isinstance(value, str):
            raise ValueError(f"header {key!r} must have a str value, not {type(value).__name__}")
        if not value.isascii():
            _utf8(value, f"header {key!r}")
        plain[key] = value
    return plain


def _utf8_length(text: str, what: str) -> int:
    return len(text) if text.isascii() else len(_utf8(text, what))


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not encodable as UTF-8 ({exc.reason}); pass valid Unicode text") from None


def check_prefetch(prefetch: int) -> int:
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 1 <= prefetch <= 65535:
        raise ValueError(f"prefetch must be an int from 1 to 65535, not {prefetch!r}")
    return prefetch


def is_reserved_header(key: str) -> bool:
    return key.lower().startswith(_RESERVED_HEADER_PREFIXES)


def check_batch(messages: Iterable[OutgoingMessage]) -> Sequence[tuple[OutgoingMessage, dict[str, str]]]:
    checked = []
    for message in messages:
        if not isinstance(message, OutgoingMessage):
            raise ValueError(f"publish_many() takes OutgoingMessage objects, not {type(message).__name__}")
        checked.append((message, check_message(message.queue, message.body, message.message_id,
                                               message.priority, message.headers)))
    return checked
