"""Schema: migrations from empty, models == migrations, connection settings, URLs."""
from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from axis.store import Store, normalise_url, open_store
from axis.store import migrate as migrations
from axis.store.models import EXPRESSION_INDEXES, TABLE_NAMES


def test_migrates_an_empty_database_to_head(db_url: str) -> None:
    with open_store(db_url, migrate=False) as store:
        assert migrations.current_revision(store.engine) is None
        assert set(sa.inspect(store.engine).get_table_names()) == set()
        store.migrate()
        assert migrations.current_revision(store.engine) == migrations.head_revision()
        assert set(sa.inspect(store.engine).get_table_names()) == TABLE_NAMES | {"alembic_version"}
        store.migrate()  # a second run is a no-op
        assert migrations.current_revision(store.engine) == migrations.head_revision()
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'outbox'").scalar()
            assert options == ["fillfactor=70"]


def test_migrations_run_step_by_step(db_url: str) -> None:
    with open_store(db_url, migrate=False) as store:
        migrations.upgrade(store.engine, "0001")
        assert migrations.current_revision(store.engine) == "0001"
        store.migrate()
        assert migrations.current_revision(store.engine) == migrations.head_revision() == "0002"


def test_models_and_migrations_agree(store: Store) -> None:
    """What autogenerate would write for the current models is nothing: 0001 matches them."""
    def ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        if type_ == "index" and name in EXPRESSION_INDEXES:
            return store.dialect != "sqlite"  # SQLite cannot reflect expression indexes
        return type_ != "table" or name in TABLE_NAMES

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": ours})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same SQLite reflection limit, reported as a warning
            diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []
    if store.dialect == "sqlite":  # compare the two expression indexes by their DDL instead
        with store.engine.connect() as conn:
            ddl = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").all())
        assert "coalesce(recipient_code, '')" in ddl["uq_receipts_key"]
        assert "WHERE published_at IS NULL" in ddl["ix_outbox_pending"]


def test_downgrade_to_base_and_back(store: Store) -> None:
    migrations.downgrade(store.engine, "base")
    assert set(sa.inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.migrate()
    assert set(sa.inspect(store.engine).get_table_names()) == TABLE_NAMES | {"alembic_version"}


def test_sqlite_connection_settings(tmp_path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        with store.engine.connect() as conn:
            def pragma(name: str) -> object:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("synchronous") == 2  # FULL
            assert pragma("busy_timeout") >= 5000


def test_sqlite_writes_begin_immediate(tmp_path) -> None:
    """A unit of work holds the write lock from its first statement, so a second writer waits up front."""
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        with store.write() as tx:
            tx.get_agency("nobody")  # a read only; IMMEDIATE has taken the lock already
            other = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}",
                                     connect_args={"timeout": 0, "isolation_level": None})
            with other.connect() as conn:
                with pytest.raises(sa.exc.OperationalError, match="locked"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            other.dispose()


def test_url_normalisation(tmp_path) -> None:
    assert normalise_url(None).render_as_string() == "sqlite+pysqlite:///axis-data/axis.db"
    assert normalise_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    path = str(tmp_path / "x.db")
    assert normalise_url(path).database == path
    assert normalise_url(f"sqlite:///{path}").database == path
    with pytest.raises(ValueError, match="in-memory"):
        normalise_url("sqlite://")
    with pytest.raises(ValueError, match="psycopg"):
        normalise_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(ValueError, match="unsupported"):
        normalise_url("mysql://u@h/db")


def test_default_store_is_a_sqlite_file_under_axis_data(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store() as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "axis-data" / "axis.db").is_file()
