"""initial schema: registry, documents, deliveries, receipts, outbox, inbox, audit log

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Frozen history: this file spells out its types instead of importing the
models, so later model changes never rewrite what 0001 did.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
CODE = sa.String(35)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DELIVERY_STATES = ("queued", "published", "delivered", "arrived", "accepted", "assigned", "processing",
                   "done", "refused", "failed", "recalled")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# The append-only guard: the database itself refuses UPDATE, DELETE (and on
# PostgreSQL TRUNCATE) on the audit tables, whoever the client is.
_GUARDED = ("audit_log", "audit_checkpoints")

_PG_GUARD_FUNCTION = """
CREATE FUNCTION axis_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit entries are never changed or removed; append a correcting entry instead';
END;
$$
"""


def _create_guards() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_GUARD_FUNCTION)
        for table in _GUARDED:
            op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION axis_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION axis_append_only()")
    elif dialect == "sqlite":
        for table in _GUARDED:
            for verb in ("update", "delete"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    else:
        raise NotImplementedError(f"no append-only guard for dialect {dialect!r}")


def _drop_guards() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in _GUARDED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS axis_append_only()")
    else:
        for table in _GUARDED:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("code", CODE, nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("parent_code", CODE, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(_in("state", ("active", "suspended")), name="ck_agencies_state"),
        sa.ForeignKeyConstraint(["parent_code"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_agencies_parent_code", "agencies", ["parent_code"])

    op.create_table(
        "agency_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agency_code", CODE, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.CheckConstraint(_in("state", ("active", "revoked")), name="ck_agency_certificates_state"),
        sa.ForeignKeyConstraint(["agency_code"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint", name="uq_agency_certificates_fingerprint"),
    )
    op.create_index("ix_agency_certificates_agency_code", "agency_certificates", ["agency_code"])

    op.create_table(
        "documents",
        sa.Column("axis_id", sa.String(64), nullable=False),
        sa.Column("sender_code", CODE, nullable=False),
        sa.Column("document_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("business_type", sa.SmallInteger(), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("signer_fingerprint", sa.String(64), nullable=True),
        sa.Column("response_for", sa.String(64), nullable=True),
        sa.CheckConstraint(_in("kind", ("document", "status")), name="ck_documents_kind"),
        sa.CheckConstraint("business_type IS NULL OR business_type BETWEEN 0 AND 3",
                           name="ck_documents_business_type"),
        sa.CheckConstraint("priority BETWEEN 0 AND 4", name="ck_documents_priority"),
        sa.ForeignKeyConstraint(["response_for"], ["documents.axis_id"]),
        sa.ForeignKeyConstraint(["sender_code"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("axis_id"),
        sa.UniqueConstraint("sender_code", "document_id", "kind", name="uq_documents_key"),
    )
    op.create_index("ix_documents_document_id", "documents", ["document_id"])
    op.create_index("ix_documents_received_at", "documents", ["received_at"])
    op.create_index("ix_documents_response_for", "documents", ["response_for"])

    op.create_table(
        "document_bodies",
        sa.Column("axis_id", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["axis_id"], ["documents.axis_id"]),
        sa.PrimaryKeyConstraint("axis_id"),
    )

    op.create_table(
        "deliveries",
        sa.Column("axis_id", sa.String(64), nullable=False),
        sa.Column("recipient_code", CODE, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("state", DELIVERY_STATES), name="ck_deliveries_state"),
        sa.ForeignKeyConstraint(["axis_id"], ["documents.axis_id"]),
        sa.ForeignKeyConstraint(["recipient_code"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("axis_id", "recipient_code"),
    )
    op.create_index("ix_deliveries_recipient_code", "deliveries", ["recipient_code"])
    op.create_index("ix_deliveries_state", "deliveries", ["state"])

    op.create_table(
        "receipts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("axis_id", sa.String(64), nullable=False),
        sa.Column("recipient_code", CODE, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(_in("kind", ("intake", "delivery", "status", "error")), name="ck_receipts_kind"),
        sa.ForeignKeyConstraint(["axis_id"], ["documents.axis_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    # coalesce: a plain UNIQUE lets NULL recipients (intake) or NULL codes repeat.
    op.create_index("uq_receipts_key", "receipts",
                    ["axis_id", sa.text("coalesce(recipient_code, '')"), "kind", sa.text("coalesce(code, '')")],
                    unique=True)

    op.create_table(
        "outbox",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("body_ref", sa.String(64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.CheckConstraint("(body_ref IS NULL) <> (payload IS NULL)", name="ck_outbox_one_body"),
        sa.ForeignKeyConstraint(["body_ref"], ["document_bodies.axis_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_pending", "outbox", [sa.text("priority DESC"), "id"],
                    sqlite_where=sa.text("published_at IS NULL"),
                    postgresql_where=sa.text("published_at IS NULL"))

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(255), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "dedup_key"),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])

    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    _create_guards()


def downgrade() -> None:
    _drop_guards()
    for table in ("audit_checkpoints", "audit_log", "inbox", "outbox", "receipts", "deliveries",
                  "document_bodies", "documents", "agency_certificates", "agencies"):
        op.drop_table(table)
