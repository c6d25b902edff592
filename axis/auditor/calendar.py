"""Working time: which days and hours count toward a legal deadline, in one time zone.

A `WorkCalendar` knows the working days (Monday to Friday by default, minus the holidays of a
calendar file, plus the days off that file makes working days), the working hours of each
(08:00-17:00 by default) and the time zone they are read in (Asia/Ho_Chi_Minh). It answers how much
working time lies between two instants and when a given amount of working time after an instant
runs out. It is pure: no clock, no database, no environment; only `load_calendar` reads a file, the
one it is given.

The calendar file, one entry per line (`#` starts a comment; blank lines are ignored):

    2026-04-30                 a holiday: no working hours that day
    2026-01-10 working         a working day that would otherwise be a day off (a Saturday
                               worked in exchange for a holiday, "hoán đổi ngày làm việc")

A file covers the years in which it names at least one day: a year it does not name is not known to
be free of holidays, and callers say so (`covers`).

Callers may rely on: every instant returned being an aware datetime in the calendar's zone; instants
given in any zone (aware) being compared as instants; `working_seconds(a, b)` being 0 when b <= a;
`add_working_time` starting to count at the next opening when it starts outside working hours.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SHIPPED_CALENDAR = Path(__file__).with_name("vietnam-holidays.txt")
DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar in which no working day comes within this many days is a mistake, not a calendar.
_SEARCH_DAYS = 3660
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class CalendarError(ValueError):
    """A calendar file, a time zone, working hours or a date that cannot be used; one line saying which."""


@dataclass(frozen=True)
class WorkCalendar:
    zone: ZoneInfo
    opens: time = time(8)
    closes: time = time(17)
    weekdays: frozenset[int] = frozenset(range(5))       # Monday = 0
    holidays: frozenset[date] = frozenset()
    working_days_off: frozenset[date] = frozenset()      # days off made working days (`working` lines)
    source: str = ""                                     # where the holidays come from, for messages
    years: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        if not self.opens < self.closes:
            raise CalendarError(f"working hours must open before they close, not {self.opens:%H:%M}-"
                                f"{self.closes:%H:%M}")
        if not self.weekdays and not self.working_days_off:
            raise CalendarError("a calendar needs at least one working weekday")
        both = self.holidays & self.working_days_off
        if both:
            raise CalendarError(f"{self.source or 'the calendar'}: {min(both)} is both a holiday and a working day")
        object.__setattr__(self, "years", frozenset(d.year for d in self.holidays | self.working_days_off))

    # ---- days
    def covers(self, year: int) -> bool:
        """True when the holiday list names at least one day of `year`."""
        return year in self.years

    def is_working_day(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return day in self.working_days_off or day.weekday() in self.weekdays

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        for step in range(1, _SEARCH_DAYS):
            candidate = day + timedelta(days=step)
            if self.is_working_day(candidate):
                return candidate
        raise CalendarError(f"no working day within {_SEARCH_DAYS} days after {day}: check the calendar")

    def opening(self, day: date) -> datetime:
        return datetime.combine(day, self.opens, tzinfo=self.zone)

    def closing(self, day: date) -> datetime:
        return datetime.combine(day, self.closes, tzinfo=self.zone)

    def local(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("the calendar takes aware datetimes; a naive one has no instant")
        return instant.astimezone(self.zone)

    # ---- working time
    def working_seconds(self, start: datetime, end: datetime) -> float:
        """Working time between two instants, in seconds (0 when `end` is not after `start`).

        The first and last days are measured exactly; the whole days between are counted, not walked,
        so a span of years costs no more than a span of days (each counts its working hours on the wall
        clock: a daylight-saving change inside working hours is not measured, and Vietnam has none).
        """
        start, end = self.local(start), self.local(end)
        if end <= start:
            return 0.0
        first, last = start.date(), end.date()
        total = self._overlap(first, start, end)
        if last > first:
            total += self._overlap(last, start, end)
            whole = self._working_days(first + timedelta(days=1), last - timedelta(days=1))
            day = datetime.combine(first, self.closes) - datetime.combine(first, self.opens)
            total += whole * day.total_seconds()
        return total

    def _overlap(self, day: date, start: datetime, end: datetime) -> float:
        if not self.is_working_day(day):
            return 0.0
        low, high = max(start, self.opening(day)), min(end, self.closing(day))
        return _seconds(low, high) if high > low else 0.0

    def _working_days(self, first: date, last: date) -> int:
        """How many working days there are from `first` to `last`, both included."""
        days = (last - first).days + 1
        if days <= 0:
            return 0
        weeks, rest = divmod(days, 7)
        count = weeks * len(self.weekdays) + sum(1 for i in range(rest) if (first.weekday() + i) % 7 in self.weekdays)
        count -= sum(1 for d in self.holidays if first <= d <= last and d.weekday() in self.weekdays)
        count += sum(1 for d in self.working_days_off if first <= d <= last and d.weekday() not in self.weekdays)
        return count

    def add_working_time(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of working time after `start` have passed.

        Outside working hours the count starts at the next opening; time runs out at a close exactly
        rather than at the next opening (2 hours from 15:00 is 17:00 that day, not 08:00 the next).
        """
        left = float(seconds)
        current = self.local(start)
        day = current.date()
        for _ in range(_SEARCH_DAYS):
            if self.is_working_day(day):
                low = max(current, self.opening(day))
                high = self.closing(day)
                if high > low:
                    room = _seconds(low, high)
                    if left <= room:
                        return (low.astimezone(UTC) + timedelta(seconds=left)).astimezone(self.zone)
                    left -= room
            day += timedelta(days=1)
        raise CalendarError(f"{seconds:g} working seconds after {start} do not fit in {_SEARCH_DAYS} days")


def _seconds(low: datetime, high: datetime) -> float:
    # Through UTC: Python subtracts two datetimes of the same zone as wall-clock times, which is wrong
    # across a daylight-saving change (none in Vietnam, but the zone is a setting).
    return (high.astimezone(UTC) - low.astimezone(UTC)).total_seconds()


# ---------------------------------------------------------------- reading settings and files

def parse_zone(name: str) -> ZoneInfo:
    """The zone named `name`; CalendarError when there is none (the setting's checks name the value)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"must be an IANA time zone name, e.g. {DEFAULT_ZONE}") from None


def parse_hours(text: str) -> tuple[time, time]:
    """`08:00-17:00` -> (08:00, 17:00)."""
    found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    try:
        if found is None:
            raise ValueError
        opens, closes = time(int(found[1]), int(found[2])), time(int(found[3]), int(found[4]))
    except ValueError:
        raise CalendarError("must be working hours such as 08:00-17:00") from None
    if not opens < closes:
        raise CalendarError("working hours must open before they close, e.g. 08:00-17:00")
    return opens, closes


def parse_weekdays(text: str) -> frozenset[int]:
    """`Mon-Fri`, or a list such as `Mon,Tue,Wed,Thu,Fri,Sat` -> weekday numbers (Monday = 0)."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise CalendarError("must be weekdays such as Mon-Fri or Mon,Tue,Wed,Thu,Fri,Sat")
        low, high = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        if high < low:
            raise CalendarError("a range of weekdays runs forward, e.g. Mon-Fri")
        days.update(range(low, high + 1))
    return frozenset(days)


def parse_calendar(lines: Iterable[str], source: str) -> tuple[frozenset[date], frozenset[date]]:
    """(holidays, working days off) of a calendar file's lines; CalendarError naming `source:line`."""
    holidays: set[date] = set()
    working: set[date] = set()
    for number, line in enumerate(lines, 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        parts = content.split()
        try:
            if not _ISO_DATE.fullmatch(parts[0]) or parts[1:] not in ([], ["working"]):
                raise ValueError
            day = date.fromisoformat(parts[0])
        except ValueError:
            raise CalendarError(f"{source}:{number}: {content[:60]!r} is not a date (YYYY-MM-DD), optionally "
                                "followed by the word 'working'") from None
        (working if parts[1:] else holidays).add(day)
    return frozenset(holidays), frozenset(working)


def load_calendar(path: Path, *, zone: str = DEFAULT_ZONE, hours: str = "08:00-17:00",
                  weekdays: str = "Mon-Fri") -> WorkCalendar:
    """The calendar of the file `path` with these settings; CalendarError (one line) if any is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"cannot read the holiday calendar {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CalendarError(f"the holiday calendar {path} is not UTF-8 text") from None
    holidays, working = parse_calendar(text.splitlines(), str(path))
    opens, closes = parse_hours(hours)
    return WorkCalendar(zone=parse_zone(zone), opens=opens, closes=closes, weekdays=parse_weekdays(weekdays),
                        holidays=holidays, working_days_off=working, source=str(path))


def parse_instant(text: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    """An instant as an auditor types it: `2026-02-13` (the start of that day in `zone`, or with
    `end_of_day` the start of the next), `2026-02-13T16:30` (in `zone`) or with an offset (`…Z`, `…+07:00`).

    CalendarError (one line) for anything else.
    """
    text = text.strip()
    try:
        if _ISO_DATE.fullmatch(text):
            day = date.fromisoformat(text) + timedelta(days=1 if end_of_day else 0)
            value = datetime.combine(day, time(0), tzinfo=zone)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?", text):
            value = datetime.fromisoformat(text)
            value = value.replace(tzinfo=zone) if value.tzinfo is None else value
        else:
            raise ValueError
        value.astimezone(UTC).astimezone(zone)  # the store and the reports read it in both
    except (ValueError, OverflowError):
        raise CalendarError(f"{text[:40]!r} is not a date (2026-02-13) or a date and time (2026-02-13T16:30, "
                            "optionally with Z or +07:00)") from None
    return value
