"""`Transport.queue_stats` on both transports, and the embedded transport's log line for the leases it reclaims
from a consumer that stopped renewing them."""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

import pytest

from axis.transport import DEAD_LETTER_FEED, Transport

from .support import LEASE, STEP, next_delivery

Q = "000.00.00.G22"
OpenTransport = Callable[..., Awaitable[Transport]]


async def test_queue_stats_count_ready_held_and_dead_messages_and_consumers(transport: Transport) -> None:
    await transport.declare_queue(Q)
    for n in range(3):
        await transport.publish(Q, b"x", message_id=f"m{n}")
    async with transport.consume(Q, prefetch=1) as consumer:
        doomed = await next_delivery(consumer)
        await doomed.dead_letter("for the test")
        await next_delivery(consumer)  # held, unsettled
        await asyncio.sleep(0.2)
        stats = await transport.queue_stats([Q, "000.00.00.H99", DEAD_LETTER_FEED])
        assert [s.queue for s in stats] == [Q, DEAD_LETTER_FEED]  # a queue that does not exist is left out
        mine = stats[0]
        assert (mine.ready, mine.consumers, mine.dead_letters) == (1, 1, 1), mine
        if mine.in_flight is not None:  # RabbitMQ's management API may lag behind by seconds
            assert mine.in_flight in (0, 1), mine
    # A quorum queue takes back what a closed consumer held through its Raft log, a moment after the close
    # returns (seen once on a loaded machine: ready 1, then 2): wait for it, within STEP.
    deadline = asyncio.get_running_loop().time() + STEP
    while True:
        [after] = await transport.queue_stats([Q])
        if (after.consumers, after.ready) == (0, 2) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert after.consumers == 0 and after.ready == 2 and after.dead_letters == 1, after


@pytest.mark.parametrize("transport_url", ["embedded"], indirect=True)
async def test_embedded_stats_say_what_is_in_flight_and_how_old_the_oldest_message_is(transport: Transport) -> None:
    await transport.declare_queue(Q)
    await transport.publish(Q, b"x", message_id="old")
    await asyncio.sleep(0.3)
    await transport.publish(Q, b"x", message_id="new")
    async with transport.consume(Q, prefetch=1) as consumer:
        await next_delivery(consumer)
        [stats] = await transport.queue_stats([Q])
        assert (stats.ready, stats.in_flight, stats.consumers) == (1, 1, 1), stats
        assert stats.oldest_age is not None and 0.3 <= stats.oldest_age < STEP, stats


@pytest.mark.parametrize("transport_url", ["embedded"], indirect=True)
async def test_a_lease_left_to_expire_is_reclaimed_and_logged_once_naming_its_holder(
        open_tr: OpenTransport, caplog: pytest.LogCaptureFixture) -> None:
    first, second = await open_tr(), await open_tr()
    await first.declare_queue(Q)
    for n in range(2):
        await first.publish(Q, b"x", message_id=f"m{n}")
    stalled = first.consume(Q, prefetch=2)
    await stalled.open()
    held = [await next_delivery(stalled), await next_delivery(stalled)]
    stalled._heartbeat.cancel()  # type: ignore[attr-defined]  # as a killed process: no more renewals
    caplog.set_level(logging.WARNING, logger="axis.transport.embedded")
    async with second.consume(Q, prefetch=10) as taker:
        again = [await next_delivery(taker, timeout=LEASE + STEP), await next_delivery(taker)]
        assert {d.message_id for d in again} == {d.message_id for d in held}
        assert all(d.redelivered and d.attempt == 2 for d in again)
        [line] = [r.getMessage() for r in caplog.records if "reclaimed" in r.getMessage()]
        assert f"reclaimed 2 message(s) on {Q}" in line and f"process {os.getpid()}" in line, line
        [stats] = await second.queue_stats([Q])
        assert stats.consumers == 1, stats  # the stalled one is no longer counted
        for delivery in again:
            await delivery.ack()
