"""What only the RabbitMQ transport has to show: its broker topology and surviving a killed connection.

The connection is killed through the management API (`DELETE /api/connections/{name}`,
found by the name the transport gives it in client_properties).
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import pytest
from yarl import URL

from axis.retry import is_transient, retrying
from axis.transport import BrokerRefused, OutgoingMessage, Transport, TransportError, UnroutableError, open_transport

from .support import AMQP_URL, POLICY, STEP, RabbitAdmin, next_delivery

pytestmark = pytest.mark.rabbitmq

Q = "000.00.00.G22"
OpenTransport = Callable[..., Awaitable[Transport]]


@pytest.fixture
def transport_url(rabbitmq_url: str) -> str:  # these tests run on RabbitMQ only
    return rabbitmq_url


@pytest.fixture
def vhost(transport_url: str) -> str:
    return URL(transport_url).path[1:]


async def test_topology_is_what_the_docs_say(transport: Transport, vhost: str) -> None:
    admin = RabbitAdmin()
    await transport.declare_queue(Q)
    main = admin.queue(vhost, Q)
    assert (main["type"], main["durable"]) == ("classic", True)
    assert main["arguments"] == {"x-max-priority": 4, "x-dead-letter-exchange": "axis.dead",
                                 "x-dead-letter-routing-key": Q}
    dlq = admin.queue(vhost, f"{Q}.dlq")
    assert (dlq["type"], dlq["durable"]) == ("classic", True)
    delays = [round(POLICY.delay(n) * 1000) for n in range(1, POLICY.max_attempts)]
    for delay_ms in delays:
        holding = admin.queue(vhost, f"axis.retry.{delay_ms}ms")
        assert (holding["type"], holding["durable"]) == ("quorum", True)
        assert holding["arguments"] == {"x-queue-type": "quorum", "x-message-ttl": delay_ms,
                                        "x-dead-letter-exchange": "axis.deliver",
                                        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    bindings = {(b["source"], b["destination"], b["routing_key"], tuple(sorted(b["arguments"].items())))
                for b in admin.bindings(vhost) if b["source"]}
    assert ("axis.deliver", Q, Q, ()) in bindings
    assert ("axis.dead", f"{Q}.dlq", Q, ()) in bindings
    # The dead-letter feed: one more binding per queue, so one dead-lettering reaches Q.dlq and the feed.
    feed = admin.queue(vhost, "axis.dead-letters")
    assert (feed["type"], feed["durable"]) == ("classic", True)
    assert ("axis.dead", "axis.dead-letters", Q, ()) in bindings
    assert ("axis.deliver", "axis.dead-letters", "axis.dead-letters", ()) in bindings  # its retries come back
    assert ("axis.dead", "axis.dead-letters.dlq", "axis.dead-letters", ()) in bindings
    assert not any(b[:3] == ("axis.dead", "axis.dead-letters", "axis.dead-letters") for b in bindings)
    for delay_ms in delays:
        assert ("axis.retry", f"axis.retry.{delay_ms}ms", "",
                (("axis-retry-ms", str(delay_ms)), ("x-match", "all"))) in bindings


async def test_a_foreign_queue_with_other_arguments_is_reported_not_clobbered(
        transport: Transport, vhost: str) -> None:
    admin = RabbitAdmin()
    admin.call("PUT", f"/queues/{quote(vhost, safe='')}/foreign", {"durable": True, "arguments": {}})
    with pytest.raises(TransportError, match="other arguments"):
        await transport.declare_queue("foreign")
    await transport.declare_queue(Q)  # the transport is still usable afterwards


async def test_unreachable_broker_or_vhost_is_a_transport_error(vhost: str) -> None:
    with pytest.raises(TransportError, match="cannot connect"):
        await open_transport(str(URL(AMQP_URL).with_port(1)), timeout=5)
    with pytest.raises(BrokerRefused, match="refused the connection"):
        await open_transport(str(URL(AMQP_URL).with_path("/no-such-vhost-" + uuid.uuid4().hex[:6])), timeout=5)


async def test_killed_connection_loses_nothing_confirmed_and_the_consumer_resumes(
        open_tr: OpenTransport, vhost: str) -> None:
    name = f"axis-test-kill-{uuid.uuid4().hex[:8]}"
    transport = await open_tr(name=name)
    await transport.declare_queue(Q)
    consumed: set[str] = set()

    async def consume_all() -> None:
        async with transport.consume(Q, prefetch=50) as deliveries:
            async for delivery in deliveries:
                consumed.add(delivery.message_id)
                try:
                    await delivery.ack()
                except TransportError:
                    pass  # its channel died with the connection; it comes back and is de-duplicated here

    consumer = asyncio.create_task(consume_all())
    confirmed: set[str] = set()
    failures: list[TransportError] = []

    async def publish_until_confirmed(message_id: str) -> None:
        deadline = time.monotonic() + STEP
        while True:
            try:
                # Bounded: a publish during the outage must fail (or succeed), never hang.
                await asyncio.wait_for(transport.publish(Q, b"payload", message_id=message_id), STEP)
            except UnroutableError:
                raise
            except TransportError as exc:
                failures.append(exc)
                assert time.monotonic() < deadline, f"the connection did not recover: {exc}"
                await asyncio.sleep(0.1)
            else:
                confirmed.add(message_id)
                return

    for i in range(300):
        if i == 100:
            killed = await asyncio.to_thread(RabbitAdmin().kill_connection, vhost, name)
            assert killed == 1, "the management API did not list the transport's connection"
        await publish_until_confirmed(f"k{i}")

    deadline = time.monotonic() + STEP
    while not confirmed <= consumed:
        assert time.monotonic() < deadline, f"confirmed but never consumed: {sorted(confirmed - consumed)[:10]}"
        await asyncio.sleep(0.05)
    assert consumed == confirmed
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)


async def test_deliveries_in_flight_when_the_connection_dies_come_back_counted(
        open_tr: OpenTransport, vhost: str) -> None:
    name = f"axis-test-kill-{uuid.uuid4().hex[:8]}"
    transport = await open_tr(name=name)
    await transport.declare_queue(Q)
    await transport.publish(Q, b"in flight", message_id="held", headers={"k": "v"})
    async with transport.consume(Q, prefetch=1) as consumer:
        held = await next_delivery(consumer)
        assert (held.attempt, held.redelivered) == (1, False)
        assert await asyncio.to_thread(RabbitAdmin().kill_connection, vhost, name) == 1
        again = await next_delivery(consumer)  # same consumer object, after recovery
        assert (again.message_id, again.body, dict(again.headers)) == ("held", b"in flight", {"k": "v"})
        assert (again.attempt, again.redelivered) == (2, True)
        with pytest.raises(TransportError):
            await held.ack()  # its channel is gone
        await again.ack()
        await transport.publish(Q, b"marker", message_id="marker")
        assert (await next_delivery(consumer)).message_id == "marker"


async def test_during_a_lasting_outage_operations_fail_fast_and_all_works_after_recovery(
        open_tr: OpenTransport, vhost: str) -> None:
    # Revoking the user's rights before killing the connection keeps the broker
    # refusing the reconnection, so the outage lasts until we grant them again.
    admin = RabbitAdmin()
    name = f"axis-test-kill-{uuid.uuid4().hex[:8]}"
    transport = await open_tr(name=name)
    await transport.declare_queue(Q)
    await transport.publish(Q, b"before", message_id="before")
    consumer = transport.consume(Q, prefetch=1)
    await consumer.open()
    held = await next_delivery(consumer)
    admin.revoke(vhost)
    try:
        assert await asyncio.to_thread(admin.kill_connection, vhost, name) == 1
        await asyncio.sleep(0.3)  # let the client notice the close
        with pytest.raises(TransportError):
            await asyncio.wait_for(transport.publish(Q, b"during", message_id="during"), STEP)
        with pytest.raises(TransportError):
            await asyncio.wait_for(transport.depth(Q), STEP)
        with pytest.raises(TransportError):
            await held.ack()
        # Closing a consumer during the outage must stop it for good: if the robust
        # channel came back with the connection, its consumer would take messages
        # nobody reads and hold them unacked for ever.
        await asyncio.wait_for(consumer.close(), STEP)
    finally:
        admin.grant(vhost)
    deadline = time.monotonic() + STEP
    while True:
        try:
            await transport.publish(Q, b"after", message_id="after")
            break
        except TransportError:
            assert time.monotonic() < deadline, "the connection did not recover"
            await asyncio.sleep(0.1)
    async with transport.consume(Q, prefetch=1) as fresh:
        got = {}
        for _ in range(2):
            delivery = await next_delivery(fresh)
            got[delivery.message_id] = delivery.redelivered
            await delivery.ack()
    assert got == {"before": True, "after": False}


@pytest.mark.parametrize("wrong", ["password", "vhost"])
async def test_a_refused_account_or_vhost_fails_at_once_and_is_not_retried(transport_url: str, wrong: str) -> None:
    """The retry policy waits out a broker that is down, never a wrong URL: that would only cost minutes."""
    url = URL(transport_url)
    url = url.with_password("not-the-password") if wrong == "password" else url.with_path("/no-such-vhost-here")
    started = time.monotonic()
    with pytest.raises(BrokerRefused) as refused:
        await retrying("opening a transport with a wrong URL")(open_transport)(str(url), retry=POLICY)
    assert time.monotonic() - started < 10
    assert "not-the-password" not in str(refused.value)
    assert not is_transient(refused.value)


async def test_the_cluster_layout_is_a_fixed_set_of_quorum_lanes_sharded_by_key(vhost: str) -> None:
    """`?queues=quorum&shards=3`: every queue is 3 shards x (urgent, normal) quorum lanes, however many keys
    (agencies) publish; one key's messages keep their order; a retry and a replay go back to their own shard."""
    url = str(URL(AMQP_URL).with_path("/" + vhost)) + "?queues=quorum&shards=3"
    transport = await open_transport(url, retry=POLICY, timeout=10.0)
    admin = RabbitAdmin()
    try:
        await transport.declare_queue(Q)
        keys = [f"000.00.{n:02d}.G01" for n in range(40)]  # forty agencies
        await transport.publish_many([OutgoingMessage(Q, f"{key}:{i}".encode(), f"{key}-{i}", priority=i % 5,
                                                      key=key) for key in keys for i in range(3)])
        names = {q["name"]: q for q in admin.call("GET", f"/queues/{quote(vhost, safe='')}")}
        lanes = [Q, f"{Q}.shard-1", f"{Q}.shard-2"]
        lanes += [f"{lane}.urgent" for lane in lanes]
        assert {n for n in names if n.startswith(Q)} == {*lanes, f"{Q}.dlq"}
        assert {names[n]["type"] for n in [*lanes, f"{Q}.dlq"]} == {"quorum"}
        assert all(names[n]["arguments"]["x-dead-letter-routing-key"] == Q for n in lanes)
        assert await transport.depth(Q) == 120
        (stats,) = await transport.queue_stats([Q])
        assert (stats.ready, stats.consumers) == (120, 0)

        seen: dict[str, list[int]] = {}
        async with transport.consume(Q, prefetch=50) as consumer:
            for _ in range(120):
                delivery = await next_delivery(consumer)
                key, _, i = delivery.body.decode().partition(":")
                seen.setdefault(key, []).append(int(i))
                if delivery.message_id == f"{keys[0]}-0":
                    await delivery.retry()  # comes back to its shard, attempt 2
                elif delivery.message_id == f"{keys[1]}-1":
                    await delivery.dead_letter("parked by the test")
                else:
                    await delivery.ack()
            again = await next_delivery(consumer)
            assert (again.message_id, again.attempt) == (f"{keys[0]}-0", 2)
            await again.ack()
        # Within a lane (a key's urgent or normal messages) publish order holds.
        assert all(sorted(v) == [0, 1, 2] for v in seen.values()) and len(seen) == 40
        assert await transport.replay_dead_letters(Q) == 1
        async with transport.consume(Q, prefetch=5) as consumer:
            replayed = await next_delivery(consumer)
            assert (replayed.message_id, replayed.attempt) == (f"{keys[1]}-1", 1)
            await replayed.ack()
        assert await transport.depth(Q) == 0
    finally:
        await transport.close()


async def test_a_consumer_takes_what_the_urgent_lanes_bring_first(vhost: str) -> None:
    url = str(URL(AMQP_URL).with_path("/" + vhost)) + "?queues=quorum&shards=2"
    transport = await open_transport(url, retry=POLICY, timeout=10.0)
    try:
        await transport.declare_queue(Q)
        await transport.publish_many([OutgoingMessage(Q, b"n", f"n{i}", key=f"k{i}") for i in range(50)])
        await transport.publish_many([OutgoingMessage(Q, b"u", f"u{i}", priority=3 + i % 2, key=f"k{i}")
                                      for i in range(4)])
        async with transport.consume(Q, prefetch=100) as consumer:
            await asyncio.sleep(0.5)  # everything prefetched: the order is the consumer's, not the broker's
            batch = await consumer.receive(54, STEP)
            assert sorted(d.message_id for d in batch[:4]) == ["u0", "u1", "u2", "u3"]
            for delivery in batch:
                await delivery.ack()
    finally:
        await transport.close()


@pytest.mark.parametrize("option", ["queues=fifo", "shards=0", "shards=x", "hosts=:5", "hosts=mq2:amqp"])
async def test_a_wrong_layout_option_in_the_url_says_which(vhost: str, option: str) -> None:
    url = str(URL(AMQP_URL).with_path("/" + vhost)) + "?" + option
    with pytest.raises(ValueError, match=option.split("=")[0]):
        await open_transport(url, retry=POLICY, timeout=10.0)
