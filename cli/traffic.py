"""Seeing the traffic: `axis traffic list|show|tail` and `axis queues`.

They read the store (documents, deliveries, receipts, submissions, and the audit log for `tail`) and the
broker (`Transport.queue_stats`); none of them writes anything. Times are UTC. Tables print the end of an
axis id (its start is the time it was made, the same for neighbours), and `traffic show` takes any 8 or more
characters from either end.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.table import Column, Table
from rich.text import Text

from axis.edxml import parse_agency_code
from axis.logs import printable
from axis.refusals import Refusal, RefusalCode
from axis.store import AuditEntry, Delivery, Document, Store, Submission
from axis.transport import DEAD_LETTER_FEED, QueueStats, TransportError, open_transport
from cli.auditor import duration
from cli.operator import BrokerOption, DbOption, _open_store
from cli.output import fail, print_json, refuse, stderr, stdout, table
from cli.settings import EMBEDDED, current, redact_url

app = typer.Typer(help="Documents, their deliveries and receipts, refused submissions; live or after the fact.",
                  no_args_is_help=True)

SHORT = 12          # characters of an id shown in a table: an axis id's (random) end, a submission id's start
MIN_PREFIX = 8
TAIL_PAGE = 500     # audit entries read per poll of `traffic tail`
_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
STATES = ("queued", "published", "delivered", "arrived", "accepted", "assigned", "processing", "done", "refused",
          "failed", "recalled", "parked")


# ------------------------------------------------------------------ helpers

def _since(text: str | None) -> datetime | None:
    """--since: an ISO 8601 day or instant (UTC unless it names an offset), or a span back from now (90s, 15m,
    2h, 3d)."""
    if text is None:
        return None
    text = text.strip()
    if match := _RELATIVE.fullmatch(text):
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r}: give a day (2026-03-01), an instant (2026-03-01T08:00, +07:00 or Z allowed) or a "
             "span back from now (90s, 15m, 2h, 3d)", 2)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _code(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return parse_agency_code(text).text
    except Refusal as refusal:
        refuse(refusal)


def _short(value: str | None) -> str:
    """A submission id's start."""
    if not value:
        return "-"
    return value if len(value) <= SHORT else value[:SHORT] + "…"


def _tail(value: str | None) -> str:
    """An axis id's end (its start is a timestamp)."""
    if not value:
        return "-"
    return value if len(value) <= SHORT else "…" + value[-SHORT:]


def _at(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%m-%d %H:%M:%S") if value else "-"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _refusal_label(code: int | None) -> str:
    if code is None:
        return "-"
    try:
        return RefusalCode.from_number(code).label
    except KeyError:
        return f"AX{code}"


def _table(*columns: tuple[str, dict[str, Any]]) -> Table:
    return table(*(Column(name, **options) for name, options in columns))


def _document_row(doc: Document, deliveries: list[Delivery]) -> dict[str, Any]:
    return {"axis_id": doc.axis_id, "document_id": doc.document_id, "sender": doc.sender_code,
            "received_at": _iso(doc.received_at), "priority": doc.priority, "size": doc.size, "digest": doc.digest,
            "deliveries": [{"recipient": d.recipient_code, "state": d.state, "attempts": d.attempts,
                            "updated_at": _iso(d.updated_at), "last_error": d.last_error} for d in deliveries]}


def _refused_row(row: Submission) -> dict[str, Any]:
    label = _refusal_label(row.code)
    return {"submission": row.id, "agency": row.agency_code, "submitted_at": _iso(row.created_at),
            "decided_at": _iso(row.decided_at), "code": row.code, "name": label.partition(" ")[2] or None,
            "detail": row.detail, "digest": row.digest}


# ------------------------------------------------------------------ traffic list

@app.command("list")
def traffic_list(
    sender: str | None = typer.Option(None, "--from", help="Only documents from this agency (with --refused: "
                                                           "submitted with its credential)."),
    recipient: str | None = typer.Option(None, "--to", help="Only documents with a delivery to this agency."),
    state: str | None = typer.Option(None, "--state", help=f"Only documents with a delivery in this state "
                                                           f"({', '.join(STATES)})."),
    since: str | None = typer.Option(None, "--since", help="Only since then: 2026-03-01, 2026-03-01T08:00+07:00, "
                                                           "or a span back from now (15m, 2h, 3d)."),
    refused: bool = typer.Option(False, "--refused", help="List the refused submissions instead, with their "
                                                          "refusal codes."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """Documents newest first, each with the state of every delivery; or (--refused) refused submissions."""
    sender, recipient = _code(sender), _code(recipient)
    start = _since(since)
    if state is not None and state not in STATES:
        fail(f"--state {state!r}: use one of {', '.join(STATES)}", 2)
    if refused and (recipient is not None or state is not None):
        fail("--refused lists submissions, which have no recipients or delivery states: drop --to and --state", 2)
    store = _open_store(db)
    try:
        if refused:
            rows = [_refused_row(r) for r in store.refused(agency=sender, since=start, limit=limit)]
        else:
            rows = [_document_row(d, dl) for d, dl in store.traffic(sender=sender, recipient=recipient, state=state,
                                                                  since=start, limit=limit)]
    finally:
        store.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no refused submissions" if refused else "no documents", markup=False)
        return
    if refused:
        table = _table(("submitted (UTC)", {"no_wrap": True}), ("submission", {"no_wrap": True}),
                       ("agency", {"no_wrap": True, "min_width": 13}), ("code", {"no_wrap": True}),
                       ("refusal", {"overflow": "fold", "ratio": 1}))
        for r in rows:
            table.add_row(_at(datetime.fromisoformat(r["submitted_at"])), _short(r["submission"]),
                          r["agency"] or "-", f"AX{r['code']}" if r["code"] is not None else "-",
                          f"{r['name'] or ''}: {r['detail'] or ''}")
    else:
        table = _table(("received (UTC)", {"no_wrap": True}), ("axis id", {"no_wrap": True}),
                       ("from", {"no_wrap": True}), ("document", {"overflow": "fold", "ratio": 1}),
                       ("to / state", {"no_wrap": True}))
        for r in rows:
            table.add_row(_at(datetime.fromisoformat(r["received_at"])), _tail(r["axis_id"]), r["sender"],
                          r["document_id"],
                          Text("\n".join(printable(f"{d['recipient']} {d['state']}") for d in r["deliveries"])))
    stdout.print(table)


# ------------------------------------------------------------------ traffic show

def _find(store: Store, given: str) -> Document:
    """The document whose axis id is `given`, or starts or ends with it (at least MIN_PREFIX characters)."""
    given = given.strip().lower().strip("…")
    found = store.get_document(given)
    if found is not None:
        return found
    if len(given) < MIN_PREFIX:
        fail(f"no document {given!r}: give its axis id, or at least {MIN_PREFIX} of its first characters")
    matches = store.documents_by_fragment(given, limit=2)
    if not matches:
        fail(f"no document has an axis id starting or ending with {given!r} (`axis traffic list` shows them)")
    if len(matches) > 1:
        fail(f"more than one document has an axis id starting or ending with {given!r}: give more of it")
    return matches[0]


@app.command("show")
def traffic_show(
    axis_id: str = typer.Argument(..., help="The axis id (or its first 8+ characters)."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """One document: what it is, every delivery with its state, every receipt, the status packets answering it."""
    store = _open_store(db)
    try:
        doc = _find(store, axis_id)
        deliveries = store.deliveries(doc.axis_id)
        receipts = store.receipts(doc.axis_id)
        answers = store.answers(doc.axis_id)
    finally:
        store.close()
    report = {**_document_row(doc, deliveries), "kind": doc.kind, "business_type": doc.business_type,
              "response_for": doc.response_for,
              "receipts": [{"kind": r.kind, "recipient": r.recipient_code, "code": r.code, "detail": r.detail,
                            "at": _iso(r.created_at), "digest": r.digest} for r in receipts],
              "answers": [{"axis_id": a.axis_id, "sender": a.sender_code, "document_id": a.document_id,
                           "received_at": _iso(a.received_at)} for a in answers]}
    if as_json:
        print_json(report)
        return
    def say(text: object = "") -> None:
        stdout.print(printable(text) if isinstance(text, str) else text, markup=False,
                     soft_wrap=False)  # wrapped at the terminal's width

    say(f"axis id   {doc.axis_id}")
    say(f"document  {doc.document_id} ({doc.kind}, priority {doc.priority}, {doc.size} bytes)")
    say(f"from      {doc.sender_code}, received {doc.received_at:%Y-%m-%d %H:%M:%S} UTC")
    say(f"sha256    {doc.digest}")
    if doc.response_for:
        say(f"answers   {doc.response_for}")
    table = _table(("recipient", {"no_wrap": True}), ("state", {"no_wrap": True}), ("tries", {"justify": "right"}),
                   ("since (UTC)", {"no_wrap": True}), ("last error", {"overflow": "fold", "ratio": 1}))
    for d in deliveries:
        table.add_row(d.recipient_code, d.state, str(d.attempts), _at(d.updated_at), d.last_error or "")
    say()
    say(table if deliveries else "no deliveries")
    table = _table(("at (UTC)", {"no_wrap": True}), ("receipt", {"no_wrap": True}), ("recipient", {"no_wrap": True}),
                   ("code", {"no_wrap": True}), ("detail", {"overflow": "fold", "ratio": 1}))
    for r in receipts:
        table.add_row(_at(r.created_at), r.kind, r.recipient_code or "-", r.code or "", r.detail or "")
    say()
    say(table if receipts else "no receipts")  # a status packet answering it is a status receipt there


# ------------------------------------------------------------------ traffic tail

def describe(entry: AuditEntry) -> str:
    """One line for a traffic event of the audit log (any other entry: its action, subject and data)."""
    d, subject = entry.data, entry.subject or "-"
    action = entry.action
    if action == "accepted" and d.get("kind") == "status":
        return f"status {d.get('status')} from {d.get('sender')} about {_tail(d.get('answers'))} accepted"
    if action == "accepted":
        return (f"accepted {_tail(subject)} {d.get('document_id')} from {d.get('sender')} to "
                f"{', '.join(d.get('recipients') or []) or '-'}")
    if action == "duplicate":
        return f"duplicate of {_tail(subject)} from {d.get('sender')} (submission {_short(d.get('submission'))})"
    if action == "refused":
        return (f"refused submission {_short(subject)} from {d.get('sender') or d.get('submitted_by') or '?'}: "
                f"{_refusal_label(d.get('code'))}: {d.get('detail')}")
    if action == "status":
        return f"{_tail(subject)} for {d.get('from')}: status {d.get('status')} -> {d.get('state')}"
    if action == "delivered":
        return f"delivered {_tail(subject)} to {d.get('recipient')} ({d.get('state')})"
    if action == "delivery-failed":
        return f"failed {_tail(subject)} for {d.get('recipient')}: {d.get('reason')}"
    if action == "dead-letter":
        return f"dead letter {_short(subject)} on {d.get('queue')}: {d.get('reason')}"
    return f"{action} {subject} {json.dumps(d, ensure_ascii=False, separators=(',', ':'))}"


@app.command("tail")
def traffic_tail(
    interval: float = typer.Option(0.5, "--interval", min=0.05, help="Seconds between two looks at the store."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    db: str | None = DbOption,
) -> None:
    """Print each decision and delivery state change as it happens (from the audit log), until Ctrl-C."""
    store = _open_store(db)
    after, _ = store.audit_head()
    stderr.print(f"following the traffic after audit entry {after}; Ctrl-C stops", markup=False)
    try:
        while True:
            page = store.audit_page(after=after, limit=TAIL_PAGE)
            for entry in page:
                if as_json:
                    print(json.dumps({"seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor,
                                      "action": entry.action, "subject": entry.subject, "data": entry.data},
                                     ensure_ascii=False), flush=True)
                else:
                    stdout.print(printable(f"{entry.at:%H:%M:%S} {describe(entry)}"), markup=False, soft_wrap=True)
                after = entry.seq
            if len(page) < TAIL_PAGE:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


# ------------------------------------------------------------------ queues

def queues(
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
) -> None:
    """The broker's queues (ready, in flight, consumers, age of the oldest message, dead letters) and the
    deliveries waiting in the store for each recipient."""
    from axis import wire

    chosen = current(broker=broker)
    if chosen.broker == EMBEDDED and not chosen.embedded_transport.exists():
        fail(f"no embedded transport at {chosen.embedded_transport}: no hub has run with this AXIS_DATA (start "
             "`axis serve`), or give --broker")

    async def main() -> list[QueueStats]:
        # Not `open_broker`, which waits out an outage: a look at the queues says at once that it cannot.
        transport = await open_transport(chosen.broker, name="axis-queues", lease=chosen.embedded_lease,
                                         timeout=10.0, default_embedded_path=chosen.embedded_transport)
        try:
            return await transport.queue_stats([wire.INTAKE_QUEUE, DEAD_LETTER_FEED])
        finally:
            await transport.close()

    try:
        stats = asyncio.run(main())
    except TransportError as exc:
        fail(f"cannot read the queues of {redact_url(chosen.broker)}: {exc}")
    store = _open_store(db)
    try:
        waiting = store.waiting()
    finally:
        store.close()
    now = datetime.now(UTC)
    broker_rows: list[dict[str, Any]] = [
        {"queue": q.queue, "ready": q.ready, "in_flight": q.in_flight, "consumers": q.consumers,
         "oldest_age_seconds": None if q.oldest_age is None else round(q.oldest_age, 1),
         "dead_letters": q.dead_letters} for q in stats]
    store_rows: list[dict[str, Any]] = [
        {"recipient": code, "waiting": n, "oldest_age_seconds": round((now - oldest).total_seconds(), 1)}
        for code, (n, oldest) in sorted(waiting.items())]
    if as_json:
        print_json({"broker": broker_rows, "deliveries": store_rows})
        return
    table = _table(("queue", {"no_wrap": True}), ("ready", {"justify": "right"}),
                   ("in flight", {"justify": "right"}), ("consumers", {"justify": "right"}),
                   ("oldest", {"justify": "right"}), ("dead letters", {"justify": "right"}))
    for r in broker_rows:
        table.add_row(r["queue"], str(r["ready"]), _count(r["in_flight"]), _count(r["consumers"]),
                      duration(r["oldest_age_seconds"]), str(r["dead_letters"]))
    stdout.print(table if broker_rows else "no Axis queues on the broker yet (has `axis serve` run?)")
    stdout.print()
    if not store_rows:
        stdout.print("no deliveries waiting for any agency", markup=False)
        return
    table = _table(("deliveries waiting for", {"no_wrap": True}), ("count", {"justify": "right"}),
                   ("oldest", {"justify": "right"}))
    for r in store_rows:
        table.add_row(r["recipient"], str(r["waiting"]), duration(r["oldest_age_seconds"]))
    stdout.print(table)


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)
