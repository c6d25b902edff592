"""the agency gateway: credentials, submissions with their outcomes, the seal on documents, an inbox index;
the outbox goes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Agencies no longer read broker queues: the gateway serves their deliveries from
the store (hence the seal on each document and the inbox index) and answers
submissions from the `submissions` table, which the hub fills in. Nothing is
relayed to the broker after a commit any more, so the outbox table is dropped
(a database upgraded while rows were unpublished loses only broker copies of
deliveries and receipts that the store serves anyway).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
CODE = sa.String(35)
HASH = sa.String(64)


def upgrade() -> None:
    op.drop_index("ix_outbox_pending", "outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("seal", sa.Text(), nullable=True))
    op.create_index("ix_deliveries_inbox", "deliveries", ["recipient_code", "state"])
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("agency_code", CODE, sa.ForeignKey("agencies.code"), nullable=True),
        sa.Column("token_sha256", HASH, nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_credentials_token"),
        sa.CheckConstraint("role IN ('agency', 'operator', 'auditor')", name="ck_credentials_role"),
        sa.CheckConstraint("(role = 'agency') = (agency_code IS NOT NULL)", name="ck_credentials_agency"),
    )
    op.create_index("ix_credentials_agency_code", "credentials", ["agency_code"])
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("agency_code", CODE, nullable=True),
        sa.Column("credential_id", sa.String(32), nullable=True),
        sa.Column("digest", HASH, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("axis_id", HASH, nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.CheckConstraint("outcome IS NULL OR outcome IN ('accepted', 'duplicate', 'refused')",
                           name="ck_submissions_outcome"),
    )
    op.create_index("ix_submissions_agency_code", "submissions", ["agency_code"])


def downgrade() -> None:
    op.drop_index("ix_submissions_agency_code", "submissions")
    op.drop_table("submissions")
    op.drop_index("ix_credentials_agency_code", "credentials")
    op.drop_table("credentials")
    op.drop_index("ix_deliveries_inbox", "deliveries")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("seal")
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("body_ref", HASH, sa.ForeignKey("document_bodies.axis_id"), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
        sa.CheckConstraint("(body_ref IS NULL) <> (payload IS NULL)", name="ck_outbox_one_body"),
    )
    op.create_index("ix_outbox_pending", "outbox", [sa.text("priority DESC"), "id"],
                    sqlite_where=sa.text("published_at IS NULL"), postgresql_where=sa.text("published_at IS NULL"))
