"""The tables: the one declaration of the schema, as SQLAlchemy Core tables.

Migrations create exactly this (tests/store/test_store_migrations.py compares
a migrated database with `metadata` through alembic's autogenerate), and the
read records in `records.py` carry one field per column of their table, in
column order (tested too), so a row becomes a record without a mapper.
Callers outside `axis.store` should not import this module; the layout is
described in docs/store.md and may change with a migration.
"""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

CODE_LEN = 35  # QĐ 20/2020: at most 35 characters


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on both dialects.

    SQLite has no time zone type; without this, values would come back naive
    and compare wrongly with aware ones. Naive input is refused rather than
    guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

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


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


AGENCY_STATES = ("active", "suspended")
CERT_STATES = ("active", "revoked", "withdrawn")
DOCUMENT_KINDS = ("document", "status")
RECEIPT_KINDS = ("intake", "delivery", "status", "error")
CREDENTIAL_ROLES = ("agency", "operator", "auditor")
SUBMISSION_OUTCOMES = ("accepted", "duplicate", "refused")
DELIVERY_STATES = ("queued", "published", "delivered", "arrived", "accepted", "assigned", "processing",
                   "done", "refused", "failed", "recalled", "parked")

# BIGINT for growth; plain INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CODE = sa.String(CODE_LEN)
_HASH = sa.String(64)
_AT = UTCDateTime()

metadata = sa.MetaData()

agencies = sa.Table(
    "agencies", metadata,
    sa.Column("code", _CODE, primary_key=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("parent_code", _CODE, sa.ForeignKey("agencies.code"), nullable=True, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", _AT, nullable=False),
    sa.Column("updated_at", _AT, nullable=False),
    sa.CheckConstraint(_in("state", AGENCY_STATES), name="ck_agencies_state"),
)

certificates = sa.Table(
    "agency_certificates", metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("agency_code", _CODE, sa.ForeignKey("agencies.code"), nullable=False, index=True),
    sa.Column("fingerprint", _HASH, nullable=False),
    sa.Column("certificate", sa.Text(), nullable=False),
    sa.Column("not_before", _AT, nullable=False),
    sa.Column("not_after", _AT, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("added_at", _AT, nullable=False),
    sa.UniqueConstraint("fingerprint", name="uq_agency_certificates_fingerprint"),
    sa.CheckConstraint(_in("state", CERT_STATES), name="ck_agency_certificates_state"),
)

# After `axis agency rename OLD NEW`: documents addressed to OLD go to NEW until `until` (a merger or a new code);
# OLD stays in the registry and in the history.
agency_aliases = sa.Table(
    "agency_aliases", metadata,
    sa.Column("old_code", _CODE, sa.ForeignKey("agencies.code"), primary_key=True),
    sa.Column("new_code", _CODE, sa.ForeignKey("agencies.code"), nullable=False, index=True),
    sa.Column("created_at", _AT, nullable=False),
    sa.Column("until", _AT, nullable=False),
)

documents = sa.Table(
    "documents", metadata,
    sa.Column("axis_id", _HASH, primary_key=True),
    sa.Column("sender_code", _CODE, sa.ForeignKey("agencies.code"), nullable=False),
    sa.Column("document_id", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("business_type", sa.SmallInteger(), nullable=True),
    sa.Column("digest", _HASH, nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("priority", sa.SmallInteger(), nullable=False),
    sa.Column("received_at", _AT, nullable=False, index=True),
    sa.Column("signer_fingerprint", _HASH, nullable=True),
    sa.Column("response_for", _HASH, sa.ForeignKey("documents.axis_id"), nullable=True, index=True),
    # The hub's seal over (axis id, digest, recipients), base64 (axis/seal.py): served with every delivery.
    sa.Column("seal", sa.Text(), nullable=True),
    sa.UniqueConstraint("sender_code", "document_id", "kind", name="uq_documents_key"),
    sa.CheckConstraint(_in("kind", DOCUMENT_KINDS), name="ck_documents_kind"),
    sa.CheckConstraint("priority BETWEEN 0 AND 4", name="ck_documents_priority"),
    sa.CheckConstraint("business_type IS NULL OR business_type BETWEEN 0 AND 3", name="ck_documents_business_type"),
)

bodies = sa.Table(
    "document_bodies", metadata,
    sa.Column("axis_id", _HASH, sa.ForeignKey("documents.axis_id"), primary_key=True),
    sa.Column("body", sa.LargeBinary(), nullable=False),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("axis_id", _HASH, sa.ForeignKey("documents.axis_id"), primary_key=True),
    sa.Column("recipient_code", _CODE, sa.ForeignKey("agencies.code"), primary_key=True, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("updated_at", _AT, nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.CheckConstraint(_in("state", DELIVERY_STATES), name="ck_deliveries_state"),
    # An agency's inbox: its deliveries still waiting (gateway GET /v1/inbox).
    sa.Index("ix_deliveries_inbox", "recipient_code", "state"),
)

receipts = sa.Table(
    "receipts", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("axis_id", _HASH, sa.ForeignKey("documents.axis_id"), nullable=False),
    sa.Column("recipient_code", _CODE, nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("code", sa.String(16), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("body", sa.LargeBinary(), nullable=False),
    sa.Column("digest", _HASH, nullable=False),
    sa.Column("created_at", _AT, nullable=False),
    # NULL recipient (intake) or NULL code must still collide, hence coalesce:
    # a plain UNIQUE treats NULLs as distinct on both SQLite and PostgreSQL.
    sa.Index("uq_receipts_key", "axis_id", sa.text("coalesce(recipient_code, '')"), "kind",
             sa.text("coalesce(code, '')"), unique=True),
    sa.CheckConstraint(_in("kind", RECEIPT_KINDS), name="ck_receipts_kind"),
)

# Who may call the gateway: a SHA-256 of each bearer token (256 random bits; never the token itself).
credentials = sa.Table(
    "credentials", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("agency_code", _CODE, sa.ForeignKey("agencies.code"), nullable=True, index=True),
    sa.Column("token_sha256", _HASH, nullable=False),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("created_at", _AT, nullable=False),
    sa.Column("revoked_at", _AT, nullable=True),
    sa.UniqueConstraint("token_sha256", name="uq_credentials_token"),
    sa.CheckConstraint(_in("role", CREDENTIAL_ROLES), name="ck_credentials_role"),
    sa.CheckConstraint("(role = 'agency') = (agency_code IS NOT NULL)", name="ck_credentials_agency"),
)

# Every submission and, once the hub decided it, its outcome and signed intake receipt. The gateway (or the
# local client) writes the row before it publishes; the hub fills in the outcome in its intake transaction.
# The bytes of a queued submission too large to ride on the broker (issue 12): the intake message names its
# submission and carries no body; the hub reads it from here and removes it once decided. No foreign key:
# retention removes decided submissions rows on its own schedule.
submission_bodies = sa.Table(
    "submission_bodies", metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("body", sa.LargeBinary(), nullable=False),
)

submissions = sa.Table(
    "submissions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("agency_code", _CODE, nullable=True, index=True),
    sa.Column("credential_id", sa.String(32), nullable=True),
    sa.Column("digest", _HASH, nullable=True),
    sa.Column("created_at", _AT, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("axis_id", _HASH, nullable=True),
    sa.Column("code", sa.Integer(), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("receipt", sa.LargeBinary(), nullable=True),
    sa.Column("decided_at", _AT, nullable=True),
    sa.CheckConstraint("outcome IS NULL OR " + _in("outcome", SUBMISSION_OUTCOMES), name="ck_submissions_outcome"),
)

inbox = sa.Table(
    "inbox", metadata,
    sa.Column("consumer", sa.String(255), primary_key=True),
    sa.Column("dedup_key", sa.String(255), primary_key=True),
    sa.Column("seen_at", _AT, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("at", _AT, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(255), nullable=False),
    sa.Column("subject", sa.String(255), nullable=True, index=True),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("prev_hash", _HASH, nullable=False),
    sa.Column("hash", _HASH, nullable=False),
    # [table, key, row digest] of each evidence row the entry's unit of work wrote (axis/store/bindings.py).
    sa.Column("bound", sa.JSON(), nullable=True),
    # The last entry of each unit of work carries its writer's seal (axis/audit/logkeys.py): an Ed25519
    # signature, by the log key `seal_key`, over entries `sealed_from`..seq (axis/store/audit.py, `seal_message`).
    sa.Column("sealed_from", sa.BigInteger(), nullable=True),
    sa.Column("seal_key", _HASH, nullable=True),
    sa.Column("seal", sa.LargeBinary(), nullable=True),
)

# The log keys that seal units of work: one Ed25519 key per writing process, made when it opens the store and
# never written anywhere, certified by the axis key's signature over `statement` (axis/audit/logkeys.py has the
# format); `signer` is that certificate's SHA-256 (audit_signers). Append-only.
audit_log_keys = sa.Table(
    "audit_log_keys", metadata,
    sa.Column("key_id", _HASH, primary_key=True),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", _AT, nullable=False),
    sa.Column("writer", sa.String(255), nullable=False),
    sa.Column("statement", sa.Text(), nullable=False),
    sa.Column("signature", sa.LargeBinary(), nullable=False),
    sa.Column("signer", _HASH, nullable=False),
)

# Signed checkpoints (tree heads) of the audit log, written by one process at a time (axis/audit/checkpoints.py):
# `note` is the exact signed text, `signature` the axis key's signature over it, `signer` the SHA-256 of the
# signing certificate (audit_signers), `frontier` the tree's compact range at `size` (hex hashes), so that the
# next checkpoint reads only the entries written since. Append-only, like the log.
audit_checkpoints = sa.Table(
    "audit_checkpoints", metadata,
    sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("root", _HASH, nullable=False),
    sa.Column("head_hash", _HASH, nullable=False),
    sa.Column("at", _AT, nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("signature", sa.LargeBinary(), nullable=False),
    sa.Column("signer", _HASH, nullable=False),
    sa.Column("frontier", sa.JSON(), nullable=False),
)

# The RFC 3161 timestamp token (the TSA's whole TimeStampResp, DER) over each checkpoint's signature; a
# checkpoint waits here for its token while the TSA is away (backfilled). Append-only.
audit_timestamps = sa.Table(
    "audit_timestamps", metadata,
    sa.Column("size", sa.BigInteger(), sa.ForeignKey("audit_checkpoints.size"), primary_key=True,
              autoincrement=False),
    sa.Column("token", sa.LargeBinary(), nullable=False),
    sa.Column("tsa", sa.String(500), nullable=False),
    sa.Column("stamped_at", _AT, nullable=False),
)

# The certificates that signed checkpoints and certified log keys (PEM, with their chain), by SHA-256 of the
# leaf's DER. Append-only.
audit_signers = sa.Table(
    "audit_signers", metadata,
    sa.Column("fingerprint", _HASH, primary_key=True),
    sa.Column("certificates", sa.Text(), nullable=False),
    sa.Column("added_at", _AT, nullable=False),
)

# Indexes on expressions, which SQLite reflection cannot read back: alembic
# autogenerate must not compare them there (it would propose dropping them).
EXPRESSION_INDEXES = frozenset({"uq_receipts_key"})

TABLES: tuple[sa.Table, ...] = tuple(metadata.tables.values())
TABLE_NAMES = frozenset(metadata.tables)
