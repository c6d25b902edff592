"""Opening the database: URLs, engines, connection settings.

`open_store(url)` is the one entry point:
- None -> the SQLite file ./axis-data/axis.db;
- a path without a scheme, or sqlite:///path -> that SQLite file;
- postgresql://... or postgres://... -> PostgreSQL through psycopg 3
  (rewritten to postgresql+psycopg://).

A database that does not exist is an error (`MissingDatabase`, nothing
created), unless the caller passes `create=True`: then a missing SQLite file
(and its directory) is created. A PostgreSQL database is never created here.

Callers may rely on every SQLite connection running with WAL,
foreign_keys=ON, synchronous=FULL and a busy timeout, and on write units of
work starting with BEGIN IMMEDIATE (so a writer waits for the lock up front
instead of failing with SQLITE_BUSY half-way). The engine's pool is
thread-safe; connections are never shared between threads.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

from axis.private import private_directory, private_file
from axis.store.audit import canonical_json
from axis.store.errors import MissingDatabase

if TYPE_CHECKING:
    from axis.store.store import Store

DEFAULT_SQLITE_PATH = Path("axis-data") / "axis.db"
BUSY_TIMEOUT_MS = 15_000
# Execution option that marks a connection as a writer (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "axis_write"


def normalise_url(url: str | None) -> sa.URL:
    """The SQLAlchemy URL for `url`; ValueError for what the store cannot use."""
    if url is None:
        return sa.URL.create("sqlite+pysqlite", database=str(DEFAULT_SQLITE_PATH))
    if "://" not in url:
        return sa.URL.create("sqlite+pysqlite", database=url)
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"unsupported PostgreSQL driver {parsed.drivername!r}: use postgresql:// "
                             "or postgresql+psycopg:// (psycopg 3)")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
            raise ValueError("the store needs a SQLite file (sqlite:///path/axis.db): an in-memory "
                             "database cannot be shared between the hub's threads")
        return parsed.set(drivername="sqlite+pysqlite")
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:///path "
                     "or postgresql://user@host/db")


def create_engine(url: str | sa.URL | None, *, create: bool = False, **kwargs: Any) -> sa.Engine:
    """An engine with the store's connection settings (see module docstring).

    MissingDatabase for a SQLite file that does not exist, unless `create`.
    """
    sa_url = url if isinstance(url, sa.URL) else normalise_url(url)
    if sa_url.get_backend_name() == "sqlite":
        path = Path(sa_url.database or "")
        if create:
            private_directory(path.parent)
            private_file(path)  # before SQLite creates it: its -wal and -shm files take its mode
        elif not path.is_file():
            # Checked before the first connection: SQLite would create the file.
            raise MissingDatabase(f"the SQLite database {path} does not exist")
        engine = sa.create_engine(sa_url, json_serializer=canonical_json,
                                  connect_args={"check_same_thread": False}, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    return sa.create_engine(sa_url, json_serializer=canonical_json, pool_pre_ping=True, **kwargs)


def _install_sqlite_hooks(engine: sa.Engine) -> None:
    # pysqlite's own transaction handling issues a deferred BEGIN lazily and
    # cannot do BEGIN IMMEDIATE; take control of BEGIN ourselves (SQLAlchemy
    # SQLite dialect docs, "Serializable isolation / Savepoints").
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit (receipt, audit entry) survives power loss, at the
            # price of one more fsync per commit; batching amortises it.
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def open_store(url: str | None = None, *, migrate: bool = True, create: bool = False,
               clock: Callable[[], datetime] | None = None) -> Store:
    """Open (and by default migrate to the latest schema) the store at `url`.

    MissingDatabase when the database does not exist; `create=True` creates a
    SQLite file (only the commands that set a hub up pass it). `clock` (aware
    UTC datetimes) replaces the wall clock for timestamps (tests set the time).
    """
    from axis.store.store import Store, utcnow

    store = Store(create_engine(url, create=create), clock=clock or utcnow)
    try:
        if migrate:
            store.migrate()
        elif store.dialect == "postgresql":
            store.engine.connect().close()  # a missing database shows here, not at first use
    except sa.exc.OperationalError as exc:
        store.close()
        database = store.engine.url.database
        if store.dialect == "postgresql" and f'database "{database}" does not exist' in str(exc.orig):
            where = store.engine.url.set(password=None).render_as_string(hide_password=True)
            raise MissingDatabase(f"the PostgreSQL database {database!r} does not exist ({where})") from None
        raise
    except BaseException:
        store.close()
        raise
    return store
