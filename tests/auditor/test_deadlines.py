"""The pure parts: working time (axis/auditor/calendar.py), the deadline rules (deadlines.py), the
shipped 2026 calendar, and reading a DueDate from the first bytes of a real packet (axis/edxml/due_date.py)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from axis.auditor.calendar import (
    SHIPPED_CALENDAR,
    CalendarError,
    WorkCalendar,
    load_calendar,
    parse_calendar,
    parse_instant,
    parse_weekdays,
)
from axis.auditor.deadlines import Rules, deadline, late_by
from axis.edxml import Attachment, Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document
from axis.edxml.due_date import read_due_date

ICT = timezone(timedelta(hours=7))
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# Thursday 12 March 2026 a holiday; Saturday 14 March a working day in exchange.
CALENDAR = WorkCalendar(zone=ZONE, holidays=frozenset({date(2026, 3, 12)}),
                        working_days_off=frozenset({date(2026, 3, 14)}))
RULES = Rules(CALENDAR)


def ict(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=ICT)


@pytest.mark.parametrize(("arrived", "priority", "due", "rule"), [
    (ict(11, 16, 30), 0, ict(11, 17), "same working day"),            # the eve of the holiday, within hours
    (ict(11, 7, 45), 0, ict(11, 17), "same working day"),             # before opening: that day still
    (ict(11, 17), 0, ict(13, 17), "after hours: next working day"),   # at the close: the holiday is skipped
    (ict(12, 10), 0, ict(13, 17), "after hours: next working day"),   # on the holiday
    (ict(13, 18), 0, ict(14, 17), "after hours: next working day"),   # Friday evening: the worked Saturday
    (ict(14, 18), 0, ict(16, 17), "after hours: next working day"),   # Saturday evening: Monday
    (ict(11, 16, 30), 3, ict(13, 9, 30), "Priority 3: 2 working hours"),  # 30 min Wed, 90 min Fri
    (ict(11, 15), 3, ict(11, 17), "Priority 3: 2 working hours"),     # runs out at the close, not next morning
    (ict(12, 23), 3, ict(13, 10), "Priority 3: 2 working hours"),     # counted from Friday's opening
    (ict(9, 9), 4, ict(13, 17), "Priority 4: DueDate 2026-03-13"),
])
def test_deadlines(arrived: datetime, priority: int, due: datetime, rule: str) -> None:
    found = deadline(RULES, arrived, priority, date(2026, 3, 13) if priority == 4 else None)
    assert (found.due, found.rule) == (due, rule)
    assert found.due.tzinfo is ZONE


def test_a_timed_document_without_a_usable_due_date_takes_the_normal_rule() -> None:
    assert deadline(RULES, ict(9, 9), 4).rule == "Priority 4 without a DueDate: same working day"
    late = deadline(RULES, ict(13, 18), 4, date(2026, 3, 13))  # its DueDate closed before it arrived
    assert (late.due, late.rule) == (ict(14, 17), "Priority 4, DueDate 2026-03-13 before arrival: after hours: "
                                                  "next working day")


def test_working_time_between_two_instants() -> None:
    # Wed 17:00 -> Mon 10:00: none on the holiday, 9 h Friday, 9 h on the worked Saturday, 2 h Monday.
    assert CALENDAR.working_seconds(ict(11, 17), ict(16, 10)) == 20 * 3600
    assert CALENDAR.working_seconds(ict(16, 10), ict(11, 17)) == 0
    late = late_by(CALENDAR, ict(11, 17), ict(13, 8, 15))
    assert (late.seconds, late.working_seconds) == (39 * 3600 + 15 * 60, 15 * 60)
    assert late_by(CALENDAR, ict(13, 8), ict(12, 8)) == late_by(CALENDAR, ict(13, 8), ict(13, 8))


def _walked(calendar: WorkCalendar, start: datetime, end: datetime) -> float:
    """Working time by its definition: every day walked, its working hours intersected with [start, end]."""
    total, day = 0.0, start.astimezone(ZONE).date()
    while day <= end.astimezone(ZONE).date():
        if calendar.is_working_day(day):
            low, high = max(start, calendar.opening(day)), min(end, calendar.closing(day))
            total += max(0.0, (high - low).total_seconds())
        day += timedelta(days=1)
    return total


def test_counting_whole_days_agrees_with_walking_them() -> None:
    calendar = load_calendar(SHIPPED_CALENDAR)  # 13 holidays and 2 worked Saturdays in 2026
    first = datetime(2025, 12, 20, 6, 40, tzinfo=ICT)
    for step in range(0, 400 * 24, 37):  # starts every 37 hours over the year, at every time of day
        start = first + timedelta(hours=step)
        for span in (1, 5, 29, 77, 200, 2000, 9000):
            end = start + timedelta(hours=span, minutes=step % 60)
            assert calendar.working_seconds(start, end) == _walked(calendar, start, end), (start, end)


def test_a_span_of_centuries_is_counted_not_walked() -> None:
    far = datetime(9000, 1, 1, tzinfo=ICT)
    assert CALENDAR.working_seconds(ict(16, 8), far) > 0  # returns at once: no day-by-day walk to year 9000


def test_add_working_time_is_the_inverse_of_working_seconds() -> None:
    start = ict(10, 13, 17)
    for hours in (0.5, 3.75, 9, 10, 27.25):
        end = CALENDAR.add_working_time(start, hours * 3600)
        assert CALENDAR.working_seconds(start, end) == pytest.approx(hours * 3600)


def test_the_shipped_calendar_for_2026() -> None:
    calendar = load_calendar(SHIPPED_CALENDAR)
    assert calendar.years == {2026} and calendar.covers(2026) and not calendar.covers(2027)
    holidays = sorted(calendar.holidays)
    # Tết Dương lịch 2; Tết Nguyên đán 5 weekdays; Giỗ Tổ (made up on Monday) 1; 30/4 and 1/5; Quốc khánh 3.
    assert len(holidays) == 13 and all(day.weekday() < 5 for day in holidays)
    assert {date(2026, 1, 1), date(2026, 2, 16), date(2026, 2, 20), date(2026, 4, 27), date(2026, 4, 30),
            date(2026, 5, 1), date(2026, 9, 2)} <= calendar.holidays
    assert calendar.working_days_off == {date(2026, 1, 10), date(2026, 8, 22)}
    assert all(day.weekday() == 5 for day in calendar.working_days_off)
    # A document arriving on Friday 13 February after hours is due at the close of Monday 23 February.
    due = deadline(Rules(calendar), datetime(2026, 2, 13, 17, 30, tzinfo=ICT), 0)
    assert due.due == datetime(2026, 2, 23, 17, tzinfo=ICT)


def test_calendar_files_and_settings_are_checked() -> None:
    holidays, working = parse_calendar(["# comment", "", "2026-03-12  # Thursday", "2026-03-14 working"], "f")
    assert holidays == {date(2026, 3, 12)} and working == {date(2026, 3, 14)}
    for line in ("2026-3-12", "12/03/2026", "2026-03-12 off", "2026-02-30"):
        with pytest.raises(CalendarError, match=r"^f:2: .* is not a date"):
            parse_calendar(["2026-01-01", line], "f")
    with pytest.raises(CalendarError, match="both a holiday and a working day"):
        both = frozenset({date(2026, 3, 14)})
        WorkCalendar(zone=ZONE, holidays=both, working_days_off=both)
    with pytest.raises(CalendarError, match="open before they close"):
        WorkCalendar(zone=ZONE, opens=time(17), closes=time(8))
    assert parse_weekdays("Mon-Fri") == set(range(5)) and parse_weekdays("mon,Wed-Fri, sat") == {0, 2, 3, 4, 5}
    for text in ("Fri-Mon", "Monday", ""):
        with pytest.raises(CalendarError):
            parse_weekdays(text)
    with pytest.raises(CalendarError, match="cannot read the holiday calendar"):
        load_calendar(Path("/nonexistent/calendar.txt"))


def test_instants_as_an_auditor_types_them() -> None:
    assert parse_instant("2026-03-16", ZONE) == datetime(2026, 3, 16, tzinfo=ZONE)
    assert parse_instant("2026-03-16", ZONE, end_of_day=True) == datetime(2026, 3, 17, tzinfo=ZONE)
    assert parse_instant("2026-03-16T10:00", ZONE) == ict(16, 10)
    assert parse_instant("2026-03-16 03:00Z", ZONE) == ict(16, 10)
    assert parse_instant("2026-03-16T10:00:00+07:00", ZONE) == ict(16, 10)
    for text in ("16/03/2026", "2026-03-16T25:00", "now", "2026-03-16T10", "0001-01-01T00:00+14:00"):
        with pytest.raises(CalendarError, match="is not a date"):
            parse_instant(text, ZONE)
    with pytest.raises(CalendarError, match="is not a date"):
        parse_instant("9999-12-31", ZONE, end_of_day=True)  # its end is past the last day Python knows


def _packet(due_date: date | None, attachment_size: int = 0) -> bytes:
    packet = new_document(Organization("000.00.00.G22"), [Organization("000.00.00.H41")], code_number="7",
                          code_notation="VPCP-TTĐT", subject="Hẹn giờ", signer=SignerInfo(full_name="Nguyễn Văn A"),
                          priority=4, attachments=[Attachment(content_id="cid:1", attachment_name="a.pdf",
                                                              content_type="application/pdf",
                                                              data=b"%PDF" * (attachment_size // 4))])
    return packet_to_bytes(dataclasses.replace(packet, header=dataclasses.replace(packet.header, due_date=due_date)))


def _pieces(data: bytes, size: int, taken: list[int]) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        taken.append(start)
        yield data[start:start + size]


def test_a_due_date_is_read_from_the_first_bytes_only() -> None:
    data = _packet(date(2026, 3, 13), attachment_size=4 * 1024 * 1024)
    taken: list[int] = []
    assert read_due_date(_pieces(data, 64 * 1024, taken)) == date(2026, 3, 13)
    assert len(taken) == 1  # the header is in the first piece: the 4 MB attachment is never read
    assert read_due_date(_pieces(data, 7, [])) == date(2026, 3, 13)  # a tag split across pieces
    taken.clear()
    assert read_due_date(_pieces(_packet(None, attachment_size=1024 * 1024), 64 * 1024, taken)) is None
    assert len(taken) == 1  # MessageHeader ended without one: no further reading
    assert read_due_date([b"not xml at all"]) is None
    assert read_due_date([b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>']) is None
