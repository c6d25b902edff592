"""`axis cert add|list|withdraw`, `axis key rotate`, `axis agency rename` and `axis agency add` without a
certificate: their effect on the registry, the key files and the audit log (on SQLite and PostgreSQL where
the database matters), and every mistake answered in one line."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from typer.testing import CliRunner, Result

from axis.audit.verify import verify_store
from axis.store import open_store
from axis.store.schema import agency_aliases
from axis.trust import keys, load_certificate, pki
from cli.main import app
from tests.store.conftest import backend, migrated_url, pg_template  # noqa: F401 - fixtures reused (`db`)

G22, H41, AXIS = "000.00.00.G22", "000.00.00.H41", "AXIS"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with certificates for G22 (two, one expiring in 10 days, one expired, one revoked), H41 and AXIS
    (two), and a CA nobody trusts."""
    root = tmp_path_factory.mktemp("certs")
    pki.init_ca(root / "ca")
    pki.init_ca(root / "other")
    for code in (G22, H41, AXIS):
        pki.issue(code, root / "ca", root / "keys")
    pki.issue(G22, root / "ca", root / "second")
    pki.issue(AXIS, root / "ca", root / "second")
    pki.issue(G22, root / "other", root / "untrusted")
    ca = pki.load_ca(root / "ca")
    key = pki.generate_key()
    now = dt.datetime.now(dt.UTC)
    for name, start, end in (("soon", now - dt.timedelta(days=1), now + dt.timedelta(days=10, hours=1)),
                             ("expired", now - dt.timedelta(days=30), now - dt.timedelta(days=1))):
        cert = pki.build_agency_certificate(G22, key.public_key(), ca.certificate, ca.key, not_before=start,
                                            not_after=end)
        keys.write_public_file(root / f"{name}.cert.pem", keys.certificate_pem(cert))
    pki.issue(G22, root / "ca", root / "revoked")
    pki.revoke(root / "revoked" / f"{G22}.cert.pem", root / "ca")
    return root


@pytest.fixture
def env(tmp_path: Path, files: Path) -> dict[str, str]:
    """AXIS_DATA with the PKI's roots and CRL, and the axis key, where the commands look for them."""
    data = tmp_path / "axis-data"
    for source, target in ((files / "ca" / "ca.pem", "pki/ca.pem"), (files / "ca" / "crl.pem", "pki/crl.pem"),
                           (files / "keys" / f"{AXIS}.key.pem", "hub/AXIS.key.pem"),
                           (files / "keys" / f"{AXIS}.cert.pem", "hub/AXIS.cert.pem")):
        (data / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, data / target)
    return {"AXIS_DATA": str(data), "COLUMNS": "80", "NO_COLOR": "1"}


@pytest.fixture
def db(migrated_url: str) -> str:  # noqa: F811 - the fixture imported above
    """A fresh migrated database, SQLite or PostgreSQL (tests/store/conftest.py)."""
    return migrated_url


def axis(env: dict[str, str], *args: object, db: str | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args] + (["--db", db] if db else []), env=env)


def one_line(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.output, result.output


def fingerprint(path: Path) -> str:
    return load_certificate(path).fingerprint(hashes.SHA256()).hex()


def test_add_list_and_withdraw_with_their_audit_entries(env: dict[str, str], files: Path, db: str) -> None:
    first, second = files / "keys" / f"{G22}.cert.pem", files / "second" / f"{G22}.cert.pem"
    assert axis(env, "agency", "add", G22, "--name", "VPCP", "--cert", first, db=db).exit_code == 0
    added = axis(env, "cert", "add", G22, second, db=db)
    assert added.exit_code == 0 and f"{G22} has 2 active certificate(s)" in added.stdout, added.output
    listed = json.loads(axis(env, "cert", "list", G22, "--json", db=db).stdout)
    assert [(row["fingerprint"], row["state"]) for row in listed] == [(fingerprint(first), "active"),
                                                                      (fingerprint(second), "active")]
    assert all(700 <= row["days_left"] <= 730 for row in listed)

    withdrawn = axis(env, "cert", "withdraw", first, db=db)  # by its file
    assert withdrawn.exit_code == 0 and "1 active certificate(s) left" in withdrawn.stdout, withdrawn.output
    again = axis(env, "cert", "withdraw", fingerprint(first), db=db)  # by its whole fingerprint
    assert again.exit_code == 0 and "already withdrawn" in again.stdout
    one_line(axis(env, "cert", "add", G22, first, db=db), 1, "already registered to", "(withdrawn)")
    last = axis(env, "cert", "withdraw", fingerprint(second)[:8].upper(), db=db)  # by its first 8 digits
    assert last.exit_code == 0 and f"cannot send until `axis cert add {G22} CERT.pem`" in last.stdout, last.output
    states = {row["fingerprint"]: row["state"] for row in json.loads(axis(env, "cert", "list", "--json", db=db).stdout)}
    assert states == {fingerprint(first): "withdrawn", fingerprint(second): "withdrawn"}

    store = open_store(db)
    try:
        entries = [(e.action, e.data.get("fingerprint")) for e in store.audit_entries_about(G22)]
        report = verify_store(store, [load_certificate(files / "ca" / "ca.pem")])
    finally:
        store.close()
    assert entries[1:] == [("certificate-added", fingerprint(second)), ("certificate-withdrawn", fingerprint(first)),
                           ("certificate-withdrawn", fingerprint(second))]
    assert report.ok, report  # each change bound to a sealed entry


def test_cert_add_refuses_what_could_never_sign(env: dict[str, str], files: Path, tmp_path: Path) -> None:
    assert axis(env, "agency", "add", G22, "--name", "VPCP").exit_code == 0
    one_line(axis(env, "cert", "add", G22, files / "keys" / f"{H41}.cert.pem"), 1, f"issued to {H41}, not {G22}")
    one_line(axis(env, "cert", "add", G22, files / "expired.cert.pem"), 1, "AX312 CERT_EXPIRED")
    one_line(axis(env, "cert", "add", G22, files / "untrusted" / f"{G22}.cert.pem"), 1, "AX311 CERT_UNTRUSTED")
    one_line(axis(env, "cert", "add", G22, files / "revoked" / f"{G22}.cert.pem"), 1, "AX313 CERT_REVOKED")
    one_line(axis(env, "cert", "add", H41, files / "keys" / f"{H41}.cert.pem"), 1, f"{H41} is not registered",
             "axis agency add")
    one_line(axis(env, "cert", "add", G22, tmp_path / "none.pem"), 2, "none.pem", "cannot read")
    one_line(axis(env, "cert", "add", G22, files / "keys" / f"{G22}.cert.pem", "--trust", tmp_path / "none.pem"),
             2, "trusted roots not found")
    one_line(axis(env, "cert", "withdraw", "zz"), 2, "not a fingerprint")
    one_line(axis(env, "cert", "withdraw", "0123456789abcdef"), 1, "no registered certificate")
    assert json.loads(axis(env, "cert", "list", "--json").stdout) == []


def test_list_expiring_and_at_80_columns(env: dict[str, str], files: Path) -> None:
    assert axis(env, "agency", "add", G22, "--name", "VPCP", "--cert", files / "keys" / f"{G22}.cert.pem",
                "--cert", files / "soon.cert.pem").exit_code == 0
    [soon] = json.loads(axis(env, "cert", "list", "--expiring", "30", "--json").stdout)
    assert (soon["fingerprint"], soon["days_left"], soon["state"]) == (fingerprint(files / "soon.cert.pem"), 10,
                                                                        "active")
    assert json.loads(axis(env, "cert", "list", "--expiring", "5", "--json").stdout) == []
    assert axis(env, "cert", "withdraw", files / "soon.cert.pem").exit_code == 0
    assert json.loads(axis(env, "cert", "list", "--expiring", "30", "--json").stdout) == []  # out of use
    store = open_store(f"sqlite:///{env['AXIS_DATA']}/axis.db")
    try:
        with store.write() as tx:  # registered while it was valid; it has expired since
            tx.add_certificate(G22, (files / "expired.cert.pem").read_text())
    finally:
        store.close()
    [expired] = json.loads(axis(env, "cert", "list", "--expiring", "0", "--json").stdout)
    assert (expired["state"], expired["days_left"]) == ("expired", -1)
    table = axis(env, "cert", "list")
    assert table.exit_code == 0, table.output
    assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
    assert fingerprint(files / "soon.cert.pem")[:16] in table.stdout and " 10 " in table.stdout
    assert " -1 " in table.stdout and "expired" in table.stdout and "withdrawn" in table.stdout


def test_agency_add_without_a_certificate_says_what_to_do_next(env: dict[str, str]) -> None:
    added = axis(env, "agency", "add", G22, "--name", "VPCP")
    assert added.exit_code == 0 and f"Next: axis cert add {G22} CERT.pem" in " ".join(added.stdout.split())
    one_line(axis(env, "agency", "add", G22, "--name", "VPCP"), 1, f"axis cert add {G22} CERT.pem")


def test_key_rotate_installs_the_new_key_and_keeps_the_old_one(env: dict[str, str], files: Path, db: str) -> None:
    hub = Path(env["AXIS_DATA"]) / "hub"
    assert axis(env, "agency", "add", G22, "--name", "VPCP", db=db).exit_code == 0
    old = fingerprint(hub / "AXIS.cert.pem")
    rotated = axis(env, "key", "rotate", "--key", files / "second" / "AXIS.key.pem", "--cert",
                   files / "second" / "AXIS.cert.pem", db=db)
    assert rotated.exit_code == 0 and "Restart `axis serve`" in rotated.stdout, rotated.output
    assert (hub / "AXIS.cert.pem").read_bytes() == (files / "second" / "AXIS.cert.pem").read_bytes()
    assert keys.same_public_key(keys.load_private_key(hub / "AXIS.key.pem"), load_certificate(hub / "AXIS.cert.pem"))
    kept = sorted(p.name for p in (hub / "retired").iterdir())
    assert len(kept) == 2 and all(name.startswith("AXIS-") and old[:12] in name for name in kept)
    assert all((hub / "retired" / name).stat().st_mode & 0o077 == 0 for name in kept)
    assert (hub / "retired" / kept[0]).read_bytes() == (files / "keys" / "AXIS.cert.pem").read_bytes()
    one_line(axis(env, "key", "rotate", "--key", files / "second" / "AXIS.key.pem", "--cert",
                  files / "second" / "AXIS.cert.pem", db=db), 2, "already the axis certificate")

    store = open_store(db)
    try:
        [entry] = [e for e in store.audit_entries() if e.action == "axis-key-rotated"]
        signers = set(store.audit_signers())
    finally:
        store.close()
    assert (entry.data["old"], entry.data["new"]) == (old, fingerprint(hub / "AXIS.cert.pem"))
    assert old in signers  # the old certificate certified this command's log key: its seals can be found


def test_key_rotate_refuses_a_certificate_that_cannot_be_the_axiss(env: dict[str, str], files: Path) -> None:
    hub = Path(env["AXIS_DATA"]) / "hub"
    before = (hub / "AXIS.cert.pem").read_bytes()
    one_line(axis(env, "key", "rotate", "--key", files / "keys" / f"{G22}.key.pem", "--cert",
                  files / "keys" / f"{G22}.cert.pem"), 2, f"issued to {G22}, not to the axis")
    one_line(axis(env, "key", "rotate", "--key", files / "keys" / "AXIS.key.pem", "--cert",
                  files / "second" / "AXIS.cert.pem"), 2, "is not the key of")
    one_line(axis(env, "key", "rotate", "--key", files / "second" / "AXIS.key.pem"), 2, "both --key and --cert")
    one_line(axis(env, "key", "rotate"), 2, "not a PKI directory", "--key and --cert")
    assert (hub / "AXIS.cert.pem").read_bytes() == before and not (hub / "retired").exists()


def test_key_rotate_issues_from_the_development_ca(env: dict[str, str], files: Path, tmp_path: Path) -> None:
    shutil.copyfile(files / "ca" / "ca.key.pem", Path(env["AXIS_DATA"]) / "pki" / "ca.key.pem")
    assert axis(env, "agency", "add", G22, "--name", "VPCP").exit_code == 0  # the database exists
    hub = Path(env["AXIS_DATA"]) / "hub"
    old = fingerprint(hub / "AXIS.cert.pem")
    rotated = axis(env, "key", "rotate")
    assert rotated.exit_code == 0, rotated.output
    new = load_certificate(hub / "AXIS.cert.pem")
    assert fingerprint(hub / "AXIS.cert.pem") != old
    assert new.issuer == load_certificate(files / "ca" / "ca.pem").subject
    assert keys.same_public_key(keys.load_private_key(hub / "AXIS.key.pem"), new)


def test_rename_registers_the_new_code_and_refuses_what_would_hijack_routing(
        env: dict[str, str], files: Path, db: str) -> None:
    new = "000.00.00.H99"
    for code in (G22, H41):
        assert axis(env, "agency", "add", code, "--name", code, db=db).exit_code == 0
    renamed = axis(env, "agency", "rename", G22, new, "--for", "7", db=db)
    assert renamed.exit_code == 0 and f"axis cert add {new} CERT.pem" in " ".join(renamed.stdout.split())
    one_line(axis(env, "agency", "rename", new, G22, db=db), 1, "was itself renamed")
    one_line(axis(env, "agency", "rename", G22, H41, "--merge", db=db), 1, "already renamed")
    one_line(axis(env, "agency", "rename", H41, new, db=db), 1, "already registered", "--merge")
    one_line(axis(env, "agency", "rename", H41, new, "--merge", "--name", "X", db=db), 2, "--name names a new code")
    one_line(axis(env, "agency", "rename", H41, "000.00.00.H98", "--merge", db=db), 1, "not registered")
    one_line(axis(env, "agency", "rename", H41, H41, db=db), 2, "its own code")

    roots = [load_certificate(files / "ca" / "ca.pem")]
    store = open_store(db)
    try:
        [alias] = store.aliases([G22]).values()
        agency = store.get_agency(new)
        actions = [(e.action, e.subject) for e in store.audit_entries()
                   if e.action in ("agency-added", "agency-renamed")]
        assert verify_store(store, roots).ok
        # Whoever writes the table straight diverts H41's mail to G22's successor: `axis audit verify` names it.
        with store.engine.begin() as conn:
            conn.execute(sa.insert(agency_aliases).values(old_code=H41, new_code=new, created_at=alias.created_at,
                                                          until=alias.until))
        report = verify_store(store, roots)
    finally:
        store.close()
    assert alias.new_code == new and dt.timedelta(days=7) - (alias.until - alias.created_at) < dt.timedelta(seconds=1)
    assert agency is not None and agency.name == G22
    assert actions[-2:] == [("agency-added", new), ("agency-renamed", G22)]
    assert not report.ok and report.where == f"agency_aliases row {H41}", report
