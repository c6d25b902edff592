"""Schema: migrations from empty, schema.py == migrations, upgrades keep rows, connection settings, URLs."""
from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from axis.store import Decision, MissingDatabase, NewSubmission, Store, normalise_url, open_store
from axis.store import audit as chain
from axis.store import migrate as migrations
from axis.store.schema import EXPRESSION_INDEXES, TABLE_NAMES, TABLES, metadata
from tests.store.store_helpers import R1, RECIPIENTS, SENDER, accept, make_certificate

# The head before the schema moved from SQLModel to schema.py: databases in use are at this revision.
PREVIOUS_HEAD = "0003"  # the head before the last migration


def test_migrates_an_empty_database_to_head(db_url: str) -> None:
    with open_store(db_url, migrate=False, create=True) as store:
        assert migrations.current_revision(store.engine) is None
        assert set(sa.inspect(store.engine).get_table_names()) == set()
        store.migrate()
        assert migrations.current_revision(store.engine) == migrations.head_revision()
        assert set(sa.inspect(store.engine).get_table_names()) == TABLE_NAMES | {"alembic_version"}
        store.migrate()  # a second run is a no-op
        assert migrations.current_revision(store.engine) == migrations.head_revision()


def test_the_file_names_name_alembics_head() -> None:
    """`open_store` skips alembic when the database is stamped with the newest file's revision: they must agree."""
    assert migrations.newest_revision_file() == migrations.head_revision()


def test_migrations_run_step_by_step(db_url: str) -> None:
    with open_store(db_url, migrate=False, create=True) as store:
        migrations.upgrade(store.engine, "0001")
        assert migrations.current_revision(store.engine) == "0001"
        store.migrate()
        assert migrations.current_revision(store.engine) == migrations.head_revision() == "0007"
        # 0006 rebuilt two CHECK constraints (SQLite cannot alter one): the new states are allowed, and only they.
        checks = {c["name"]: c["sqltext"] for c in sa.inspect(store.engine).get_check_constraints("deliveries")}
        assert "'parked'" in checks["ck_deliveries_state"] and "'failed'" in checks["ck_deliveries_state"]
        checks = {c["name"]: c["sqltext"]
                  for c in sa.inspect(store.engine).get_check_constraints("agency_certificates")}
        assert "'withdrawn'" in checks["ck_agency_certificates_state"]


def test_schema_and_migrations_agree(store: Store) -> None:
    """What autogenerate would write for schema.py is nothing: the migrations build exactly it."""
    def ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        if type_ == "index" and name in EXPRESSION_INDEXES:
            return store.dialect != "sqlite"  # SQLite cannot reflect expression indexes
        return True

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": ours})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same SQLite reflection limit, reported as a warning
            diff = compare_metadata(ctx, metadata)
        # autogenerate does not compare CHECK constraints: compare their names by reflection.
        inspector = sa.inspect(conn)
        for table in TABLES:
            declared = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
            assert {c["name"] for c in inspector.get_check_constraints(table.name)} == declared, table.name
    assert diff == []
    if store.dialect == "sqlite":  # compare the expression index by its DDL instead
        with store.engine.connect() as conn:
            ddl = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").all())
        assert "coalesce(recipient_code, '')" in ddl["uq_receipts_key"]


def _snapshot(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in primary-key order."""
    with store.engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                for t in TABLES}


def test_a_database_of_the_previous_head_upgrades_with_every_row_intact(db_url: str, tmp_path) -> None:
    """A database in use (migrated by the previous head, full of rows) upgrades to head unchanged.

    The rows are written by today's code into a head database, then copied, column by column as
    the previous head knows them, into the database under test; after the upgrade every row is
    there as it was, and the columns the upgrade added are empty.
    """
    with open_store(f"sqlite:///{tmp_path / 'source.db'}", create=True) as source:
        with source.write() as tx:
            tx.add_agency(SENDER, "Văn phòng Chính phủ")
            for code in RECIPIENTS:
                tx.add_agency(code, f"Agency {code}", parent=SENDER)
            tx.add_certificate(SENDER, make_certificate())
        axis_id = accept(source, 1)
        with source.write() as tx:
            tx.transition(axis_id, R1, "parked", "retries exhausted")
            tx.transition(axis_id, R1, "failed", attempts=3)
            tx.add_receipt(axis_id, "error", b"<error receipt/>", R1, "500")
            tx.mark_seen("adapter.H01", f"{R1}:{axis_id}")
            tx.add_credential("cred_1", "agency", SENDER, "a" * 64, "the sender's system")
            tx.add_submissions([NewSubmission("sub-1", SENDER, "cred_1", "b" * 64),
                                NewSubmission("sub-2", SENDER, "cred_1", "c" * 64)])
            tx.decide_submissions([Decision("sub-1", SENDER, "accepted", axis_id, None, None, b"<receipt/>")])
        rows = {t.name: [dict(r._mapping) for r in source.engine.connect().execute(sa.select(t))] for t in TABLES}
    for entry in rows["audit_log"]:  # written before 0005: no seals
        for column in ("sealed_from", "seal_key", "seal"):
            entry.pop(column)
    # The entries as code before 0004 wrote them: no row bindings, so hashed without them.
    prev = chain.GENESIS_HASH
    for entry in sorted(rows["audit_log"], key=lambda e: e["seq"]):
        entry["bound"], entry["prev_hash"] = None, prev
        entry["hash"] = prev = chain.entry_hash(prev, chain.entry_body(
            entry["seq"], entry["at"], entry["actor"], entry["action"], entry["subject"], entry["data"], prev))
    with open_store(db_url, migrate=False, create=True) as store:
        migrations.upgrade(store.engine, PREVIOUS_HEAD)
        old_tables = sa.MetaData()
        with warnings.catch_warnings():  # SQLite cannot reflect expression indexes; columns are all we need
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            old_tables.reflect(store.engine)
        with store.engine.begin() as conn:
            if store.dialect == "postgresql":  # the append-only guard is a trigger; rows are copied as they are
                conn.exec_driver_sql("SET session_replication_role = replica")
            for table in TABLES:
                if table.name in old_tables.tables and rows[table.name]:
                    known = set(old_tables.tables[table.name].columns.keys())
                    conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in known}
                                                    for r in rows[table.name]])
            # 0001's checkpoint table, which nothing wrote; 0004 replaces it.
            conn.execute(sa.text("INSERT INTO audit_checkpoints (seq, hash, signature, at) VALUES "
                                 "(1, :hash, :sig, :at)"), {"hash": "0" * 64, "sig": b"sig", "at": source.clock()})
        def snapshot() -> dict[str, list[tuple]]:
            taken: dict[str, list[tuple]] = {}
            with store.engine.connect() as conn:
                for t in TABLES:
                    if t.name not in old_tables.tables:
                        continue
                    old = old_tables.tables[t.name].c
                    query = (sa.select(*[c for c in t.columns if c.key in old])
                             .order_by(*[c for c in t.primary_key.columns if c.name in old]))
                    taken[t.name] = [tuple(r) for r in conn.execute(query)]
            return taken
        before = snapshot()
        assert all(before.values()), {name: len(r) for name, r in before.items()}
        store.migrate()
        assert migrations.current_revision(store.engine) == migrations.head_revision()
        after = snapshot()
        log_before = before.pop("audit_log")
        log_after = after.pop("audit_log")
        assert after.pop("audit_checkpoints") == [] and before.pop("audit_checkpoints")
        assert after == before
        # The log is kept as it was, then 0004 adopts every evidence row as it stands.
        assert log_after[:len(log_before)] == log_before
        adopted = list(store.audit_entries(from_seq=len(log_before) + 1))
        assert adopted and {e.action for e in adopted} == {"adopted"}
        assert {e.data["table"] for e in adopted} >= {"agencies", "agency_certificates", "documents", "deliveries",
                                                       "receipts"}
        assert store.engine.connect().execute(sa.text("SELECT count(*) FROM documents WHERE seal IS NULL")).scalar()
        assert store.verify_audit().ok


def test_downgrade_to_base_and_back(store: Store) -> None:
    migrations.downgrade(store.engine, "base")
    assert set(sa.inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.migrate()
    assert set(sa.inspect(store.engine).get_table_names()) == TABLE_NAMES | {"alembic_version"}


def test_sqlite_connection_settings(tmp_path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'a.db'}", create=True) as store:
        with store.engine.connect() as conn:
            def pragma(name: str) -> object:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("synchronous") == 2  # FULL
            assert pragma("busy_timeout") >= 5000


def test_sqlite_writes_begin_immediate(tmp_path) -> None:
    """A unit of work holds the write lock from its first statement, so a second writer waits up front."""
    with open_store(f"sqlite:///{tmp_path / 'a.db'}", create=True) as store:
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
    with pytest.raises(MissingDatabase):
        open_store()
    with open_store(create=True) as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "axis-data" / "axis.db").is_file()
    with open_store() as store:  # it exists now
        assert store.list_agencies() == []


@pytest.mark.parametrize("url", ["sqlite:///{dir}/sub/missing.db", "{dir}/missing.db"])
def test_a_missing_sqlite_database_is_an_error_and_nothing_is_created(tmp_path, url: str) -> None:
    url = url.format(dir=tmp_path)
    for migrate in (True, False):
        with pytest.raises(MissingDatabase, match=r"^the SQLite database .*missing\.db does not exist$"):
            open_store(url, migrate=migrate)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_a_one_line_error() -> None:
    from tests.store.conftest import PG_URL
    url = sa.make_url(PG_URL).set(database="axis_t_never_created").render_as_string(hide_password=False)
    for migrate, create in ((True, False), (False, False), (True, True)):
        with pytest.raises(MissingDatabase) as caught:
            open_store(url, migrate=migrate, create=create)
        message = str(caught.value)
        assert "'axis_t_never_created' does not exist" in message and "\n" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
