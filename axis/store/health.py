"""The store's reads behind `axis doctor` (axis/health.py): when agencies lose their last certificate, and
the database server's clock.

Plain functions of a `Store`, read-only, one short query each.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa

from axis.store.schema import agencies, certificates
from axis.store.store import Store


def certificates_ending(store: Store, before: datetime, limit: int = 20) -> tuple[int, list[tuple[str, datetime]]]:
    """Active agencies whose last active certificate ends before `before`: (how many, the first `limit` of them
    as (code, notAfter), soonest first). An agency with a newer certificate beside an ending one (a rotation
    under way) is not among them; an agency with no active certificate at all is not either (it is not
    losing one)."""
    last = sa.func.max(certificates.c.not_after).label("last")
    ending = (sa.select(certificates.c.agency_code, last)
              .join(agencies, agencies.c.code == certificates.c.agency_code)
              .where(certificates.c.state == "active", agencies.c.state == "active")
              .group_by(certificates.c.agency_code)
              .having(last < before)).subquery()
    with store.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(ending)).scalar_one()
        rows = conn.execute(sa.select(ending.c.agency_code, ending.c.last)
                            .order_by(ending.c.last, ending.c.agency_code).limit(limit)).all()
    return int(count), [(code, _aware(value)) for code, value in rows]


def server_clock(store: Store) -> tuple[float, float] | None:
    """(the database server's clock minus this machine's, in seconds; the uncertainty of that figure: half the
    round trip) — PostgreSQL only; None for SQLite, which runs in this process on this machine's clock."""
    if store.dialect != "postgresql":
        return None
    with store.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))  # connected and warm: the round trip below is the query's alone
        sent = time.time()
        server = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        received = time.time()
    return server.timestamp() - (sent + received) / 2, (received - sent) / 2


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite may give an aggregate of a DateTime column back as text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
