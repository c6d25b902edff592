"""Fixtures for the store contract suite: every test runs on SQLite and PostgreSQL.

SQLite gets a fresh file in tmp_path; PostgreSQL a fresh database
(axis_t_<random>, a copy of a template migrated once per session) created
through the maintenance database and dropped WITH (FORCE) afterwards. The PostgreSQL half carries the
`postgres` marker, so the root conftest skips it (or fails it under CI=true) when the server is down.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from axis.store import Store, open_store
from tests.store.store_helpers import RECIPIENTS, SENDER, FakeClock

PG_URL = os.environ.get("AXIS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _maintenance_engine() -> sa.Engine:
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _pg_url(name: str) -> str:
    return sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def _fresh_pg_database(template: str | None = None, prefix: str = "axis_t_") -> Iterator[str]:
    name = f"{prefix}{secrets.token_hex(6)}"
    admin = _maintenance_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once per session; each test's database is a fresh copy of it.

    Copying a template is several times faster than migrating every test
    database, and test_store_migrations still migrates an empty one.
    """
    with _fresh_pg_database(prefix="axis_t_store_template_") as name:
        open_store(_pg_url(name)).close()  # migrate, then leave no connection behind
        yield name


@pytest.fixture
def db_url(backend: str, tmp_path) -> Iterator[str]:
    """An EMPTY database (no schema)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'axis.db'}"
        return
    with _fresh_pg_database() as name:
        yield _pg_url(name)


@pytest.fixture
def migrated_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database at the latest schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'axis.db'}"
        return
    template = request.getfixturevalue("pg_template")
    with _fresh_pg_database(template) as name:
        yield _pg_url(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(migrated_url: str, clock: FakeClock) -> Iterator[Store]:
    s = open_store(migrated_url, clock=clock, create=True)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def seeded(store: Store) -> Store:
    """A store with one sender and three recipients registered."""
    with store.write() as tx:
        tx.add_agency(SENDER, "Văn phòng Chính phủ")
        for code in RECIPIENTS:
            tx.add_agency(code, f"Agency {code}", parent=SENDER)
    return store




@contextmanager
def fresh_rabbitmq_and_postgres(request: pytest.FixtureRequest, prefix: str) -> Iterator[tuple[str, str]]:
    """(database URL, AMQP URL) of a new PostgreSQL database (a copy of `pg_template`) and a new RabbitMQ
    vhost named `<prefix>-<random>`, both removed afterwards: one deployment's own, seen by nobody else."""
    from yarl import URL

    from tests.conftest import AMQP_URL
    from tests.transport.support import RabbitAdmin

    admin = RabbitAdmin()
    vhost = f"{prefix}-{secrets.token_hex(6)}"
    admin.create_vhost(vhost)
    try:
        with _fresh_pg_database(request.getfixturevalue("pg_template")) as database:
            yield _pg_url(database), str(URL(AMQP_URL).with_path("/" + vhost))
    finally:
        admin.delete_vhost(vhost)
