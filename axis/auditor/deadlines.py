"""The legal deadline by which a recipient must confirm a document, and how late an answer came.

QĐ 28/2018 (and NĐ 30/2020, Art. 21) want the recipient to tell the sender, through the system, on the
day a document arrives that it arrived (status 01) or was registered (03). Read as working time in a
`WorkCalendar`:

- **same working day**: a document that arrives on a working day before the close of work is due at
  that day's close (one that arrives before opening, too);
- **next working day**: one that arrives after the close, or on a day off, is due at the close of the
  next working day;
- **Priority 3** (hỏa tốc): due when `urgent_hours` working hours (2 by default) have passed since it
  arrived, counted from the next opening when it arrived outside working hours;
- **Priority 4** (hỏa tốc hẹn giờ): due at the close of work on the DueDate its packet gives
  (MessageHeader/DueDate, a date without a time); with no DueDate, or one whose close comes before the
  document arrived, the same-working-day rule applies and the rule says why.

Pure: no clock, no store. Callers may rely on `deadline` always returning a due instant (aware, in the
calendar's zone) and the rule that set it in words, and on `late_by` measuring lateness both ways: on the
clock, and in working time.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from axis.auditor.calendar import WorkCalendar

URGENT_PRIORITY = 3   # edXML Priority 3, hỏa tốc
TIMED_PRIORITY = 4    # edXML Priority 4, hỏa tốc hẹn giờ


@dataclass(frozen=True)
class Rules:
    """What the overdue report judges by: the working calendar, and the urgent documents' allowance."""

    calendar: WorkCalendar
    urgent_hours: float = 2.0


@dataclass(frozen=True)
class Deadline:
    due: datetime          # aware, in the calendar's zone
    rule: str              # which rule set it, in words, for the auditor


@dataclass(frozen=True)
class Lateness:
    seconds: float         # on the clock
    working_seconds: float  # working time only (what the rules count in)


def deadline(rules: Rules, arrived: datetime, priority: int, due_date: date | None = None) -> Deadline:
    """When a document that `arrived` with this `priority` (and, for Priority 4, `due_date`) is due."""
    calendar = rules.calendar
    if priority == URGENT_PRIORITY:
        due = calendar.add_working_time(arrived, rules.urgent_hours * 3600)
        return Deadline(due, f"Priority 3: {rules.urgent_hours:g} working hours")
    if priority == TIMED_PRIORITY:
        if due_date is None:
            normal = _same_working_day(calendar, arrived)
            return Deadline(normal.due, f"Priority 4 without a DueDate: {normal.rule}")
        due = calendar.closing(due_date)
        if due <= arrived:
            normal = _same_working_day(calendar, arrived)
            return Deadline(normal.due, f"Priority 4, DueDate {due_date} before arrival: {normal.rule}")
        return Deadline(due, f"Priority 4: DueDate {due_date}")
    return _same_working_day(calendar, arrived)


def _same_working_day(calendar: WorkCalendar, arrived: datetime) -> Deadline:
    local = calendar.local(arrived)
    day = local.date()
    if calendar.is_working_day(day) and local < calendar.closing(day):
        return Deadline(calendar.closing(day), "same working day")
    return Deadline(calendar.closing(calendar.next_working_day(day)), "after hours: next working day")


def late_by(calendar: WorkCalendar, due: datetime, when: datetime) -> Lateness:
    """How far `when` comes after `due` (zero both ways when it does not)."""
    seconds = max(0.0, (when.astimezone(UTC) - due.astimezone(UTC)).total_seconds())
    return Lateness(seconds, calendar.working_seconds(due, when))
