"""What counts as an answer, one delivery at a time (`axis.auditor.overdue.judge`): the cases the scenario
of test_reports.py does not reach. The document arrives Monday 9 March 2026 at 10:00 and is due at 17:00."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from axis.auditor.calendar import WorkCalendar
from axis.auditor.deadlines import Rules
from axis.auditor.overdue import judge
from axis.store import DeliveryFacts

ICT = timezone(timedelta(hours=7))
RULES = Rules(WorkCalendar(zone=ZoneInfo("Asia/Ho_Chi_Minh")))
AS_OF = datetime(2026, 3, 10, 12, tzinfo=ICT)   # Tuesday noon: 19 h, 4 working hours after the deadline


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=ICT)


def facts(statuses: dict[str, datetime], state: str = "delivered", updated_at: datetime | None = None) -> DeliveryFacts:
    return DeliveryFacts(axis_id="ax-1", document_id="1/VPCP", sender_code="000.00.00.G22",
                         recipient_code="000.00.00.H41", priority=0, received_at=at(9, 10), state=state,
                         updated_at=updated_at or at(9, 11), delivered_at=at(9, 11), statuses=statuses)


def test_a_refusal_in_time_stops_the_clock_and_a_late_one_is_late() -> None:
    assert judge(RULES, facts({"02": at(9, 16)}, "refused"), AS_OF) is None
    late = judge(RULES, facts({"02": at(10, 9)}, "refused"), AS_OF)
    assert late is not None
    assert (late.answer, late.answer_code, late.late_seconds, late.late_working_seconds) == ("refused", "02", 16 * 3600,
                                                                                             3600)


def test_a_recall_stops_the_clock_and_16_is_no_answer() -> None:
    assert judge(RULES, facts({"13": at(9, 15)}), AS_OF) is None          # the sender's request
    assert judge(RULES, facts({"15": at(9, 16)}, "recalled"), AS_OF) is None
    open_row = judge(RULES, facts({"16": at(9, 12)}), AS_OF)               # refusing a recall confirms nothing
    assert open_row is not None and (open_row.answer, open_row.late_seconds) == ("none", 19 * 3600)


def test_the_first_answer_counts_and_later_statuses_confirm_too() -> None:
    row = judge(RULES, facts({"05": at(10, 8), "06": at(10, 9)}, "done"), AS_OF)  # 01 and 03 skipped
    assert row is not None and (row.answer, row.answer_code, row.answered_at) == ("confirmed", "05", at(10, 8))
    assert judge(RULES, facts({"01": at(9, 16), "02": at(10, 9)}, "refused"), AS_OF) is None


def test_answers_after_as_of_are_not_seen() -> None:
    row = judge(RULES, facts({"01": at(10, 13)}, "arrived", updated_at=at(10, 13)), AS_OF)
    assert row is not None and (row.answer, row.answered_at, row.current_state) == ("none", None, "arrived")


def test_a_state_without_its_receipt_answers_at_the_time_it_last_changed() -> None:
    row = judge(RULES, facts({}, "accepted", updated_at=at(10, 8)), AS_OF)
    assert row is not None and (row.answer, row.answer_code, row.answered_at) == ("confirmed", None, at(10, 8))
    assert row.rule == "same working day; answer time from the delivery state"
    assert judge(RULES, facts({}, "accepted", updated_at=at(9, 12)), AS_OF) is None
    # A state reached after as_of says nothing about then.
    assert judge(RULES, facts({}, "accepted", updated_at=at(10, 13)), AS_OF).answer == "none"  # type: ignore[union-attr]
