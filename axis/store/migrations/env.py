"""Alembic environment for the Axis store.

`axis.store.migrate.upgrade` passes its own connection (already inside a
transaction, with the store's SQLite settings) in `config.attributes`; the
alembic command line instead builds an engine from `sqlalchemy.url`.
"""
from __future__ import annotations

from typing import Any

from alembic import context

from axis.store.db import WRITE_OPTION, create_engine
from axis.store.schema import EXPRESSION_INDEXES, metadata

config = context.config
target_metadata = metadata


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "index" and name in EXPRESSION_INDEXES:
        return context.get_context().dialect.name != "sqlite"
    return True


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      include_object=include_object, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # The developer's `alembic upgrade` on a new file builds the database, as it always has.
    engine = create_engine(config.get_main_option("sqlalchemy.url"), create=True)
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
