"""Traffic statistics: what was sent, received, refused and delivered, and how fast, per agency or per day.

The documents counted are those (kind 'document', status packets excluded) that arrived in
[since, until); every figure about them follows them, however late it came:

- **sent**: documents the agency sent; **received**: deliveries to the agency (one per document and
  recipient); **delivered**: those with the recipient's delivery receipt;
- **to delivery**: delivery receipt recorded − document arrived; **to acceptance**: the recipient's
  status 03 recorded − document arrived; on the clock (not working time), median and 95th percentile
  (nearest rank: the smallest time at least 95 % of the deliveries took no longer than);
- **refused**: submissions intake refused, by refusal code, counted by when they were submitted (a
  refused submission never became a document), for the agency whose credential submitted them.

Per agency, sent and refused belong to the sender, the rest to the recipient; per day, each figure
belongs to the day (in the calendar's zone) its document arrived, or its submission was made.

Callers may rely on rows sorted by key (agency code, or ISO day), only keys with some traffic, and on
memory growing with the number of keys and of deliveries per key, not with the whole history.
"""
from __future__ import annotations

import math
import statistics
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from axis.store import DeliveryFacts, RefusedSubmission, Store

UNKNOWN = "unknown"   # a refused submission whose submitter is not known
PAGE = 1000

By = Literal["agency", "day"]


@dataclass(frozen=True)
class Durations:
    count: int
    median_seconds: float | None
    p95_seconds: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Durations:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None)
        return cls(len(ordered), statistics.median(ordered), ordered[math.ceil(0.95 * len(ordered)) - 1])

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "median_seconds": self.median_seconds, "p95_seconds": self.p95_seconds}


@dataclass(frozen=True)
class TrafficRow:
    key: str                          # an agency code, or a day (YYYY-MM-DD)
    sent: int
    received: int
    delivered: int
    refused: dict[str, int]           # refusal code (AXnnn) -> submissions
    to_delivery: Durations
    to_acceptance: Durations

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "sent": self.sent, "received": self.received, "delivered": self.delivered,
                "refused": {"total": self.refused_total, "by_code": dict(sorted(self.refused.items()))},
                "to_delivery": self.to_delivery.as_json(), "to_acceptance": self.to_acceptance.as_json()}


@dataclass
class _Tally:
    sent: int = 0
    received: int = 0
    delivered: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    to_delivery: array[float] = field(default_factory=lambda: array("d"))
    to_acceptance: array[float] = field(default_factory=lambda: array("d"))


def traffic(store: Store, *, by: By, zone: ZoneInfo, since: datetime | None = None,
            until: datetime | None = None) -> list[TrafficRow]:
    """The statistics of [since, until), one row per agency or per day (see the module docstring)."""
    if by not in ("agency", "day"):
        raise ValueError(f"statistics are by agency or by day, not {by!r}")
    tallies: dict[str, _Tally] = {}

    def tally(key: str) -> _Tally:
        return tallies.setdefault(key, _Tally())

    def day(at: datetime) -> str:
        return at.astimezone(zone).date().isoformat()

    last_document = None
    for facts in _facts(store, since, until):
        sender_key = facts.sender_code if by == "agency" else day(facts.received_at)
        recipient_key = facts.recipient_code if by == "agency" else sender_key
        if facts.axis_id != last_document:  # rows come grouped by document
            last_document = facts.axis_id
            tally(sender_key).sent += 1
        mine = tally(recipient_key)
        mine.received += 1
        if facts.delivered_at is not None:
            mine.delivered += 1
            mine.to_delivery.append((facts.delivered_at - facts.received_at).total_seconds())
        accepted = facts.statuses.get("03")
        if accepted is not None:
            mine.to_acceptance.append((accepted - facts.received_at).total_seconds())
    for refused in _refused(store, since, until):
        key = (refused.agency_code or UNKNOWN) if by == "agency" else day(refused.created_at)
        tally(key).refused[f"AX{refused.code:03d}" if refused.code is not None else UNKNOWN] += 1
    return [TrafficRow(key, t.sent, t.received, t.delivered, dict(t.refused), Durations.of(t.to_delivery),
                       Durations.of(t.to_acceptance)) for key, t in sorted(tallies.items())]


def _pages(read: Callable[[Any], list[Any]], position: Callable[[Any], Any]) -> Iterator[Any]:
    after = None
    while True:
        page = read(after)
        yield from page
        if len(page) < PAGE:
            return
        after = position(page[-1])


def _facts(store: Store, since: datetime | None, until: datetime | None) -> Iterator[DeliveryFacts]:
    return _pages(lambda after: store.delivery_facts(since=since, until=until, after=after, limit=PAGE),
                  lambda f: (f.received_at, f.axis_id, f.recipient_code))


def _refused(store: Store, since: datetime | None, until: datetime | None) -> Iterator[RefusedSubmission]:
    return _pages(lambda after: store.refused_submissions(since=since, until=until, after=after, limit=PAGE),
                  lambda s: (s.created_at, s.id))
