"""The one retry policy (axis/retry.py) against real servers cut by a proxy, in seconds rather than minutes.

What counts as transient, that a store call and a batch of publishes ride out a
short cut, and that a cut longer than the policy's patience ends in the error
as it was (nothing waits for ever).
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import axis.retry
from axis.refusals import PacketError, RefusalCode
from axis.retry import is_transient, publish_all, retrying
from axis.signer import SignerRefused, SignerUnavailable
from axis.store import open_store
from axis.transport import OutgoingMessage, TransportError, UnroutableError, open_transport
from tests.fault.conftest import through
from tests.fault.proxy import TcpProxy
from tests.store.conftest import _fresh_pg_database, _pg_url

CUT = 3.0  # seconds each cut here lasts


def restore_later(proxy: TcpProxy, after: float = CUT) -> threading.Timer:
    timer = threading.Timer(after, proxy.restore)
    timer.start()
    return timer


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    with _fresh_pg_database(pg_template) as name:
        yield _pg_url(name)


def test_what_is_transient(tmp_path: Path) -> None:
    assert is_transient(TransportError("connection lost"))
    assert not is_transient(UnroutableError("no such queue"))
    assert not is_transient(PacketError(RefusalCode.MALFORMED, "not XML"))
    assert not is_transient(ValueError("a bug"))
    assert is_transient(SignerUnavailable("no signer answers"))  # its owner restarts it within seconds
    assert not is_transient(SignerRefused("malformed"))  # asking again changes nothing

    # SQLite: a held write lock is transient, a missing table is not (both are OperationalError).
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(sa.exc.OperationalError) as locked, engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert is_transient(locked.value), locked.value
        with pytest.raises(sa.exc.OperationalError) as missing, engine.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM nowhere")
        assert not is_transient(missing.value)
    finally:
        engine.dispose()
        holder.close()


@pytest.mark.postgres
def test_the_proxy_resets_open_connections_and_new_ones_until_restored(pg_proxy: TcpProxy,
                                                                     pg_database: str) -> None:
    url = through(pg_database, pg_proxy).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        pg_proxy.cut()
        with pytest.raises(psycopg.OperationalError) as lost:
            conn.execute("SELECT 1")
        assert is_transient(lost.value)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(url, connect_timeout=5)
    assert is_transient(refused.value)
    assert pg_proxy.refused >= 1
    pg_proxy.restore()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.postgres
async def test_a_store_call_rides_out_a_database_cut(pg_proxy: TcpProxy, pg_database: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(through(pg_database, pg_proxy), migrate=False)
    try:
        assert await asyncio.to_thread(store.list_agencies) == []  # a pooled connection, killed by the cut
        pg_proxy.cut()
        restore_later(pg_proxy)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="axis.retry"):
            assert await retrying("listing agencies")(asyncio.to_thread)(store.list_agencies) == []
        assert time.monotonic() - started >= CUT - 0.5
        assert any("listing agencies failed" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        store.close()


@pytest.mark.rabbitmq
async def test_publishes_ride_out_a_broker_cut(rabbit_proxy: TcpProxy, rabbitmq_url: str) -> None:
    transport = await open_transport(through(rabbitmq_url, rabbit_proxy), timeout=5, name="axis-fault-publish")
    direct = await open_transport(rabbitmq_url, timeout=5, name="axis-fault-direct")
    try:
        await transport.declare_queue("outage")
        messages = [OutgoingMessage("outage", f"m{n}".encode(), f"id-{n}") for n in range(50)]
        messages.append(OutgoingMessage("no-such-queue", b"x", "lost"))
        rabbit_proxy.cut()
        restore_later(rabbit_proxy)
        outcomes = await publish_all(transport, messages, "publishing a test batch")
        assert outcomes[:-1] == [None] * 50
        assert isinstance(outcomes[-1], UnroutableError)  # never retried: waiting does not create a queue
        assert await direct.depth("outage") >= 50  # at least once: a publish cut before its confirm is sent again
    finally:
        await transport.close()
        await direct.close()


@pytest.mark.rabbitmq
async def test_a_cut_longer_than_the_patience_raises_the_error(rabbit_proxy: TcpProxy, rabbitmq_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    transport = await open_transport(through(rabbitmq_url, rabbit_proxy), timeout=5, name="axis-fault-patience")
    try:
        await transport.declare_queue("outage")
        monkeypatch.setattr(axis.retry, "PATIENCE", 1.5)
        rabbit_proxy.cut()
        started = time.monotonic()
        with pytest.raises(TransportError, match="not confirmed"):
            await publish_all(transport, [OutgoingMessage("outage", b"x", "id")], "publishing into a long cut")
        assert 1.5 <= time.monotonic() - started < 1.5 + axis.retry.MAX_WAIT + 5
    finally:
        rabbit_proxy.restore()
        await transport.close()
