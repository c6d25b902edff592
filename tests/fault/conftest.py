"""Fixtures for the outage tests: servers reached through a `TcpProxy` the test cuts and restores.

- `pg_proxy` / `rabbit_proxy`: a proxy in front of the shared PostgreSQL / RabbitMQ
  (tests/conftest.py's URLs), closed at teardown;
- `proxied_deployment(kind)`: an e2e `Deployment` whose `axis` commands (the hub,
  senders, pulls) reach the database, and for `rabbitmq+postgres` the broker,
  through those proxies, while the test's own look-ups (`deployment.store()`,
  `depths`) go straight to the servers, so that they still answer during a cut.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa
from yarl import URL

from tests.conftest import AMQP_URL, PG_URL
from tests.e2e.conftest import bulk_packets, e2e_pki  # noqa: F401 - fixtures reused
from tests.e2e.harness import Deployment
from tests.e2e.packets import AGENCIES, TestPKI
from tests.fault.proxy import TcpProxy
from tests.store.conftest import _fresh_pg_database, _pg_url, pg_template  # noqa: F401 - fixture reused
from tests.transport.conftest import rabbitmq_url  # noqa: F401 - fixture reused
from tests.transport.support import RabbitAdmin


def _proxy_for(url: str, default_port: int) -> Iterator[TcpProxy]:
    parsed = urlparse(url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or default_port).start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    yield from _proxy_for(PG_URL, 5432)


@pytest.fixture
def rabbit_proxy() -> Iterator[TcpProxy]:
    yield from _proxy_for(AMQP_URL, 5672)


def through(url: str, proxy: TcpProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    if url.startswith("amqp"):
        return str(URL(url).with_host("127.0.0.1").with_port(proxy.port))
    return sa.make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@dataclass
class ProxiedDeployment(Deployment):
    """A `Deployment` whose commands use `db`/`broker` (proxied) and whose test-side look-ups do not."""

    direct_db: str | None = None
    direct_broker: str | None = None

    @property
    def store_url(self) -> str:
        return self.direct_db or super().store_url

    def env(self) -> dict[str, str]:
        # Between two tries of a call that met the outage, at most 1 s instead of 5 s (AXIS_OUTAGE_MAX_WAIT): once
        # the proxy is restored each process notices within a second instead of idling up to 5 s (the hub, the
        # gateway, then the senders and pulls behind it, each after its own wait). The behaviour under test is
        # the same: calls are retried with exponential backoff (first wait 0.2 s, as shipped) while their
        # messages are held, for the same patience (120 s, four times the cut).
        return {**super().env(), "AXIS_OUTAGE_MAX_WAIT": "1"}

    @property
    def transport_url(self) -> str:
        return self.direct_broker or super().transport_url


@pytest.fixture
def proxied_deployment(request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI,  # noqa: F811
                       pg_proxy: TcpProxy) -> Iterator[Callable[[str], ProxiedDeployment]]:
    """`make(kind)`: `embedded+postgres` (embedded transport, PostgreSQL through `pg_proxy`) or
    `rabbitmq+postgres` (both through proxies); agencies registered, the hub not started."""
    made: list[ProxiedDeployment] = []
    cleanups: list[Callable[[], None]] = []

    def make(kind: str) -> ProxiedDeployment:
        database_cm = _fresh_pg_database(request.getfixturevalue("pg_template"))
        database = database_cm.__enter__()
        cleanups.append(lambda: database_cm.__exit__(None, None, None))
        direct_db = _pg_url(database)
        broker = direct_broker = None
        if kind == "rabbitmq+postgres":
            admin = RabbitAdmin()
            vhost = f"axis-fault-{uuid.uuid4().hex[:12]}"
            admin.create_vhost(vhost)
            cleanups.append(lambda: admin.delete_vhost(vhost))
            direct_broker = str(URL(AMQP_URL).with_path("/" + vhost))
            broker = through(direct_broker, request.getfixturevalue("rabbit_proxy"))
        deployment = ProxiedDeployment(kind, tmp_path / "axis-data", e2e_pki, broker=broker,
                                       db=through(direct_db, pg_proxy), direct_db=direct_db,
                                       direct_broker=direct_broker)
        made.append(deployment)
        deployment.register(*AGENCIES)
        return deployment

    try:
        yield make
    finally:
        for deployment in made:
            deployment.close()
        for cleanup in reversed(cleanups):
            cleanup()
