"""What the attacks look at and write with, on a deployment of `tests/e2e/harness.py`.

The road of issue 9 keeps deliveries in the store, so the checks read the store (what waits in an
agency's inbox, each delivery's state, the audit log) instead of queue depths; the attacks that
need the broker write only to the one queue that is left, `axis.intake`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from axis.transport import DeadLetter, Transport
from tests.e2e.harness import Deployment

_T = TypeVar("_T")


def waiting(deployment: Deployment, code: str) -> list[str]:
    """The axis ids waiting in `code`'s inbox (not yet acknowledged), in the order the gateway lists them."""
    with deployment.store() as store:
        return [item.axis_id for item in store.inbox(code)]


def states(deployment: Deployment, axis_id: str) -> dict[str, str]:
    """Each recipient's delivery state of `axis_id`."""
    with deployment.store() as store:
        return {d.recipient_code: d.state for d in store.deliveries(axis_id)}


def audited(deployment: Deployment, action: str) -> list[dict[str, Any]]:
    """The data of every audit entry with `action`, oldest first."""
    with deployment.store() as store:
        return [entry.data for entry in store.audit_entries() if entry.action == action]


def publish(deployment: Deployment, queue: str, body: bytes, message_id: str, headers: dict[str, str]) -> None:
    """Write one message straight onto `queue`, as whoever holds the broker's credentials could."""
    async def action(transport: Transport) -> None:
        await transport.publish(queue, body, message_id=message_id, headers=headers)
    deployment.transport_call(action)


def dead_letters(deployment: Deployment, queue: str) -> list[DeadLetter]:
    async def action(transport: Transport) -> list[DeadLetter]:
        return await transport.dead_letters(queue)
    return deployment.transport_call(action)


def as_agency(deployment: Deployment, code: str, call: Callable[[Any], Awaitable[_T]]) -> _T:
    """`await call(edge)` on agency `code`'s own edge (the gateway with its credential), from synchronous code."""
    async def main() -> _T:
        async with deployment.edge(code) as edge:
            return await call(edge)
    return asyncio.run(main())
