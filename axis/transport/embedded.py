"""The embedded transport: durable queues in one SQLite file, for one machine without a broker.

Same contract as every transport (see `base`); what is specific here:
- Any number of processes on the same machine may open the same file; each
  opens its own `EmbeddedTransport`. A write is one `BEGIN IMMEDIATE`
  transaction committed with `synchronous=FULL` (WAL), so a published message,
  an ack or a retry is on disk when the call returns. Not for network
  filesystems (WAL needs shared memory).
- A consumer takes messages with a lease (`lease` seconds, default 30) and
  renews it every `lease / 3` seconds while it holds the delivery. If the
  consumer's process dies, the lease expires and the message is delivered again
  with `redelivered=True` and `attempt + 1`. Clocks are wall-clock seconds
  shared by the processes.
- Consumers poll: 5 ms after activity, backing off to 100 ms when idle;
  publishes from the same transport object wake its consumers at once.
- Writes from concurrent tasks share transactions (see `sqlite_worker`), so
  many small publishes or acks cost one fsync per group, and `publish_many`
  stores a whole batch in one transaction.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from .base import (
    DEAD_LETTER_FEED,
    Consumer,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    QueueStats,
    RetryPolicy,
    Transport,
    check_batch,
    check_message,
    check_prefetch,
    check_queue_name,
    is_reserved_header,
)
from .errors import TransportError, UnroutableError
from .sqlite_worker import SqliteWorker

log = logging.getLogger("axis.transport.embedded")

SCHEMA_VERSION = 1

# visible_at: the message may be handed out when visible_at <= now (covers "not
#   leased", "lease expired" and "retry delay over" with one indexed comparison).
# lease_token: NULL = never handed out since it became ready (fresh, retried,
#   replayed, or returned unseen by a closing consumer); a uuid = leased to a
#   consumer; '' = given to the application and returned unsettled. A non-NULL
#   token on a visible row therefore means "delivered and not settled": the
#   next delivery counts as a redelivery (attempt + 1, redelivered). A lease token starts with its
#   consumer's id and a colon, so a lease found expired names the consumer that let it lapse.
# published_at: when the message was last published (replayed); NULL on files made before it was added.
# axis_consumer: every open consumer, with the last time it renewed its leases (`seen_at`), so that other
#   processes can count consumers and name the one whose leases expired.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS axis_transport_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS axis_queue (name TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS axis_message (
    seq INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    redelivered INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    lease_token TEXT,
    published_at REAL
);
CREATE INDEX IF NOT EXISTS axis_message_order ON axis_message (queue, priority DESC, seq);
CREATE TABLE IF NOT EXISTS axis_dead_letter (
    seq INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS axis_dead_letter_queue ON axis_dead_letter (queue, seq);
CREATE TABLE IF NOT EXISTS axis_consumer (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    seen_at REAL NOT NULL
);
"""

_POLL_MIN = 0.005
_POLL_MAX = 0.1
# A consumer asked for a delivery that has found none for this long, while its queue has ready
# messages, logs its own state once: it should never happen, and its state is what explains it.
_STALL_REPORT = 20.0


def _init_schema(conn: sqlite3.Connection) -> None:
    # Not executescript(): it would COMMIT the BEGIN IMMEDIATE we run in.
    for statement in filter(None, (part.strip() for part in _SCHEMA.split(";"))):
        conn.execute(statement)
    row = conn.execute("SELECT value FROM axis_transport_meta WHERE key='schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT INTO axis_transport_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif row[0] != str(SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"transport schema version {row[0]} is not the supported "
                                    f"{SCHEMA_VERSION}; use the matching Axis version")
    conn.execute("INSERT OR IGNORE INTO axis_queue (name, created_at) VALUES (?, ?)", (DEAD_LETTER_FEED, time.time()))
    if "published_at" not in {row[1] for row in conn.execute("PRAGMA table_info(axis_message)")}:
        conn.execute("ALTER TABLE axis_message ADD COLUMN published_at REAL")  # a file made before it existed


def _unknown_queue(queue: str) -> UnroutableError:
    return UnroutableError(f"queue {queue!r} does not exist; declare_queue({queue!r}) first")


class EmbeddedTransport(Transport):
    def __init__(self, path: str | Path, *, retry: RetryPolicy | None = None, lease: float = 30.0,
                 synchronous: str = "FULL") -> None:
        if not lease > 0:
            raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL (NORMAL may lose the last "
                             "commits on power loss)")
        self.path = Path(path)
        self.retry_policy = retry or RetryPolicy()
        self.lease = float(lease)
        self._db = SqliteWorker(self.path, synchronous=synchronous.upper(), init=_init_schema)
        self._known_queues: set[str] = set()
        self._consumers: set[_EmbeddedConsumer] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<EmbeddedTransport {str(self.path)!r}>"

    async def start(self) -> None:
        await self._db.start()

    # --- queues and publishing --------------------------------------------

    async def declare_queue(self, name: str) -> None:
        check_queue_name(name)

        def declare(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO axis_queue (name, created_at) VALUES (?, ?)", (name, time.time()))

        await self._db.write(declare)
        self._known_queues.add(name)

    async def publish(self, queue: str, body: bytes, *, message_id: str, priority: int = 0,
                      headers: Mapping[str, str] | None = None, key: str = "") -> None:
        # One table, ordered by priority then publish order: nothing to shard, so `key` changes nothing.
        plain = check_message(queue, body, message_id, priority, headers)
        outcome = (await self._store([(OutgoingMessage(queue, body, message_id, priority, plain), plain)]))[0]
        if outcome is not None:
            raise outcome

    async def publish_many(self, messages: Iterable[OutgoingMessage]) -> list[TransportError | None]:
        checked = check_batch(messages)
        if not checked:
            return []
        try:
            return await self._store(checked)
        except TransportError as exc:
            return [exc] * len(checked)

    async def _store(self, checked: Sequence[tuple[OutgoingMessage, dict[str, str]]]) -> list[TransportError | None]:
        queues = {m.queue for m, _ in checked}
        unknown_cached = queues - self._known_queues

        def insert(conn: sqlite3.Connection) -> list[TransportError | None]:
            missing = {q for q in unknown_cached
                       if conn.execute("SELECT 1 FROM axis_queue WHERE name=?", (q,)).fetchone() is None}
            now = time.time()
            rows = []
            outcomes: list[TransportError | None] = []
            for message, headers in checked:
                if message.queue in missing:
                    outcomes.append(_unknown_queue(message.queue))
                    continue
                rows.append((message.queue, message.message_id, bytes(message.body), json.dumps(headers),
                             message.priority, now, now))
                outcomes.append(None)
            conn.executemany(
                "INSERT INTO axis_message (queue, message_id, body, headers, priority, attempt, redelivered,"
                " visible_at, lease_token, published_at) VALUES (?, ?, ?, ?, ?, 1, 0, ?, NULL, ?)", rows)
            return outcomes

        outcomes = await self._db.write(insert)
        stored = {m.queue for (m, _), o in zip(checked, outcomes, strict=True) if o is None}
        self._known_queues |= stored
        self._wake(stored)
        return outcomes

    def _wake(self, queues: Iterable[str]) -> None:
        wanted = set(queues)
        for consumer in self._consumers:
            if consumer.queue in wanted:
                consumer.wake()

    # --- consuming ----------------------------------------------------------

    def consume(self, queue: str, *, prefetch: int = 100) -> Consumer:
        return _EmbeddedConsumer(self, check_queue_name(queue), check_prefetch(prefetch))

    def consume_dead_letters(self, *, prefetch: int = 100) -> Consumer:
        return _EmbeddedConsumer(self, DEAD_LETTER_FEED, check_prefetch(prefetch))

    async def _require_queue(self, queue: str) -> None:
        if queue in self._known_queues:
            return
        exists = await self._db.read(
            lambda conn: conn.execute("SELECT 1 FROM axis_queue WHERE name=?", (queue,)).fetchone() is not None)
        if not exists:
            raise _unknown_queue(queue)
        self._known_queues.add(queue)

    async def _take(self, consumer: _EmbeddedConsumer, limit: int) -> list[_EmbeddedDelivery]:
        queue, lease, max_attempts = consumer.queue, self.lease, self.retry_policy.max_attempts
        token = f"{consumer.id}:{uuid.uuid4().hex}"
        reclaimed: dict[str, int] = {}  # consumer id -> messages of its whose lease had expired
        owners: list[str] = []          # who they were, for the log line

        def take(conn: sqlite3.Connection) -> list[tuple]:
            now = time.time()
            reclaimed.clear()
            rows = conn.execute(
                "SELECT seq, message_id, body, headers, priority, attempt, redelivered, lease_token"
                " FROM axis_message WHERE queue=? AND visible_at<=? ORDER BY priority DESC, seq LIMIT ?",
                (queue, now, limit)).fetchall()
            taken, leases, poisoned = [], [], []
            for seq, message_id, body, headers, priority, attempt, redelivered, previous in rows:
                if previous is not None:  # delivered before and never settled
                    attempt, redelivered = attempt + 1, 1
                    if previous:  # still leased: its consumer stopped renewing the lease
                        owner = previous.partition(":")[0] if ":" in previous else ""
                        reclaimed[owner] = reclaimed.get(owner, 0) + 1
                if attempt > max_attempts:
                    poisoned.append((seq, attempt - 1))
                    continue
                leases.append((now + lease, token, attempt, redelivered, seq))
                taken.append((seq, message_id, body, headers, priority, attempt, redelivered))
            conn.executemany("UPDATE axis_message SET visible_at=?, lease_token=?, attempt=?, redelivered=?"
                             " WHERE seq=?", leases)
            for seq, attempts in poisoned:
                _move_to_dead(conn, seq, None, now,
                              f"delivered {attempts} times without being settled (its consumer closed or died "
                              "each time); a poison message?", attempts)
            if reclaimed:
                owners.clear()
                owners.extend(_lapsed_consumers(conn, reclaimed, now))
            return taken

        rows = await self._db.write(take)
        if reclaimed:
            log.warning("reclaimed %d message(s) on %s whose lease expired unsettled (%s: it died or stalled); "
                        "they are delivered again", sum(reclaimed.values()), queue, "; ".join(owners))
        deliveries = []
        for seq, message_id, body, headers, priority, attempt, redelivered in rows:
            plain = json.loads(headers)
            deliveries.append(_EmbeddedDelivery(
                consumer, seq, token, queue=queue, body=body, message_id=message_id,
                headers={k: v for k, v in plain.items() if not is_reserved_header(k)}, priority=priority,
                attempt=attempt, redelivered=bool(redelivered),
                letter=_letter(message_id, body, plain, priority) if queue == DEAD_LETTER_FEED else None))
        return deliveries

    async def _renew(self, consumer: _EmbeddedConsumer, pairs: list[tuple[int, str]]) -> None:
        lease = self.lease

        def renew(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("INSERT OR REPLACE INTO axis_consumer VALUES (?, ?, ?, ?, ?)", consumer.row(now))
            conn.executemany("UPDATE axis_message SET visible_at=? WHERE seq=? AND lease_token=?",
                             [(now + lease, seq, token) for seq, token in pairs])

        await self._db.write(renew)

    async def _release(self, pairs: list[tuple[int, str]], *, seen: bool) -> None:
        # seen=True: the application had it and did not settle it, so the next
        # delivery counts as a redelivery; seen=False: it never left our buffer.
        marker = "" if seen else None

        def release(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany("UPDATE axis_message SET visible_at=?, lease_token=? WHERE seq=? AND lease_token=?",
                             [(now, marker, seq, token) for seq, token in pairs])

        await self._db.write(release)

    async def _settle(self, delivery: _EmbeddedDelivery, action: str, reason: str) -> None:
        seq, token, policy = delivery.seq, delivery.token, self.retry_policy

        def settle(conn: sqlite3.Connection) -> None:
            now = time.time()
            if action == "ack":
                moved = conn.execute("DELETE FROM axis_message WHERE seq=? AND lease_token=?",
                                     (seq, token)).rowcount
            elif action == "retry" and delivery.attempt < policy.max_attempts:
                moved = conn.execute(
                    "UPDATE axis_message SET attempt=attempt+1, redelivered=0, lease_token=NULL, visible_at=?"
                    " WHERE seq=? AND lease_token=?", (now + policy.delay(delivery.attempt), seq, token)).rowcount
            else:
                moved = _move_to_dead(conn, seq, token, now, reason, delivery.attempt)
            if not moved:
                raise TransportError(
                    f"cannot {action} message {delivery.message_id!r} on {delivery.queue!r}: its lease expired "
                    f"(held longer than {self.lease}s without renewal) and it was handed out again; the "
                    "redelivery will be de-duplicated by the consumer")

        consumer = delivery.consumer
        if action == "ack":
            # Like AMQP's basic.ack, an ack is handed over, not confirmed: a consumer
            # acking one message at a time must not wait for an fsync per message.
            # Queued now, it commits before this consumer's next take; if it is lost
            # in a crash, the message is delivered again and de-duplicated.
            if not consumer.holds(delivery):
                raise TransportError(f"cannot ack message {delivery.message_id!r} on {delivery.queue!r}: its "
                                     "consumer was closed and the message has been or will be delivered again "
                                     "(the consumer de-duplicates)")
            consumer.settled(delivery)
            self._db.write_nowait(settle).add_done_callback(_report_lost_ack)
            return
        try:
            await self._db.write(settle)
        finally:
            consumer.settled(delivery)

    # --- dead letters, depth ------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        check_queue_name(queue)
        await self._require_queue(queue)

        def select(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(
                "SELECT message_id, body, headers, priority, reason, attempts, dead_at FROM axis_dead_letter"
                " WHERE queue=? ORDER BY seq LIMIT ?", (queue, limit)).fetchall()

        return [DeadLetter(queue=queue, message_id=message_id, body=body, headers=json.loads(headers),
                           priority=priority, reason=reason, attempts=attempts,
                           dead_at=datetime.fromtimestamp(dead_at, UTC))
                for message_id, body, headers, priority, reason, attempts, dead_at in await self._db.read(select)]

    async def replay_dead_letters(self, queue: str, message_ids: Iterable[str] | None = None) -> int:
        check_queue_name(queue)
        await self._require_queue(queue)
        wanted = None if message_ids is None else set(message_ids)

        def replay(conn: sqlite3.Connection) -> int:
            now = time.time()
            rows = conn.execute("SELECT seq, message_id FROM axis_dead_letter WHERE queue=? ORDER BY seq",
                                (queue,)).fetchall()
            chosen = [(seq,) for seq, message_id in rows if wanted is None or message_id in wanted]
            conn.executemany(
                "INSERT INTO axis_message (queue, message_id, body, headers, priority, attempt, redelivered,"
                " visible_at, lease_token, published_at) SELECT queue, message_id, body, headers, priority, 1, 0,"
                " ?, NULL, ? FROM axis_dead_letter WHERE seq=?", [(now, now, seq) for (seq,) in chosen])
            conn.executemany("DELETE FROM axis_dead_letter WHERE seq=?", chosen)
            return len(chosen)

        count = await self._db.write(replay)
        self._wake([queue])
        return count

    async def purge_dead_letters(self, queue: str, message_ids: Iterable[str] | None = None) -> int:
        check_queue_name(queue)
        await self._require_queue(queue)
        wanted = None if message_ids is None else set(message_ids)

        def purge(conn: sqlite3.Connection) -> int:
            rows = conn.execute("SELECT seq, message_id FROM axis_dead_letter WHERE queue=?", (queue,)).fetchall()
            chosen = [(seq,) for seq, message_id in rows if wanted is None or message_id in wanted]
            conn.executemany("DELETE FROM axis_dead_letter WHERE seq=?", chosen)
            return len(chosen)

        return await self._db.write(purge)

    async def depth(self, queue: str) -> int:
        return await self._depth(check_queue_name(queue))

    async def _depth(self, queue: str) -> int:
        await self._require_queue(queue)
        return await self._db.read(lambda conn: conn.execute(
            "SELECT count(*) FROM axis_message WHERE queue=? AND visible_at<=?", (queue, time.time())).fetchone()[0])

    async def queue_stats(self, queues: Iterable[str]) -> list[QueueStats]:
        names = [q if q == DEAD_LETTER_FEED else check_queue_name(q) for q in queues]
        lease = self.lease

        def read(conn: sqlite3.Connection) -> list[QueueStats]:
            now = time.time()
            found = []
            for name in names:
                if conn.execute("SELECT 1 FROM axis_queue WHERE name=?", (name,)).fetchone() is None:
                    continue
                ready, in_flight, oldest = conn.execute(
                    "SELECT sum(visible_at<=?), sum(visible_at>? AND lease_token<>''), min(published_at)"
                    " FROM axis_message WHERE queue=?", (now, now, name)).fetchone()
                consumers = conn.execute("SELECT count(*) FROM axis_consumer WHERE queue=? AND seen_at>?",
                                         (name, now - lease)).fetchone()[0]
                dead = conn.execute("SELECT count(*) FROM axis_dead_letter WHERE queue=?", (name,)).fetchone()[0]
                found.append(QueueStats(name, ready or 0, in_flight or 0, consumers,
                                        None if oldest is None else max(0.0, now - oldest), dead))
            return found

        return await self._db.read(read)

    async def _register(self, consumer: _EmbeddedConsumer) -> None:
        row = consumer.row(time.time())
        await self._db.write(lambda conn: conn.execute("INSERT OR REPLACE INTO axis_consumer VALUES (?, ?, ?, ?, ?)",
                                                       row))

    async def _unregister(self, consumer: _EmbeddedConsumer) -> None:
        await self._db.write(lambda conn: conn.execute("DELETE FROM axis_consumer WHERE id=?", (consumer.id,)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        await self._db.close()


def _lapsed_consumers(conn: sqlite3.Connection, reclaimed: dict[str, int], now: float) -> list[str]:
    """Who held the leases `take` found expired ({consumer id: messages}), for the log line; the registry
    rows of those consumers go (a consumer that lets a lease lapse has died or stalled)."""
    said = []
    for owner, count in sorted(reclaimed.items()):
        row = conn.execute("SELECT pid, host, seen_at FROM axis_consumer WHERE id=?", (owner,)).fetchone()
        if row is None:
            said.append(f"{count} held by a consumer that is gone")
            continue
        pid, host, seen_at = row
        said.append(f"{count} held by the consumer in process {pid} on {host}, last seen {now - seen_at:.0f} s ago")
        conn.execute("DELETE FROM axis_consumer WHERE id=?", (owner,))
    return said


def _report_lost_ack(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("an ack was not recorded (%s); the message will be delivered again", future.exception())


def _move_to_dead(conn: sqlite3.Connection, seq: int, token: str | None, now: float, reason: str,
                  attempts: int) -> int:
    """Park the message in its dead-letter queue and, in the same transaction, put a copy on the feed."""
    match = "seq=? AND lease_token=?" if token is not None else "seq=?"
    params = (seq, token) if token is not None else (seq,)
    row = conn.execute(f"SELECT queue, message_id, body, headers, priority FROM axis_message WHERE {match}",
                       params).fetchone()
    if row is None:
        return 0
    queue, message_id, body, headers, priority = row
    conn.execute(
        "INSERT INTO axis_dead_letter (queue, message_id, body, headers, priority, attempts, reason, dead_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (queue, message_id, body, headers, priority, attempts, reason, now))
    conn.execute(f"DELETE FROM axis_message WHERE {match}", params)
    if queue != DEAD_LETTER_FEED:  # a feed message that dies is parked, not fed to itself
        feed_headers = {**json.loads(headers), _H_ORIGIN: queue, _H_REASON: reason, _H_ATTEMPTS: str(attempts),
                        _H_DEAD_AT: repr(now)}
        conn.execute(
            "INSERT INTO axis_message (queue, message_id, body, headers, priority, attempt, redelivered,"
            " visible_at, lease_token, published_at) VALUES (?, ?, ?, ?, ?, 1, 0, ?, NULL, ?)",
            (DEAD_LETTER_FEED, message_id, body, json.dumps(feed_headers), priority, now, now))
    return 1


# A feed message carries its letter's facts in headers the transport reserves (and strips).
_H_ORIGIN, _H_REASON, _H_ATTEMPTS, _H_DEAD_AT = "axis-origin", "axis-dead-reason", "axis-dead-attempts", "axis-dead-at"


def _letter(message_id: str, body: bytes, headers: dict[str, str], priority: int) -> DeadLetter:
    try:
        attempts, dead_at = int(headers.get(_H_ATTEMPTS, "1")), float(headers.get(_H_DEAD_AT, "nan"))
    except ValueError:
        attempts, dead_at = 1, float("nan")
    return DeadLetter(queue=headers.get(_H_ORIGIN, ""), message_id=message_id, body=body,
                      headers={k: v for k, v in headers.items() if not is_reserved_header(k)}, priority=priority,
                      reason=headers.get(_H_REASON, ""), attempts=attempts,
                      dead_at=None if dead_at != dead_at else datetime.fromtimestamp(dead_at, UTC))


class _EmbeddedDelivery(Delivery):
    def __init__(self, consumer: _EmbeddedConsumer, seq: int, token: str, **fields) -> None:
        super().__init__(**fields)
        self.consumer = consumer
        self.seq = seq
        self.token = token

    async def _ack(self) -> None:
        await self.consumer.transport._settle(self, "ack", "")

    async def _retry(self, reason: str) -> None:
        await self.consumer.transport._settle(self, "retry", reason)

    async def _dead_letter(self, reason: str) -> None:
        await self.consumer.transport._settle(self, "dead-letter", reason)


class _EmbeddedConsumer(Consumer):
    def __init__(self, transport: EmbeddedTransport, queue: str, prefetch: int) -> None:
        self.transport = transport
        self.queue = queue
        self.prefetch = prefetch
        self.id = uuid.uuid4().hex
        self._buffer: deque[_EmbeddedDelivery] = deque()
        self._held: dict[int, _EmbeddedDelivery] = {}  # taken from the DB and not yet settled
        self._wake = asyncio.Event()
        self._fill: asyncio.Task[bool] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._state = "new"
        self._starved_since: float | None = None  # asked for deliveries and had none since then
        self._waiting = 0                   # receives waiting for news right now
        self._delay = _POLL_MIN             # the next idle poll's pause
        self._stall_check: asyncio.Task[None] | None = None
        self._reported = False

    def wake(self) -> None:
        self._wake.set()

    def row(self, now: float) -> tuple[str, str, int, str, float]:
        """Its row in axis_consumer, seen at `now`."""
        return (self.id, self.queue, os.getpid(), socket.gethostname(), now)

    def holds(self, delivery: _EmbeddedDelivery) -> bool:
        return self._state == "open" and self._held.get(delivery.seq) is delivery

    def settled(self, delivery: _EmbeddedDelivery) -> None:
        self._held.pop(delivery.seq, None)
        self._wake.set()  # room for another delivery

    async def open(self) -> None:
        if self._state != "new":
            raise RuntimeError("a consumer can be opened once; call transport.consume() again")
        if self.transport._closed:
            raise TransportError("the transport is closed; open a new one")
        await self.transport._require_queue(self.queue)
        await self.transport._register(self)
        self._state = "open"
        self.transport._consumers.add(self)
        self._heartbeat = asyncio.create_task(self._renew_leases(), name=f"axis-lease:{self.queue}")

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(min(self.transport.lease / 3, _STALL_REPORT / 2))
            since = self._starved_since
            if (self._waiting and not self._reported and since is not None
                    and time.monotonic() - since > _STALL_REPORT
                    and (self._stall_check is None or self._stall_check.done())):
                self._stall_check = asyncio.create_task(self._report_if_stalled())
            try:  # every beat, held deliveries or not: other processes count live consumers by it
                await self.transport._renew(self, [(d.seq, d.token) for d in self._held.values()])
            except TransportError:
                pass  # try again next beat; if it keeps failing the lease expires and we redeliver

    async def _take(self, room: int) -> bool:
        deliveries = await self.transport._take(self, room)
        if deliveries:
            self._starved_since = None
        for delivery in deliveries:
            self._held[delivery.seq] = delivery
            self._buffer.append(delivery)
        return bool(deliveries)

    def _ready_count(self) -> int:
        return len(self._buffer)

    def _take_ready(self, limit: int) -> list[Delivery]:
        taken: list[Delivery] = []
        while self._buffer and len(taken) < limit:
            taken.append(self._buffer.popleft())
        return taken

    async def _until_ready(self, timeout: float | None) -> None:
        if self._state != "open":
            return
        if self._starved_since is None:
            self._starved_since = time.monotonic()
        self._waiting += 1
        try:
            await self._fetch_or_wait(timeout)
        finally:
            self._waiting -= 1

    async def _fetch_or_wait(self, timeout: float | None) -> None:
        # asyncio.timeout, never wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the awaited thing completes, and the "cancelled" wait then ran on as a zombie
        # that its canceller waited for forever (the hub's lost-batch stall, commit 171b23e).
        room = self.prefetch - len(self._held)
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                if room > 0:
                    if self._fill is None or self._fill.done():
                        self._fill = asyncio.create_task(self._take(room))
                    # Shielded: if our caller is cancelled (or times out) mid-take, the taken rows
                    # still land in the buffer instead of sitting leased by nobody.
                    if await asyncio.shield(self._fill):
                        self._delay = _POLL_MIN
                        return
                try:
                    async with asyncio.timeout(self._delay):
                        await self._wake.wait()
                    self._delay = _POLL_MIN
                except TimeoutError:
                    self._delay = min(self._delay * 2, _POLL_MAX)
        except TimeoutError:
            pass  # the caller's time is up; receive() decides what that means

    async def _report_if_stalled(self) -> None:
        try:
            ready = await self.transport._depth(self.queue)
        except TransportError:
            return
        since = self._starved_since
        if ready and self._waiting and since is not None and time.monotonic() - since > _STALL_REPORT:
            self._reported = True
            fill = ("none" if self._fill is None else "running" if not self._fill.done() else
                    "cancelled" if self._fill.cancelled() else f"failed ({self._fill.exception()!r})"
                    if self._fill.exception() else "done")
            log.warning("consumer of %r was asked for a delivery %.0f s ago and has none, with %d ready in "
                        "its queue: %d held unsettled of prefetch %d, %d buffered, last take %s",
                        self.queue, time.monotonic() - since, ready, len(self._held), self.prefetch,
                        len(self._buffer), fill)

    async def close(self) -> None:
        if self._state == "closed":
            return
        was_open = self._state == "open"
        self._state = "closed"
        self._wake.set()
        self.transport._consumers.discard(self)
        if not was_open:
            return
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._stall_check is not None:
            self._stall_check.cancel()
        if self._fill is not None and not self._fill.done():
            try:
                await self._fill
            except TransportError:
                pass
        unseen = {d.seq for d in self._buffer}
        self._buffer.clear()
        returned = [(d.seq, d.token) for d in self._held.values() if d.seq in unseen]
        given = [(d.seq, d.token) for d in self._held.values() if d.seq not in unseen]
        self._held.clear()
        try:
            if returned:
                await self.transport._release(returned, seen=False)
            if given:
                await self.transport._release(given, seen=True)
            await self.transport._unregister(self)
        except TransportError:
            pass  # the leases then simply expire and the messages are delivered again
