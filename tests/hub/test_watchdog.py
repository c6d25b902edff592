"""The hub's liveness watchdog: a consumer that silently stops handing out messages is restarted.

A fault run once left delivery receipts ready in their queue while the restarted hub's consumer took
nothing, with no error anywhere. Whatever the cause below, the hub must notice, say so with the stacks
that explain it, and carry on.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from axis import wire
from axis.transport import Consumer, Delivery, Transport
from tests.hub.conftest import running_world

G22, H41 = "000.00.00.G22", "000.00.00.H41"


class _Silent(Consumer):
    """Opens and closes like the real consumer, but never hands anything out."""

    def __init__(self, inner: Consumer) -> None:
        self._inner = inner

    async def open(self) -> None:
        await self._inner.open()

    async def __anext__(self) -> Delivery:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._inner.close()


class _FirstConsumerGoesSilent:
    """The hub's transport, except that the first consumer of `queue` goes silent."""

    def __init__(self, inner: Transport, queue: str) -> None:
        self._inner = inner
        self._queue = queue
        self.silenced = 0

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the real transport
        return getattr(self._inner, name)

    def consume(self, queue: str, *, prefetch: int = 100) -> Consumer:
        consumer = self._inner.consume(queue, prefetch=prefetch)
        if queue == self._queue and not self.silenced:
            self.silenced += 1
            return _Silent(consumer)
        return consumer


async def test_a_silent_consumer_is_restarted_and_the_waiting_message_handled(
        tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="axis.hub")
    wrapped: list[_FirstConsumerGoesSilent] = []

    def wrap(transport: Transport) -> Transport:
        wrapped.append(_FirstConsumerGoesSilent(transport, wire.INTAKE_QUEUE))
        return wrapped[0]  # type: ignore[return-value]

    async with running_world(tmp_path, pki_dir, wrap=wrap, stall_after=0.5) as world:
        submission = await world.submit(world.document(G22, [H41]), G22)
        [(headers, receipt, _)] = await world.receipts(G22, 1, timeout=20)
        assert headers[wire.H_SUBMISSION] == submission and receipt.outcome == "accepted"
        assert len(await world.inbox(H41, 1)) == 1
    assert wrapped[0].silenced == 1
    warning = next(r.getMessage() for r in caplog.records if "handed out nothing" in r.getMessage())
    assert "axis.intake" in warning and "restarting it" in warning
    assert "--- tasks" in warning and "--- threads" in warning  # the evidence for whoever reads the log
