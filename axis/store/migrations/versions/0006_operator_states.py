"""operator states: deliveries `parked`, certificates `withdrawn`, agency aliases

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

- A delivery its recipient could not take is `parked` (not terminal) until an
  operator replays it (`axis dlq replay`, back to `queued`) or purges it (only
  then `failed`): the state a document shows never contradicts its timeline.
- An operator withdraws an agency's certificate (`axis cert withdraw`):
  `withdrawn`, beside the CA's `revoked`.
- `agency_aliases`: after `axis agency rename OLD NEW`, documents addressed to
  OLD are routed to NEW until `until`; the history keeps OLD.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
CODE = sa.String(35)
OLD_DELIVERY_STATES = ("queued", "published", "delivered", "arrived", "accepted", "assigned", "processing",
                       "done", "refused", "failed", "recalled")
DELIVERY_STATES = (*OLD_DELIVERY_STATES, "parked")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _check(table: str, name: str, condition: str) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode rebuilds the table (nothing references these two).
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(name, type_="check")
        batch.create_check_constraint(name, condition)


def upgrade() -> None:
    _check("deliveries", "ck_deliveries_state", _in("state", DELIVERY_STATES))
    _check("agency_certificates", "ck_agency_certificates_state",
           _in("state", ("active", "revoked", "withdrawn")))
    op.create_table(
        "agency_aliases",
        sa.Column("old_code", CODE, nullable=False),
        sa.Column("new_code", CODE, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("until", TS, nullable=False),
        sa.ForeignKeyConstraint(["old_code"], ["agencies.code"]),
        sa.ForeignKeyConstraint(["new_code"], ["agencies.code"]),
        sa.PrimaryKeyConstraint("old_code"),
    )
    op.create_index("ix_agency_aliases_new_code", "agency_aliases", ["new_code"])


def downgrade() -> None:
    op.drop_index("ix_agency_aliases_new_code", "agency_aliases")
    op.drop_table("agency_aliases")
    op.execute("UPDATE agency_certificates SET state = 'revoked' WHERE state = 'withdrawn'")
    _check("agency_certificates", "ck_agency_certificates_state", _in("state", ("active", "revoked")))
    op.execute("UPDATE deliveries SET state = 'failed' WHERE state = 'parked'")
    _check("deliveries", "ck_deliveries_state", _in("state", OLD_DELIVERY_STATES))
