"""`axis dlq …`: what the axis could not hand over, and the operator's two ways out (replay, purge).

Two kinds of dead letter, each in its queue:

- `axis.intake`: submissions the hub could not handle at all (poison messages), parked in the
  transport's dead-letter queue. Replay republishes one to axis.intake (a new attempt); purge
  removes it.
- `deliveries:CODE`: deliveries that agency CODE reported it cannot take (`parked` in the store; the
  sender got an error receipt). Replay puts one back in CODE's inbox (a new delivery attempt); purge
  makes it `failed` for good.

An intake dead letter's id is its message id (the submission id); a parked delivery's is
`AXIS_ID/CODE`, and a bare AXIS_ID names all its parked deliveries. Every replay and purge is an
audit entry written with the change (`delivery-replayed`, `delivery-purged`, `dead-letter-replayed`,
`dead-letter-purged`). See docs/dead-letters.md.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.table import Column
from rich.text import Text

from axis import wire
from axis.edxml import parse_agency_code
from axis.logs import printable
from axis.refusals import Refusal
from axis.transport import DeadLetter, TransportError, UnroutableError
from cli.operator import BrokerOption, DbOption, _open_store
from cli.output import REFUSED, fail, print_json, stderr, stdout, table
from cli.settings import open_broker

if TYPE_CHECKING:
    from axis.store.parked import ParkedDelivery

app = typer.Typer(help="Dead letters: list, show, replay and purge what the axis could not hand over.",
                  no_args_is_help=True)

DELIVERIES = "deliveries"
BATCH = 500            # parked deliveries replayed or purged per transaction
LOOKUP = 100_000       # intake dead letters read to find one by id

QueueArgument = typer.Argument(None, help="axis.intake, or deliveries:CODE (the deliveries agency CODE could not "
                                          "take), or deliveries (all of them); default: every queue.")
QueueOption = typer.Option(None, "--queue", help="With --all: only this queue (axis.intake, deliveries:CODE or "
                                                 "deliveries).")
AllOption = typer.Option(False, "--all", help="Every dead letter (of --queue, or of every queue).")


@dataclass(frozen=True)
class Queue:
    """What `axis dlq` acts on: the intake queue, and/or the parked deliveries (to one `recipient`, or all)."""

    intake: bool
    deliveries: bool
    recipient: str | None = None


EVERY_QUEUE = Queue(intake=True, deliveries=True)


def parse_queue(name: str | None) -> Queue:
    """The queue a name designates; one line naming the valid ones otherwise."""
    if name is None:
        return EVERY_QUEUE
    if name.removesuffix(".dlq") == wire.INTAKE_QUEUE:
        return Queue(intake=True, deliveries=False)
    if name == DELIVERIES:
        return Queue(intake=False, deliveries=True)
    if name.startswith(f"{DELIVERIES}:"):
        try:
            code = parse_agency_code(name.split(":", 1)[1]).text
        except Refusal as refusal:
            fail(f"{name!r}: {refusal.detail or refusal.code.message}")
        return Queue(intake=False, deliveries=True, recipient=code)
    hint = f" (the deliveries {name} could not take: deliveries:{name})" if _is_code(name) else ""
    fail(f"no dead-letter queue {name!r}{hint}; the queues are {wire.INTAKE_QUEUE}, deliveries:CODE and "
         "deliveries")


def _is_code(name: str) -> bool:
    try:
        parse_agency_code(name)
    except Refusal:
        return False
    return True


# ------------------------------------------------------------------ reading

def _letter_row(letter: DeadLetter) -> dict[str, Any]:
    headers = letter.headers
    return {"queue": wire.INTAKE_QUEUE, "id": letter.message_id, "kind": "submission",
            "axis_id": headers.get(wire.H_AXIS_ID), "sender": headers.get(wire.H_SENDER), "recipient": None,
            "document_id": headers.get(wire.H_DOCUMENT_ID), "submission": headers.get(wire.H_SUBMISSION),
            "attempts": letter.attempts, "since": letter.dead_at, "reason": letter.reason, "bytes": len(letter.body)}


def _parked_row(p: ParkedDelivery) -> dict[str, Any]:
    return {"queue": f"{DELIVERIES}:{p.recipient_code}", "id": f"{p.axis_id}/{p.recipient_code}", "kind": p.kind,
            "axis_id": p.axis_id, "sender": p.sender_code, "recipient": p.recipient_code,
            "document_id": p.document_id, "submission": None, "attempts": p.attempts, "since": p.parked_at,
            "reason": p.reason or "", "bytes": None}


def _intake_letters(broker: str | None, limit: int) -> list[DeadLetter]:
    async def main() -> list[DeadLetter]:
        transport = await open_broker(broker, name="axis-dlq")
        try:
            return await transport.dead_letters(wire.INTAKE_QUEUE, limit=limit)
        except UnroutableError:
            return []  # no hub has declared the queue yet: nothing can have died in it
        finally:
            await transport.close()

    try:
        return asyncio.run(main())
    except TransportError as exc:
        fail(f"cannot read the dead letters of {wire.INTAKE_QUEUE}: {exc}")


def _parked_rows(db: str | None, queue: Queue, limit: int, axis_id: str | None = None) -> list[ParkedDelivery]:
    from axis.store.parked import parked

    store = _open_store(db)
    try:
        return parked(store, recipient=queue.recipient, axis_id=axis_id, limit=limit)
    finally:
        store.close()


@app.command("list")
def dlq_list(
    queue: str | None = QueueArgument,
    limit: int = typer.Option(1000, "--limit", min=1, help="At most this many per queue, oldest first."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
) -> None:
    """List dead letters: what could not be handed over, since when, after how many attempts, and why.

    Listing takes nothing away. Act on them with `axis dlq replay` or `axis dlq purge`.
    """
    chosen = parse_queue(queue)
    rows = [_letter_row(letter) for letter in _intake_letters(broker, limit)] if chosen.intake else []
    if chosen.deliveries:
        rows += [_parked_row(p) for p in _parked_rows(db, chosen, limit)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print(f"no dead letters in {queue or 'any queue'}")
        return
    # The id whole (under its queue, folded at the column's width): `dlq replay ID` takes it.
    grid = table(Column("since (UTC)", no_wrap=True), Column("queue / id", overflow="fold"),
                 Column("from", no_wrap=True), Column("tries", no_wrap=True),
                 Column("reason", overflow="fold", max_width=24))
    for row in rows:
        where = Text(f"{printable(row['queue'])}\n{printable(row['id'])}")  # two lines: a Text, escaped here
        grid.add_row(f"{row['since']:%m-%d %H:%M}" if row["since"] else "", where, row["sender"] or "",
                     str(row["attempts"]), row["reason"])
    stdout.print(grid)


# ------------------------------------------------------------------ one dead letter

@dataclass(frozen=True)
class Found:
    """What an id names: parked deliveries (axis id, recipient), or intake dead letters."""

    deliveries: list[tuple[str, str]]
    letters: list[DeadLetter]

    def __len__(self) -> int:
        return len(self.deliveries) + len(self.letters)


def _find(ident: str, db: str | None, broker: str | None, *, any_state: bool = False) -> Found:
    """The dead letters `ident` names: AXIS_ID/CODE (that delivery; with `any_state` whatever its state),
    AXIS_ID (its parked deliveries), or an intake dead letter's message id."""
    if "/" in ident:
        axis_id, _, code = ident.rpartition("/")
        store = _open_store(db)
        try:
            match = [d for d in store.deliveries(axis_id) if d.recipient_code == code
                     and (any_state or d.state == "parked")]
        finally:
            store.close()
        return Found([(axis_id, code)] if match else [], [])
    parked = _parked_rows(db, EVERY_QUEUE, LOOKUP, axis_id=ident)
    if parked:
        return Found([(p.axis_id, p.recipient_code) for p in parked], [])
    return Found([], [x for x in _intake_letters(broker, LOOKUP) if x.message_id == ident])


def _not_found(ident: str) -> NoReturn:
    fail(f"no dead letter {ident!r}: `axis dlq list` shows their ids (AXIS_ID/CODE for a delivery, the "
         "message id for a submission)")


@app.command("show")
def dlq_show(
    ident: str = typer.Argument(..., metavar="ID", help="AXIS_ID/CODE, AXIS_ID, or an intake message id."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
) -> None:
    """Everything about one dead letter: the document, sender, recipient, attempts, reason and timeline."""
    found = _find(ident, db, broker, any_state=True)
    if not found:
        _not_found(ident)
    if len(found) > 1:
        fail(f"{ident} names {len(found)} parked deliveries: name one, e.g. "
             f"{found.deliveries[0][0]}/{found.deliveries[0][1]}")
    report = _delivery_report(db, *found.deliveries[0]) if found.deliveries else _letter_report(db, found.letters[0])
    if as_json:
        print_json(report)
        return
    for key, value in report.items():
        if key not in ("timeline", "headers"):
            stdout.print(f"{key:>12}: {_text(value)}", markup=False)
    timeline = table(Column("at (UTC)", no_wrap=True), "event", "by", Column("detail", overflow="fold"))
    for event in report["timeline"]:
        timeline.add_row(f"{event['at']:%Y-%m-%d %H:%M:%S}", event["event"], event["by"], event["detail"] or "")
    stdout.print(timeline)


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S} UTC"
    return "" if value is None else printable(str(value))  # a reason is what the recipient said


# Audit actions that tell a delivery's story (the receipts tell the rest).
_DELIVERY_EVENTS = ("delivery-failed", "delivery-replayed", "delivery-purged", "delivered")


def _delivery_report(db: str | None, axis_id: str, code: str) -> dict[str, Any]:
    store = _open_store(db)
    try:
        document = store.get_document(axis_id)
        [delivery] = [d for d in store.deliveries(axis_id) if d.recipient_code == code]
        receipts = [r for r in store.receipts(axis_id) if r.recipient_code in (None, code)]
        entries = [e for e in store.audit_entries_about(axis_id)
                   if e.action in _DELIVERY_EVENTS and e.data.get("recipient") == code]
    finally:
        store.close()
    assert document is not None  # a delivery's document is its foreign key
    timeline = [{"at": r.created_at, "event": f"{r.kind} receipt", "by": "axis" if r.kind in ("intake", "error")
                 else code, "detail": " ".join(filter(None, (r.code, r.detail)))} for r in receipts]
    timeline += [{"at": e.at, "event": e.action, "by": e.actor, "detail": _event_detail(e.data)} for e in entries]
    timeline.sort(key=lambda event: event["at"])
    return {"id": f"{axis_id}/{code}", "queue": f"{DELIVERIES}:{code}", "axis_id": axis_id,
            "document_id": document.document_id, "kind": document.kind, "sender": document.sender_code,
            "recipient": code, "received_at": document.received_at, "digest": document.digest,
            "size": document.size, "state": delivery.state, "attempts": delivery.attempts,
            "reason": delivery.last_error, "since": delivery.updated_at, "timeline": timeline}


def _event_detail(data: dict[str, Any]) -> str:
    parts = [f"attempt {data['attempt']}"] if "attempt" in data else []
    parts += [str(data[k]) for k in ("reason", "credential") if data.get(k)]
    return "; ".join(parts)


def _letter_report(db: str | None, letter: DeadLetter) -> dict[str, Any]:
    store = _open_store(db)
    try:
        entries = store.audit_entries_about(letter.message_id[:255])
    finally:
        store.close()
    row = _letter_row(letter)
    timeline = [{"at": e.at, "event": e.action, "by": e.actor, "detail": _event_detail(e.data)} for e in entries]
    return {**{k: v for k, v in row.items() if k != "recipient"}, "priority": letter.priority,
            "headers": dict(letter.headers), "timeline": timeline}


# ------------------------------------------------------------------ replay, purge

@dataclass(frozen=True)
class _Action:
    verb: str                     # replay | purge
    done: str                     # replayed | purged
    on_delivery: Callable[..., bool]
    audit: str                    # the audit action of an intake dead letter


def _act(action: _Action, ident: str | None, every: bool, queue: str | None, yes: bool, as_json: bool,
         db: str | None, broker: str | None) -> None:
    if (ident is None) == (not every):
        fail(f"name one dead letter (ID) or pass --all: `axis dlq {action.verb} ID` or "
             f"`axis dlq {action.verb} --all [--queue Q]`", 2)
    if queue is not None and not every:
        fail("--queue goes with --all (an ID names its dead letter already)", 2)
    if every:
        chosen = parse_queue(queue)
        deliveries = ([(p.axis_id, p.recipient_code) for p in _all_parked(db, chosen)] if chosen.deliveries
                      else [])
        letters = _intake_letters(broker, LOOKUP) if chosen.intake else []
    else:
        assert ident is not None
        found = _find(ident, db, broker)
        if not found:
            _not_found(ident)
        deliveries, letters = found.deliveries, found.letters
    if not deliveries and not letters:
        if as_json:
            print_json({action.done: []})
        else:
            stdout.print(f"nothing to {action.verb}")
        return
    if not yes and action.verb == "purge":
        what = f"{len(deliveries)} parked deliveries and {len(letters)} intake dead letters"
        try:
            confirmed = typer.confirm(f"Purge {what} for good?", default=False, err=True)
        except typer.Abort:  # no terminal to answer on (end of input): not a yes
            confirmed = False
        if not confirmed:
            stderr.print("nothing purged")
            raise typer.Exit(REFUSED)
    done = _apply(action, deliveries, letters, db, broker)
    if as_json:
        print_json({action.done: done})
        return
    skipped = len(deliveries) + len(letters) - len(done)
    note = f" ({skipped} had moved on meanwhile and were left alone)" if skipped else ""
    stdout.print(f"{action.done} {len(done)} dead letter(s){note}")


def _all_parked(db: str | None, queue: Queue) -> list[ParkedDelivery]:
    """Every parked delivery of `queue` now (what --all means: a delivery parked again while the command runs
    is not taken twice)."""
    from axis.store.parked import parked

    store = _open_store(db)
    rows: list[ParkedDelivery] = []
    try:
        while True:
            last = rows[-1] if rows else None
            page = parked(store, recipient=queue.recipient, limit=5000,
                          after=(last.parked_at, last.axis_id, last.recipient_code) if last else None)
            rows += page
            if len(page) < 5000:
                return rows
    finally:
        store.close()


def _apply(action: _Action, deliveries: list[tuple[str, str]], letters: list[DeadLetter], db: str | None,
           broker: str | None) -> list[dict[str, str]]:
    """Replay or purge; each transaction writes its audit entries with its changes."""
    done: list[dict[str, str]] = []
    if deliveries:
        store = _open_store(db, writes=True)
        try:
            for start in range(0, len(deliveries), BATCH):
                with store.write() as tx:
                    batch = [(axis_id, code) for axis_id, code in deliveries[start:start + BATCH]
                             if action.on_delivery(tx, axis_id, code, actor="operator")]
                done += [{"queue": f"{DELIVERIES}:{code}", "id": f"{axis_id}/{code}"} for axis_id, code in batch]
        finally:
            store.close()
    if letters:
        done += _apply_to_letters(action, letters, db, broker)
    return done


def _apply_to_letters(action: _Action, letters: Iterable[DeadLetter], db: str | None,
                      broker: str | None) -> list[dict[str, str]]:
    letters = list(letters)
    ids = [letter.message_id for letter in letters]

    async def move() -> int:
        transport = await open_broker(broker, name="axis-dlq")
        try:
            if action.verb == "replay":
                return await transport.replay_dead_letters(wire.INTAKE_QUEUE, ids)
            return await transport.purge_dead_letters(wire.INTAKE_QUEUE, ids)
        finally:
            await transport.close()

    store = _open_store(db, writes=True)
    try:
        # The entries commit only once the broker has done it: none for a replay that did not happen.
        with store.write() as tx:
            for letter in letters:
                tx.audit("operator", action.audit, letter.message_id[:255], {
                    "queue": wire.INTAKE_QUEUE, "attempts": letter.attempts, "reason": letter.reason[:300],
                    "sender": letter.headers.get(wire.H_SENDER)})
            try:
                moved = asyncio.run(move())
            except TransportError as exc:
                fail(f"cannot {action.verb} the dead letters of {wire.INTAKE_QUEUE}: {exc}")
    finally:
        store.close()
    if moved < len(ids):
        stderr.print(f"warning: {len(ids) - moved} of the {len(ids)} intake dead letters were gone already "
                     f"(replayed or purged meanwhile)", markup=False)
    return [{"queue": wire.INTAKE_QUEUE, "id": message_id} for message_id in ids]


def _replay_action() -> _Action:
    from axis.store.parked import replay
    return _Action("replay", "replayed", replay, "dead-letter-replayed")


def _purge_action() -> _Action:
    from axis.store.parked import purge
    return _Action("purge", "purged", purge, "dead-letter-purged")


@app.command("replay")
def dlq_replay(
    ident: str | None = typer.Argument(None, metavar="[ID]", help="AXIS_ID/CODE, AXIS_ID, or an intake message id."),
    every: bool = AllOption,
    queue: str | None = QueueOption,
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
) -> None:
    """Try again: a parked delivery goes back to its recipient's inbox, an intake dead letter to axis.intake.

    Each replay is a new attempt, recorded in the audit log. Fix the cause first (the recipient's trust
    roots, its certificate, its disk), or the recipient reports it again and it is parked again.
    """
    _act(_replay_action(), ident, every, queue, True, as_json, db, broker)


@app.command("purge")
def dlq_purge(
    ident: str | None = typer.Argument(None, metavar="[ID]", help="AXIS_ID/CODE, AXIS_ID, or an intake message id."),
    every: bool = AllOption,
    queue: str | None = QueueOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
) -> None:
    """Give up for good: a parked delivery becomes `failed`, an intake dead letter is removed.

    Asks for confirmation unless --yes. Each purge is recorded in the audit log; the sender already
    holds the error receipt of a parked delivery.
    """
    _act(_purge_action(), ident, every, queue, yes, as_json, db, broker)
