"""`axis doctor`: is this axis healthy? One verdict line per check (axis/health.py, docs/doctor.md)."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cli.output import REFUSED, fail, print_json, stderr, stdout
from cli.settings import current

NO_GATEWAY = "none"
_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "n/a": "dim"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Every check with its verdict, detail and action, as JSON."),
    db: str | None = typer.Option(None, "--db", help="The hub's database (env AXIS_DB; default the SQLite store "
                                                    "in AXIS_DATA)."),
    broker: str | None = typer.Option(None, "--broker", help="The broker (env AXIS_BROKER): 'embedded' (default) "
                                                             "or amqp://…"),
    gateway: str | None = typer.Option(None, "--gateway", help="The gateway's URL (env AXIS_GATEWAY; default the "
                                                               "one `axis serve` starts, AXIS_GATEWAY_HOST and "
                                                               "_PORT); 'none' where there is no gateway."),
    expiring_days: int | None = typer.Option(None, "--expiring-days", help="Fail for a certificate ending within "
                                                                          "this many days (env "
                                                                          "AXIS_DOCTOR_CERT_DAYS; default 14)."),
    calendar: Path | None = typer.Option(None, "--calendar", help="The holiday calendar (env "
                                                                  "AXIS_DEADLINE_CALENDAR; default the shipped "
                                                                  "one)."),
) -> None:
    """Check the broker, the database, disk space, certificates, the CRL, clocks, the holiday calendar, the hub,
    the gateway and the TSA backlog; exit 1 when any check fails."""
    from axis.health import failed, run_checks

    for noisy in ("aiormq", "aio_pika"):  # a broker that is down is the broker check's verdict, not a log line
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    wanted = gateway != NO_GATEWAY
    chosen = current(db=db, broker=broker, gateway=gateway if wanted else None, doctor_cert_days=expiring_days,
                     deadline_calendar=calendar)
    if calendar is not None:  # a calendar named on the command line that cannot be read is a typo: one line
        from axis.auditor.calendar import CalendarError
        from axis.auditor.overdue import load_rules
        try:
            load_rules(chosen)
        except CalendarError as exc:
            fail(str(exc), 2)
    checks = asyncio.run(run_checks(chosen, gateway=wanted))
    bad = failed(checks)
    if as_json:
        print_json({"ok": not bad, "checks": checks})
    else:
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1, 0, 0))
        table.add_column("verdict", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("detail", overflow="fold")
        for check in checks:
            detail = Text(check.detail)
            if check.action:
                detail.append(f"\n→ {check.action}", style="italic")
            verdict = check.verdict.upper() if check.verdict == "fail" else check.verdict
            table.add_row(Text(verdict, style=_STYLE[check.verdict]), check.name, detail)
        stdout.print(table)
    if bad:
        stderr.print(f"[bold red]error[/]: {len(bad)} check(s) failed: {', '.join(bad)}", markup=True)
        raise typer.Exit(REFUSED)
