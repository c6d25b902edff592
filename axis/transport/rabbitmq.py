"""The RabbitMQ transport (aio-pika, robust connection), for production.

Same contract as every transport (see `base`). What is specific here:
- The broker topology is declared by `Topology` and nowhere else.
- One robust connection per transport (named through `client_properties`, so it
  shows up in the management UI), one robust publishing channel with publisher
  confirms and `on_return_raises`, one robust channel per consumer, and
  short-lived plain channels for declarations, depth and dead-letter work (a
  failed passive declare closes its channel; it must not be a shared one).
- Publishes go to the robust channel's current aiormq channel with pamqp
  properties (aio-pika's `Message` adds nothing Axis uses and costs CPU).
- Every message is persistent and published `mandatory`; the AMQP `message_id`
  is a fresh uuid per publish, because aiormq matches returned (unroutable)
  messages to publishes by it, and the caller's message id travels in the
  `axis-id` header, with the attempt number in `axis-attempt`.
- A publish during a connection outage raises `TransportError` at once (the
  robust channel is closed) or, if the outage starts while the confirm is
  pending, when the channel dies or after `timeout` seconds at most. The
  connection then recovers in the background every `reconnect_interval`
  seconds (add `?reconnect_interval=N` to the URL to change it) and restores
  the consumers.
- Classic queues cannot count deliveries, so a delivery the broker marks
  `redelivered` is re-published by the consumer with `attempt + 1` before it
  is handed out; that is how a message that kills its consumer ends up in the
  dead-letter queue after `max_attempts` instead of looping for ever.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
import urllib.request
import uuid
import warnings
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import aio_pika
import aiormq
import pamqp.commands
import pamqp.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from yarl import URL

from axis.retry import retrying

from .base import (
    DEAD_LETTER_FEED,
    MAX_PRIORITY,
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
from .errors import BrokerRefused, TransportError, UnroutableError

log = logging.getLogger("axis.transport.rabbitmq")
# A connection aio_pika could not open is closed from its __del__ by scheduling close(); when the garbage collector
# gets to it after the event loop has stopped, Python prints a RuntimeWarning on stderr (under the one-line error a
# command gives for a broker that does not answer). Such a connection holds nothing to close.
warnings.filterwarnings("ignore", message="coroutine 'RobustConnection.close' was never awaited",
                        category=RuntimeWarning)

H_ID = "axis-id"                  # the caller's message id (the AMQP message_id is per publish)
H_ATTEMPT = "axis-attempt"        # attempt number of the next delivery, "1" when first published
H_REDELIVERED = "axis-redelivered"  # "1": the previous delivery was never settled
H_RETRY_MS = "axis-retry-ms"      # selects the retry delay queue in the headers exchange
H_REASON = "axis-dead-reason"
H_DEAD_AT = "axis-dead-at"
H_DEAD_ATTEMPTS = "axis-dead-attempts"  # attempts of a dead letter (its axis-attempt restarts at 1 on the feed)
H_ORIGIN = "axis-origin"          # the queue a dead letter died on
H_KEY = "axis-key"                # the shard key a message was published with (a replay goes back to its shard)
# Kept when a message is re-published (a retry, a redelivery, a feed message): its shard key, and on the feed the
# facts of the letter it announces.
_LETTER_HEADERS = (H_KEY, H_REASON, H_DEAD_AT, H_DEAD_ATTEMPTS, H_ORIGIN)

_PUBLISH_WINDOW = 200  # publish_many keeps this many confirms in flight (stack-notes §1.1: ~100-500 is best)
# What aio-pika/aiormq raise when the broker or the connection fails (RuntimeError
# covers ChannelInvalidStateError, raised on a closed channel).
_AMQP_ERRORS = (aiormq.exceptions.AMQPError, pamqp.exceptions.PAMQPException, ConnectionError, OSError,
                RuntimeError, asyncio.TimeoutError)
# The broker said no to the account or the vhost: retrying cannot help. (A missing vhost surfaces
# as aiormq's InvalidFrameError, a Connection.Close instead of OpenOk, which _refused() recognises.)
_REFUSED = (aiormq.exceptions.AuthenticationError, aiormq.exceptions.ProbableAuthenticationError,
            aiormq.exceptions.ConnectionNotAllowed)


class Topology:
    """Every exchange, queue, binding and argument Axis uses on RabbitMQ.

    - A queue `Q` is one or more physical queues, its lanes, whose number is
      fixed by the URL, never by the data: `shards=N` (default 1) splits it in N
      (`Q`, `Q.shard-1` … `Q.shard-N-1`; a message goes to the shard of its key,
      so one agency's submissions stay in order), and with `queues=quorum` each
      shard has an urgent lane `….urgent` for priorities 3 and 4, because quorum
      queues on RabbitMQ 3.10 refuse `x-max-priority`. A consumer of `Q` consumes
      every lane and hands out what the urgent lanes brought first.
    - `axis.deliver` (durable direct exchange): each lane is bound with its own
      name as routing key, so publishing to an undeclared queue is unroutable
      and, being `mandatory`, comes back as `UnroutableError`.
    - A lane (durable): with `queues=classic` (the default, one broker) a classic
      queue with `x-max-priority` 4 (edXML priorities 0..4; the argument is the
      highest priority, not the number of levels); with `queues=quorum` (a
      cluster: replicated on three nodes, it survives losing one) a quorum queue.
      Each has `x-dead-letter-exchange` `axis.dead` with routing key `Q` as a
      safety net for anything the broker itself rejects or expires.
    - `axis.dead` (durable direct exchange) → `Q.dlq` (one per queue, whatever
      its shards; of the lanes' queue type), bound with routing key `Q`. The transport publishes dead letters there
      itself, with confirms, recording the reason in headers.
    - `axis.dead-letters` (durable, one lane, declared like any `Q`): the
      dead-letter feed. It is bound to `axis.dead` with the routing key of
      every declared queue, so one publish (or one broker dead-lettering)
      parks a letter in `Q.dlq` and puts its copy on the feed, atomically.
    - `axis.retry` (durable headers exchange) → one holding queue per delay,
      `axis.retry.<ms>ms`, bound on header `axis-retry-ms=<ms>`. Each holds
      messages for one fixed TTL (so no message waits behind a longer delay)
      and dead-letters them to `axis.deliver` with the routing key they were
      published with, which is the target queue's name. These are quorum
      queues with `x-dead-letter-strategy: at-least-once` (RabbitMQ >= 3.10),
      so a broker crash during the hand-back cannot lose a retried message;
      they need no priority, because priority is a property of the message
      and applies again once it is back in its classic queue. There are
      `max_attempts - 1` of them, shared by all queues, however many agencies
      there are.
    """

    DELIVER = "axis.deliver"
    RETRY = "axis.retry"
    DEAD = "axis.dead"
    URGENT = 3  # edXML priorities 3 and 4 ("khẩn", "hỏa tốc") take a quorum queue's urgent lane

    def __init__(self, policy: RetryPolicy, *, queue_type: str = "classic", shards: int = 1) -> None:
        if queue_type not in ("classic", "quorum"):
            raise ValueError(f"queues={queue_type!r}: use classic (one broker) or quorum (a cluster)")
        if not 1 <= shards <= 64:
            raise ValueError(f"shards={shards!r}: use a number from 1 to 64")
        self.retry_delays_ms = [max(1, round(policy.delay(n) * 1000)) for n in range(1, policy.max_attempts)]
        self.queue_type = queue_type
        self.shards = shards

    @staticmethod
    def dlq(queue: str) -> str:
        return f"{queue}.dlq"

    @staticmethod
    def retry_queue(delay_ms: int) -> str:
        return f"axis.retry.{delay_ms}ms"

    def lanes(self, queue: str) -> list[str]:
        """The physical queues of `queue`, urgent lanes first (the dead-letter feed is one queue)."""
        if queue == DEAD_LETTER_FEED:
            return [queue]
        shards = [queue] + [f"{queue}.shard-{n}" for n in range(1, self.shards)]
        if self.queue_type == "classic":
            return shards
        return [f"{shard}.urgent" for shard in shards] + shards

    def lane(self, queue: str, priority: int, key: str) -> str:
        """The physical queue a message of `priority` with shard key `key` goes to."""
        shard = queue
        if self.shards > 1 and queue != DEAD_LETTER_FEED:
            n = zlib.crc32(key.encode()) % self.shards
            shard = queue if n == 0 else f"{queue}.shard-{n}"
        if self.queue_type == "quorum" and priority >= self.URGENT and queue != DEAD_LETTER_FEED:
            return f"{shard}.urgent"
        return shard

    def queue_arguments(self, queue: str) -> dict[str, Any]:
        """The arguments of each lane of `queue`."""
        kind: dict[str, Any] = ({"x-max-priority": MAX_PRIORITY} if self.queue_type == "classic"
                                else _QUORUM)
        return {**kind, "x-dead-letter-exchange": Topology.DEAD, "x-dead-letter-routing-key": queue}

    def dlq_arguments(self) -> dict[str, Any]:
        return {} if self.queue_type == "classic" else dict(_QUORUM)

    @staticmethod
    def retry_queue_arguments(delay_ms: int) -> dict[str, Any]:
        return {"x-queue-type": "quorum", "x-message-ttl": delay_ms,
                "x-dead-letter-exchange": Topology.DELIVER, "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish"}

    async def declare_base(self, channel: AbstractChannel) -> None:
        await channel.declare_exchange(self.DELIVER, aio_pika.ExchangeType.DIRECT, durable=True)
        await channel.declare_exchange(self.DEAD, aio_pika.ExchangeType.DIRECT, durable=True)
        await self.declare_queue(channel, DEAD_LETTER_FEED)
        retry = await channel.declare_exchange(self.RETRY, aio_pika.ExchangeType.HEADERS, durable=True)
        for delay_ms in self.retry_delays_ms:
            holding = await channel.declare_queue(self.retry_queue(delay_ms), durable=True,
                                                  arguments=self.retry_queue_arguments(delay_ms))
            await holding.bind(retry, routing_key="", arguments={"x-match": "all", H_RETRY_MS: str(delay_ms)})

    async def declare_queue(self, channel: AbstractChannel, queue: str) -> None:
        for lane in self.lanes(queue):
            main = await channel.declare_queue(lane, durable=True, arguments=self.queue_arguments(queue))
            await main.bind(self.DELIVER, routing_key=lane)
        dead = await channel.declare_queue(self.dlq(queue), durable=True, arguments=self.dlq_arguments())
        await dead.bind(self.DEAD, routing_key=queue)
        if queue != DEAD_LETTER_FEED:  # a feed message that dies is parked, not fed to itself
            feed = await channel.declare_queue(DEAD_LETTER_FEED, durable=True,
                                               arguments=self.queue_arguments(DEAD_LETTER_FEED))
            await feed.bind(self.DEAD, routing_key=queue)


def _plain_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    out = {}
    for key, value in (headers or {}).items():
        if is_reserved_header(key):
            continue
        out[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out


def _header(headers: Mapping[str, Any] | None, key: str) -> str | None:
    value = (headers or {}).get(key)
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _attempt(headers: Mapping[str, Any] | None, key: str = H_ATTEMPT) -> int:
    try:
        return max(1, int(_header(headers, key) or 1))
    except ValueError:
        return 1


def _carried(message: AbstractIncomingMessage, attempt: int) -> dict[str, str]:
    """Headers for re-publishing `message` as attempt `attempt`: the caller's, its id, and, on the
    dead-letter feed, the facts of the letter it announces."""
    headers = {**_plain_headers(message.headers), H_ID: _header(message.headers, H_ID) or message.message_id or "",
               H_ATTEMPT: str(attempt)}
    for key in _LETTER_HEADERS:
        value = _header(message.headers, key)
        if value is not None:
            headers[key] = value
    return headers


class _Outgoing(NamedTuple):
    """One publish as aiormq takes it: building pamqp properties directly skips aio-pika's Message,
    whose attribute bookkeeping cost ~15 % of a publish in the hub's profile."""
    body: bytes
    properties: pamqp.commands.Basic.Properties


def _amqp_message(body: bytes, priority: int | None, headers: Mapping[str, str]) -> _Outgoing:
    table: dict[str, Any] = dict(headers)  # pamqp's FieldTable: str values are one kind of field value
    # The timestamp (whole seconds) is what the management API's head_message_timestamp reports: the age of
    # a queue's oldest message (`queue_stats`).
    return _Outgoing(bytes(body), pamqp.commands.Basic.Properties(
        headers=table, priority=priority or 0, delivery_mode=2, message_id=uuid.uuid4().hex,
        timestamp=datetime.now(UTC)))


# Each queue's leader on the node with the fewest, so the lanes' work spreads over the cluster (the default puts
# every leader on the node the declaring process is connected to).
_QUORUM = {"x-queue-type": "quorum", "x-queue-leader-locator": "balanced"}
_URL_OPTIONS = ("hosts", "queues", "shards")  # the broker URL's options that Axis reads (docs/transports.md)


def _node_url(first: URL, node: str) -> URL:
    """`first` with another `host[:port]`."""
    host, _, port = node.strip().rpartition(":") if ":" in node else (node.strip(), "", "")
    if not host or not (port.isdigit() or not port):
        raise ValueError(f"broker URL option hosts={node!r}: use host:port,host:port")
    return first.with_host(host).with_port(int(port) if port else first.port)


class _FailoverConnection(aio_pika.RobustConnection):
    """A robust connection that tries the next node of a cluster on each connection attempt.

    aio-pika's reconnection loop reads `self.url` once per attempt (`Connection.connect`), and
    otherwise only to print it, so moving on at each read is what spreads the attempts over the nodes.
    """

    def __init__(self, nodes: list[URL], **kwargs: Any) -> None:
        self._nodes = nodes
        self._next = 0
        super().__init__(nodes[0], **kwargs)
        self._next = 0  # __init__ read it: the first attempt still goes to the first node

    @property
    def url(self) -> URL:
        node = self._nodes[self._next % len(self._nodes)]
        self._next += 1
        return node

    @url.setter
    def url(self, value: URL) -> None:  # aio-pika sets it in __init__ and when a password changes
        self._nodes = [value, *self._nodes[1:]] if self._nodes[0] != value else self._nodes


class RabbitMQTransport(Transport):
    def __init__(self, url: str, *, retry: RetryPolicy | None = None, connection_name: str = "axis",
                 timeout: float = 30.0) -> None:
        parsed = URL(url)
        if "reconnect_interval" not in parsed.query:
            parsed = parsed.update_query(reconnect_interval="2")
        options = {name: parsed.query[name] for name in _URL_OPTIONS if name in parsed.query}
        parsed = parsed.without_query_params(*_URL_OPTIONS)  # ours, not aio-pika's
        self._url = parsed
        # The other nodes of a cluster: each connection attempt goes to the next one, so losing the node a
        # process is connected to costs a reconnection, not the process.
        self._nodes = [parsed] + [_node_url(parsed, node) for node in options.get("hosts", "").split(",") if node]
        self.retry_policy = retry or RetryPolicy()
        try:
            shards = options.get("shards", "1")
            if not shards.isdigit():
                raise ValueError(f"shards={shards!r}: use a number from 1 to 64")
            self.topology = Topology(self.retry_policy, queue_type=options.get("queues", "classic"),
                                     shards=int(shards))
        except ValueError as exc:
            raise ValueError(f"broker URL {self._safe_url()}: {exc}") from None
        self.connection_name = connection_name
        self.timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._consumers: set[_RabbitConsumer] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<RabbitMQTransport {self._safe_url()} name={self.connection_name!r}>"

    def _safe_url(self) -> str:
        return str(self._url.with_password("***") if self._url.password else self._url)

    async def start(self) -> None:
        try:
            self._connection = await self._connect()
            self._channel = await asyncio.wait_for(
                self._connection.channel(publisher_confirms=True, on_return_raises=True), self.timeout)
            async with self._temp_channel() as channel:
                try:
                    await asyncio.wait_for(self.topology.declare_base(channel), self.timeout)
                except aiormq.exceptions.ChannelPreconditionFailed as exc:
                    raise TransportError(
                        f"the Axis exchanges or retry queues on {self._safe_url()} exist with other arguments "
                        f"({exc}); were they made by another Axis version or by hand? Delete them (they hold "
                        "only messages waiting for a retry) and start again.") from exc
        except TransportError:
            await self.close()
            raise
        except _AMQP_ERRORS as exc:
            await self.close()
            if not _refused(exc):
                raise TransportError(f"cannot connect to RabbitMQ at {self._safe_url()}: {exc!r}. Check that the "
                                     "broker is running and that the user, password and vhost are right.") from exc
            raise BrokerRefused(f"RabbitMQ at {self._safe_url()} refused the connection ({exc!r}): check the user, "
                                "password and vhost in the broker URL.") from exc

    async def _connect(self) -> AbstractRobustConnection:
        """A robust connection to the first node that answers (aio-pika gives up at once when its first
        attempt fails; after that its reconnections go round the nodes)."""
        failure: BaseException | None = None
        for first in range(len(self._nodes)):
            connection = _FailoverConnection(self._nodes[first:] + self._nodes[:first],
                                             client_properties={"connection_name": self.connection_name})
            try:
                await connection.connect(timeout=self.timeout)
                return connection
            except _AMQP_ERRORS as exc:
                failure = exc
                with contextlib.suppress(*_AMQP_ERRORS):
                    await connection.close()
                if _refused(exc):
                    break  # the account or the vhost: every node of a cluster says the same
        assert failure is not None
        raise failure

    def _check_open(self) -> AbstractRobustConnection:
        if self._closed or self._connection is None or self._channel is None:
            raise TransportError("the RabbitMQ transport is closed; open a new one")
        return self._connection

    @asynccontextmanager
    async def _temp_channel(self) -> AsyncIterator[aio_pika.Channel]:
        """A plain (not robust) channel for one operation; closed afterwards."""
        connection = self._check_open()
        channel = aio_pika.Channel(connection, publisher_confirms=False)
        try:
            await asyncio.wait_for(channel.initialize(), self.timeout)
        except _AMQP_ERRORS as exc:
            raise TransportError(f"RabbitMQ at {self._safe_url()} is not reachable right now ({exc!r}); "
                                 "the connection is being recovered, retry later") from exc
        try:
            yield channel
        finally:
            if not channel.is_closed:
                try:
                    await asyncio.wait_for(channel.close(), self.timeout)
                except _AMQP_ERRORS:
                    pass  # the broker drops the channel with the connection anyway

    async def _passive(self, channel: aio_pika.Channel, name: str, owner: str) -> aio_pika.abc.AbstractQueue:
        try:
            return await asyncio.wait_for(channel.declare_queue(name, passive=True), self.timeout)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise UnroutableError(f"queue {owner!r} does not exist (no {name!r} in vhost "
                                  f"{self._url.path[1:] or '/'!r}); declare_queue({owner!r}) first") from None
        except _AMQP_ERRORS as exc:
            raise TransportError(f"cannot inspect queue {name!r}: {exc!r}; retry") from exc

    # --- queues and publishing --------------------------------------------

    async def declare_queue(self, name: str) -> None:
        check_queue_name(name)
        async with self._temp_channel() as channel:
            try:
                await asyncio.wait_for(self.topology.declare_queue(channel, name), self.timeout)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise TransportError(
                    f"queue {name!r} already exists with other arguments than Axis declares ({exc}); it was "
                    "created by something else. Move its messages and delete it, then declare it again.") from exc
            except _AMQP_ERRORS as exc:
                raise TransportError(f"cannot declare queue {name!r}: {exc!r}; retry") from exc

    async def publish(self, queue: str, body: bytes, *, message_id: str, priority: int = 0,
                      headers: Mapping[str, str] | None = None, key: str = "") -> None:
        plain = check_message(queue, body, message_id, priority, headers)
        await self._send(Topology.DELIVER, self.topology.lane(queue, priority, key or message_id),
                         _amqp_message(body, priority, {**plain, H_ID: message_id, H_ATTEMPT: "1",
                                                        H_KEY: key or message_id}))

    async def publish_many(self, messages: Iterable[OutgoingMessage]) -> list[TransportError | None]:
        checked = check_batch(messages)
        semaphore = asyncio.Semaphore(_PUBLISH_WINDOW)

        async def one(message: OutgoingMessage, plain: dict[str, str]) -> TransportError | None:
            async with semaphore:
                try:
                    key = message.key or message.message_id
                    await self._send(Topology.DELIVER, self.topology.lane(message.queue, message.priority, key),
                                     _amqp_message(message.body, message.priority,
                                                   {**plain, H_ID: message.message_id, H_ATTEMPT: "1", H_KEY: key}))
                except TransportError as exc:
                    return exc
                return None

        return list(await asyncio.gather(*(one(m, plain) for m, plain in checked)))

    async def _send(self, exchange: str, routing_key: str, message: _Outgoing) -> None:
        """Publish and wait for the broker's confirm; every failure becomes a TransportError."""
        self._check_open()
        publishing = self._channel
        assert publishing is not None  # _check_open() said so
        try:
            # aiormq's own timeout, not asyncio.wait_for: no task per publish, and a cancelled publish
            # that was never written gives its delivery tag back (aiormq's basic_publish).
            if publishing.is_closed:  # during an outage: fail now, not after the timeout
                raise aiormq.exceptions.ChannelInvalidStateError("the publishing channel is closed")
            channel = await publishing.get_underlay_channel()
            await channel.basic_publish(message.body, exchange=exchange, routing_key=routing_key,
                                        properties=message.properties, mandatory=True, timeout=self.timeout)
        except aiormq.exceptions.PublishError as exc:
            if getattr(exc.frame, "reply_code", None) == 312:  # NO_ROUTE
                target = Topology.dlq(routing_key) if exchange == Topology.DEAD else routing_key
                raise UnroutableError(f"queue {target!r} does not exist (nothing is bound to {routing_key!r} "
                                      f"on {exchange!r}); declare_queue({routing_key!r}) first") from None
            raise TransportError(f"the broker returned the message for {routing_key!r}: {exc}") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise TransportError(f"the broker refused (nack) the message for {routing_key!r}: {exc}; "
                                 "it may be out of disk or memory. Retry later.") from exc
        except TimeoutError as exc:
            raise TransportError(f"no confirm from RabbitMQ within {self.timeout}s for {routing_key!r}; the "
                                 "message may or may not be stored. Retry (consumers de-duplicate).") from exc
        except _AMQP_ERRORS as exc:
            raise TransportError(f"publishing to {routing_key!r} failed: {exc!r} (connection lost?); the "
                                 "message may or may not be stored. Retry; the connection recovers by "
                                 "itself.") from exc

    # --- consuming ----------------------------------------------------------

    def consume(self, queue: str, *, prefetch: int = 100) -> Consumer:
        return _RabbitConsumer(self, check_queue_name(queue), check_prefetch(prefetch))

    def consume_dead_letters(self, *, prefetch: int = 100) -> Consumer:
        return _RabbitConsumer(self, DEAD_LETTER_FEED, check_prefetch(prefetch))

    async def _redeliver(self, queue: str, lane: str, message: AbstractIncomingMessage, *, count: bool) -> None:
        """Put `message` back on `lane` of `queue` as a new publish, counting an attempt if `count`; then ack it.

        With `count`, a message past `max_attempts` goes to the dead-letter queue instead.
        """
        attempt = _attempt(message.headers) + (1 if count else 0)
        if attempt > self.retry_policy.max_attempts:
            await self._to_dead(queue, message, attempt - 1,
                                f"delivered {attempt - 1} times without being settled (its consumer closed or "
                                "died each time); a poison message?")
            return
        headers = _carried(message, attempt)
        if count or _header(message.headers, H_REDELIVERED) == "1":
            headers[H_REDELIVERED] = "1"
        await self._send(Topology.DELIVER, lane, _amqp_message(message.body, message.priority, headers))
        await _ack(message)

    async def _to_dead(self, queue: str, message: AbstractIncomingMessage, attempts: int, reason: str) -> None:
        # attempt 1: the copy on the feed is a fresh message there; the letter's own count travels apart.
        headers = {**_plain_headers(message.headers), H_ID: _header(message.headers, H_ID) or
                   message.message_id or "", H_ATTEMPT: "1", H_DEAD_ATTEMPTS: str(attempts), H_REASON: reason,
                   H_DEAD_AT: datetime.now(UTC).isoformat(), H_ORIGIN: queue,
                   H_KEY: _header(message.headers, H_KEY) or ""}
        await self._send(Topology.DEAD, queue, _amqp_message(message.body, message.priority, headers))
        await _ack(message)

    async def _retry_later(self, lane: str, message: AbstractIncomingMessage, attempt: int) -> None:
        delay_ms = self.topology.retry_delays_ms[attempt - 1]
        headers = {**_carried(message, attempt + 1), H_RETRY_MS: str(delay_ms)}
        await self._send(Topology.RETRY, lane, _amqp_message(message.body, message.priority, headers))
        await _ack(message)

    # --- dead letters, depth ------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        check_queue_name(queue)
        letters: list[DeadLetter] = []
        # basic.get without ack, then closing the channel, puts every message
        # back where it was: listing leaves the dead-letter queue unchanged.
        async with self._temp_channel() as channel:
            dlq = await self._passive(channel, Topology.dlq(queue), queue)
            while len(letters) < limit:
                message = await self._get(dlq)
                if message is None:
                    break
                letters.append(_dead_letter(queue, message))
        return letters

    async def replay_dead_letters(self, queue: str, message_ids: Iterable[str] | None = None) -> int:
        async def replay(letter: DeadLetter, key: str) -> None:
            await self._send(Topology.DELIVER, self.topology.lane(queue, letter.priority, key), _amqp_message(
                letter.body, letter.priority, {**letter.headers, H_ID: letter.message_id, H_ATTEMPT: "1",
                                               H_KEY: key}))
        return await self._settle_dead_letters(queue, message_ids, replay)

    async def purge_dead_letters(self, queue: str, message_ids: Iterable[str] | None = None) -> int:
        async def purge(letter: DeadLetter, key: str) -> None:
            return None  # taking it off the dead-letter queue is the whole of a purge
        return await self._settle_dead_letters(queue, message_ids, purge)

    async def _settle_dead_letters(self, queue: str, message_ids: Iterable[str] | None,
                                   act: Callable[[DeadLetter, str], Awaitable[None]]) -> int:
        """`act` on each dead letter of `queue` (those of `message_ids`, or all), then take it off the dead-letter
        queue; the count of those taken."""
        check_queue_name(queue)
        wanted = None if message_ids is None else set(message_ids)
        done = 0
        async with self._temp_channel() as channel:
            dlq = await self._passive(channel, Topology.dlq(queue), queue)
            while True:
                message = await self._get(dlq)
                if message is None:
                    break
                letter = _dead_letter(queue, message)
                if wanted is not None and letter.message_id not in wanted:
                    continue  # stays unacked, so the channel close puts it back
                await act(letter, _header(message.headers, H_KEY) or letter.message_id)
                await _ack(message)
                done += 1
        return done

    async def _get(self, queue: aio_pika.abc.AbstractQueue) -> AbstractIncomingMessage | None:
        try:
            return await asyncio.wait_for(queue.get(no_ack=False, fail=False), self.timeout)
        except _AMQP_ERRORS as exc:
            raise TransportError(f"reading {queue.name!r} failed: {exc!r}; retry") from exc

    async def depth(self, queue: str) -> int:
        check_queue_name(queue)
        total = 0
        async with self._temp_channel() as channel:
            for lane in self.topology.lanes(queue):
                declared = await self._passive(channel, lane, queue)
                total += int(declared.declaration_result.message_count or 0)
        return total

    async def queue_stats(self, queues: Iterable[str]) -> list[QueueStats]:
        """Ready messages and consumers from a passive declare; messages in flight and the age of the oldest
        from the management API (HTTP, port 15672 of the broker's host, the URL's user), when it answers
        within 2 s (None otherwise)."""
        names = [q if q == DEAD_LETTER_FEED else check_queue_name(q) for q in queues]
        found: list[QueueStats] = []
        lanes: dict[str, list[str]] = {}
        for name in names:
            counts: list[Any] = []
            for each in [*self.topology.lanes(name), Topology.dlq(name)]:
                # One channel each: a failed passive declare closes its channel.
                async with self._temp_channel() as channel:
                    try:
                        counts.append((await self._passive(channel, each, name)).declaration_result)
                    except UnroutableError:
                        counts.append(None)
            *declared, dead = counts
            if all(lane is not None for lane in declared):
                lanes[name] = self.topology.lanes(name)
                # A queue is served only as well as its least served lane.
                found.append(QueueStats(name, sum(int(lane.message_count or 0) for lane in declared), None,
                                        min(int(lane.consumer_count or 0) for lane in declared), None,
                                        int(dead.message_count or 0) if dead is not None else 0))
        managed = await asyncio.to_thread(self._management_stats, [lane for q in found for lane in lanes[q.queue]])
        return [_with_management(q, [managed[lane] for lane in lanes[q.queue]])
                if all(lane in managed for lane in lanes[q.queue]) else q for q in found]

    def _management_stats(self, names: list[str]) -> dict[str, tuple[int | None, float | None]]:
        """{queue: (unacknowledged messages, age of the head message in seconds)} from the management API."""
        url = self._url
        base = f"http://{url.host or 'localhost'}:15672/api/queues/{quote(url.path[1:] or '/', safe='')}"
        token = base64.b64encode(f"{url.user or 'guest'}:{url.password or 'guest'}".encode()).decode()
        found: dict[str, tuple[int | None, float | None]] = {}
        for name in names:
            request = urllib.request.Request(f"{base}/{quote(name, safe='')}",
                                             headers={"Authorization": f"Basic {token}"})
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    info = json.loads(answer.read())
            except (OSError, ValueError):
                return found  # no management API here: the figures stay unknown
            head = info.get("head_message_timestamp")
            found[name] = (info.get("messages_unacknowledged"),
                           None if not isinstance(head, (int, float)) else max(0.0, time.time() - head))
        return found

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        if self._connection is not None:
            try:
                await asyncio.wait_for(self._connection.close(), self.timeout)
            except _AMQP_ERRORS:
                pass  # closing a connection that is already gone


def _with_management(stats: QueueStats, lanes: list[tuple[int | None, float | None]]) -> QueueStats:
    """`stats` with the management API's figures of its lanes: messages in flight summed, the oldest age."""
    in_flight = [n for n, _ in lanes if n is not None]
    ages = [age for _, age in lanes if age is not None]
    return dataclasses.replace(stats, in_flight=sum(in_flight) if in_flight else None,
                               oldest_age=max(ages) if ages else None)


async def _ack(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except _AMQP_ERRORS as exc:
        raise TransportError(f"cannot ack: {exc!r} (the channel is gone; the broker will deliver the message "
                             "again and the consumer de-duplicates)") from exc


def _dead_letter(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    reason = _header(headers, H_REASON)
    dead_at: datetime | None = None
    if reason is None:  # dead-lettered by the broker itself (x-death, set by the queue's x-dead-letter-exchange)
        death = _first_death(headers)
        reason = f"dead-lettered by the broker: {death.get('reason', 'unknown')!s}"
        when = death.get("time")
        dead_at = when if isinstance(when, datetime) else None
    else:
        with contextlib.suppress(ValueError):
            dead_at = datetime.fromisoformat(_header(headers, H_DEAD_AT) or "")
    attempts = _attempt(headers, H_DEAD_ATTEMPTS) if H_DEAD_ATTEMPTS in headers else _attempt(headers)
    return DeadLetter(queue=queue, message_id=_header(headers, H_ID) or message.message_id or "",
                      body=message.body, headers=_plain_headers(headers), priority=message.priority or 0,
                      reason=reason, attempts=attempts, dead_at=dead_at)


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def _origin(message: AbstractIncomingMessage) -> str:
    """The queue a message on the dead-letter feed died on."""
    headers = message.headers or {}
    return (_header(headers, H_ORIGIN) or str(_first_death(headers).get("queue") or "")
            or message.routing_key or "")


class _RabbitDelivery(Delivery):
    def __init__(self, consumer: _RabbitConsumer, message: AbstractIncomingMessage, lane: str,
                 **fields: Any) -> None:
        super().__init__(**fields)
        self.consumer = consumer
        self.message = message
        self.lane = lane  # the physical queue it came from, where a retry puts it back

    async def _settle(self, action: Any) -> None:
        try:
            await action
        except TransportError:
            # Could not hand the message on: give it back to the broker (or, if the
            # channel is gone, the broker takes it back itself) so it is redelivered.
            try:
                await self.message.nack(requeue=True)
            except _AMQP_ERRORS:
                pass
            raise
        finally:
            self.consumer.settled(self)

    async def _ack(self) -> None:
        await self._settle(_ack(self.message))

    async def _retry(self, reason: str) -> None:
        transport = self.consumer.transport
        if self.attempt >= transport.retry_policy.max_attempts:
            await self._settle(transport._to_dead(self.queue, self.message, self.attempt, reason))
        else:
            await self._settle(transport._retry_later(self.lane, self.message, self.attempt))

    async def _dead_letter(self, reason: str) -> None:
        await self._settle(self.consumer.transport._to_dead(self.queue, self.message, self.attempt, reason))


_CLOSED = object()


class _RabbitConsumer(Consumer):
    """aio-pika hands raw messages to `_inbox`; a pump task turns them into deliveries in `_ready`
    (re-publishing broker redeliveries first, see the module docstring), and `receive` takes from
    `_ready` only. So a cancelled receive never holds a message: the pump, not the caller, does
    the awaiting between the broker and the application."""

    def __init__(self, transport: RabbitMQTransport, queue: str, prefetch: int) -> None:
        self.transport = transport
        self.queue = queue
        self.prefetch = prefetch
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._ready: deque[_RabbitDelivery] = deque()
        self._urgent: deque[_RabbitDelivery] = deque()  # from the urgent lanes: handed out first
        self._news = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._given: set[_RabbitDelivery] = set()
        self._channel: Any = None
        self._lanes = transport.topology.lanes(queue)
        self._urgent_lanes = {lane for lane in self._lanes if lane.endswith(".urgent")}
        # (queue, tag) per lane, the queues held strongly: robust queues are restored only while referenced
        self._subscribed: list[tuple[Any, str]] = []
        self._lane_of: dict[str, str] = {}  # consumer tag -> lane
        self._state = "new"

    def settled(self, delivery: _RabbitDelivery) -> None:
        self._given.discard(delivery)

    async def open(self) -> None:
        if self._state != "new":
            raise RuntimeError("a consumer can be opened once; call transport.consume() again")
        transport = self.transport
        connection = transport._check_open()
        async with transport._temp_channel() as probe:  # a 404 must not kill the robust channel
            for lane in self._lanes:
                await transport._passive(probe, lane, self.queue)
        try:
            self._channel = await asyncio.wait_for(connection.channel(publisher_confirms=False), transport.timeout)
            # One prefetch for the channel, whatever the lanes (AMQP's global QoS is per channel).
            await asyncio.wait_for(self._channel.set_qos(prefetch_count=self.prefetch), transport.timeout)
            for lane in self._lanes:
                amqp_queue = await asyncio.wait_for(self._channel.declare_queue(lane, passive=True), transport.timeout)
                tag = await asyncio.wait_for(amqp_queue.consume(self._inbox.put), transport.timeout)
                self._subscribed.append((amqp_queue, tag))
                self._lane_of[tag] = lane
        except _AMQP_ERRORS as exc:
            await self._close_channel()
            raise TransportError(f"cannot consume from {self.queue!r}: {exc!r}; retry") from exc
        self._state = "open"
        transport._consumers.add(self)
        self._pump = asyncio.create_task(self._run_pump(), name=f"axis-consumer:{self.queue}")

    def _ready_count(self) -> int:
        return len(self._urgent) + len(self._ready)

    def _take_ready(self, limit: int) -> list[Delivery]:
        taken: list[Delivery] = []
        while (self._urgent or self._ready) and len(taken) < limit:
            delivery = (self._urgent or self._ready).popleft()
            if not _channel_alive(delivery.message):
                continue  # its channel died with the connection; the broker redelivers it
            self._given.add(delivery)
            taken.append(delivery)
        return taken

    async def _until_ready(self, timeout: float | None) -> None:
        if self._state != "open":
            return
        self._news.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: see embedded.py
                await self._news.wait()

    async def _run_pump(self) -> None:
        while self._state == "open":
            message = await self._inbox.get()
            if message is _CLOSED or self._state != "open":
                if message is not _CLOSED:
                    self._inbox.put_nowait(message)  # close() hands it back to the broker
                return
            if not _channel_alive(message):
                continue  # its channel died with the connection; the broker redelivers it
            try:
                if message.redelivered:
                    await self._count_redelivery(message)
                    continue
                delivery = self._delivery(message)
                (self._urgent if delivery.lane in self._urgent_lanes else self._ready).append(delivery)
            except Exception:
                # A pump that died would leave the consumer silent for good; this message stays
                # unacked and goes back to the queue when the consumer closes.
                log.exception("cannot hand out a message from %r; it is delivered again after this consumer "
                              "closes", self.queue)
                continue
            self._news.set()

    def _lane(self, message: AbstractIncomingMessage) -> str:
        return self._lane_of.get(message.consumer_tag or "", self.queue)

    def _delivery(self, message: AbstractIncomingMessage) -> _RabbitDelivery:
        headers = message.headers or {}
        return _RabbitDelivery(
            self, message, self._lane(message), queue=self.queue, body=message.body,
            message_id=_header(headers, H_ID) or message.message_id or "",
            headers=_plain_headers(headers), priority=message.priority or 0, attempt=_attempt(headers),
            redelivered=_header(headers, H_REDELIVERED) == "1",
            letter=_dead_letter(_origin(message), message) if self.queue == DEAD_LETTER_FEED else None)

    async def _count_redelivery(self, message: AbstractIncomingMessage) -> None:
        """Re-publish a broker redelivery with attempt + 1 (see module docstring), then ack it.

        After a reconnection the consumer channel may be back before the
        publishing channel, so keep trying (the retry policy) while the message
        is still ours. Past the policy's patience it is handed back (nack) rather
        than left unacked, where it would block a prefetch slot.
        """
        def gone() -> bool:
            return self._state != "open" or not _channel_alive(message)

        if gone():
            return
        try:
            await retrying(f"re-publishing a redelivered message on {self.queue!r}", until=gone)(
                self.transport._redeliver)(self.queue, self._lane(message), message, count=True)
        except TransportError as exc:
            log.warning("could not re-publish a redelivered message on %r (%s); the broker delivers it again",
                        self.queue, exc)
            if not gone():  # give its prefetch slot back; it comes again, still flagged, and is counted then
                try:
                    await message.nack(requeue=True)
                except _AMQP_ERRORS:
                    pass  # its channel died after all: the broker requeues it anyway

    async def close(self) -> None:
        if self._state == "closed":
            return
        was_open = self._state == "open"
        self._state = "closed"
        self._news.set()
        self.transport._consumers.discard(self)
        if was_open:
            try:
                for amqp_queue, tag in self._subscribed:
                    if not self._channel.is_closed:
                        await asyncio.wait_for(amqp_queue.cancel(tag), self.transport.timeout)
                # Deliveries that arrived before CancelOk reach the inbox two task hops
                # later (aiormq's dispatch task, then aio-pika's callback task).
                for _ in range(3):
                    await asyncio.sleep(0)
            except _AMQP_ERRORS:
                pass
            if self._pump is not None:
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump
            # Prefetched messages the application never saw go back without
            # counting an attempt; if that fails, the channel close below
            # returns them to the broker, which then counts one.
            unseen = [(d.message, False) for d in (*self._urgent, *self._ready)]
            self._urgent.clear()
            self._ready.clear()
            while not self._inbox.empty():
                message = self._inbox.get_nowait()
                if message is not _CLOSED:
                    unseen.append((message, message.redelivered))
            for message, count in unseen:
                if not _channel_alive(message):
                    continue
                try:
                    await self.transport._redeliver(self.queue, self._lane(message), message, count=count)
                except TransportError:
                    pass
            await self._close_channel()
        self._inbox.put_nowait(_CLOSED)

    async def _close_channel(self) -> None:
        # Closing the channel makes the broker requeue every unacked delivery.
        # Close it even when it is already down (connection lost): that marks the
        # robust channel as closed on purpose, so reconnection does not bring back
        # a consumer nobody reads from.
        if self._channel is not None:
            try:
                await asyncio.wait_for(self._channel.close(), self.transport.timeout)
            except _AMQP_ERRORS:
                pass


def _channel_alive(message: AbstractIncomingMessage) -> bool:
    try:
        _ = message.channel  # raises once the channel the message came on is closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return False
    return True


def _refused(exc: BaseException) -> bool:
    """True when connecting failed because the broker refused the account or the vhost."""
    if isinstance(exc, _REFUSED):
        return True
    return isinstance(exc, aiormq.exceptions.InvalidFrameError) and "got <Connection.Close" in str(exc)
