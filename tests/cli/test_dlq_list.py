"""`axis dlq list` takes every dead-letter queue Axis has, and only those."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from axis import wire
from axis.transport import open_transport
from cli.main import app
from tests.transport.support import next_delivery

G22 = "000.00.00.G22"


def axis(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--broker", f"embedded://{tmp_path}/transport.db"],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "AXIS_DATA": str(tmp_path)})


def park(tmp_path: Path, queue: str, headers: dict[str, str] | None) -> None:
    """One message dead-lettered on `queue`, the way a consumer that gave up parks it (None: none, just
    the queue)."""
    async def main() -> None:
        transport = await open_transport(f"embedded://{tmp_path}/transport.db")
        try:
            await transport.declare_queue(queue)
            if headers is None:
                return
            await transport.publish(queue, b"parked bytes", message_id="m-1", headers=headers)
            async with transport.consume(queue) as consumer:
                await (await next_delivery(consumer)).dead_letter(f"could not handle it on {queue}")
        finally:
            await transport.close()

    asyncio.run(main())


@pytest.mark.parametrize(("name", "queue", "headers", "shown"), [
    (G22, G22, {wire.H_AXIS_ID: "ax-1", wire.H_SENDER: "000.00.00.H41"}, "ax-1"),
    (f"{G22}.receipts", f"{G22}.receipts", {wire.H_AXIS_ID: "ax-2"}, "ax-2"),
    ("axis.intake", "axis.intake", {wire.H_SUBMISSION: "sub-3"}, "sub-3"),
    ("axis.receipts", "axis.receipts", {}, "m-1"),
    ("axis.receipts.dlq", "axis.receipts", {}, "m-1"),  # the dead-letter queue's own name works too
])
def test_each_kind_of_dead_letter_queue_is_listed(tmp_path: Path, name: str, queue: str,
                                                  headers: dict[str, str], shown: str) -> None:
    park(tmp_path, queue, headers)
    listed = axis(tmp_path, "dlq", "list", name, "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["queue"], row["message_id"], row["attempts"], row["bytes"]) == (queue, "m-1", 1, len(b"parked bytes"))
    assert row["reason"] == f"could not handle it on {queue}"
    table = axis(tmp_path, "dlq", "list", name)
    assert table.exit_code == 0 and shown in table.stdout and "could not handle it" in table.stdout


def test_an_empty_dead_letter_queue_and_names_axis_does_not_have(tmp_path: Path) -> None:
    park(tmp_path, G22, {})
    park(tmp_path, f"{G22}.receipts", None)
    empty = axis(tmp_path, "dlq", "list", f"{G22}.receipts")
    assert empty.exit_code == 0 and f"no dead letters for {G22}.receipts" in empty.stdout
    missing = axis(tmp_path, "dlq", "list", "000.00.00.H14")
    assert missing.exit_code != 0 and "000.00.00.H14" in missing.output
    for bad in ("axis.retry.200ms", "axis.dead-letters", "not a code", "000.00.00.G22.receipts.extra"):
        refused = axis(tmp_path, "dlq", "list", bad)
        assert refused.exit_code != 0, (bad, refused.output)
    assert axis(tmp_path, "dlq", "list", G22, "--json").exit_code == 0  # still there, untouched
