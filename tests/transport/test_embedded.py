"""What only the embedded transport has to show: several processes on one SQLite file, and leases."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from axis.transport import OutgoingMessage, TransportError, open_transport

from .support import STEP, next_delivery

Q = "000.00.00.G22"
REPO = Path(__file__).resolve().parents[2]

PUBLISHER = """
import asyncio, sys
from axis.transport import OutgoingMessage, open_transport

async def main(url, n):
    transport = await open_transport(url)
    for start in range(0, n, 50):  # many transactions, interleaving with the other process's
        await transport.publish_many([OutgoingMessage("000.00.00.G22", b"child %d" % i, f"child-{i}", i % 5)
                                      for i in range(start, start + 50)])
    await transport.publish("000.00.00.G22", "Hỏa tốc".encode(), message_id="child-last",
                            headers={"ghi-chú": "xong"}, priority=3)
    await transport.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

CONSUMER_THAT_DIES = """
import asyncio, sys
from axis.transport import open_transport

async def main(url):
    transport = await open_transport(url, lease=1.0)
    async with transport.consume("000.00.00.G22", prefetch=1) as deliveries:
        delivery = await anext(deliveries)
        print(delivery.message_id, flush=True)
        await asyncio.sleep(3600)  # killed here, holding the delivery

asyncio.run(main(sys.argv[1]))
"""


async def _python(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return await asyncio.create_subprocess_exec(sys.executable, "-c", *args, cwd=REPO, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_another_process_publishes_while_this_one_publishes_and_consumes(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}/shared.db"
    transport = await open_transport(url)
    try:
        await transport.declare_queue(Q)
        child = await _python(PUBLISHER, url, "500")
        # Write from this process at the same time, so both fight for the write lock.
        for start in range(0, 500, 50):
            outcomes = await transport.publish_many(
                [OutgoingMessage(Q, b"parent", f"parent-{i}") for i in range(start, start + 50)])
            assert outcomes == [None] * 50
        seen: dict[str, int] = {}
        async with transport.consume(Q, prefetch=100) as consumer:
            while len(seen) < 1001:
                delivery = await next_delivery(consumer)
                assert delivery.message_id not in seen, f"{delivery.message_id} delivered twice"
                seen[delivery.message_id] = delivery.attempt
                if delivery.message_id == "child-last":
                    assert delivery.body == "Hỏa tốc".encode() and dict(delivery.headers) == {"ghi-chú": "xong"}
                await delivery.ack()
        _, stderr = await asyncio.wait_for(child.communicate(), STEP)
        assert child.returncode == 0, stderr.decode()
        assert set(seen) == ({f"child-{i}" for i in range(500)} | {f"parent-{i}" for i in range(500)}
                             | {"child-last"})
        assert set(seen.values()) == {1}
        assert await transport.depth(Q) == 0
    finally:
        await transport.close()


async def test_delivery_held_by_a_killed_process_is_redelivered_after_its_lease(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}/shared.db"
    transport = await open_transport(url)
    child = None
    try:
        await transport.declare_queue(Q)
        await transport.publish(Q, b"held", message_id="held", headers={"k": "v"})
        child = await _python(CONSUMER_THAT_DIES, url)
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), STEP)
        assert line.decode().strip() == "held"
        child.kill()
        await child.wait()
        async with transport.consume(Q, prefetch=1) as consumer:
            delivery = await next_delivery(consumer)  # once the dead process's 1 s lease runs out
            assert (delivery.message_id, delivery.body, dict(delivery.headers)) == ("held", b"held", {"k": "v"})
            assert (delivery.attempt, delivery.redelivered) == (2, True)
            await delivery.ack()
        assert await transport.depth(Q) == 0
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        await transport.close()


async def test_a_live_consumer_keeps_its_lease_beyond_the_lease_time(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}/shared.db"
    holder = await open_transport(url, lease=0.3)
    other = await open_transport(url, lease=0.3)
    try:
        await holder.declare_queue(Q)
        await holder.publish(Q, b"slow work", message_id="slow")
        async with holder.consume(Q) as mine:
            delivery = await next_delivery(mine)
            async with other.consume(Q, prefetch=1) as theirs:
                await asyncio.sleep(1.2)  # four lease periods of "processing"
                await other.publish(Q, b"marker", message_id="marker")
                first = await next_delivery(theirs)
                assert first.message_id == "marker", "a renewed lease was handed to another consumer"
                await first.ack()
            await delivery.ack()  # still ours to settle
        assert await other.depth(Q) == 0
    finally:
        await holder.close()
        await other.close()


async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = await open_transport("embedded:relative.db")
    await relative.close()
    assert (tmp_path / "relative.db").exists()
    chosen = await open_transport("embedded", default_embedded_path=tmp_path / "chosen.db")
    await chosen.close()
    assert (tmp_path / "chosen.db").exists()
    bare = await open_transport("embedded")
    await bare.close()
    assert (tmp_path / "axis-transport.db").exists()
    with pytest.raises(ValueError, match="unknown transport URL"):
        await open_transport("kafka://localhost")
    (tmp_path / "not-a-db").write_bytes(b"this is not a database file" * 100)
    with pytest.raises(TransportError, match="not-a-db"):
        await open_transport(f"embedded://{tmp_path}/not-a-db")
    with pytest.raises(TransportError, match="cannot open"):
        await open_transport(f"embedded://{tmp_path}/missing-dir/x.db")


async def test_a_consumer_that_takes_nothing_while_messages_wait_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Simulates the failure once seen in a fault run (ready messages, a consumer taking none, no error):
    # whatever the cause, the consumer must log its own state, so the cause can be found.
    from axis.transport import embedded

    monkeypatch.setattr(embedded, "_STALL_REPORT", 0.2)
    transport = await open_transport(f"embedded://{tmp_path}/t.db", lease=0.3)
    try:
        await transport.declare_queue(Q)
        await transport.publish(Q, b"waiting", message_id="waiting")
        async with transport.consume(Q, prefetch=1) as deliveries:
            async def take_nothing(room: int) -> bool:
                return False
            monkeypatch.setattr(deliveries, "_take", take_nothing)
            assert await deliveries.receive(1, 1.0) == []
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("has none, with 1 ready in its queue" in w and "0 held unsettled of prefetch 1" in w
                   for w in warnings), warnings
    finally:
        await transport.close()


async def test_a_cancelled_wait_for_the_next_delivery_ends_even_as_a_message_arrives(tmp_path: Path) -> None:
    # Regression: the consumer waited for news with asyncio.wait_for, which on Python 3.11 swallows a
    # cancellation that lands as the wait completes. The cancelled request then ran on, and whoever
    # cancelled it (the hub's batcher, via its own wait_for) waited for it forever.
    transport = await open_transport(f"embedded://{tmp_path}/t.db")
    try:
        await transport.declare_queue(Q)
        async with transport.consume(Q) as deliveries:
            request = asyncio.ensure_future(anext(deliveries))
            await asyncio.sleep(0.05)  # the request is now waiting for news
            deliveries.wake()          # news arrives ...
            request.cancel()           # ... in the same instant as the cancellation
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(request, 2)
            await transport.publish(Q, b"after", message_id="after")
            assert (await next_delivery(deliveries)).message_id == "after"
    finally:
        await transport.close()
