"""The registry's reads for a catalogue import and `axis agency show`.

`RegistryReads` is mixed into `Store`; each read runs on a connection of its own. The bulk lookups
take any number of codes or fingerprints (asked in chunks), so an import of a country's catalogue
checks it against the registry in a few queries rather than one per row.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from axis.store.records import Agency, AgencyAlias, Certificate
from axis.store.schema import agencies, agency_aliases, credentials, deliveries, documents
from axis.store.schema import certificates as certificates_t

_CHUNK = 5_000  # codes per IN (...) list (SQLite allows 32766 variables)


@dataclass(frozen=True, slots=True)
class AgencyProfile:
    """An agency as `axis agency show` tells it."""
    agency: Agency
    parent: Agency | None
    children: int
    certificates: tuple[Certificate, ...]
    aliases: tuple[AgencyAlias, ...]        # renamed to this code, or from it
    credentials: int                        # not revoked
    sent: dict[str, int]                    # documents it sent, by kind ('document', 'status')
    received: dict[str, int]                # deliveries to it, by state


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


class RegistryReads:
    """Needs the `engine` of `Store`."""

    engine: sa.Engine

    @contextmanager
    def _registry_reading(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def agencies_by_code(self, codes: Iterable[str]) -> dict[str, Agency]:
        """The registered agencies among `codes` (unknown codes are absent)."""
        found: dict[str, Agency] = {}
        with self._registry_reading() as c:
            for part in _chunks(sorted(set(codes))):
                for row in c.execute(sa.select(agencies).where(agencies.c.code.in_(part))):
                    found[row.code] = Agency(**row._mapping)
        return found

    def certificate_owners(self, fingerprints: Iterable[str]) -> dict[str, tuple[str, str]]:
        """{fingerprint: (agency code, state)} for the registered certificates among `fingerprints`."""
        found: dict[str, tuple[str, str]] = {}
        with self._registry_reading() as c:
            for part in _chunks(sorted({f.lower() for f in fingerprints})):
                q = sa.select(certificates_t.c.fingerprint, certificates_t.c.agency_code,
                              certificates_t.c.state).where(certificates_t.c.fingerprint.in_(part))
                found.update((fp, (code, state)) for fp, code, state in c.execute(q))
        return found

    def agency_profile(self, code: str) -> AgencyProfile | None:
        """Everything `axis agency show` prints about `code`, read in one transaction; None if unknown."""
        with self._registry_reading() as c, c.begin():
            row = c.execute(sa.select(agencies).where(agencies.c.code == code)).first()
            if row is None:
                return None
            agency = Agency(**row._mapping)
            parent_row = (c.execute(sa.select(agencies).where(agencies.c.code == agency.parent_code)).first()
                          if agency.parent_code else None)
            children = c.execute(sa.select(sa.func.count()).select_from(agencies).where(
                agencies.c.parent_code == code)).scalar_one()
            certs = tuple(Certificate(**r._mapping) for r in c.execute(
                sa.select(certificates_t).where(certificates_t.c.agency_code == code).order_by(certificates_t.c.id)))
            aliases = tuple(AgencyAlias(**r._mapping) for r in c.execute(
                sa.select(agency_aliases).where(sa.or_(agency_aliases.c.old_code == code,
                                                       agency_aliases.c.new_code == code))
                .order_by(agency_aliases.c.created_at)))
            live = c.execute(sa.select(sa.func.count()).select_from(credentials).where(
                credentials.c.agency_code == code, credentials.c.revoked_at.is_(None))).scalar_one()
            sent = _counts(c, sa.select(documents.c.kind, sa.func.count()).where(
                documents.c.sender_code == code).group_by(documents.c.kind))
            received = _counts(c, sa.select(deliveries.c.state, sa.func.count()).where(
                deliveries.c.recipient_code == code).group_by(deliveries.c.state))
        return AgencyProfile(agency, Agency(**parent_row._mapping) if parent_row is not None else None, children,
                             certs, aliases, live, sent, received)


def _counts(c: sa.Connection, q: Any) -> dict[str, int]:
    return {str(key): int(n) for key, n in c.execute(q)}
