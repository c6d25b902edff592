"""The auditor's commands: `axis overdue`, `axis stats`, `axis audit log` (docs/auditor-guide.md).

Each prints a table for people, or with `--json` / `--csv` the same figures for programs (the JSON
items are the ones the gateway's /v1/audit/* routes serve). Lists are read from the store page by page
and written as they come (JSON and CSV stream; the tables print in pages), so a long history costs time,
not memory. Warnings (a holiday calendar that does not cover a year) go to stderr in every format,
and into the JSON too. A bad date, agency code or calendar file ends the command in one line, exit 2.
"""
from __future__ import annotations

import csv
import enum
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from axis.auditor.calendar import CalendarError, parse_instant, parse_zone
from axis.logs import printable
from cli.audit import audit_app
from cli.operator import DbOption, _open_store
from cli.output import fail, stderr, stdout
from cli.settings import current

if TYPE_CHECKING:  # the commands import these when they run: `axis --help` does not pay for the store
    from axis.auditor.overdue import OverdueRow
    from axis.auditor.stats import Durations, TrafficRow
    from axis.store import AuditEntry

USAGE = 2          # a bad option value, as typer's own usage errors
TABLE_PAGE = 200   # rows per printed table page

JsonOption = typer.Option(False, "--json", help="JSON on stdout (the figures the gateway serves).")
CsvOption = typer.Option(False, "--csv", help="CSV on stdout, one header line.")
SinceOption = typer.Option(None, "--since", help="From this day (2026-03-01: its start) or instant "
                                                 "(2026-03-01T08:00, +07:00 or Z allowed), inclusive.")
UntilOption = typer.Option(None, "--until", help="To this day (2026-03-31: its end) or instant, exclusive.")


# ------------------------------------------------------------------ axis overdue

def overdue(
    as_of: str | None = typer.Option(None, "--as-of", help="Judge as of this instant (2026-03-16T10:00 in "
                                                            "AXIS_DEADLINE_TIME_ZONE, or with Z / +07:00), or "
                                                            "the end of this day (2026-03-16); default: now."),
    calendar: Path | None = typer.Option(None, "--calendar", help="The holiday calendar (env "
                                                                  "AXIS_DEADLINE_CALENDAR; default: the one Axis "
                                                                  "ships)."),
    as_json: bool = JsonOption,
    as_csv: bool = CsvOption,
    db: str | None = DbOption,
) -> None:
    """Deliveries whose recipient did not confirm within the legal deadline (QĐ 28/2018): late, or not yet.

    One row per (document, recipient): the deadline and the rule that set it, the first answer
    (confirmed, refused, recalled, or none) and how late, in working time and on the clock.
    """
    from axis.auditor.overdue import OverdueReport, calendar_json, load_rules

    form = _form(as_json, as_csv)
    settings = current(deadline_calendar=calendar)
    try:
        rules = load_rules(settings)
    except CalendarError as exc:
        _usage(str(exc))
    zone = rules.calendar.zone
    when = _instant("--as-of", as_of, zone, end_of_day=True) if as_of else datetime.now(UTC)
    store = _open_store(db)
    try:
        report = OverdueReport(store, rules, when)
        for warning in report.warnings:
            stderr.print(f"[bold yellow]warning[/]: {escape(warning)}", markup=True)
        head = {"as_of": rules.calendar.local(when).isoformat(), "time_zone": zone.key,
                "calendar": calendar_json(rules.calendar),
                "warnings": report.warnings}
        rows = report.rows()
        if form == "json":
            _json_object(head, "items", (row.as_json() for row in rows))
        elif form == "csv":
            _csv(OVERDUE_FIELDS, (row.as_json() for row in rows))
        else:
            _say(f"Overdue as of {_local(rules.calendar.local(when))}, {zone.key} time (as every time below). "
                 "late: in working time, then on the clock.")
            count = _table_pages(_overdue_table, (_overdue_cells(row) for row in rows))
            stdout.print(f"{count} overdue deliver{'y' if count == 1 else 'ies'}")
    finally:
        store.close()


OVERDUE_FIELDS = ("axis_id", "document_id", "sender", "recipient", "priority", "arrived_at", "due_at", "rule",
                  "answer", "answer_code", "answered_at", "late_seconds", "late_working_seconds", "current_state")


def _overdue_table() -> Table:
    table = _table(expand=True, show_lines=True)
    table.add_column("document → recipient", ratio=1, min_width=20, overflow="fold")
    table.add_column("arrived / due", width=16, no_wrap=True)
    table.add_column("late", width=10, no_wrap=True)
    table.add_column("answer", width=16, no_wrap=True)
    return table


def _overdue_cells(row: OverdueRow) -> tuple[str, ...]:
    answer = f"{row.answer} {row.answer_code or ''}".strip()
    answered = _local(row.answered_at) if row.answered_at else f"({row.current_state})"
    return (f"{printable(row.document_id)}\n→ {row.recipient}  P{row.priority}\n{row.rule}",
            f"{_local(row.arrived_at)}\n{_local(row.due_at)}",
            f"{duration(row.late_working_seconds)}\n{duration(row.late_seconds)}",
            f"{answer}\n{answered}")


# ------------------------------------------------------------------ axis stats

class By(str, enum.Enum):
    agency = "agency"
    day = "day"


def stats(
    by: By = typer.Option(By.agency, "--by", help="One row per agency, or per day (in AXIS_DEADLINE_TIME_ZONE)."),
    since: str | None = SinceOption,
    until: str | None = UntilOption,
    as_json: bool = JsonOption,
    as_csv: bool = CsvOption,
    db: str | None = DbOption,
) -> None:
    """Traffic per agency or per day: sent, received, refused, delivered, times to delivery and acceptance.

    The documents counted are those that arrived in the period; their times to delivery and to acceptance
    (status 03) are on the clock: median and 95th percentile.
    """
    from axis.auditor.stats import traffic

    form = _form(as_json, as_csv)
    zone = _zone()
    start = _instant("--since", since, zone) if since else None
    end = _instant("--until", until, zone, end_of_day=True) if until else None
    store = _open_store(db)
    try:
        rows = traffic(store, by=by.value, zone=zone, since=start, until=end)
    finally:
        store.close()
    head = {"by": by.value, "since": start.isoformat() if start else None, "until": end.isoformat() if end else None,
            "time_zone": zone.key}
    if form == "json":
        _json_object(head, "rows", (row.as_json() for row in rows))
        return
    if form == "csv":
        _csv(STATS_FIELDS, (_stats_record(row) for row in rows))
        return
    period = f"{_local(start) if start else 'the beginning'} until {f'before {_local(end)}' if end else 'now'}"
    _say(f"Documents that arrived from {period}, {zone.key} time. Times to delivery and to acceptance are on "
         "the clock: the median, and under it the 95th percentile.")
    table = _table(show_lines=True)
    table.add_column(by.value, min_width=10, overflow="fold")  # a QĐ 20/2020 code may have 35 characters
    for name in ("sent", "received", "refused", "delivered"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("to delivery\nmedian / p95", justify="right", no_wrap=True, min_width=12)
    table.add_column("to acceptance\nmedian / p95", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(Text(row.key), str(row.sent), str(row.received), str(row.refused_total), str(row.delivered),
                      _pair(row.to_delivery), _pair(row.to_acceptance))
    stdout.print(table if rows else "no traffic in that period")
    refusals = [(row.key, code, n) for row in rows for code, n in sorted(row.refused.items())]
    if refusals:
        codes = _table()
        for name in ("refused", "code", "submissions"):
            codes.add_column(name)
        for key, code, n in refusals:
            codes.add_row(Text(key), code, str(n))
        stdout.print(codes)


STATS_FIELDS = ("key", "sent", "received", "delivered", "refused", "refused_by_code", "delivered_count",
                "delivery_median_seconds", "delivery_p95_seconds", "accepted_count", "acceptance_median_seconds",
                "acceptance_p95_seconds")


def _stats_record(row: TrafficRow) -> dict[str, Any]:
    return {"key": row.key, "sent": row.sent, "received": row.received, "delivered": row.delivered,
            "refused": row.refused_total,
            "refused_by_code": ";".join(f"{code}:{n}" for code, n in sorted(row.refused.items())),
            "delivered_count": row.to_delivery.count, "delivery_median_seconds": row.to_delivery.median_seconds,
            "delivery_p95_seconds": row.to_delivery.p95_seconds, "accepted_count": row.to_acceptance.count,
            "acceptance_median_seconds": row.to_acceptance.median_seconds,
            "acceptance_p95_seconds": row.to_acceptance.p95_seconds}


def _pair(durations: Durations) -> str:
    if not durations.count:
        return "-"
    return f"{duration(durations.median_seconds)}\n{duration(durations.p95_seconds)}"


# ------------------------------------------------------------------ axis audit log

@audit_app.command("log")
def audit_log(
    agency: str | None = typer.Option(None, "--agency", help="Only entries about this agency: its code is the "
                                                             "subject, or a value in the data (sender, "
                                                             "recipient, reader, ...)."),
    since: str | None = SinceOption,
    until: str | None = UntilOption,
    kind: list[str] = typer.Option([], "--kind", help="Only entries with this action (repeatable): accepted, "
                                                      "refused, duplicate, delivered, delivery-failed, "
                                                      "receipt-refused, dead-letter, agency-added, ..."),
    as_json: bool = JsonOption,
    as_csv: bool = CsvOption,
    db: str | None = DbOption,
) -> None:
    """The audit record, oldest first: who did what to which subject, when, with the entry's data and hashes.

    `axis audit verify` checks that nothing in it was changed; this command only reads it.
    """
    from axis.edxml import parse_agency_code
    from axis.refusals import Refusal
    from axis.store.audit import canonical_json, entry_json

    form = _form(as_json, as_csv)
    zone = _zone()
    code = None
    if agency is not None:
        try:
            code = parse_agency_code(agency).text
        except Refusal as refusal:
            _usage(f"--agency: {refusal.detail}")
    start = _instant("--since", since, zone) if since else None
    end = _instant("--until", until, zone, end_of_day=True) if until else None
    store = _open_store(db)

    def entries() -> Iterator[AuditEntry]:
        after = 0
        while True:
            page = store.audit_page(after=after, agency=code, since=start, until=end, actions=kind, limit=500)
            yield from page
            if len(page) < 500:
                return
            after = page[-1].seq

    try:
        if form == "json":
            _json_array(entry_json(e) for e in entries())
        elif form == "csv":
            _csv(("seq", "at", "actor", "action", "subject", "data", "prev_hash", "hash", "bound"),
                 ({**entry_json(e), "data": canonical_json(e.data),
                   "bound": canonical_json(e.bound) if e.bound else ""} for e in entries()))  # as hashed
        else:
            _say(f"The audit log, {zone.key} time.")
            count = _table_pages(_log_table, ((str(e.seq), _local(e.at.astimezone(zone), seconds=True),
                                               f"{e.actor} {e.action} {printable(e.subject or '')}\n"
                                               + printable(json.dumps(e.data, ensure_ascii=False, sort_keys=True)))
                                              for e in entries()))
            stdout.print(f"{count} entr{'y' if count == 1 else 'ies'}")
    finally:
        store.close()


def _log_table() -> Table:
    table = _table(expand=True)
    table.add_column("seq", width=7, no_wrap=True, justify="right")
    table.add_column("at", width=19, no_wrap=True)
    table.add_column("actor, action, subject / data", ratio=1, min_width=20, overflow="fold")
    return table


# ------------------------------------------------------------------ helpers

def duration(seconds: float | None) -> str:
    """A length of time, to the minute (seconds only under one): 45s, 15m, 3h05m, 1d15h15m."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes = whole // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m"


def _local(at: datetime, *, seconds: bool = False) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _table(**options: Any) -> Table:
    """A table as the auditor's commands print them: a rule under the header, no borders, one space between
    columns (what lets the stats fit in 80 columns), and pages that read as one table."""
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, **options)


def _say(text: str) -> None:
    """A sentence for people, wrapped at the terminal's width (tables size themselves)."""
    stdout.print(text, soft_wrap=False, markup=False)


def _usage(message: str) -> NoReturn:
    fail(message, USAGE)


def _form(as_json: bool, as_csv: bool) -> str:
    if as_json and as_csv:
        _usage("choose one of --json and --csv")
    return "json" if as_json else "csv" if as_csv else "table"


def _zone() -> ZoneInfo:
    return parse_zone(current().deadline_time_zone)  # the setting is checked when the settings load


def _instant(option: str, text: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    try:
        return parse_instant(text, zone, end_of_day=end_of_day)
    except CalendarError as exc:
        _usage(f"{option}: {exc}")


def _table_pages(make: Callable[[], Table], rows: Iterable[Sequence[str]]) -> int:
    """Print `rows` as tables of `TABLE_PAGE` rows (header on the first only; the same column widths on
    each, so the pages read as one table); how many rows."""
    count = 0
    iterator = iter(rows)
    while page := list(islice(iterator, TABLE_PAGE)):
        table = make()
        table.show_header = count == 0
        for row in page:
            # Text: the record's own text, never read as markup; the rows escape what packets and agencies said
            # (`printable`) part by part, as their line breaks are the table's own.
            table.add_row(*(Text(cell) for cell in row))
        stdout.print(table)
        count += len(page)
    return count


def _json_array(items: Iterable[Any]) -> None:
    out = sys.stdout
    out.write("[")
    for n, item in enumerate(items):
        out.write(("," if n else "") + "\n  " + json.dumps(item, ensure_ascii=False))
    out.write("\n]\n")


def _json_object(head: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """`head` and then `key`: the items, as one JSON object written as the items come."""
    out = sys.stdout
    out.write("{\n")
    for name, value in head.items():
        out.write(f"  {json.dumps(name)}: {json.dumps(value, ensure_ascii=False)},\n")
    out.write(f"  {json.dumps(key)}: [")
    for n, item in enumerate(items):
        out.write(("," if n else "") + "\n    " + json.dumps(item, ensure_ascii=False))
    out.write("\n  ]\n}\n")


def _csv(fields: Sequence[str], records: Iterable[dict[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(fields), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for record in records:
        writer.writerow(record)
