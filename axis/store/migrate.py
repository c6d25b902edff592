"""Running the alembic migrations from code.

The alembic configuration is built here, pointing at the `migrations`
directory beside this file, so `Store.migrate()` works from an editable
install or a checkout with no alembic.ini in the working directory. For
developers, `alembic -c axis/store/alembic.ini revision --autogenerate -m ...`
uses the same env.py.

Callers may rely on `upgrade` being safe to run from several processes at
once on PostgreSQL (an advisory lock serialises them, and PostgreSQL DDL is
transactional) and on SQLite (BEGIN IMMEDIATE).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from axis.store.db import WRITE_OPTION

if TYPE_CHECKING:
    from alembic.config import Config

# alembic is imported where it is used: every process that opens a store migrates it, and a store already at
# the head (`_at_head`) needs no alembic at all, which spares each hub worker, gateway and command its import.

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_MIGRATION_LOCK = 0x4158_4953_4D49_4752  # "AXISMIGR"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "axis/store/migrations/versions holds no revision"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on `engine`, in one transaction."""
    if revision == "head" and _at_head(engine):
        return
    from alembic import command

    cfg = alembic_config()
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """`alembic downgrade <revision>`; for development (the audit log has no way back)."""
    from alembic import command

    cfg = alembic_config()
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)


def newest_revision_file() -> str:
    """The head as the versions folder's file names say it (`NNNN_what.py`, revision "NNNN", each revising the
    one before: tests/store/test_store_migrations.py holds alembic's head to it), read without alembic."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _at_head(engine: sa.Engine) -> bool:
    """True when the database is stamped with the head already (the usual case): a plain read, no alembic."""
    try:
        with engine.connect() as conn:
            stamped = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    except sa.exc.DBAPIError:  # no alembic_version table yet: a new database
        return False
    return stamped == [newest_revision_file()]
