"""`axis retention run [--dry-run] [--vacuum] [--json]`: what `axis serve` removes every hour, run by hand.

The ages come from the settings (AXIS_RETAIN_BODIES_DAYS, AXIS_RETAIN_SUBMISSIONS_DAYS, AXIS_RETAIN_INBOX_DAYS;
docs/retention.md). Each removal is an audit entry, sealed with the operator's log key.
"""
from __future__ import annotations

import typer

from axis.settings import Settings
from cli.operator import DbOption, _open_store
from cli.output import print_json, stdout

app = typer.Typer(help="Remove delivered bodies, old decided submissions and old de-duplication keys.",
                  no_args_is_help=True)


def retention_policy(chosen: Settings):
    """The retention policy the settings give (`axis serve` runs it every AXIS_RETENTION_SECONDS)."""
    from axis.store.retention import RetentionPolicy
    return RetentionPolicy(bodies_days=chosen.retain_bodies_days, submissions_days=chosen.retain_submissions_days,
                           inbox_days=chosen.retain_inbox_days, every=chosen.retention_seconds)


@app.command("run")
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be removed; remove nothing."),
    vacuum: bool = typer.Option(False, "--vacuum", help="Then give the free space back to the file system "
                                                        "(SQLite: VACUUM, which blocks writers while it runs)."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """Remove now what the retention settings no longer keep; each removal is an audit log entry."""
    from axis.store.retention import database_space, run_retention
    from axis.store.retention import vacuum as vacuum_store
    from cli.settings import current

    policy = retention_policy(current())
    store = _open_store(db, writes=not dry_run)
    try:
        report = run_retention(store, policy, actor="operator", dry_run=dry_run)
        before = report.database_bytes
        if vacuum and not dry_run:
            vacuum_store(store)
            report.database_bytes, report.free_bytes = database_space(store)
    finally:
        store.close()
    if as_json:
        print_json({**report.as_dict(), "vacuumed": vacuum and not dry_run,
                    "policy": {"bodies_days": policy.bodies_days, "submissions_days": policy.submissions_days,
                               "inbox_days": policy.inbox_days}})
        return
    verb = "would remove" if dry_run else "removed"
    stdout.print(f"{verb} {report.bodies} document bodies ({_size(report.body_bytes)}), {report.submissions} "
                 f"decided submissions, {report.inbox} de-duplication keys", markup=False)
    for axis_id in report.kept_differing:
        stdout.print(f"kept the body of {axis_id}: it does not have its document's digest (run `axis audit "
                     "verify`)", markup=False)
    if report.database_bytes is not None:
        space = f"database {_size(report.database_bytes)}"
        if vacuum and not dry_run and before is not None:
            space += f" (was {_size(before)} before VACUUM)"
        elif report.free_bytes is not None:
            space += f", of which {_size(report.free_bytes)} free pages that new documents reuse"
        stdout.print(space, markup=False)


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
