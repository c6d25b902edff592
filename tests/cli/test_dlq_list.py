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


@pytest.mark.parametrize("name", ["axis.intake", "axis.intake.dlq", None])
def test_the_intake_queues_dead_letters_are_listed(tmp_path: Path, name: str | None) -> None:
    queue = "axis.intake"
    park(tmp_path, queue, {wire.H_SUBMISSION: "sub-3"})
    named = [name] if name else []  # axis.intake is the default
    listed = axis(tmp_path, "dlq", "list", *named, "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["queue"], row["message_id"], row["attempts"], row["bytes"]) == (queue, "m-1", 1, len(b"parked bytes"))
    assert row["reason"] == f"could not handle it on {queue}"
    table = axis(tmp_path, "dlq", "list", *named)
    # The table's width is the console's (fixed when cli.output is first imported): its cells may be cut.
    assert table.exit_code == 0 and "axis.intake" in table.stdout and "no dead letters" not in table.stdout


def test_an_empty_dead_letter_queue_and_names_axis_does_not_have(tmp_path: Path) -> None:
    park(tmp_path, "axis.intake", None)
    empty = axis(tmp_path, "dlq", "list", "axis.intake")
    assert empty.exit_code == 0 and "no dead letters for axis.intake" in empty.stdout
    for bad in (G22, f"{G22}.receipts", "axis.receipts", "axis.retry.200ms", "axis.dead-letters", "not a code"):
        refused = axis(tmp_path, "dlq", "list", bad)
        assert refused.exit_code != 0 and "axis.intake" in refused.output, (bad, refused.output)
