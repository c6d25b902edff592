"""`axis dlq list/show/replay/purge`: the intake queue's dead letters and the parked deliveries, on both
configurations (SQLite + embedded transport; PostgreSQL + RabbitMQ, each test in its own database and vhost).

The store is filled the way the hub and the gateway fill it (a document, its deliveries, a recipient's
failure report parks one); the commands' effects are read back from the store, the broker and the audit log.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from axis import wire
from axis.store import Store, open_store
from axis.transport import open_transport
from cli.main import app
from tests.store.conftest import fresh_rabbitmq_and_postgres, pg_template  # noqa: F401 - fixture reused
from tests.store.store_helpers import R1, R2, R3, SENDER, accept
from tests.transport.support import next_delivery

RABBIT = [pytest.mark.rabbitmq, pytest.mark.postgres]


@dataclass
class Axis:
    data: Path
    db: str
    broker: str

    def __call__(self, *args: str, input: str | None = None, columns: int = 200) -> Result:
        broker = ["--broker", self.broker] if args[0] == "dlq" else []
        return CliRunner().invoke(app, [*args, "--db", self.db, *broker], input=input,
                                  env={"COLUMNS": str(columns), "NO_COLOR": "1", "AXIS_DATA": str(self.data)})

    def json(self, *args: str) -> object:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def store(self) -> Store:
        return open_store(self.db)

    def park_letter(self, message_id: str, headers: dict[str, str]) -> None:
        """One submission dead-lettered on axis.intake, the way the hub parks a poison message."""
        async def main() -> None:
            transport = await open_transport(self.broker)
            try:
                await transport.declare_queue(wire.INTAKE_QUEUE)
                await transport.publish(wire.INTAKE_QUEUE, b"parked bytes", message_id=message_id, headers=headers)
                async with transport.consume(wire.INTAKE_QUEUE) as consumer:
                    await (await next_delivery(consumer)).dead_letter(f"could not handle {message_id}")
            finally:
                await transport.close()
        asyncio.run(main())

    def intake(self) -> tuple[list[str], int]:
        """(message ids of axis.intake's dead letters, messages ready in axis.intake)."""
        async def main() -> tuple[list[str], int]:
            transport = await open_transport(self.broker)
            try:
                letters = await transport.dead_letters(wire.INTAKE_QUEUE)
                return [x.message_id for x in letters], await transport.depth(wire.INTAKE_QUEUE)
            finally:
                await transport.close()
        return asyncio.run(main())


@pytest.fixture(params=["embedded", pytest.param("rabbitmq+postgres", marks=RABBIT)])
def axis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Axis]:
    if request.param == "embedded":
        yield Axis(tmp_path, f"sqlite:///{tmp_path / 'axis.db'}", f"embedded://{tmp_path / 'transport.db'}")
        return
    with fresh_rabbitmq_and_postgres(request, "axis-dlq") as (db, broker):
        yield Axis(tmp_path, db, broker)


@pytest.fixture
def parked(axis: Axis) -> dict[str, str]:
    """Two documents from SENDER to R1..R3: R1 reported #1 failed, R2 reported #2 failed, R3 took #1."""
    with open_store(axis.db, create=True) as store:
        with store.write() as tx:
            tx.add_agency(SENDER, "Văn phòng Chính phủ")
            for code in (R1, R2, R3):
                tx.add_agency(code, f"Agency {code}")
        first, second = accept(store, 1), accept(store, 2)
        with store.write() as tx:
            assert tx.transition(first, R1, "parked", error="AX311 CERT_UNTRUSTED: another root")
            tx.add_receipt(first, "error", b"<error receipt/>", R1, "500", "AX311 CERT_UNTRUSTED: another root")
            assert tx.transition(second, R2, "parked", error="disk full")
            assert tx.transition(first, R3, "delivered")
    return {"first": first, "second": second}


def _state(axis: Axis, axis_id: str, code: str) -> tuple[str, int]:
    with axis.store() as store:
        [d] = [d for d in store.deliveries(axis_id) if d.recipient_code == code]
    return d.state, d.attempts


def _actions(axis: Axis, subject: str) -> list[str]:
    with axis.store() as store:
        return [e.action for e in store.audit_entries_about(subject) if e.actor == "operator"]


def test_every_queue_is_listed_and_each_one_alone(axis: Axis, parked: dict[str, str]) -> None:
    axis.park_letter("sub-3", {wire.H_SUBMISSION: "sub-3", wire.H_SENDER: SENDER})
    rows = axis.json("dlq", "list")
    assert [(r["queue"], r["id"], r["attempts"], r["reason"]) for r in rows] == [
        ("axis.intake", "sub-3", 1, "could not handle sub-3"),
        (f"deliveries:{R1}", f"{parked['first']}/{R1}", 0, "AX311 CERT_UNTRUSTED: another root"),
        (f"deliveries:{R2}", f"{parked['second']}/{R2}", 0, "disk full")]
    assert rows[1]["sender"] == SENDER and rows[1]["document_id"] == "1/VPCP-TTĐT"
    assert [r["id"] for r in axis.json("dlq", "list", "axis.intake")] == ["sub-3"]
    assert [r["id"] for r in axis.json("dlq", "list", "axis.intake.dlq")] == ["sub-3"]
    assert [r["id"] for r in axis.json("dlq", "list", f"deliveries:{R2}")] == [f"{parked['second']}/{R2}"]
    assert len(axis.json("dlq", "list", "deliveries")) == 2
    assert axis.json("dlq", "list", f"deliveries:{R3}") == []


def test_the_table_fits_80_columns(axis: Axis, parked: dict[str, str]) -> None:
    axis.park_letter("sub-3", {wire.H_SUBMISSION: "sub-3"})
    table = axis("dlq", "list", columns=80)
    assert table.exit_code == 0, table.output
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    for text in ("axis.intake", "sub-3", "disk full", R1[-3:]):
        assert text in table.stdout
    shown = axis("dlq", "show", f"{parked['first']}/{R1}", columns=80)
    assert shown.exit_code == 0 and all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout


def test_a_recipients_reason_cannot_drive_the_operators_terminal(axis: Axis, parked: dict[str, str]) -> None:
    """A recipient writes what it likes in the reason it reports (`POST /v1/inbox/{id}/fail`); the tables show its
    control characters escaped, never raw (a screen clear, a window title, a forged line)."""
    hostile = "bad\x1b[2J\x1b]0;owned\x07\nFAKE axis.traffic accepted \x9b31m"
    with axis.store() as store, store.write() as tx:
        assert tx.transition(parked["second"], R1, "parked", error=hostile)
        tx.add_receipt(parked["second"], "error", b"<error receipt/>", R1, "500", hostile)
    for args in (("dlq", "list"), ("dlq", "show", f"{parked['second']}/{R1}")):
        shown = axis(*args)
        assert shown.exit_code == 0, shown.output
        assert not any(c in shown.stdout for c in "\x1b\x07\x9b"), (args, shown.stdout)
        assert "\\x1b[2J" in shown.stdout, (args, shown.stdout)


def test_show_tells_everything_about_one(axis: Axis, parked: dict[str, str]) -> None:
    first = parked["first"]
    report = axis.json("dlq", "show", f"{first}/{R1}")
    assert (report["queue"], report["sender"], report["recipient"], report["state"], report["attempts"]) == (
        f"deliveries:{R1}", SENDER, R1, "parked", 0)
    assert report["reason"] == "AX311 CERT_UNTRUSTED: another root"
    assert report["document_id"] == "1/VPCP-TTĐT" and len(report["digest"]) == 64
    assert [e["event"] for e in report["timeline"]] == ["intake receipt", "error receipt"]
    # A bare axis id names its one parked delivery.
    assert axis.json("dlq", "show", first)["id"] == f"{first}/{R1}"
    axis.park_letter("sub-9", {wire.H_SUBMISSION: "sub-9", wire.H_SENDER: SENDER})
    letter = axis.json("dlq", "show", "sub-9")
    assert (letter["queue"], letter["sender"], letter["reason"], letter["bytes"]) == (
        "axis.intake", SENDER, "could not handle sub-9", len(b"parked bytes"))
    missing = axis("dlq", "show", "nothing-like-it")
    assert missing.exit_code == 1 and "no dead letter 'nothing-like-it'" in missing.output
    assert "Traceback" not in missing.output


def test_replay_puts_a_parked_delivery_back_as_a_new_attempt(axis: Axis, parked: dict[str, str]) -> None:
    first, second = parked["first"], parked["second"]
    done = axis.json("dlq", "replay", f"{first}/{R1}")
    assert done == {"replayed": [{"queue": f"deliveries:{R1}", "id": f"{first}/{R1}"}]}
    assert _state(axis, first, R1) == ("queued", 1)
    with axis.store() as store:
        assert first in [i.axis_id for i in store.inbox(R1)]
    assert _actions(axis, first) == ["delivery-replayed"]
    assert _state(axis, second, R2) == ("parked", 0)  # the others stay

    again = axis("dlq", "replay", f"{first}/{R1}")  # not parked any more
    assert again.exit_code == 1 and "no dead letter" in again.output
    shown = axis.json("dlq", "show", f"{first}/{R1}")  # show follows it whatever its state
    assert shown["state"] == "queued" and [e["event"] for e in shown["timeline"]][-1] == "delivery-replayed"
    receipts = axis.json("receipts", first)
    [r1] = [r for r in receipts[0]["recipients"] if r["recipient"] == R1]
    assert (r1["state"], r1["attempts"], [e["action"] for e in r1["operator"]]) == ("queued", 1,
                                                                                    ["delivery-replayed"])
    assert [r["kind"] for r in r1["receipts"]] == ["error"]
    table = axis("receipts", first)  # the error receipt, then the operator's replay, in time order
    assert table.exit_code == 0, table.output
    assert table.stdout.index("error") < table.stdout.index("replayed") and "attempt 1" in table.stdout
    with axis.store() as store:
        assert store.verify_audit().ok


def test_replay_all_of_one_queue_and_then_of_every_queue(axis: Axis, parked: dict[str, str]) -> None:
    axis.park_letter("sub-3", {wire.H_SUBMISSION: "sub-3"})
    done = axis.json("dlq", "replay", "--all", "--queue", f"deliveries:{R2}")
    assert [d["id"] for d in done["replayed"]] == [f"{parked['second']}/{R2}"]
    assert _state(axis, parked["first"], R1) == ("parked", 0)
    done = axis.json("dlq", "replay", "--all")
    assert sorted(d["id"] for d in done["replayed"]) == sorted([f"{parked['first']}/{R1}", "sub-3"])
    assert axis.json("dlq", "list") == []
    assert axis.intake() == ([], 1)  # republished to axis.intake: a new attempt for the hub
    assert _actions(axis, "sub-3") == ["dead-letter-replayed"]
    assert axis.json("dlq", "replay", "--all") == {"replayed": []}


def test_purge_asks_first_then_fails_the_delivery_for_good(axis: Axis, parked: dict[str, str]) -> None:
    first = parked["first"]
    for answer in ("n\n", ""):  # "no", and no terminal to answer on
        declined = axis("dlq", "purge", f"{first}/{R1}", input=answer)
        assert declined.exit_code == 1 and "nothing purged" in declined.output, declined.output
    assert _state(axis, first, R1) == ("parked", 0)
    accepted = axis("dlq", "purge", f"{first}/{R1}", input="y\n")
    assert accepted.exit_code == 0 and "purged 1" in accepted.stdout, accepted.output
    assert _state(axis, first, R1) == ("failed", 0)
    assert _actions(axis, first) == ["delivery-purged"]
    # Failed is final: nothing to replay.
    assert axis("dlq", "replay", f"{first}/{R1}").exit_code == 1

    axis.park_letter("sub-3", {wire.H_SUBMISSION: "sub-3"})
    done = axis.json("dlq", "purge", "--all", "--yes")
    assert sorted(d["id"] for d in done["purged"]) == sorted([f"{parked['second']}/{R2}", "sub-3"])
    assert axis.intake() == ([], 0)  # gone, not republished
    assert _actions(axis, "sub-3") == ["dead-letter-purged"]
    with axis.store() as store:
        assert store.verify_audit().ok


def test_a_delivery_the_recipient_has_is_no_dead_letter_whatever_the_broker_holds(
        axis: Axis, parked: dict[str, str]) -> None:
    """R3 has #1. A message written straight to the dead-letter queue that claims otherwise is an intake
    dead letter like any other: replaying or purging it republishes or drops bytes, never moves R3's delivery."""
    first = parked["first"]
    axis.park_letter("forged", {wire.H_AXIS_ID: first, wire.H_SUBMISSION: "forged", wire.H_SENDER: SENDER})
    for args in (("replay", f"{first}/{R3}"), ("purge", f"{first}/{R3}", "--yes")):
        refused = axis("dlq", *args)
        assert refused.exit_code == 1 and "no dead letter" in refused.output, refused.output
    assert axis.json("dlq", "replay", "forged")["replayed"] == [{"queue": "axis.intake", "id": "forged"}]
    assert axis.json("dlq", "purge", "--all", "--yes")["purged"] == [{"queue": f"deliveries:{R1}",
                                                                      "id": f"{first}/{R1}"},
                                                                     {"queue": f"deliveries:{R2}",
                                                                      "id": f"{parked['second']}/{R2}"}]
    assert _state(axis, first, R3) == ("delivered", 0)


MISTAKES = [
    (("replay",), "name one dead letter (ID) or pass --all"),
    (("purge", "x", "--all"), "name one dead letter (ID) or pass --all"),
    (("replay", "x", "--queue", "axis.intake"), "--queue goes with --all"),
    (("list", "000.00.00.H01"), "deliveries:000.00.00.H01"),
    (("list", "axis.receipts"), "the queues are axis.intake, deliveries:CODE and deliveries"),
    (("list", "deliveries:not a code"), "'deliveries:not a code'"),
    (("replay", "--all", "--queue", "axis.retry.200ms"), "no dead-letter queue 'axis.retry.200ms'"),
]


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    axis = Axis(tmp_path, f"sqlite:///{tmp_path / 'axis.db'}", f"embedded://{tmp_path / 'transport.db'}")
    for args, expected in MISTAKES:
        result = axis("dlq", *args)
        assert result.exit_code != 0 and expected in result.output, (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3, result.output
