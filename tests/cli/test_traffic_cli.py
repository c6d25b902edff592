"""`axis traffic` and `axis queues` on what someone wrote straight into the store, and their everyday mistakes."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from axis.store import Decision, NewSubmission, open_store
from axis.transport import open_transport
from cli.main import app

G22 = "000.00.00.G22"
HOSTILE = "bad\x1b[2J\x1b]0;owned\x07\nFAKE 12-06 axis.traffic accepted \x9b31m"


def axis(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--db", f"sqlite:///{tmp_path}/axis.db"],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "AXIS_DATA": str(tmp_path)})


def refused_row(tmp_path: Path, detail: str) -> None:
    store = open_store(f"sqlite:///{tmp_path}/axis.db", create=True)
    try:
        with store.write() as tx:
            tx.add_agency(G22, "Văn phòng Chính phủ")
            tx.add_submissions([NewSubmission("5" * 32, G22, None, "d" * 64)])
            tx.decide_submissions([Decision("5" * 32, G22, "refused", None, 301, detail, b"<r/>")])
    finally:
        store.close()


def test_what_a_row_says_cannot_drive_the_terminal(tmp_path: Path) -> None:
    refused_row(tmp_path, HOSTILE)
    table = axis(tmp_path, "traffic", "list", "--refused")
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout and "\x9b" not in table.stdout
    assert "\\x1b[2J" in table.stdout and "FAKE" in table.stdout
    assert not any(line.startswith("FAKE") for line in table.stdout.splitlines())
    [row] = json.loads(axis(tmp_path, "traffic", "list", "--refused", "--json").stdout)
    assert (row["detail"], row["code"], row["name"], row["agency"]) == (HOSTILE, 301, "SIGNATURE_INVALID", G22)


def test_everyday_mistakes_are_one_line(tmp_path: Path) -> None:
    refused_row(tmp_path, "x")
    for args, words in [(("traffic", "list", "--since", "yesterday"), "--since 'yesterday'"),
                        (("traffic", "list", "--state", "lost"), "--state 'lost': use one of"),
                        (("traffic", "list", "--refused", "--to", "000.00.00.H41"), "drop --to and --state"),
                        (("traffic", "list", "--from", "G 22!"), "AX"),
                        (("traffic", "show", "01a2"), "at least 8"),
                        (("traffic", "show", "01a24b67-86"), "no document has an axis id starting or ending")]:
        result = axis(tmp_path, *args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert words in result.stderr and "Traceback" not in result.output, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 3, result.stderr
    missing = CliRunner().invoke(app, ["traffic", "list", "--db", f"sqlite:///{tmp_path}/none.db"],
                                 env={"AXIS_DATA": str(tmp_path)})
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    closed = CliRunner().invoke(app, ["queues", "--db", f"sqlite:///{tmp_path}/axis.db", "--broker",
                                      "amqp://guest:guest@127.0.0.1:1/"],
                                env={"AXIS_DATA": str(tmp_path)})
    assert closed.exit_code == 1 and "cannot read the queues" in closed.stderr, closed.output
    assert len(closed.stderr.strip().splitlines()) <= 3, closed.stderr


def test_queues_of_an_embedded_transport_nobody_consumes(tmp_path: Path) -> None:
    refused_row(tmp_path, "x")
    none = axis(tmp_path, "queues")
    assert none.exit_code == 1 and "no embedded transport at" in none.stderr, none.output

    async def create() -> None:
        await (await open_transport(f"embedded://{tmp_path}/transport.db")).close()
    asyncio.run(create())
    empty = json.loads(axis(tmp_path, "queues", "--json").stdout)
    assert empty == {"broker": [{"queue": "axis.dead-letters", "ready": 0, "in_flight": 0, "consumers": 0,
                                 "oldest_age_seconds": None, "dead_letters": 0}], "deliveries": []}
