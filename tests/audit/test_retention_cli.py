"""`axis retention run` and `axis backup`, as an operator runs them, then `axis audit verify --trust` on the result
(and on a restored copy: the SQLite files copied back, or `pg_restore` into a new PostgreSQL database)."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

from typer.testing import CliRunner, Result

from axis.store import Store
from axis.transport.embedded import EmbeddedTransport
from cli.main import app
from tests.audit.conftest import Pki
from tests.audit.test_retention import DAY, _traffic
from tests.audit.test_verify import _exec
from tests.store.conftest import _fresh_pg_database, _pg_url

PG_RESTORE = shutil.which("pg_restore") or "pg_restore"


def _env(tmp_path: Path, audit_pki: Pki) -> dict[str, str]:
    """An operator's environment: the axis key files (the command seals its entries with them), the roots."""
    return {"AXIS_DATA": str(tmp_path / "axis-data"), "AXIS_KEY": str(audit_pki.axis_key),
            "AXIS_CERT": str(audit_pki.axis_cert), "AXIS_TRUST": str(audit_pki.root / "ca" / "ca.pem"),
            "COLUMNS": "80", "NO_COLOR": "1"}


def _axis(env: dict[str, str], *args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_retention_run_dry_then_for_real_and_the_log_verifies(seeded: Store, audit_pki: Pki, clock,
                                                              tmp_path: Path) -> None:
    clock.advance(-100 * DAY)  # the traffic is 100 days old by the command's (real) clock
    ids = _traffic(seeded)  # no checkpoint: one dated 100 days ago would predate the axis certificate
    env, url = _env(tmp_path, audit_pki), _url(seeded)

    dry = _axis(env, "retention", "run", "--dry-run", "--json", "--db", url)
    assert dry.exit_code == 0, dry.output
    counted = json.loads(dry.stdout)
    assert (counted["bodies"], counted["submissions"], counted["inbox"], counted["dry_run"]) == (2, 4, 1, True)

    done = _axis(env, "retention", "run", "--db", url)
    assert done.exit_code == 0, done.output
    assert "removed 2 document bodies" in done.stdout and "4 decided submissions" in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    assert {e.actor for e in seeded.audit_entries() if e.action == "retention-removed"} == {"operator"}

    verified = _axis(env, "audit", "verify", "--db", url)
    assert verified.exit_code == 0, verified.output
    assert "removed" in verified.output  # the note: rows missing where an entry removed them
    vacuumed = _axis(env, "retention", "run", "--vacuum", "--json", "--db", url)
    assert vacuumed.exit_code == 0, vacuumed.output
    space = json.loads(vacuumed.stdout)
    assert space["vacuumed"] and space["bodies"] == 0 and space["free_bytes"] in (0, None)  # None: PostgreSQL
    _exec(seeded, "DELETE FROM document_bodies WHERE axis_id = :a", a=ids["waiting"])  # behind Axis's back
    broken = _axis(env, "audit", "verify", "--db", url)
    assert broken.exit_code == 1 and f"document_bodies row {ids['waiting']}" in broken.output


async def _intake_depth(path: Path, publish: bool = False) -> int:
    """The depth of axis.intake in the embedded transport file `path`, after publishing one message if asked."""
    transport = EmbeddedTransport(path)
    await transport.start()
    try:
        if publish:
            await transport.declare_queue("axis.intake")
            await transport.publish("axis.intake", b"<edXML/>", message_id="m-1")
        return await transport.depth("axis.intake")
    finally:
        await transport.close()


def test_a_restored_backup_verifies(seeded: Store, audit_pki: Pki, clock, tmp_path: Path) -> None:
    clock.advance(-100 * DAY)
    _traffic(seeded)
    env, url = _env(tmp_path, audit_pki), _url(seeded)
    assert _axis(env, "retention", "run", "--db", url).exit_code == 0  # removals must survive the round trip
    data = tmp_path / "axis-data"
    data.mkdir()
    assert asyncio.run(_intake_depth(data / "transport.db", publish=True)) == 1

    made = _axis(env, "backup", tmp_path / "backup", "--db", url, "--json")
    assert made.exit_code == 0, made.output
    manifest = json.loads(made.stdout)
    assert manifest["audit_head"]["seq"] == seeded.audit_head()[0]
    again = _axis(env, "backup", tmp_path / "backup", "--db", url)
    assert again.exit_code == 1 and "not an empty folder" in again.output and "Traceback" not in again.output

    # Restore as docs/backup.md says, into a place of its own.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copyfile(tmp_path / "backup" / "transport.db", restored / "transport.db")
    assert asyncio.run(_intake_depth(restored / "transport.db")) == 1  # the queued message came back
    if seeded.dialect == "sqlite":
        shutil.copyfile(tmp_path / "backup" / "axis.db", restored / "axis.db")
        verified = _axis(env, "audit", "verify", "--db", f"sqlite:///{restored / 'axis.db'}")
        assert verified.exit_code == 0, verified.output
        return
    assert manifest["store"]["kind"] == "pg_dump"
    with _fresh_pg_database() as name:
        done = subprocess.run([PG_RESTORE, "--no-owner", "--dbname", _pg_url(name),
                               str(tmp_path / "backup" / "axis.pgdump")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        verified = _axis(env, "audit", "verify", "--db", _pg_url(name))
        assert verified.exit_code == 0, verified.output
