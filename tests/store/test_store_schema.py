"""The read records and the tables they come from cannot drift apart."""
from __future__ import annotations

import dataclasses
import types
import typing

import pytest
import sqlalchemy as sa

from axis.store import (
    Agency,
    AgencyAlias,
    AuditEntry,
    AuditSigner,
    Certificate,
    Checkpoint,
    CheckpointStamp,
    Delivery,
    Document,
    Receipt,
    schema,
)

RECORDS = [(Agency, schema.agencies), (Certificate, schema.certificates), (Document, schema.documents),
           (Delivery, schema.deliveries), (Receipt, schema.receipts), (AuditEntry, schema.audit_log),
           (Checkpoint, schema.audit_checkpoints), (CheckpointStamp, schema.audit_timestamps),
           (AuditSigner, schema.audit_signers), (AgencyAlias, schema.agency_aliases)]


@pytest.mark.parametrize(("record", "table"), RECORDS, ids=[r.__name__ for r, _ in RECORDS])
def test_each_record_has_its_tables_columns(record: type, table: sa.Table) -> None:
    """Same names in the same order, the column's Python type, `| None` exactly where the column is nullable."""
    fields = dataclasses.fields(record)
    assert [f.name for f in fields] == [c.name for c in table.columns]
    hints = typing.get_type_hints(record)
    for column in table.columns:
        hint = hints[column.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        assert (type(None) in args) == bool(column.nullable), column.name
        (python_type,) = [a for a in args if a is not type(None)]
        # The store keeps JSON objects (audit data) and lists (an entry's row bindings); SQLAlchemy says `object`.
        expected = (dict, list) if isinstance(column.type, sa.JSON) else (column.type.python_type,)
        assert (typing.get_origin(python_type) or python_type) in expected, column.name
