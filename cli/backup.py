"""`axis backup DIR`: a consistent copy of the store and of the embedded transport, while Axis runs.

- SQLite (the store, the embedded transport): SQLite's online backup API, a consistent snapshot of each file
  taken while the hub and the gateway go on writing (a plain `cp` of a WAL database is not one).
- PostgreSQL: `pg_dump --format=custom` (one consistent snapshot; restore with `pg_restore`), the password
  in a private password file (libpq's `passfile`), never on a command line that `ps` shows.
- RabbitMQ: nothing; the hub declares its queues at start. What the queues held is not backed up
  (docs/backup.md says what that means and how to drain them first).

The transport is copied before the store: a message the store then records as decided is only redelivered
after a restore (and de-duplicated), whereas the other order could lose decisions. `DIR/backup.json` names
each file with its SHA-256 and the audit log's head at the time of the copy. docs/backup.md: restoring.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import typer

from axis.private import private_directory, private_file
from cli.operator import BrokerOption, DbOption, _open_store
from cli.output import fail, print_json, stdout
from cli.settings import current

MANIFEST = "backup.json"


def backup(
    directory: Path = typer.Argument(..., help="A new or empty folder to write the copies to."),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Copy the store (SQLite file or pg_dump) and the embedded transport's file, consistently, while Axis runs."""
    from axis.transport.factory import embedded_path

    chosen = current(db=db, broker=broker)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        fail(f"{directory} is not an empty folder; name a new one (a backup never overwrites another)")
    private_directory(directory)
    files: dict[str, dict[str, str]] = {}
    transport = embedded_path(chosen.broker, chosen.embedded_transport)
    if transport is not None:
        if not transport.is_file():
            fail(f"the embedded transport {transport} does not exist; pass --broker as `axis serve` has it")
        files["transport"] = {"file": "transport.db", "kind": "sqlite"}
        _sqlite_copy(transport, directory / "transport.db")
    store = _open_store(db)
    try:
        seq, head = store.audit_head()
        if store.dialect == "postgresql":
            files["store"] = {"file": "axis.pgdump", "kind": "pg_dump"}
            _pg_dump(store.engine.url, directory / "axis.pgdump")
        else:
            files["store"] = {"file": "axis.db", "kind": "sqlite"}
            _sqlite_copy(Path(store.engine.url.database or ""), directory / "axis.db")
    finally:
        store.close()
    for entry in files.values():
        entry["sha256"] = _sha256(directory / entry["file"])
    manifest = {"format": "axis-backup/1", "at": datetime.now(UTC).isoformat(), "audit_head": {"seq": seq,
                "hash": head}, **files}
    (private_file(directory / MANIFEST)).write_text(json.dumps(manifest, indent=2) + "\n")
    if as_json:
        print_json({"directory": str(directory), **manifest})
        return
    for role, entry in files.items():
        stdout.print(f"{role}: {directory / entry['file']} ({entry['kind']})", markup=False)
    stdout.print(f"the audit log had {seq} entries; restore as docs/backup.md says, then `axis audit verify`",
                 markup=False)


def _sqlite_copy(source: Path, target: Path) -> None:
    private_file(target)  # before SQLite writes it: the copy holds plaintext bodies
    try:
        src = sqlite3.connect(source, timeout=15)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        fail(f"cannot copy {source}: {exc}")


def _pg_dump(url: sa.URL, target: Path) -> None:
    program = shutil.which("pg_dump")
    if program is None:
        fail("pg_dump is not installed (Debian: apt-get install postgresql-client, of the server's major version)")
    private_file(target)
    with tempfile.TemporaryDirectory(prefix="axis-backup-") as scratch:
        plain = url.set(drivername="postgresql", password=None)
        if url.password:  # in a password file only pg_dump reads (libpq `passfile`): never on a command line
            passfile = private_file(Path(scratch) / "pgpass")
            fields = [url.host or "*", str(url.port or "*"), url.database or "*", url.username or "*", url.password]
            passfile.write_text(":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields) + "\n")
            plain = plain.update_query_dict({"passfile": str(passfile)})
        done = subprocess.run([program, "--format=custom", "--no-owner", "--file", str(target), "--dbname",
                               plain.render_as_string(hide_password=False)],
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        fail(f"pg_dump failed: {lines[-1] if lines else 'exit ' + str(done.returncode)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
