"""`axis agency import` and `axis agency show`: the registry at a country's scale.

A catalogue is CSV (a header naming `code,name,parent` and optionally `certificate`) or JSON (a list of
objects with those keys). `certificate` is the PEM itself or the path of a PEM file, relative to the
catalogue's folder. Import adds what is new and checks what is there: a row that matches the registry
changes nothing, so running the same catalogue again adds nothing. Each bad row is refused with its
line (CSV) or item number (JSON) and the reason; the other rows are imported, children after their
parents whatever their order in the file. Every agency added gets its own audit entry, written in the
transaction that adds it (chunks of `CHUNK` agencies).
"""
from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rich.table import Column, Table

from axis.edxml import parse_agency_code
from axis.refusals import Refusal
from cli.operator import DbOption, _open_store
from cli.output import REFUSED, fail, print_json, progress, refuse, stderr, stdout, table

CHUNK = 1_000          # agencies per transaction: one commit and one seal per chunk
NAME_LEN = 500         # agencies.name
COLUMNS = ("code", "name", "parent", "certificate")
_PEM = "-----BEGIN"


@dataclass
class Row:
    where: str                          # "line 12" (CSV) or "item 3" (JSON)
    code: str
    name: str
    parent: str | None
    certificate: str | None = None      # PEM
    fingerprint: str | None = None


@dataclass
class Plan:
    """What an import does: agencies to add (parents first), certificates to add to agencies already
    registered, rows that change nothing, rows refused."""
    add: list[Row] = field(default_factory=list)
    certify: list[Row] = field(default_factory=list)
    unchanged: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)

    def refuse(self, where: str, code: str, reason: str) -> None:
        self.refused.append({"where": where, "code": code, "reason": reason})


class CatalogueError(ValueError):
    """The catalogue as a whole cannot be read (not a row of it)."""


# ------------------------------------------------------------------ reading

def read_catalogue(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, raw fields) per row, in file order."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as spreadsheets write CSV
    except UnicodeDecodeError:
        raise CatalogueError(f"{path} is not UTF-8 text; save the catalogue as UTF-8 CSV or JSON") from None
    except OSError as exc:
        raise CatalogueError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        yield from _json_rows(path, text)
    else:
        yield from _csv_rows(path, text)


def _json_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise CatalogueError(f"{path} is not JSON ({exc}); a JSON catalogue is a list of "
                             '{"code": …, "name": …, "parent": …} objects') from None
    if not isinstance(items, list):
        raise CatalogueError(f"{path}: a JSON catalogue is a list of objects with code, name, parent")
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            yield f"item {n}", {"_bad": "not an object with code, name, parent"}
            continue
        extra = sorted(set(item) - set(COLUMNS))
        if extra:
            yield f"item {n}", {"code": str(item.get("code") or ""), "_bad": f"unknown key(s) {', '.join(extra)}"}
            continue
        yield f"item {n}", {k: "" if v is None else str(v) for k, v in item.items()}


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, str]]]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CatalogueError(f"{path} is empty; a catalogue's first line is the header code,name,parent") from None
    except csv.Error as exc:
        raise CatalogueError(f"{path} is not CSV ({exc})") from None
    if header[:3] != ["code", "name", "parent"] or not set(header) <= set(COLUMNS) or len(set(header)) != len(header):
        raise CatalogueError(f"{path}: the first line must be the header code,name,parent[,certificate], "
                             f"not {','.join(header)[:80]!r}")
    last = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CatalogueError(f"{path}, line {reader.line_num}: not CSV ({exc})") from None
        where, last = f"line {last + 1}", reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield where, {"code": values[0].strip() if values else "",
                          "_bad": f"{len(values)} fields where the header names {len(header)}"}
            continue
        yield where, dict(zip(header, values, strict=True))


def _certificate(value: str, code: str, folder: Path) -> tuple[str, str]:
    """(PEM, fingerprint) of a row's certificate; ValueError saying what is wrong."""
    from axis.trust.identity import certificate_agency_code

    if value.lstrip().startswith(_PEM):
        data = value.strip().encode("ascii", "replace")
        source = "the certificate"
    else:
        file = folder / value.strip()
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the certificate {file}: {exc.strerror}") from None
        source = str(file)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{source} is not a PEM X.509 certificate") from None
    try:
        named = certificate_agency_code(cert)
    except Refusal as refusal:
        raise ValueError(f"{source}: {refusal.detail}") from None
    if named != code:
        raise ValueError(f"{source} is issued to {named}, not {code}")
    return data.decode("ascii"), cert.fingerprint(hashes.SHA256()).hex()


def parse_rows(path: Path, plan: Plan) -> list[Row]:
    """The catalogue's rows that are well formed on their own, first of each code; the rest refused (or,
    when a code is repeated identically, counted as unchanged)."""
    rows: dict[str, Row] = {}
    for where, raw in read_catalogue(path):
        code = (raw.get("code") or "").strip()
        if "_bad" in raw:
            plan.refuse(where, code, raw["_bad"])
            continue
        try:
            code = _code(code, "code")
            parent = _code(raw.get("parent") or "", "parent") if (raw.get("parent") or "").strip() else None
        except ValueError as exc:
            plan.refuse(where, code, str(exc))
            continue
        name = " ".join((raw.get("name") or "").split())
        if not name or len(name) > NAME_LEN:
            plan.refuse(where, code, f"the name must be 1..{NAME_LEN} characters")
            continue
        if any(unicodedata.category(ch) == "Cc" for ch in name):  # an escape sequence would reach operators' terminals
            plan.refuse(where, code, "the name holds control characters")
            continue
        if parent == code:
            plan.refuse(where, code, "an agency cannot be its own parent")
            continue
        row = Row(where, code, name, parent)
        if (raw.get("certificate") or "").strip():
            try:
                row.certificate, row.fingerprint = _certificate(raw["certificate"], code, path.parent)
            except ValueError as exc:
                plan.refuse(where, code, str(exc))
                continue
        first = rows.get(code)
        if first is None:
            rows[code] = row
        elif (first.name, first.parent, first.fingerprint) == (row.name, row.parent, row.fingerprint):
            plan.unchanged += 1
        else:
            plan.refuse(where, code, f"{code} is already on {first.where} with another name, parent or certificate")
    return list(rows.values())


def _code(text: str, what: str) -> str:
    try:
        parsed = parse_agency_code(text)
    except Refusal as refusal:
        raise ValueError(f"bad {what}: {refusal.detail}") from None
    if parsed.text != text.strip():
        raise ValueError(f"bad {what} {text!r}: write it as {parsed.text}")
    return parsed.text


# ------------------------------------------------------------------ planning

def plan_import(path: Path, store) -> Plan:
    """Check the catalogue against itself and the registry; see the module docstring."""
    plan = Plan()
    rows = parse_rows(path, plan)
    by_code = {row.code: row for row in rows}
    registered = store.agencies_by_code({*by_code, *(r.parent for r in rows if r.parent)})
    owners = store.certificate_owners(r.fingerprint for r in rows if r.fingerprint)
    fresh: dict[str, Row] = {}
    for row in rows:
        if row.fingerprint is not None and (owner := owners.get(row.fingerprint)) is not None:
            holder, state = owner
            if holder != row.code:
                plan.refuse(row.where, row.code, f"its certificate is registered to {holder}")
                continue
            if state != "active":
                plan.refuse(row.where, row.code, f"its certificate was {state}; issue a new one")
                continue
            row.certificate = row.fingerprint = None  # registered already: nothing to add
        known = registered.get(row.code)
        if known is None:
            fresh[row.code] = row
        elif (known.name, known.parent_code) != (row.name, row.parent):
            plan.refuse(row.where, row.code,
                        f"registered as {known.name!r} under {known.parent_code or 'no parent'}, the catalogue "
                        f"says {row.name!r} under {row.parent or 'no parent'} (import adds agencies; it does not "
                        "rename or move them)")
        elif row.certificate is not None:
            plan.certify.append(row)
        else:
            plan.unchanged += 1
    depth: dict[str, int] = {}
    for row in fresh.values():
        if row.code not in depth:
            _place(row, fresh, registered, depth, plan)
    plan.add = sorted((r for r in fresh.values() if depth.get(r.code, -1) >= 0), key=lambda r: depth[r.code])
    plan.refused.sort(key=lambda r: int(r["where"].split()[1]))  # in file order, whichever check refused it
    return plan


def _place(row: Row, fresh: dict[str, Row], registered: dict, depth: dict[str, int], plan: Plan) -> None:
    """Set depth[code] for `row` and the rows above it: 0 under a registered parent or none, one more than
    its parent's under a new one; -1 (and refused) when the chain does not reach the registry."""
    chain = [row]
    top = 0  # where the refusal starts: the chain's last row, or the first of a loop
    while True:
        parent = chain[-1].parent
        reason = ""
        if parent is None or parent in registered:
            base = 0
        elif parent in depth:
            base = depth[parent] + 1 if depth[parent] >= 0 else -1
            reason = f"its parent {parent} was refused"
        elif parent not in fresh:
            base, reason = -1, f"unknown parent {parent}: neither registered nor in the catalogue"
        elif fresh[parent] in chain:
            top = chain.index(fresh[parent])
            loop = " → ".join(r.code for r in chain[top:]) + f" → {parent}"
            base, reason = -1, f"the parents form a loop: {loop}"
        else:
            chain.append(fresh[parent])
            continue
        break
    if base >= 0:
        for n, each in enumerate(reversed(chain)):
            depth[each.code] = base + n
        return
    top = top if reason.startswith("the parents form a loop") else len(chain) - 1
    for n, each in enumerate(chain):
        depth[each.code] = -1
        plan.refuse(each.where, each.code, reason if n >= top else f"its parent {each.parent} was refused")


# ------------------------------------------------------------------ commands

def run_import(path: Path, store, *, actor: str = "operator", quiet: bool = False) -> Plan:
    """Plan and apply the import of `path` into `store`; the plan says what happened."""
    from axis.store import StoreError

    plan = plan_import(path, store)
    source = path.name
    with progress(quiet=quiet) as bar:
        task = bar.add_task("importing agencies", total=len(plan.add) + len(plan.certify))
        for start in range(0, len(plan.add), CHUNK):
            chunk = plan.add[start:start + CHUNK]
            with store.write() as tx:
                if tx.add_agencies([(r.code, r.name, r.parent) for r in chunk]) != len(chunk):
                    raise StoreError("another writer registered some of these agencies during the import; "
                                     "run it again (what is registered now is left alone)")
                for r in chunk:
                    fingerprints = [tx.add_certificate(r.code, r.certificate)] if r.certificate else []
                    tx.audit(actor, "agency-added", r.code, {"name": r.name, "parent": r.parent,
                                                             "certificates": fingerprints, "catalogue": source})
            bar.advance(task, len(chunk))
        for start in range(0, len(plan.certify), CHUNK):
            chunk = plan.certify[start:start + CHUNK]
            with store.write() as tx:
                for r in chunk:
                    assert r.certificate is not None  # plan_import puts only rows with a new certificate here
                    tx.audit(actor, "certificate-added", r.code,
                             {"fingerprint": tx.add_certificate(r.code, r.certificate), "catalogue": source})
            bar.advance(task, len(chunk))
    return plan


def agency_import(
    catalogue: Path = typer.Argument(..., help="The catalogue: CSV with the header code,name,parent[,certificate], "
                                               "or a JSON list of objects with those keys."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
    db: str | None = DbOption,
) -> None:
    """Register every agency of a catalogue that is not registered yet; refuse bad rows, import the rest.

    Running it again changes nothing. Exit 1 when any row was refused (the others are imported).
    """
    from axis.store import StoreError

    if not catalogue.is_file():
        fail(f"cannot read {catalogue}: {'it is a folder' if catalogue.is_dir() else 'no such file'}")
    store = _open_store(db, create=True, writes=True)
    try:
        plan = run_import(catalogue, store, quiet=as_json)
    except CatalogueError as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(str(exc))
    finally:
        store.close()
    summary = {"added": len(plan.add), "certificates_added": len(plan.certify), "unchanged": plan.unchanged,
               "refused": plan.refused}
    if as_json:
        print_json(summary)
    else:
        for r in plan.refused:
            stderr.print(f"{catalogue.name}, {r['where']}: {r['code'] or '(no code)'}: {r['reason']}", markup=False,
                         soft_wrap=True)
        extra = f", {len(plan.certify)} certificate(s) added" if plan.certify else ""
        nothing = "; nothing to do, the registry already holds the catalogue" if not plan.add and not plan.certify \
            and not plan.refused else ""
        stdout.print(f"{catalogue.name}: {len(plan.add)} added, {plan.unchanged} unchanged, "
                     f"{len(plan.refused)} refused{extra}{nothing}", markup=False)
    if plan.refused:
        raise typer.Exit(REFUSED)


def agency_show(
    code: str = typer.Argument(..., help="The agency code."),
    as_json: bool = typer.Option(False, "--json", help="Print the agency as JSON on stdout."),
    db: str | None = DbOption,
) -> None:
    """An agency: its parent and children, certificates, aliases, credentials and traffic."""
    try:
        code = parse_agency_code(code).text
    except Refusal as refusal:
        refuse(refusal, as_json=as_json)
    store = _open_store(db)
    try:
        profile = store.agency_profile(code)
    finally:
        store.close()
    if profile is None:
        fail(f"{code} is not registered; see `axis agency list`, or add it with `axis agency add` or "
             "`axis agency import`")
    a = profile.agency
    if as_json:
        print_json({"code": a.code, "name": a.name, "state": a.state, "created_at": a.created_at,
                    "parent": {"code": a.parent_code, "name": profile.parent.name if profile.parent else None}
                    if a.parent_code else None,
                    "children": profile.children,
                    "certificates": [{"fingerprint": c.fingerprint, "state": c.state, "not_before": c.not_before,
                                      "not_after": c.not_after, "added_at": c.added_at} for c in profile.certificates],
                    "aliases": [{"old_code": x.old_code, "new_code": x.new_code, "until": x.until}
                                for x in profile.aliases],
                    "credentials": profile.credentials, "sent": profile.sent, "received": profile.received})
        return
    facts = Table(show_header=False, box=None)
    facts.add_column(no_wrap=True, style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("code", a.code)
    facts.add_row("name", a.name)
    facts.add_row("state", a.state)
    facts.add_row("parent", f"{a.parent_code} ({profile.parent.name})" if profile.parent else "none")
    facts.add_row("children", str(profile.children))
    facts.add_row("credentials", f"{profile.credentials} active")
    for alias in profile.aliases:
        facts.add_row("alias", f"{alias.old_code} → {alias.new_code} until {alias.until:%Y-%m-%d}")
    facts.add_row("sent", _counted(profile.sent))
    facts.add_row("received", _counted(profile.received))
    stdout.print(facts)
    if not profile.certificates:
        stdout.print("no certificates: it cannot send until one is added (`axis agency import`)")
        return
    certs = table(*(Column(name, no_wrap=True) for name in ("fingerprint", "state", "valid from", "until")))
    for c in profile.certificates:
        certs.add_row(f"{c.fingerprint[:16]}…", c.state, f"{c.not_before:%Y-%m-%d}", f"{c.not_after:%Y-%m-%d}")
    stdout.print(certs)


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "none"


__all__ = ["CatalogueError", "Plan", "agency_import", "agency_show", "plan_import", "run_import"]
