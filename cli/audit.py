"""`axis audit …`: the auditor's checks of the record (docs/auditor-guide.md)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from cli.operator import DbOption, _open_store
from cli.output import REFUSED, fail, print_json, stderr, stdout
from cli.settings import current

audit_app = typer.Typer(help="Read and check the tamper-evident audit log, keep its checkpoints, export it.",
                        no_args_is_help=True)


def _certificates(path: Path, what: str, flag: str) -> list:
    from axis.trust import load_certificates
    if not path.is_file():
        fail(f"{what} not found at {path}; pass {flag} FILE.pem")
    try:
        return load_certificates(path)
    except ValueError as exc:
        fail(f"{what}: {exc}")


@audit_app.command("verify")
def audit_verify(
    db: str | None = DbOption,
    against: Path | None = typer.Option(None, "--against", help="A checkpoint you kept (`axis audit checkpoint "
                                                                "--out`): prove the log today extends it."),
    trust: Path | None = typer.Option(None, "--trust", help="Roots Axis's certificate must chain to (env "
                                                             "AXIS_TRUST; default axis-data/pki/ca.pem)."),
    tsa_trust: Path | None = typer.Option(None, "--tsa-trust", help="Roots of the TSA (env AXIS_TSA_TRUST); "
                                                                     "without them timestamps are not checked."),
    export: Path | None = typer.Option(None, "--export", help="Check the archives `axis audit export` wrote "
                                                              "there instead of a database (offline)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check the log, its checkpoints and timestamps, and every row it binds; name the first bad entry or row.

    Exit 1 if anything does not check.
    """
    from axis.audit.checkpoints import CheckpointError, read_saved
    from axis.audit.verify import verify_export, verify_store

    chosen = current(trust=trust)
    if export is not None:
        if not export.is_dir():
            fail(f"{export} is not a directory of `axis audit export` archives")
        tsa_path = tsa_trust or chosen.tsa_trust
        _report(verify_export(export, _certificates(chosen.trust_roots, "trusted roots", "--trust"),
                              tsa_roots=_certificates(tsa_path, "TSA roots", "--tsa-trust") if tsa_path else None),
                as_json)
        return
    store = _open_store(db)  # a missing database is the first thing to say
    try:
        roots = _certificates(chosen.trust_roots, "trusted roots", "--trust")
        tsa_path = tsa_trust or chosen.tsa_trust
        tsa_roots = _certificates(tsa_path, "TSA roots", "--tsa-trust") if tsa_path is not None else None
        saved = None
        if against is not None:
            try:
                saved = read_saved(against.read_text(encoding="utf-8"))
            except OSError as exc:
                fail(f"cannot read the kept checkpoint {against}: {exc.strerror}")
            except (CheckpointError, UnicodeDecodeError) as exc:
                fail(f"{against}: {exc}")
        report = verify_store(store, roots, tsa_roots=tsa_roots, against=saved)
    finally:
        store.close()
    _report(report, as_json)


def _report(report, as_json: bool) -> None:
    if as_json:
        print_json({"ok": report.ok, "entries": report.entries, "checkpoints": report.checkpoints,
                    "timestamped": report.stamped, "awaiting_timestamp": report.unstamped, "rows": report.rows,
                    "sealed_units": report.sealed,
                    "first_bad": report.where, "reason": report.reason, "notes": report.notes})
    elif report.ok:
        rows = f", {report.rows} rows as the log recorded them" if report.rows else ""
        stdout.print(f"audit log verified: {report.entries} entries in {report.sealed} sealed units of work, "
                     f"{report.checkpoints} signed checkpoints ({report.stamped} timestamped){rows}")
        for note in report.notes:
            stdout.print(f"  {note}")
    else:
        stderr.print(f"[bold red]audit log broken[/] at {escape(str(report.where))}: {escape(report.reason)}",
                     markup=True)
    if not report.ok:
        raise typer.Exit(REFUSED)


@audit_app.command("checkpoint")
def audit_checkpoint(
    db: str | None = DbOption,
    out: Path | None = typer.Option(None, "--out", help="Write it to this file (default: print it)."),
) -> None:
    """Print the latest signed checkpoint, for an auditor to keep (then `axis audit verify --against FILE`)."""
    from axis.audit.checkpoints import saved_form

    store = _open_store(db)
    try:
        latest = store.latest_checkpoint()
    finally:
        store.close()
    if latest is None:
        fail("no checkpoint yet: `axis serve` signs one every "
             f"{current().checkpoint_entries} entries or {current().checkpoint_seconds:g} s while entries are written")
    text = saved_form(latest)
    if out is None:
        print(text, end="")
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    stderr.print(f"checkpoint of {latest.size} entries written to {out}")


@audit_app.command("export")
def audit_export(
    directory: Path = typer.Argument(..., help="Where the archives go (created if missing; existing archives "
                                               "are kept and continued)."),
    db: str | None = DbOption,
) -> None:
    """Write the signed log, its checkpoints and timestamps as archives chained by hash (one per ~10,000
    entries); check them anywhere with `axis audit verify --export DIR`."""
    from axis.audit.export import ExportError, export_log

    store = _open_store(db)
    try:
        done = export_log(store, directory)
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write to {directory}: {exc.strerror}")
    finally:
        store.close()
    stdout.print(f"{done.archives} archive(s) written to {directory}: {done.entries} entries, signed up to entry "
                 f"{done.signed_up_to}" + (f"; {done.waiting} newer entries wait for the next checkpoint"
                                           if done.waiting else ""))
