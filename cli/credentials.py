"""`axis credentials issue|list|revoke`: the bearer credentials agencies, operators and auditors use at the gateway.

The credential is printed once, when it is issued; Axis keeps only its SHA-256. Give it to the
agency over a channel you trust, and have it stored in a file (`--credential-file`), not on a
command line (`ps` shows command lines). Rotation: issue a second credential, switch the agency's
system to it, then revoke the first; several may be active at once.
"""
from __future__ import annotations

import enum

import typer
from rich.table import Column

from axis.edxml import parse_agency_code
from axis.refusals import Refusal
from cli.operator import DbOption, _open_store
from cli.output import fail, print_json, refuse, stderr, stdout, table

app = typer.Typer(help="Issue, list and revoke the credentials callers present to the gateway.",
                  no_args_is_help=True)


class Role(str, enum.Enum):
    agency = "agency"
    operator = "operator"
    auditor = "auditor"


@app.command("issue")
def issue(
    agency: str | None = typer.Option(None, "--agency", help="The agency the credential acts for "
                                                             "(required for --role agency)."),
    role: Role = typer.Option(Role.agency, "--role", help="agency: acts for one agency; auditor: reads "
                                                          "everything, changes nothing; operator: the same, "
                                                          "plus /metrics."),
    label: str | None = typer.Option(None, "--label", help="A note for operators, e.g. the system it is for."),
    as_json: bool = typer.Option(False, "--json", help='Print {"id": …, "credential": …}.'),
    db: str | None = DbOption,
) -> None:
    """Issue a credential and print it, once: Axis keeps only its SHA-256."""
    from axis.gateway import credentials
    from axis.store import NotFound

    code: str | None = None
    if role is Role.agency:
        if agency is None:
            fail("--role agency needs --agency CODE", 2)
        try:
            code = parse_agency_code(agency).text
        except Refusal as refusal:
            refuse(refusal)
    elif agency is not None:
        fail(f"a {role.value} credential acts for no agency: leave out --agency", 2)
    store = _open_store(db, writes=True)
    try:
        issued = credentials.issue(store, role.value, code, label)
    except NotFound as exc:
        fail(f"{exc}; register it first with `axis agency add`")
    finally:
        store.close()
    if as_json:
        print_json({"id": issued.id, "credential": issued.token})
        return
    who = f"agency {code}" if code else role.value
    stderr.print(f"issued {issued.id} ({who}{', ' + label if label else ''}). The credential follows; it is "
                 "shown only now:")
    print(issued.token)


@app.command("list")
def list_(
    agency: str | None = typer.Option(None, "--agency", help="Only this agency's credentials."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """List credentials (never the credentials themselves): id, role, agency, label, issued, revoked."""
    code = None
    if agency is not None:
        try:
            code = parse_agency_code(agency).text
        except Refusal as refusal:
            refuse(refusal)
    store = _open_store(db)
    try:
        found = store.list_credentials(code)
    finally:
        store.close()
    rows = [{"id": c.id, "role": c.role, "agency": c.agency_code, "label": c.label, "created_at": c.created_at,
             "revoked_at": c.revoked_at, "state": "revoked" if c.revoked_at else "active"} for c in found]
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no credentials" + (f" for {code}" if code else ""))
        return
    grid = table(Column("id", no_wrap=True, min_width=17), Column("role", no_wrap=True),
                 Column("agency", no_wrap=True), Column("label", no_wrap=True, overflow="ellipsis", max_width=14),
                 Column("issued", no_wrap=True), Column("state", no_wrap=True))
    for r in rows:  # the label in full, the times to the second: --json
        grid.add_row(r["id"], r["role"], r["agency"] or "", r["label"] or "", f"{r['created_at']:%Y-%m-%d}",
                     "revoked" if r["revoked_at"] else "active")
    stdout.print(grid)


@app.command("revoke")
def revoke(
    credential_id: str = typer.Argument(..., help="The credential's id (cred_…), as `axis credentials list` shows."),
    db: str | None = DbOption,
) -> None:
    """Revoke a credential. Gateways refuse it (401) within 5 seconds (they cache a lookup that long)."""
    from axis.gateway import credentials
    from axis.store import NotFound

    store = _open_store(db, writes=True)
    try:
        changed = credentials.revoke(store, credential_id)
    except NotFound:
        fail(f"no credential {credential_id!r}; `axis credentials list` shows them")
    finally:
        store.close()
    stdout.print(f"revoked {credential_id}" if changed else f"{credential_id} was already revoked")
