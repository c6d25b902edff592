"""The overdue report: each (document, recipient) whose recipient did not answer within the legal deadline.

For every delivery of a document (kind 'document') that arrived before `as_of`, the recipient's first
answer recorded by `as_of` is looked up:

- **confirmed**: a status 01, 03, 04, 05 or 06 from the recipient (any status that moves the delivery
  to `arrived` or beyond: a recipient may skip 01 and 03);
- **refused**: a status 02 (the document returned to its sender); it stops the clock like a
  confirmation does;
- **recalled**: the sender's recall request (13) or the recipient's agreement to it (15): the sender
  withdrew the document, so nothing more is owed.

When the delivery's state says it was answered but no such receipt exists (a database written by
other means), the time the state last changed stands in for the answer's, and the row says so. A
delivery is **overdue** when its first answer came after the deadline (`axis.auditor.deadlines`), or
when there is none and `as_of` is past the deadline. Receipts recorded after `as_of` are not seen, so a
report as of a past instant shows the record as it stood then (the `current_state` column excepted).

Callers may rely on rows coming in (arrival, axis id, recipient) order, one per overdue delivery, read
from the store page by page (constant memory), and on `warnings` naming every year between the first
arrival and `as_of` that the holiday calendar does not cover (in such a year every working weekday
counts, holidays included).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from axis.auditor.calendar import SHIPPED_CALENDAR, WorkCalendar, load_calendar
from axis.auditor.deadlines import TIMED_PRIORITY, Rules, deadline, late_by
from axis.edxml.due_date import read_due_date
from axis.settings import Settings
from axis.store import DeliveryFacts, DeliveryState, Store
from axis.store.states import RANK, state_for_status

CONFIRMED, REFUSED, RECALLED, NO_ANSWER = "confirmed", "refused", "recalled", "none"
PAGE = 500
_STATE_ANSWERS = {DeliveryState.REFUSED.value: REFUSED, DeliveryState.RECALLED.value: RECALLED}

Cursor = tuple[datetime, str, str]   # (arrival, axis id, recipient) of the last row seen


@dataclass(frozen=True)
class OverdueRow:
    axis_id: str
    document_id: str
    sender: str
    recipient: str
    priority: int
    arrived_at: datetime          # in the calendar's zone, as every time of a row
    due_at: datetime
    rule: str                     # the deadline's rule, in words
    answer: str                   # confirmed | refused | recalled | none
    answer_code: str | None       # the status code of the answer ("01", ...); None when none, or from the state
    answered_at: datetime | None
    late_seconds: float           # after the deadline, on the clock: until the answer, or until as_of
    late_working_seconds: float   # the same in working time
    current_state: str            # the delivery's state when the report ran

    @property
    def cursor(self) -> Cursor:
        return (self.arrived_at, self.axis_id, self.recipient)

    def as_json(self) -> dict[str, Any]:
        return {"axis_id": self.axis_id, "document_id": self.document_id, "sender": self.sender,
                "recipient": self.recipient, "priority": self.priority, "arrived_at": self.arrived_at.isoformat(),
                "due_at": self.due_at.isoformat(), "rule": self.rule, "answer": self.answer,
                "answer_code": self.answer_code,
                "answered_at": self.answered_at.isoformat() if self.answered_at else None,
                "late_seconds": round(self.late_seconds), "late_working_seconds": round(self.late_working_seconds),
                "current_state": self.current_state}


def calendar_json(calendar: WorkCalendar) -> dict[str, Any]:
    """Which holiday calendar judged a report: its file's name (not the path: the gateway serves it) and years."""
    return {"source": Path(calendar.source).name if calendar.source else None, "years": sorted(calendar.years)}


def load_rules(settings: Settings) -> Rules:
    """The rules the settings name (AXIS_DEADLINE_*); CalendarError (one line) when one cannot be used."""
    calendar = load_calendar(settings.deadline_calendar or SHIPPED_CALENDAR, zone=settings.deadline_time_zone,
                             hours=settings.deadline_working_hours, weekdays=settings.deadline_working_days)
    return Rules(calendar, urgent_hours=settings.deadline_urgent_hours)


def answer_kind(code: str) -> str | None:
    """What a status code says about a delivery's deadline: CONFIRMED, REFUSED, RECALLED, or None (16, unknown)."""
    if code == "13":
        return RECALLED
    try:
        state = state_for_status(code)
    except ValueError:
        return None
    if state is None:
        return None
    if state.value in _STATE_ANSWERS:
        return _STATE_ANSWERS[state.value]
    return CONFIRMED if RANK[state] >= RANK[DeliveryState.ARRIVED] else None


def first_answer(facts: DeliveryFacts, as_of: datetime) -> tuple[str, str | None, datetime] | None:
    """(kind, status code or None, when) of the recipient's first answer recorded by `as_of`; None if none."""
    answers: list[tuple[datetime, str | None, str]] = [
        (at, code, kind) for code, at in facts.statuses.items() if at <= as_of and (kind := answer_kind(code))]
    if not answers and facts.updated_at <= as_of:
        # The state says more than the receipts do: take the time it last changed (the latest the answer can be).
        state = DeliveryState(facts.state)
        kind = _STATE_ANSWERS.get(state.value) or (
            CONFIRMED if state in RANK and RANK[state] >= RANK[DeliveryState.ARRIVED] else None)
        if kind is not None:
            answers.append((facts.updated_at, None, kind))
    if not answers:
        return None
    at, code, kind = min(answers, key=lambda a: (a[0], a[1] or ""))
    return kind, code, at


def judge(rules: Rules, facts: DeliveryFacts, as_of: datetime, due_date: date | None = None) -> OverdueRow | None:
    """The row of this delivery if it is overdue as of `as_of`, else None."""
    calendar = rules.calendar
    due = deadline(rules, facts.received_at, facts.priority, due_date)
    answer = first_answer(facts, as_of)
    until = answer[2] if answer is not None else as_of
    if until <= due.due:
        return None
    late = late_by(calendar, due.due, until)
    kind, code, answered_at = answer if answer is not None else (NO_ANSWER, None, None)
    rule = due.rule if answer is None or code is not None else f"{due.rule}; answer time from the delivery state"
    return OverdueRow(axis_id=facts.axis_id, document_id=facts.document_id, sender=facts.sender_code,
                      recipient=facts.recipient_code, priority=facts.priority,
                      arrived_at=calendar.local(facts.received_at), due_at=due.due, rule=rule, answer=kind,
                      answer_code=code, answered_at=calendar.local(answered_at) if answered_at else None,
                      late_seconds=late.seconds, late_working_seconds=late.working_seconds,
                      current_state=facts.state)


class OverdueReport:
    """The overdue deliveries of `store` as of `as_of`, judged by `rules`."""

    def __init__(self, store: Store, rules: Rules, as_of: datetime) -> None:
        if as_of.tzinfo is None:
            raise ValueError("as_of must be an aware datetime")
        self.store, self.rules, self.as_of = store, rules, as_of
        self.warnings = self._coverage()

    def _coverage(self) -> list[str]:
        calendar = self.rules.calendar
        first = self.store.first_arrival()
        last_year = calendar.local(self.as_of).year
        first_year = min(calendar.local(first).year, last_year) if first is not None else last_year
        missing = [year for year in range(first_year, last_year + 1) if not calendar.covers(year)]
        if not missing:
            return []
        years = ", ".join(str(y) for y in missing)
        known = ", ".join(str(y) for y in sorted(calendar.years)) or "none"
        name = Path(calendar.source).name if calendar.source else "in use"
        return [f"the holiday calendar {name} does not cover {years} (it covers {known}): "
                "deadlines there count every working weekday, holidays included; add that year's days "
                "(docs/auditor-guide.md)"]

    def rows(self, after: Cursor | None = None) -> Iterator[OverdueRow]:
        """The overdue deliveries after `after` (a row's `cursor`), oldest arrival first."""
        position = after
        due_dates: dict[str, date | None] = {}
        while True:
            page = self.store.delivery_facts(until=self.as_of, receipts_until=self.as_of, after=position, limit=PAGE)
            for facts in page:
                due_date = None
                if facts.priority == TIMED_PRIORITY:
                    if facts.axis_id not in due_dates:
                        due_dates.clear()  # rows come grouped by document: remember only the current one
                        due_dates[facts.axis_id] = read_due_date(self.store.document_body_pieces(facts.axis_id))
                    due_date = due_dates[facts.axis_id]
                row = judge(self.rules, facts, self.as_of, due_date)
                if row is not None:
                    yield row
            if len(page) < PAGE:
                return
            last = page[-1]
            position = (last.received_at, last.axis_id, last.recipient_code)
