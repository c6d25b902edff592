"""Fixtures for the transport contract: one fresh transport per test, on every implementation.

- embedded: a new SQLite file in the test's tmp_path;
- rabbitmq: a new random vhost created through the management API (and the
  guest user given rights on it), deleted at teardown with everything in it.

The retry policy and lease are small (see support.py) so that backoff,
exhaustion and lease expiry happen within a second or two.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from axis.transport import RetryPolicy, Transport, open_transport

from .support import AMQP_URL, LEASE, POLICY, RabbitAdmin


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """The AMQP URL of a fresh vhost, deleted (with everything in it) after the test."""
    admin = RabbitAdmin()
    vhost = f"axis-test-{uuid.uuid4().hex[:12]}"
    admin.create_vhost(vhost)
    try:
        yield str(URL(AMQP_URL).with_path("/" + vhost))
    finally:
        admin.delete_vhost(vhost)


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
                        pytest.param("rabbitmq-quorum", marks=pytest.mark.rabbitmq)])
def transport_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """rabbitmq-quorum: the cluster's layout (docs/transports.md), quorum queues with urgent lanes (one shard: a
    sharded queue keeps order per key only, and its tests are in test_rabbitmq.py)."""
    if request.param == "embedded":
        return f"embedded://{tmp_path}/transport.db"
    url = request.getfixturevalue("rabbitmq_url")
    return url + "?queues=quorum" if request.param == "rabbitmq-quorum" else url


@pytest.fixture
def retry_policy() -> RetryPolicy:
    """The retry policy of the transports `open_tr` opens; other test folders override it."""
    return POLICY


@pytest.fixture
async def open_tr(transport_url: str, retry_policy: RetryPolicy) -> AsyncIterator[Callable[..., Awaitable[Transport]]]:
    """Open another transport on the same database or vhost (closed at teardown)."""
    opened: list[Transport] = []

    async def _open(**options: Any) -> Transport:
        options.setdefault("retry", retry_policy)
        options.setdefault("lease", LEASE)
        options.setdefault("timeout", 10.0)
        options.setdefault("name", f"axis-test-{uuid.uuid4().hex[:8]}")
        transport = await open_transport(transport_url, **options)
        opened.append(transport)
        return transport

    yield _open
    for transport in opened:
        await transport.close()


@pytest.fixture
async def transport(open_tr: Callable[..., Awaitable[Transport]]) -> Transport:
    return await open_tr()
