"""The tables, as SQLModel classes (the schema alembic migrates to).

The store queries these tables through SQLAlchemy Core (`Row.__table__`),
never through ORM sessions, and hands out `records` dataclasses instead.
Callers outside `axis.store` should not import this module; the table layout
is described in docs/store.md and may change with a migration.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

CODE_LEN = 35  # QĐ 20/2020: at most 35 characters


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on both dialects.

    SQLite has no time zone type; without this, values would come back naive
    and compare wrongly with aware ones. Naive input is refused rather than
    guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id_type() -> sa.types.TypeEngine[int]:
    # BIGINT for growth; plain INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


AGENCY_STATES = ("active", "suspended")
CERT_STATES = ("active", "revoked")
DOCUMENT_KINDS = ("document", "status")
RECEIPT_KINDS = ("intake", "delivery", "status", "error")
DELIVERY_STATES = ("queued", "published", "delivered", "arrived", "accepted", "assigned", "processing",
                   "done", "refused", "failed", "recalled")


class AgencyRow(SQLModel, table=True):
    __tablename__ = "agencies"
    __table_args__ = (sa.CheckConstraint(_in("state", AGENCY_STATES), name="ck_agencies_state"),)

    code: str = Field(primary_key=True, max_length=CODE_LEN)
    name: str = Field(max_length=500)
    parent_code: str | None = Field(default=None, max_length=CODE_LEN, foreign_key="agencies.code",
                                       index=True)
    state: str = Field(default="active", max_length=16)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class CertificateRow(SQLModel, table=True):
    __tablename__ = "agency_certificates"
    __table_args__ = (
        sa.UniqueConstraint("fingerprint", name="uq_agency_certificates_fingerprint"),
        sa.CheckConstraint(_in("state", CERT_STATES), name="ck_agency_certificates_state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_code: str = Field(max_length=CODE_LEN, foreign_key="agencies.code", index=True)
    fingerprint: str = Field(max_length=64)
    certificate: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    not_before: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    not_after: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    state: str = Field(default="active", max_length=16)
    added_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class DocumentRow(SQLModel, table=True):
    __tablename__ = "documents"
    __table_args__ = (
        sa.UniqueConstraint("sender_code", "document_id", "kind", name="uq_documents_key"),
        sa.CheckConstraint(_in("kind", DOCUMENT_KINDS), name="ck_documents_kind"),
        sa.CheckConstraint("priority BETWEEN 0 AND 4", name="ck_documents_priority"),
        sa.CheckConstraint("business_type IS NULL OR business_type BETWEEN 0 AND 3",
                           name="ck_documents_business_type"),
    )

    axis_id: str = Field(primary_key=True, max_length=64)
    sender_code: str = Field(max_length=CODE_LEN, foreign_key="agencies.code")
    document_id: str = Field(max_length=255, index=True)
    kind: str = Field(max_length=16)
    business_type: int | None = Field(default=None, sa_column=sa.Column(sa.SmallInteger(), nullable=True))
    digest: str = Field(max_length=64)
    size: int = Field(sa_column=sa.Column(sa.BigInteger(), nullable=False))
    priority: int = Field(sa_column=sa.Column(sa.SmallInteger(), nullable=False))
    received_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False, index=True))
    signer_fingerprint: str | None = Field(default=None, max_length=64)
    response_for: str | None = Field(default=None, max_length=64, foreign_key="documents.axis_id",
                                        index=True)


class DocumentBodyRow(SQLModel, table=True):
    __tablename__ = "document_bodies"

    axis_id: str = Field(primary_key=True, max_length=64, foreign_key="documents.axis_id")
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (sa.CheckConstraint(_in("state", DELIVERY_STATES), name="ck_deliveries_state"),)

    axis_id: str = Field(primary_key=True, max_length=64, foreign_key="documents.axis_id")
    recipient_code: str = Field(primary_key=True, max_length=CODE_LEN, foreign_key="agencies.code",
                                index=True)
    state: str = Field(max_length=16, index=True)
    attempts: int = Field(default=0)
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))


class ReceiptRow(SQLModel, table=True):
    __tablename__ = "receipts"
    __table_args__ = (
        # NULL recipient (intake) or NULL code must still collide, hence coalesce:
        # a plain UNIQUE treats NULLs as distinct on both SQLite and PostgreSQL.
        sa.Index("uq_receipts_key", "axis_id", sa.text("coalesce(recipient_code, '')"), "kind",
                 sa.text("coalesce(code, '')"), unique=True),
        sa.CheckConstraint(_in("kind", RECEIPT_KINDS), name="ck_receipts_kind"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(_id_type(), primary_key=True,
                                                                  autoincrement=True))
    axis_id: str = Field(max_length=64, foreign_key="documents.axis_id")
    recipient_code: str | None = Field(default=None, max_length=CODE_LEN)
    kind: str = Field(max_length=16)
    code: str | None = Field(default=None, max_length=16)
    detail: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    digest: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's scan: only unpublished rows, urgent first, then oldest.
        sa.Index("ix_outbox_pending", sa.text("priority DESC"), "id",
                 sqlite_where=sa.text("published_at IS NULL"),
                 postgresql_where=sa.text("published_at IS NULL")),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
        sa.CheckConstraint("(body_ref IS NULL) <> (payload IS NULL)", name="ck_outbox_one_body"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(_id_type(), primary_key=True,
                                                                  autoincrement=True))
    queue: str = Field(max_length=255)
    message_id: str = Field(max_length=255)
    priority: int = Field(sa_column=sa.Column(sa.SmallInteger(), nullable=False))
    body_ref: str | None = Field(default=None, max_length=64, foreign_key="document_bodies.axis_id")
    payload: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary(), nullable=True))
    headers: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    claimed_until: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=True))
    published_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=True))
    attempts: int = Field(default=0)


class InboxRow(SQLModel, table=True):
    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=255)
    dedup_key: str = Field(primary_key=True, max_length=255)
    seen_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_log"

    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=255)
    action: str = Field(max_length=255)
    subject: str | None = Field(default=None, max_length=255, index=True)
    data: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditCheckpointRow(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"

    seq: int = Field(sa_column=sa.Column(sa.BigInteger(), primary_key=True, autoincrement=False))
    hash: str = Field(max_length=64)
    signature: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


# Indexes on expressions, which SQLite reflection cannot read back: alembic
# autogenerate must not compare them there (it would propose dropping them).
EXPRESSION_INDEXES = frozenset({"uq_receipts_key", "ix_outbox_pending"})

TABLES: tuple[sa.Table, ...] = tuple(
    m.__table__ for m in (AgencyRow, CertificateRow, DocumentRow, DocumentBodyRow, DeliveryRow, ReceiptRow,
                          OutboxRow, InboxRow, AuditRow, AuditCheckpointRow))  # type: ignore[attr-defined]
TABLE_NAMES = frozenset(t.name for t in TABLES)
