"""Secrets stay out of output and logs; files Axis creates are its own user's only (issue 8, item 4).

- `axis serve` printed the broker password in its first line: with passwords in both the
  RabbitMQ and the PostgreSQL URL, neither appears in anything the hub, `axis send`,
  `axis inbox pull` or `axis agency list --json` print or log, nor in the one-line errors
  `axis serve` gives when the database or the broker cannot be reached.
- The SQLite files (plaintext bodies) were world-readable: after `axis demo`, and after a
  whole embedded deployment run by the real commands (pki init/issue, agency add, serve,
  send, pull into the data directory), every file under the data directory is 0600 and
  every folder 0700, although the commands ran with the usual umask 022.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from yarl import URL

from tests.e2e.harness import AXIS, REPO, HubProcess, Running, wait_until
from tests.e2e.packets import G22, H41, HUB, unsigned_document

DB_PASSWORD = "pg-Secret-7f3a1c"  # PostgreSQL runs with trust auth: any password connects


def _assert_no_secret(text: str, where: str, secrets: tuple[str, ...]) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} appears in {where}:\n{text[-3000:]}"


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_no_password_appears_in_output_or_logs(rabbit_deployment, e2e_pki, tmp_path: Path) -> None:
    deployment = rabbit_deployment
    broker = URL(deployment.broker)
    assert broker.password, "the test broker URL carries a password (amqp://guest:guest@…)"
    # Only the password part: the user name is "guest" too, and may be shown.
    secrets = (f":{broker.password}@", DB_PASSWORD)
    deployment.db = str(URL(deployment.db).with_password(DB_PASSWORD))

    hub = deployment.serve()
    packet = tmp_path / "letter.edxml"
    packet.write_bytes(e2e_pki.document(G22, [H41], 1))
    sent = deployment.cli("send", str(packet), "--json")
    assert sent.exit_code == 0, sent
    outcomes = [sent,
                deployment.cli("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(tmp_path / "in"),
                               "--wait", "1"),
                deployment.cli("agency", "list", "--json"),
                deployment.cli("receipts", json.loads(sent.stdout)[0]["axis_id"], "--json")]
    for outcome in outcomes:
        assert outcome.exit_code == 0, outcome
        _assert_no_secret(outcome.stdout + outcome.stderr, f"axis {' '.join(outcome.args[:2])}", secrets)
    assert "axis hub serving" in hub.stderr()
    hub.stop()
    logs = hub.stdout() + hub.stderr()
    assert broker.host in logs and deployment.db.split("@")[1] in logs, "the hub names where it connects"
    _assert_no_secret(logs, "the hub's output and log", secrets)


def test_a_server_out_of_reach_is_named_without_its_password(embedded_deployment) -> None:
    # Nothing listens on port 1: `axis serve` fails to connect and says so in one line (after a
    # second of retries: the policy would wait out a 2-minute outage).
    deployment = embedded_deployment
    secrets = ("broker-Secret-41d2", DB_PASSWORD)
    unreachable_db = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/axis"
    unreachable_broker = "amqp://guest:broker-Secret-41d2@127.0.0.1:1/"
    for args, names in ((["serve", "--workers", "1", "--db", unreachable_db], "postgresql://postgres:***@127.0.0.1:1"),
                        (["serve", "--workers", "1", "--broker", unreachable_broker],
                         "amqp://guest:***@127.0.0.1:1")):
        env = {**os.environ, **deployment.env(), "AXIS_OUTAGE_PATIENCE": "1"}
        failed = Running(args, env, deployment.data / "logs").finish()
        assert failed.exit_code != 0, failed
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error: cannot")]
        assert "Traceback" not in failed.stderr and len(errors) == 1 and names in errors[0], failed
        _assert_no_secret(failed.stdout + failed.stderr, f"axis {' '.join(args)}", secrets)


# ------------------------------------------------------------------ file modes

@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Commands started from here inherit umask 022 (files 0644), as from a login shell."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _not_private(root: Path) -> list[str]:
    wrong = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        if mode != expected:
            wrong.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    return wrong


def _axis(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*AXIS, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"axis {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_library_creates_private_files_whatever_the_umask(tmp_path: Path, usual_umask: None) -> None:
    # An agency system embedding the SDK and the transport keeps its own (here: usual) umask.
    import asyncio

    from adapters.files import write_atomic
    from adapters.inbox import InboxLedger
    from axis.store import open_store
    from axis.transport import open_transport
    from axis.trust import pki

    root = tmp_path / "lib"
    pki.init_ca(root / "ca" / "pki")
    pki.issue(G22, root / "ca" / "pki", root / "ca" / "keys")
    open_store(f"sqlite:///{root / 'db' / 'axis.db'}", create=True).close()

    async def transport() -> None:
        await (await open_transport(f"embedded://{root / 'transport.db'}")).close()

    asyncio.run(transport())
    InboxLedger(root / "agencies" / G22 / "inbox.db").close()
    write_atomic(root / "transport.db-copy", (root / "transport.db").read_bytes())
    assert (root / "db" / "axis.db").is_file() and (root / "ca" / "keys" / f"{G22}.key.pem").is_file()
    assert _not_private(root) == []


def test_the_demo_creates_only_private_files(tmp_path: Path, usual_umask: None) -> None:
    data = tmp_path / "demo"
    _axis("demo", "--dir", str(data), env=dict(os.environ))
    assert (data / "axis.db").is_file() and (data / "transport.db").is_file() and (data / "pki").is_dir()
    assert _not_private(data) == []


@pytest.mark.slow(seconds=25)  # a dozen `axis` processes (RSA keys issued, a hub started)
def test_an_embedded_deployment_creates_only_private_files(tmp_path: Path, usual_umask: None) -> None:
    data = tmp_path / "axis-data"
    env = {**os.environ, "AXIS_DATA": str(data), "AXIS_EMBEDDED_LEASE": "5", "COLUMNS": "400"}
    pki, keys = data / "pki", data / "keys"
    _axis("pki", "init", str(pki), env=env)
    _axis("pki", "issue", HUB, "--pki", str(pki), "--out", str(data / "hub"), env=env)
    for code in (G22, H41):
        _axis("pki", "issue", code, "--pki", str(pki), "--out", str(keys), env=env)
        _axis("agency", "add", code, "--name", code, "--cert", str(keys / f"{code}.cert.pem"), env=env)
    hub = HubProcess(["serve", "--workers", "1"], env, tmp_path / "logs")
    try:
        wait_until(lambda: "axis hub serving" in hub.stderr() or not hub.alive(), "axis serve to start")
        assert hub.alive(), hub.stderr()
        unsigned, signed = tmp_path / "letter.unsigned.edxml", tmp_path / "letter.edxml"
        unsigned.write_bytes(unsigned_document(G22, [H41], 1))
        _axis("packet", "sign", str(unsigned), "--key", str(keys / f"{G22}.key.pem"),
              "--cert", str(keys / f"{G22}.cert.pem"), "-o", str(signed), env=env)
        _axis("send", str(signed), env=env)
        pulled = _axis("inbox", "pull", H41, "--key", str(keys / f"{H41}.key.pem"), "--cert",
                       str(keys / f"{H41}.cert.pem"), "--out", str(data / "inbox"), "--wait", "1", env=env)
        assert ".edxml" in pulled.stdout
    finally:
        hub.stop()
    assert (data / "axis.db").is_file() and (data / "transport.db").is_file()
    assert any((data / "agencies" / H41).rglob("*")) and any((data / "inbox").iterdir())
    assert _not_private(data) == []
