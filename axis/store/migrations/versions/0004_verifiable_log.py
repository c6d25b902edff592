"""the verifiable log: row bindings in audit entries, signed checkpoints, timestamp tokens, signer certificates

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Audit entries now bind the digest of every evidence row their unit of work
wrote (`audit_log.bound`, axis/store/bindings.py), and the log is anchored by
signed, timestamped checkpoints of its Merkle tree. The unused checkpoint table
of 0001 (nothing ever wrote it) is replaced.

A database in use has rows that no entry binds yet: this migration appends
"adopted" entries binding each of them as it stands now, so the verifier can
tell a row changed after the upgrade from one that was there before; nothing
can prove what those rows were before the upgrade. This is the one migration
that imports Axis code (the chain's hash and the row digest), because the
entries it writes must verify with exactly that code.
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
HASH = sa.String(64)
_NEW_GUARDED = ("audit_checkpoints", "audit_timestamps", "audit_signers")
_ADOPTED_PER_ENTRY = 500


def _guard(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION axis_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION axis_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")


def _unguard(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("bound", sa.JSON(), nullable=True))
    _unguard("audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", HASH, nullable=False),
        sa.Column("head_hash", HASH, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signer", HASH, nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "audit_timestamps",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("tsa", sa.String(500), nullable=False),
        sa.Column("stamped_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["size"], ["audit_checkpoints.size"]),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "audit_signers",
        sa.Column("fingerprint", HASH, nullable=False),
        sa.Column("certificates", sa.Text(), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    for table in _NEW_GUARDED:
        _guard(table)
    _adopt_existing_rows()


def _adopt_existing_rows() -> None:
    from axis.store import audit as chain
    from axis.store.bindings import BINDINGS, row_digest, row_key
    from axis.store.schema import audit_log, metadata

    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x4158_4953_4155_4454})
    head = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc())
                        .limit(1)).first()
    seq, prev = (head[0], head[1]) if head else (0, chain.GENESIS_HASH)
    at = datetime.now(UTC)
    existing = set(sa.inspect(conn).get_table_names())
    for name in BINDINGS:
        if name not in existing:  # bound by a later revision that creates it (agency_aliases: 0006)
            continue
        table = metadata.tables[name]
        q = sa.select(table)
        if name == "submissions":
            q = q.where(table.c.outcome.is_not(None))
        facts: list[list[str | None]] = []
        for row in conn.execute(q.order_by(*table.primary_key.columns)):
            found = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row._mapping.items()}
            facts.append([name, row_key(name, found), row_digest(name, found)])
        for start in range(0, len(facts), _ADOPTED_PER_ENTRY):
            seq += 1
            data = {"table": name, "revision": revision}
            bound = facts[start:start + _ADOPTED_PER_ENTRY]
            body = chain.entry_body(seq, at, "migration", "adopted", None, data, prev, bound)
            digest = chain.entry_hash(prev, body)
            conn.execute(sa.insert(audit_log).values(seq=seq, at=at, actor="migration", action="adopted",
                                                     subject=None, data=data, prev_hash=prev, hash=digest,
                                                     bound=bound))
            prev = digest


def downgrade() -> None:
    for table in _NEW_GUARDED:
        _unguard(table)
    op.drop_table("audit_timestamps")
    op.drop_table("audit_signers")
    op.drop_table("audit_checkpoints")
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", HASH, nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    _guard("audit_checkpoints")
    _unguard("audit_log")  # SQLite rebuilds the table to drop a column, and its triggers with it
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("bound")
    _guard("audit_log")
