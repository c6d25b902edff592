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

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from axis.store.db import WRITE_OPTION

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_MIGRATION_LOCK = 0x4158_4953_4D49_4752  # "AXISMIGR"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "axis/store/migrations/versions holds no revision"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on `engine`, in one transaction."""
    cfg = alembic_config()
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """`alembic downgrade <revision>`; for development (the audit log has no way back)."""
    cfg = alembic_config()
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
