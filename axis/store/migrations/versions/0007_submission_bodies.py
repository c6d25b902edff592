"""submission bodies: a large queued submission's bytes wait in the store, not on the broker

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

The intake message of a submission over AXIS_INLINE_BODY_BYTES carries no body
(header `ax-body: store`); the hub reads it from `submission_bodies` and
removes the row once the submission is decided.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "submission_bodies",
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("submission_id"),
    )


def downgrade() -> None:
    op.drop_table("submission_bodies")
