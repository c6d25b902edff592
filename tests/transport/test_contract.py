"""The transport contract (axis/transport/base.py): every implementation passes every test here.

Each test runs once per implementation (the `transport_url` fixture): the
embedded SQLite transport and RabbitMQ (marked `rabbitmq`). "Nothing else is
in the queue" is checked without timing: publish a marker and require that the
marker is the next delivery.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from axis.transport import (
    DEAD_LETTER_FEED,
    Consumer,
    Delivery,
    OutgoingMessage,
    RetryPolicy,
    Transport,
    TransportError,
    UnroutableError,
)

from .support import POLICY, STEP, next_delivery, take

Q = "000.00.00.G22"
BODY = bytes(range(256)) + "Hỏa tốc — văn bản số 12/VPCP ✓".encode() + b"\x00\xff\xfe"
HEADERS = {"sender": "000.00.00.G01", "ghi-chú": "Khẩn ✓ — 🚀", "empty": "", "Mixed-Case": "A b\tC"}
MESSAGE_ID = "000.00.00.G01,2024/12-VPCP,Đặc biệt"

OpenTransport = Callable[..., Awaitable[Transport]]


async def expect_only_marker(transport: Transport, consumer: Consumer, queue: str = Q) -> None:
    """Publish a marker and require it to be the next delivery: nothing else is pending in `queue`."""
    await transport.publish(queue, b"marker", message_id="marker")
    delivery = await next_delivery(consumer)
    assert delivery.message_id == "marker", f"expected only the marker, got {delivery!r}"
    await delivery.ack()


async def test_body_message_id_headers_and_priority_round_trip_exactly(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, BODY, message_id=MESSAGE_ID, priority=2, headers=HEADERS)
    await transport.publish(Q, b"", message_id="empty-body")
    async with transport.consume(Q) as consumer:
        first = await next_delivery(consumer)
        assert (first.body, first.message_id, dict(first.headers), first.priority) == (BODY, MESSAGE_ID, HEADERS, 2)
        assert (first.queue, first.attempt, first.redelivered) == (Q, 1, False)
        assert type(first.body) is bytes
        second = await next_delivery(consumer)
        assert (second.body, second.message_id, dict(second.headers), second.priority) == (b"", "empty-body", {}, 0)
        await first.ack()
        await second.ack()


async def test_unknown_queue_is_unroutable_and_stores_nothing(transport: Transport) -> None:
    await transport.declare_queue(Q)
    with pytest.raises(UnroutableError, match=r"000\.00\.00\.X99"):
        await transport.publish("000.00.00.X99", b"lost?", message_id="m")
    outcomes = await transport.publish_many([OutgoingMessage(Q, b"1", "one"),
                                             OutgoingMessage("000.00.00.X99", b"2", "two"),
                                             OutgoingMessage(Q, b"3", "three")])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], UnroutableError)
    assert await transport.depth(Q) == 2
    for call in (transport.depth("000.00.00.X99"), transport.dead_letters("000.00.00.X99"),
                 transport.replay_dead_letters("000.00.00.X99"), transport.purge_dead_letters("000.00.00.X99")):
        with pytest.raises(UnroutableError):
            await call
    with pytest.raises(UnroutableError):
        async with transport.consume("000.00.00.X99"):
            pass


async def test_declare_queue_is_idempotent_and_keeps_messages(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, b"kept", message_id="kept")
    await transport.declare_queue(Q)
    assert await transport.depth(Q) == 1


@pytest.mark.parametrize("bad", [
    {"queue": "bad name"}, {"queue": "000.00.00.G22.dlq"}, {"queue": "axis.retry.x"}, {"queue": ""},
    {"priority": 5}, {"priority": -1}, {"priority": True}, {"message_id": ""}, {"body": "text, not bytes"},
    {"headers": {"x-death": "forged"}}, {"headers": {"axis-attempt": "1"}}, {"headers": {"n": 1}},
    {"headers": {"s": "\ud800"}}, {"queue": "axis.dead-letters"},
])
async def test_invalid_arguments_are_refused_before_anything_is_sent(transport: Transport, bad: dict) -> None:
    await transport.declare_queue(Q)
    args = {"queue": Q, "body": b"b", "message_id": "m", "priority": 0, "headers": None, **bad}
    with pytest.raises(ValueError):
        await transport.publish(args["queue"], args["body"], message_id=args["message_id"],
                                priority=args["priority"], headers=args["headers"])
    with pytest.raises(ValueError):
        await transport.publish_many([OutgoingMessage(Q, b"ok", "ok"),
                                      OutgoingMessage(args["queue"], args["body"], args["message_id"],
                                                      args["priority"], args["headers"] or {})])
    assert await transport.depth(Q) == 0


async def test_ack_removes_the_message(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, b"done", message_id="done")
    async with transport.consume(Q) as consumer:
        delivery = await next_delivery(consumer)
        await delivery.ack()
        assert delivery.settled
        with pytest.raises(RuntimeError, match="already settled"):
            await delivery.ack()
    async with transport.consume(Q) as consumer:
        await expect_only_marker(transport, consumer)
    assert await transport.depth(Q) == 0


async def test_unsettled_delivery_of_a_closed_consumer_is_redelivered(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, BODY, message_id=MESSAGE_ID, headers=HEADERS, priority=1)
    async with transport.consume(Q, prefetch=1) as consumer:
        first = await next_delivery(consumer)
        assert (first.attempt, first.redelivered) == (1, False)
    async with transport.consume(Q, prefetch=1) as consumer:
        again = await next_delivery(consumer)
        assert (again.message_id, again.body, dict(again.headers), again.priority) == (MESSAGE_ID, BODY, HEADERS, 1)
        assert (again.attempt, again.redelivered) == (2, True)
        await again.ack()
        await expect_only_marker(transport, consumer)
    with pytest.raises(TransportError):
        await first.ack()  # spent handle of a closed consumer: cannot settle any more


async def test_prefetched_but_unseen_messages_return_without_counting_an_attempt(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish_many([OutgoingMessage(Q, b"%d" % i, f"m{i}") for i in range(3)])
    async with transport.consume(Q, prefetch=10) as consumer:
        seen = await next_delivery(consumer)
        assert seen.message_id == "m0"
        await asyncio.sleep(0.2)  # let the other two arrive in the prefetch buffer (not required to pass)
    async with transport.consume(Q, prefetch=10) as consumer:
        got = {}
        for _ in range(3):
            delivery = await next_delivery(consumer)
            got[delivery.message_id] = (delivery.attempt, delivery.redelivered)
            await delivery.ack()
        assert got == {"m0": (2, True), "m1": (1, False), "m2": (1, False)}
        await expect_only_marker(transport, consumer)


async def test_retry_redelivers_after_the_backoff_with_the_next_attempt(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, BODY, message_id=MESSAGE_ID, headers=HEADERS, priority=3)
    async with transport.consume(Q) as consumer:
        first = await next_delivery(consumer)
        started = time.monotonic()
        await first.retry("recipient database down")
        second = await next_delivery(consumer)
        waited = time.monotonic() - started
        assert (second.message_id, second.body, dict(second.headers), second.priority) == (
            MESSAGE_ID, BODY, HEADERS, 3)
        assert (second.attempt, second.redelivered) == (2, False)
        assert waited >= POLICY.delay(1) * 0.8, "retried before the backoff delay"
        started = time.monotonic()
        await second.retry()
        third = await next_delivery(consumer)
        assert third.attempt == 3
        assert time.monotonic() - started >= POLICY.delay(2) * 0.8, "the second backoff did not double"
        await third.ack()
        await expect_only_marker(transport, consumer)


async def test_retry_on_the_last_attempt_dead_letters_with_the_reason(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, BODY, message_id=MESSAGE_ID, headers=HEADERS, priority=4)
    async with transport.consume(Q) as consumer:
        for attempt in range(1, POLICY.max_attempts + 1):
            delivery = await next_delivery(consumer)
            assert (delivery.message_id, delivery.attempt) == (MESSAGE_ID, attempt)
            await delivery.retry(f"signature check failed on attempt {attempt}")
        await expect_only_marker(transport, consumer)
    [letter] = await transport.dead_letters(Q)
    assert (letter.queue, letter.message_id, letter.body, dict(letter.headers), letter.priority) == (
        Q, MESSAGE_ID, BODY, HEADERS, 4)
    assert letter.reason == f"signature check failed on attempt {POLICY.max_attempts}"
    assert letter.attempts == POLICY.max_attempts
    assert letter.dead_at is not None
    assert await transport.depth(Q) == 0


async def test_dead_letter_then_replay_returns_it_with_attempts_reset(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish_many([OutgoingMessage(Q, b"a", "a", 0, {"k": "a"}),
                                  OutgoingMessage(Q, b"b", "b", 2, {"k": "b"})])
    async with transport.consume(Q) as consumer:
        for _ in range(2):
            delivery = await next_delivery(consumer)
            await delivery.dead_letter(f"unknown recipient in {delivery.message_id}")
        await expect_only_marker(transport, consumer)
        letters = await transport.dead_letters(Q)
        assert sorted((x.message_id, x.reason, x.attempts) for x in letters) == [
            ("a", "unknown recipient in a", 1), ("b", "unknown recipient in b", 1)]
        assert await transport.dead_letters(Q) == letters, "listing dead letters must not consume them"

        assert await transport.replay_dead_letters(Q, ["b", "not-there"]) == 1
        assert [x.message_id for x in await transport.dead_letters(Q)] == ["a"]
        replayed = await next_delivery(consumer)
        assert (replayed.message_id, replayed.body, dict(replayed.headers), replayed.priority) == (
            "b", b"b", {"k": "b"}, 2)
        assert (replayed.attempt, replayed.redelivered) == (1, False)
        await replayed.ack()

        assert await transport.replay_dead_letters(Q) == 1
        assert await transport.dead_letters(Q) == []
        again = await next_delivery(consumer)
        assert (again.message_id, again.attempt) == ("a", 1)
        await again.ack()
        await expect_only_marker(transport, consumer)
    assert await transport.replay_dead_letters(Q) == 0


async def test_purged_dead_letters_are_gone_and_the_others_stay(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish_many([OutgoingMessage(Q, body.encode(), body) for body in ("a", "b", "c")])
    async with transport.consume(Q) as consumer:
        for _ in range(3):
            await (await next_delivery(consumer)).dead_letter("poison")
        assert await transport.purge_dead_letters(Q, ["b", "not-there"]) == 1
        assert sorted(x.message_id for x in await transport.dead_letters(Q)) == ["a", "c"]
        assert await transport.purge_dead_letters(Q) == 2
        assert await transport.dead_letters(Q) == []
        assert await transport.replay_dead_letters(Q) == 0
        await expect_only_marker(transport, consumer)  # a purge never puts anything back in the queue
    assert await transport.purge_dead_letters(Q) == 0


async def test_a_message_that_is_never_settled_ends_in_the_dead_letter_queue(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, b"poison", message_id="poison")
    for attempt in range(1, POLICY.max_attempts + 1):
        async with transport.consume(Q, prefetch=1) as consumer:
            delivery = await next_delivery(consumer)
            assert (delivery.message_id, delivery.attempt) == ("poison", attempt)
            # the consumer "dies" holding it: closing without settling
    async with transport.consume(Q, prefetch=1) as consumer:
        await expect_only_marker(transport, consumer)
    [letter] = await transport.dead_letters(Q)
    assert (letter.message_id, letter.attempts) == ("poison", POLICY.max_attempts)
    assert "without being settled" in letter.reason


async def test_an_urgent_message_overtakes_a_backlog(transport: Transport) -> None:
    # With prefetch 1 the consumer holds one message at a time, so the broker
    # chooses by priority for every delivery; a larger prefetch lets an urgent
    # message wait behind what the consumer already holds (documented).
    await transport.declare_queue(Q)
    outcomes = await transport.publish_many([OutgoingMessage(Q, b"normal", f"n{i}") for i in range(1000)])
    assert outcomes == [None] * 1000
    await transport.publish(Q, b"hoa toc", message_id="urgent", priority=3)
    await transport.publish(Q, b"timed", message_id="timed", priority=4)
    async with transport.consume(Q, prefetch=1) as consumer:
        order = []
        for _ in range(3):
            delivery = await next_delivery(consumer)
            order.append(delivery.message_id)
            await delivery.ack()
    if getattr(getattr(transport, "topology", None), "queue_type", None) == "quorum":
        # Two levels, each its own lane with its own prefetch: the urgent ones in publish order, ahead of the
        # backlog but for at most `prefetch` (1) normal message the consumer already held.
        assert [m for m in order if m != "n0"] == ["urgent", "timed"], order
    else:
        assert order == ["timed", "urgent", "n0"]


async def test_publish_many_delivers_every_message_exactly_once(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.declare_queue("axis.intake")
    batch = [OutgoingMessage(Q if i % 2 else "axis.intake", b"x" * (i % 50), f"id-{i}", i % 5, {"n": str(i)})
             for i in range(2000)]
    assert await transport.publish_many(batch) == [None] * 2000
    assert await transport.depth(Q) == 1000 and await transport.depth("axis.intake") == 1000
    for queue in (Q, "axis.intake"):
        seen: Counter[str] = Counter()
        async with transport.consume(queue, prefetch=200) as consumer:
            while sum(seen.values()) < 1000:
                delivery = await next_delivery(consumer)
                assert delivery.headers["n"] == delivery.message_id[3:]
                seen[delivery.message_id] += 1
                await delivery.ack()
            await expect_only_marker(transport, consumer, queue)
        expected = {m.message_id for m in batch if m.queue == queue}
        assert set(seen) == expected and set(seen.values()) == {1}


async def test_concurrent_single_publishes_all_arrive(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await asyncio.gather(*(transport.publish(Q, b"%d" % i, message_id=f"c{i}") for i in range(300)))
    assert await transport.depth(Q) == 300


async def test_two_consumers_share_a_queue_without_duplicates(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish_many([OutgoingMessage(Q, b"w", f"w{i}") for i in range(200)])
    seen: list[str] = []
    done = asyncio.Event()

    async def work(consumer: Consumer) -> None:
        async for delivery in consumer:
            seen.append(delivery.message_id)
            await delivery.ack()
            if len(seen) == 200:
                done.set()

    async with transport.consume(Q, prefetch=10) as one, transport.consume(Q, prefetch=10) as two:
        tasks = [asyncio.create_task(work(one)), asyncio.create_task(work(two))]
        await asyncio.wait_for(done.wait(), STEP)
    await asyncio.wait_for(asyncio.gather(*tasks), STEP)  # closing the consumers ends the loops
    assert sorted(seen) == sorted(f"w{i}" for i in range(200))


async def test_messages_and_dead_letters_survive_closing_and_reopening(
        transport: Transport, open_tr: OpenTransport) -> None:
    await transport.declare_queue(Q)
    await transport.publish_many([OutgoingMessage(Q, BODY, "durable-1", 1, HEADERS),
                                  OutgoingMessage(Q, b"2", "durable-2"),
                                  OutgoingMessage(Q, b"3", "to-dlq")])
    async with transport.consume(Q, prefetch=3) as consumer:
        delivery = await next_delivery(consumer)
        assert delivery.message_id == "durable-1"
        await delivery.retry("not yet")  # waiting out its backoff while we close: must survive too
        delivery = await next_delivery(consumer)
        assert delivery.message_id == "durable-2"  # held unsettled while we close
        delivery = await next_delivery(consumer)
        assert delivery.message_id == "to-dlq"
        await delivery.dead_letter("parked")
    await transport.close()
    await transport.close()  # idempotent
    with pytest.raises(TransportError):
        await transport.publish(Q, b"after close", message_id="late")

    reopened = await open_tr()
    [letter] = await reopened.dead_letters(Q)
    assert (letter.message_id, letter.reason) == ("to-dlq", "parked")
    async with reopened.consume(Q) as consumer:
        got = {}
        for _ in range(2):
            delivery = await next_delivery(consumer)
            got[delivery.message_id] = (delivery.body, dict(delivery.headers), delivery.attempt)
            await delivery.ack()
        assert got == {"durable-1": (BODY, HEADERS, 2), "durable-2": (b"2", {}, 2)}
        await expect_only_marker(reopened, consumer)


async def test_depth_counts_ready_messages_only(open_tr: OpenTransport) -> None:
    slow = await open_tr(retry=RetryPolicy(base_delay=60.0, max_attempts=3))  # a retry stays away during the test
    await slow.declare_queue(Q)
    assert await slow.depth(Q) == 0
    await slow.publish_many([OutgoingMessage(Q, b"d", f"d{i}") for i in range(3)])
    assert await slow.depth(Q) == 3
    async with slow.consume(Q, prefetch=1) as consumer:
        held = await next_delivery(consumer)
        assert await slow.depth(Q) == 2  # the held one is in flight, not ready
        await held.retry()
    assert await slow.depth(Q) == 2  # the retried one waits out its backoff, not ready
    async with slow.consume(Q, prefetch=1) as consumer:
        for _ in range(2):
            delivery = await next_delivery(consumer)
            await delivery.ack()
    assert await slow.depth(Q) == 0


async def test_consumer_must_be_opened_and_ends_when_closed(transport: Transport) -> None:
    await transport.declare_queue(Q)
    consumer = transport.consume(Q)
    with pytest.raises(RuntimeError, match="open the consumer"):
        await anext(consumer)
    with pytest.raises(RuntimeError, match="open the consumer"):
        await consumer.receive(1, 0.1)
    async with consumer:
        waiter = asyncio.create_task(anext(consumer))
        await asyncio.sleep(0.05)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, STEP)
    with pytest.raises(ValueError):
        transport.consume(Q, prefetch=0)


async def test_a_message_published_by_one_transport_is_consumed_through_another(
        transport: Transport, open_tr: OpenTransport) -> None:
    other = await open_tr()
    await transport.declare_queue(Q)
    await other.publish(Q, b"from other", message_id="x-process")
    async with transport.consume(Q) as consumer:
        delivery: Delivery = await next_delivery(consumer)
        assert delivery.body == b"from other"
        await delivery.ack()
    assert await other.depth(Q) == 0


# --- receive(max_messages, wait, linger) ---------------------------------------------------------

async def test_receive_waits_at_most_wait_and_returns_nothing_when_nothing_came(transport: Transport) -> None:
    await transport.declare_queue(Q)
    async with transport.consume(Q) as consumer:
        started = time.monotonic()
        assert await consumer.receive(10, 0.3) == []
        waited = time.monotonic() - started
        assert 0.25 <= waited < 3.0, waited
        for bad in ({"max_messages": 0}, {"wait": -1}, {"linger": -0.1}, {"max_messages": True}):
            with pytest.raises(ValueError):
                await consumer.receive(**{"max_messages": 1, "wait": 0.1, **bad})


async def test_receive_returns_at_most_max_and_what_is_ready_without_waiting_longer(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish_many([OutgoingMessage(Q, b"%d" % i, f"r{i}") for i in range(5)])
    async with transport.consume(Q, prefetch=10) as consumer:
        got = await take(consumer, 3)
        started = time.monotonic()
        got += await take(consumer, 2)  # the rest, without sitting out a wait of STEP
        assert time.monotonic() - started < STEP / 2
        assert sorted(d.message_id for d in got) == [f"r{i}" for i in range(5)]
        batch = await consumer.receive(3, STEP)  # once it has one, it returns what is ready
        assert batch == [] or len(batch) <= 3
        for delivery in got:
            await delivery.ack()
        await expect_only_marker(transport, consumer)


async def test_receive_with_linger_gathers_what_arrives_soon_after_the_first(transport: Transport) -> None:
    await transport.declare_queue(Q)
    async with transport.consume(Q, prefetch=10) as consumer:
        async def publish_later() -> None:
            await transport.publish(Q, b"1", message_id="first")
            await asyncio.sleep(0.2)
            await transport.publish(Q, b"2", message_id="second")

        publisher = asyncio.create_task(publish_later())
        batch = await consumer.receive(2, STEP, linger=STEP)  # returns as soon as it holds two
        await publisher
        assert [d.message_id for d in batch] == ["first", "second"]
        started = time.monotonic()
        await transport.publish(Q, b"3", message_id="third")
        [third] = await consumer.receive(5, STEP, linger=0.3)  # then gives up lingering after 0.3 s
        assert third.message_id == "third" and time.monotonic() - started < STEP / 2
        for delivery in (*batch, third):
            await delivery.ack()
        await expect_only_marker(transport, consumer)


async def test_a_cancelled_receive_loses_and_strands_nothing(transport: Transport) -> None:
    # Cancel receives at every moment around arrivals: each message must still be received exactly
    # once, on its first attempt (a stranded one would come back only after close, counted again).
    await transport.declare_queue(Q)
    count = 40
    async with transport.consume(Q, prefetch=5) as consumer:
        got: list[Delivery] = []

        async def keep(batch: list[Delivery]) -> None:
            got.extend(batch)
            for delivery in batch:  # settled at once, so the prefetch limit never hides a stranded one
                await delivery.ack()

        for i in range(count):
            request = asyncio.create_task(consumer.receive(3, STEP, linger=0.05))
            await asyncio.sleep(0)
            await transport.publish(Q, b"%d" % i, message_id=f"c{i}")
            for _ in range(i % 7):  # cancel at a different step of the receive each time
                await asyncio.sleep(0)
            request.cancel()
            try:
                await keep(await request)  # it may have finished first: then what it returned counts
            except asyncio.CancelledError:
                pass
        while len(got) < count:
            batch = await consumer.receive(count, 2.0)
            assert batch, f"only {len(got)} of {count} received: {sorted(d.message_id for d in got)}"
            await keep(batch)
        assert sorted(d.message_id for d in got) == sorted(f"c{i}" for i in range(count))
        assert {(d.attempt, d.redelivered) for d in got} == {(1, False)}
        await expect_only_marker(transport, consumer)


async def test_closing_the_consumer_ends_a_waiting_receive_with_nothing(transport: Transport) -> None:
    await transport.declare_queue(Q)
    consumer = transport.consume(Q)
    await consumer.open()
    waiting = asyncio.create_task(consumer.receive(10, None))
    await asyncio.sleep(0.1)
    assert not consumer.closed
    await consumer.close()
    assert await asyncio.wait_for(waiting, STEP) == []
    assert consumer.closed and await consumer.receive(1, STEP) == []  # at once, not after STEP
    await transport.publish(Q, b"after", message_id="after")
    async with transport.consume(Q) as again:
        assert (await next_delivery(again)).attempt == 1  # nothing was taken for the closed one


# --- the dead-letter feed ---------------------------------------------------------------------

async def test_every_dead_letter_is_parked_and_copied_once_onto_the_feed(transport: Transport) -> None:
    other = "000.00.00.H41.receipts"
    for queue in (Q, other):
        await transport.declare_queue(queue)
    await transport.publish(Q, BODY, message_id=MESSAGE_ID, headers=HEADERS, priority=2)
    await transport.publish(other, b"retried out", message_id="retried")
    await transport.publish(Q, b"poison", message_id="poison")
    async with transport.consume(Q, prefetch=1) as consumer:
        delivery = await next_delivery(consumer)
        assert delivery.letter is None
        await delivery.dead_letter("unknown recipient")
    async with transport.consume(other) as consumer:
        for _ in range(POLICY.max_attempts):
            await (await next_delivery(consumer)).retry("cannot verify")
    for _ in range(POLICY.max_attempts):  # killed its consumer every time
        async with transport.consume(Q, prefetch=1) as consumer:
            assert (await next_delivery(consumer)).message_id == "poison"
    async with transport.consume(Q, prefetch=1) as consumer:  # the next delivery would be one too many
        await expect_only_marker(transport, consumer)

    async with transport.consume_dead_letters(prefetch=10) as feed:
        deliveries = await take(feed, 3)
        letters = {d.message_id: d.letter for d in deliveries}
        assert all(letter is not None for letter in letters.values())
        first = letters[MESSAGE_ID]
        assert first is not None
        assert (first.queue, first.body, dict(first.headers), first.priority, first.reason, first.attempts) == (
            Q, BODY, HEADERS, 2, "unknown recipient", 1)
        retried, poison = letters["retried"], letters["poison"]
        assert retried is not None and poison is not None
        assert (retried.queue, retried.reason, retried.attempts) == (other, "cannot verify", POLICY.max_attempts)
        assert (poison.queue, poison.attempts) == (Q, POLICY.max_attempts) and "without being settled" in poison.reason
        assert all(d.queue == DEAD_LETTER_FEED and d.attempt == 1 for d in deliveries)
        for delivery in deliveries:
            await delivery.ack()
        assert await feed.receive(1, 0.5) == []  # one copy each
    # Acking the copies leaves the parked letters where operators see them.
    assert sorted(x.message_id for x in await transport.dead_letters(Q)) == sorted([MESSAGE_ID, "poison"])
    assert [x.message_id for x in await transport.dead_letters(other)] == ["retried"]


async def test_a_feed_delivery_not_settled_comes_again_with_its_letter(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, b"parked", message_id="parked", headers={"k": "v"})
    async with transport.consume(Q) as consumer:
        await (await next_delivery(consumer)).dead_letter("no such recipient")
    async with transport.consume_dead_letters() as feed:
        first = await next_delivery(feed)  # closed unsettled: the hub died holding it
    async with transport.consume_dead_letters() as feed:
        again = await next_delivery(feed)
        assert (again.message_id, again.attempt, again.redelivered) == ("parked", 2, True)
        assert again.letter is not None and first.letter is not None
        assert (again.letter.queue, again.letter.reason, again.letter.attempts, dict(again.letter.headers)) == (
            Q, "no such recipient", 1, {"k": "v"})
        await again.retry("store down")
        later = await next_delivery(feed)  # a retried feed message keeps its letter too
        assert later.letter is not None and (later.letter.queue, later.letter.reason) == (Q, "no such recipient")
        await later.ack()
