"""log seals: each unit of work's entries sealed by its writer's log key, certified by the axis key

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A hash chain and signed checkpoints show that entries were changed, removed
or inserted, but not that an entry appended after the newest checkpoint was
written by Axis: anyone who can write the table can compute its hash. Each
writing process now holds an Ed25519 log key, certified by the axis key and
kept only in its memory, and seals the entries of every unit of work it
commits (axis/audit/logkeys.py). Entries written before this revision carry
no seal; the verifier accepts unsealed entries only before the first sealed
one, and only those a migration wrote ("adopted").
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
HASH = sa.String(64)


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("sealed_from", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("seal_key", HASH, nullable=True))
    op.add_column("audit_log", sa.Column("seal", sa.LargeBinary(), nullable=True))
    op.create_table(
        "audit_log_keys",
        sa.Column("key_id", HASH, nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("writer", sa.String(255), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signer", HASH, nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER audit_log_keys_no_update_delete BEFORE UPDATE OR DELETE ON audit_log_keys "
                   "FOR EACH ROW EXECUTE FUNCTION axis_append_only()")
        op.execute("CREATE TRIGGER audit_log_keys_no_truncate BEFORE TRUNCATE ON audit_log_keys "
                   "FOR EACH STATEMENT EXECUTE FUNCTION axis_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"CREATE TRIGGER audit_log_keys_no_{verb} BEFORE {verb.upper()} ON audit_log_keys "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log_keys is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_keys_no_update_delete ON audit_log_keys")
        op.execute("DROP TRIGGER IF EXISTS audit_log_keys_no_truncate ON audit_log_keys")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_log_keys_no_{verb}")
    op.drop_table("audit_log_keys")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("seal")
        batch.drop_column("seal_key")
        batch.drop_column("sealed_from")
