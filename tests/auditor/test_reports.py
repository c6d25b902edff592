"""`axis overdue`, `axis stats`, `axis audit log` and `axis receipts` on the scenario (scenario.py), on SQLite
and PostgreSQL, against figures worked out by hand here.

The calendar has one holiday, Thursday 12 March 2026; working hours 08:00-17:00, Monday to Friday,
Vietnam time (UTC+7). "h" below is an hour on the clock, "wh" a working hour.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from cli.main import app
from tests.auditor.scenario import G22, H14, H41, at, axis_id, document_id

H, M = 3600, 60


def axis(url: str, calendar: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--db", url],
                              env={"AXIS_DEADLINE_CALENDAR": str(calendar), "NO_COLOR": "1",
                                   "AXIS_DATA": str(calendar.parent)})


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


# As of Monday 16 March, 10:00. Each row: (document, recipient, due, rule, answer, code, answered at,
# late on the clock, late in working time). Not overdue: D4 (refused Mon 9 11:00, before its 17:00 deadline:
# the refusal stops the clock), D6 to H41 (01 at 10:00, due 17:00 that day), D3 (arrived Wed 11 17:30, after
# hours on the eve of the holiday: due at the close of the next working day, Fri 13 17:00, not Thu 12; its 03
# came Fri 16:00), D9 (arrives Mon 16 11:00, after the as-of time). Status packets are never rows.
AS_OF_10 = [
    # D7, Priority 4, DueDate 2026/03/13: due Fri 13 at the close, 17:00. No answer: Fri 17:00 -> Mon 10:00 is
    # 7 h + 48 h + 10 h = 65 h; in working time only Mon 08:00-10:00 = 2 wh.
    (7, H14, at(13, 17), "Priority 4: DueDate 2026-03-13", "none", None, None, 65 * H, 2 * H),
    # D6 to H14, arrived Tue 10 09:00: due Tue 17:00. Its 03 came Wed 11 09:00: 16 h late, 1 wh (Wed 08-09).
    (6, H14, at(10, 17), "same working day", "confirmed", "03", at(11, 9), 16 * H, 1 * H),
    # D2, Priority 3, arrived Wed 11 16:00: 1 wh that day (16-17), none on the holiday, 1 more Fri 08-09: due
    # Fri 13 09:00. No answer: Fri 09:00 -> Mon 10:00 = 15 h + 48 h + 10 h = 73 h; 8 wh Fri + 2 wh Mon = 10 wh.
    (2, H41, at(13, 9), "Priority 3: 2 working hours", "none", None, None, 73 * H, 10 * H),
    # D1 arrived Wed 11 16:30, on the eve of the holiday, within hours: due that day at 17:00. Its 01 came
    # Fri 13 08:15: 7 h + 24 h + 8 h 15 = 39 h 15 late; in working time 15 minutes (the holiday counts none).
    (1, H41, at(11, 17), "same working day", "confirmed", "01", at(13, 8, 15), 39 * H + 15 * M, 15 * M),
    # D5 arrived Fri 13 09:00: due Fri 17:00. Its 01 came Mon 10:30, after the as-of time: no answer yet,
    # 65 h and 2 wh late as for D7.
    (5, H41, at(13, 17), "same working day", "none", None, None, 65 * H, 2 * H),
    # D8, Priority 4 without a DueDate: the same-working-day rule, due Fri 13 17:00; 65 h, 2 wh.
    (8, H14, at(13, 17), "Priority 4 without a DueDate: same working day", "none", None, None, 65 * H, 2 * H),
]


def expected_json(rows: list[tuple]) -> list[dict]:
    return [{"axis_id": axis_id(n), "document_id": document_id(n), "sender": G22, "recipient": recipient,
             "due_at": due.isoformat(), "rule": rule, "answer": answer, "answer_code": code,
             "answered_at": answered.isoformat() if answered else None, "late_seconds": late,
             "late_working_seconds": working}
            for n, recipient, due, rule, answer, code, answered, late, working in rows]


def test_overdue_as_of_monday_ten(scenario_url: str, calendar_file: Path) -> None:
    result = ok(axis(scenario_url, calendar_file, "overdue", "--as-of", "2026-03-16T10:00", "--json"))
    report = json.loads(result.stdout)
    assert report["as_of"] == "2026-03-16T10:00:00+07:00" and report["time_zone"] == "Asia/Ho_Chi_Minh"
    assert report["warnings"] == [] and result.stderr == ""
    keys = ("axis_id", "document_id", "sender", "recipient", "due_at", "rule", "answer", "answer_code",
            "answered_at", "late_seconds", "late_working_seconds")
    assert [{k: row[k] for k in keys} for row in report["items"]] == expected_json(AS_OF_10)
    assert [row["arrived_at"] for row in report["items"]] == [
        at(9, 9).isoformat(), at(10, 9).isoformat(), at(11, 16).isoformat(), at(11, 16, 30).isoformat(),
        at(13, 9).isoformat(), at(13, 16).isoformat()]
    # The state now, not as of 10:00: D5's 01 (Mon 10:30) has moved it on since.
    assert [row["current_state"] for row in report["items"]] == [
        "delivered", "accepted", "delivered", "arrived", "arrived", "queued"]


def test_overdue_later_the_same_day_as_csv(scenario_url: str, calendar_file: Path) -> None:
    """At 12:00 the open rows are 2 h (and 2 wh) later, and D5's 01 of 10:30 is now its answer: 65 h 30 and
    2 wh 30 late. D9 (arrived 11:00, due 17:00) is not yet overdue."""
    result = ok(axis(scenario_url, calendar_file, "overdue", "--as-of", "2026-03-16T05:00Z", "--csv"))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    got = [(r["axis_id"], r["recipient"], r["answer"], r["answer_code"], int(r["late_seconds"]),
            int(r["late_working_seconds"])) for r in rows]
    assert got == [(axis_id(7), H14, "none", "", 67 * H, 4 * H),
                   (axis_id(6), H14, "confirmed", "03", 16 * H, 1 * H),
                   (axis_id(2), H41, "none", "", 75 * H, 12 * H),
                   (axis_id(1), H41, "confirmed", "01", 39 * H + 15 * M, 15 * M),
                   (axis_id(5), H41, "confirmed", "01", 65 * H + 30 * M, 2 * H + 30 * M),
                   (axis_id(8), H14, "none", "", 67 * H, 4 * H)]


def test_overdue_before_anything_was_due_lists_nothing(scenario_url: str, calendar_file: Path) -> None:
    # Monday 9 March, 09:30: D7 has arrived (due Friday), nothing else has.
    report = json.loads(ok(axis(scenario_url, calendar_file, "overdue", "--as-of", "2026-03-09T09:30",
                                "--json")).stdout)
    assert report["items"] == []


def test_a_year_the_calendar_does_not_cover_is_a_warning(scenario_url: str, calendar_file: Path) -> None:
    result = ok(axis(scenario_url, calendar_file, "overdue", "--as-of", "2027-01-05", "--json"))
    report = json.loads(result.stdout)
    [warning] = report["warnings"]
    assert "does not cover 2027 (it covers 2026)" in warning
    assert result.stderr.count("\n") == 1 and "warning" in result.stderr and "2027" in result.stderr
    # Every delivery still unanswered by then is overdue; D9 too.
    assert len(report["items"]) == 7


def test_overdue_table_at_80_columns(scenario_url: str, calendar_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = Console(width=80, highlight=False, soft_wrap=True, no_color=True)
    monkeypatch.setattr("cli.auditor.stdout", narrow)
    out = ok(axis(scenario_url, calendar_file, "overdue", "--as-of", "2026-03-16T10:00")).stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    # Each value whole on one line: no column squeezed to a word (or less) per line.
    for text in ("arrived / due", "2026-03-11 16:30", "2026-03-11 17:00", "1d15h15m", "confirmed 01",
                 "2026-03-13 08:15", f"→ {H41}  P0", "same working day", "Priority 3: 2 working hours"):
        assert any(text in line for line in lines), (text, out)
    assert "6 overdue deliveries" in out


STATS_BY_AGENCY = {
    # G22 sent all nine and received none; one of its submissions was refused (AX301).
    G22: {"sent": 9, "received": 0, "delivered": 0, "refused": {"total": 1, "by_code": {"AX301": 1}},
          "to_delivery": {"count": 0, "median_seconds": None, "p95_seconds": None},
          "to_acceptance": {"count": 0, "median_seconds": None, "p95_seconds": None}},
    # H14 received D4, D6, D7, D8; delivery receipts after 20 min (D4), 3 h (D6), 10 min (D7): sorted
    # 600, 1200, 10800 s, median 1200, p95 the 3rd of 3 (nearest rank: ceil(0.95 x 3) = 3). Its one 03 (D6) came
    # 24 h after arrival.
    H14: {"sent": 0, "received": 4, "delivered": 3, "refused": {"total": 0, "by_code": {}},
          "to_delivery": {"count": 3, "median_seconds": 1200, "p95_seconds": 10800},
          "to_acceptance": {"count": 1, "median_seconds": 86400, "p95_seconds": 86400}},
    # H41 received D1, D2, D3, D5, D6, D9; five delivery receipts: D2 5 min, D1 10 min, D6 30 min, D3 38 h 30
    # (Wed 17:30 -> Fri 08:00), D5 73 h 20 (Fri 09:00 -> Mon 10:20): median 1800, p95 the 5th of 5. Its 03s:
    # D6 after 1 h 30, D3 after 46 h 30 (Wed 17:30 -> Fri 16:00): median (5400 + 167400) / 2 = 86400, p95 the 2nd.
    H41: {"sent": 0, "received": 6, "delivered": 5, "refused": {"total": 1, "by_code": {"AX416": 1}},
          "to_delivery": {"count": 5, "median_seconds": 1800, "p95_seconds": 264000},
          "to_acceptance": {"count": 2, "median_seconds": 86400, "p95_seconds": 167400}},
}

STATS_BY_DAY = {
    # Mon 9: D7 and D4, delivered after 10 and 20 min: median (600 + 1200) / 2 = 900.
    "2026-03-09": (2, 2, 2, {}, (2, 900, 1200), (0, None, None)),
    # Tue 10: D6 to both; delivered after 30 min and 3 h (median 6300); accepted after 1 h 30 and 24 h
    # (median 45900); G22's AX301 was submitted that day.
    "2026-03-10": (1, 2, 2, {"AX301": 1}, (2, 6300, 10800), (2, 45900, 86400)),
    # Wed 11: D2, D1, D3; delivered after 5 min, 10 min, 38 h 30; D3 accepted after 46 h 30; H41's AX416.
    "2026-03-11": (3, 3, 3, {"AX416": 1}, (3, 600, 138600), (1, 167400, 167400)),
    # Fri 13: D5 (delivered after 73 h 20) and D8 (never).
    "2026-03-13": (2, 2, 1, {}, (1, 264000, 264000), (0, None, None)),
    # Mon 16: D9, not delivered.
    "2026-03-16": (1, 1, 0, {}, (0, None, None), (0, None, None)),
}


def test_stats_by_agency(scenario_url: str, calendar_file: Path) -> None:
    result = ok(axis(scenario_url, calendar_file, "stats", "--since", "2026-03-01", "--until", "2026-03-31",
                     "--json"))
    report = json.loads(result.stdout)
    assert report["by"] == "agency" and report["since"] == "2026-03-01T00:00:00+07:00"
    assert report["until"] == "2026-04-01T00:00:00+07:00"  # --until a day: to its end
    assert {row["key"]: {k: v for k, v in row.items() if k != "key"} for row in report["rows"]} == STATS_BY_AGENCY
    assert [row["key"] for row in report["rows"]] == [G22, H14, H41]


def test_stats_by_day_as_csv(scenario_url: str, calendar_file: Path) -> None:
    result = ok(axis(scenario_url, calendar_file, "stats", "--by", "day", "--csv"))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))

    def number(text: str) -> float | None:
        return float(text) if text else None

    got = {r["key"]: (int(r["sent"]), int(r["received"]), int(r["delivered"]),
                      dict(part.split(":") for part in r["refused_by_code"].split(";") if part),
                      (int(r["delivered_count"]), number(r["delivery_median_seconds"]),
                       number(r["delivery_p95_seconds"])),
                      (int(r["accepted_count"]), number(r["acceptance_median_seconds"]),
                       number(r["acceptance_p95_seconds"])))
           for r in rows}
    want = {day: (sent, received, delivered, {code: str(n) for code, n in refused.items()}, to_delivery,
                  to_acceptance)
            for day, (sent, received, delivered, refused, to_delivery, to_acceptance) in STATS_BY_DAY.items()}
    assert got == want


def test_stats_window_and_table(scenario_url: str, calendar_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = Console(width=80, highlight=False, soft_wrap=True, no_color=True)
    monkeypatch.setattr("cli.auditor.stdout", narrow)
    # Only Wednesday 11 March: D2, D1 and D3 to H41, and H41's refused submission.
    out = ok(axis(scenario_url, calendar_file, "stats", "--since", "2026-03-11", "--until", "2026-03-11")).stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    rows = [line.split() for line in out.splitlines()]
    # received 3, refused 1, delivered 3: after 5 min, 10 min and 38 h 30 (median 10m, p95 1d14h30m); accepted
    # once, after 46 h 30. Then the refusals by code.
    assert [H41, "0", "3", "1", "3", "10m", "1d22h30m"] in rows and ["1d14h30m", "1d22h30m"] in rows, out
    assert [G22, "3", "0", "0", "0", "-", "-"] in rows, out
    assert [H41, "AX416", "1"] in rows, out


def test_audit_log_by_agency_kind_and_time(scenario_url: str, calendar_file: Path) -> None:
    about_h14 = json.loads(ok(axis(scenario_url, calendar_file, "audit", "log", "--agency", H14, "--json")).stdout)
    # Its registration (subject), the documents sent to it (recipients), their delivery receipts (recipient),
    # and the status packets it sent (sender); nothing of H41's own traffic.
    assert [(e["action"], e["subject"]) for e in about_h14] == [
        ("agency-added", H14), ("accepted", axis_id(7)), ("delivered", axis_id(7)), ("accepted", axis_id(4)),
        ("delivered", axis_id(4)), ("accepted", f"ax-s4-{H14[-3:]}-02"), ("accepted", axis_id(6)),
        ("delivered", axis_id(6)), ("accepted", f"ax-s6-{H14[-3:]}-03"), ("accepted", axis_id(8))]
    assert [e["seq"] for e in about_h14] == sorted(e["seq"] for e in about_h14)
    assert about_h14[0]["at"] == "2026-03-01T02:00:00.000000Z" and len(about_h14[0]["hash"]) == 64

    delivered = json.loads(ok(axis(scenario_url, calendar_file, "audit", "log", "--agency", H14, "--kind",
                                   "delivered", "--json")).stdout)
    assert [e["subject"] for e in delivered] == [axis_id(7), axis_id(4), axis_id(6)]

    tuesday = ok(axis(scenario_url, calendar_file, "audit", "log", "--since", "2026-03-10", "--until", "2026-03-10",
                      "--csv"))
    rows = list(csv.DictReader(io.StringIO(tuesday.stdout)))
    # Tuesday 10 March: D6 accepted 09:00, delivered to H41 09:30, H41's 01 at 10:00, G22's refused submission
    # 10:00, H41's 03 at 10:30, delivered to H14 12:00.
    # ("recorded" entries bind the rows of the fixture's writes that no entry is about: docs/store.md.)
    assert [(r["action"], r["subject"]) for r in rows if r["action"] != "recorded"] == [
        ("accepted", axis_id(6)), ("delivered", axis_id(6)), ("accepted", f"ax-s6-{H41[-3:]}-01"),
        ("refused", "sub-ax301"), ("accepted", f"ax-s6-{H41[-3:]}-03"), ("delivered", axis_id(6))]
    refused = next(r for r in rows if r["action"] == "refused")
    assert json.loads(refused["data"]) == {"code": 301, "sender": G22, "submitted_by": G22}


def test_audit_log_matches_the_code_only_as_a_whole_string(scenario_url: str, calendar_file: Path) -> None:
    from axis.store import open_store

    store = open_store(scenario_url)
    try:
        with store.write() as tx:
            tx.audit("test", "note", "x", {"detail": f'forwarded "{H14}" by hand'})   # inside a longer string
            tx.audit("test", "note", "y", {"detail": f"{H14}.01"})                   # a longer code
            tx.audit("test", "note", "z", {"nested": {"to": [G22, H14]}})            # nested in a list: yes
            tx.audit("test", "note", "w", {"detail": H14.lower()})                   # another case
    finally:
        store.close()
    notes = json.loads(ok(axis(scenario_url, calendar_file, "audit", "log", "--agency", H14, "--kind", "note",
                               "--json")).stdout)
    assert [e["subject"] for e in notes] == ["z"]


def test_audit_log_table_at_80_columns(scenario_url: str, calendar_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = Console(width=80, highlight=False, soft_wrap=True, no_color=True)
    monkeypatch.setattr("cli.auditor.stdout", narrow)
    out = ok(axis(scenario_url, calendar_file, "audit", "log", "--agency", H41, "--kind", "refused")).stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "2026-03-11 10:00:00" in out and "hub refused sub-ax416" in out and "1 entry" in out
    assert '{"code": 416' in out  # the data, as written, not read as rich markup


def test_bad_input_is_one_line_and_exit_2(scenario_url: str, calendar_file: Path, tmp_path: Path) -> None:
    for args, says in [(("overdue", "--as-of", "16/03/2026"), "--as-of: '16/03/2026' is not a date"),
                       (("stats", "--since", "2026-02-30"), "--since: '2026-02-30' is not a date"),
                       (("audit", "log", "--agency", "h14!"), "--agency:"),
                       (("overdue", "--json", "--csv"), "choose one of --json and --csv"),
                       (("overdue", "--calendar", str(tmp_path / "none.txt")), "cannot read the holiday calendar")]:
        result = axis(scenario_url, calendar_file, *args)
        assert result.exit_code == 2 and says in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("2026-01-01\n# fine\n2026-13-01\n")
    result = axis(scenario_url, bad, "overdue")
    assert result.exit_code == 2 and f"{bad}:3: '2026-13-01' is not a date" in result.stderr


def test_receipts_takes_an_axis_id_or_a_document_id(scenario_url: str, calendar_file: Path) -> None:
    by_axis = json.loads(ok(axis(scenario_url, calendar_file, "receipts", axis_id(6), "--json")).stdout)
    by_document = json.loads(ok(axis(scenario_url, calendar_file, "receipts", document_id(6), "--json")).stdout)
    assert by_axis == by_document
    [doc] = by_axis
    assert [(r["recipient"], r["state"], [(x["kind"], x["code"]) for x in r["receipts"]]) for r in doc["recipients"]] \
        == [(H14, "accepted", [("delivery", "delivered"), ("status", "03")]),
            (H41, "accepted", [("delivery", "delivered"), ("status", "01"), ("status", "03")])]


def test_audit_log_escapes_what_agencies_wrote(scenario_url: str, calendar_file: Path) -> None:
    """An entry's subject and data hold what packets and agencies said (XML allows C1 controls: U+009B is a
    terminal's CSI); the table shows them escaped, never raw."""
    from axis.store import open_store

    with open_store(scenario_url) as store, store.write() as tx:
        tx.audit("hub", "submission-refused", f"sub-{H41}\x9b2J", {"detail": "bad\x9b31m\x85FAKE", "agency": H41})
    out = ok(axis(scenario_url, calendar_file, "audit", "log", "--agency", H41)).stdout
    assert "\x9b" not in out and "\x85" not in out, out
    assert "\\x9b31m" in out and "\\x9b2J" in out, out
