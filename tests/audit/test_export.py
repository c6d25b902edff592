"""`axis audit export`: archives chained by hash, verified offline; every change to them is named."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from axis.audit import export as exporting
from axis.audit.checkpoints import CheckpointWriter
from axis.audit.export import export_log
from axis.audit.verify import verify_export
from axis.store import Store
from tests.audit.conftest import Pki
from tests.audit.test_verify import _log
from tests.store.store_helpers import accept


def _rewrite(path: Path, name: str, change) -> None:
    with zipfile.ZipFile(path) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    files[name] = change(files[name])
    with zipfile.ZipFile(path, "w") as archive:
        for n, data in files.items():
            archive.writestr(n, data)


def _change_an_entry_and_its_manifest(path: Path) -> None:
    """What an attacker who knows the format does: the entry changed, the manifest's digest of it too."""
    _rewrite(path, "entries.jsonl", lambda data: data.replace(b'"actor":"hub"', b'"actor":"bob"', 1))
    with zipfile.ZipFile(path) as archive:
        entries = archive.read("entries.jsonl")

    def fix(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["files"]["entries.jsonl"] = hashlib.sha256(entries).hexdigest()
        return json.dumps(manifest).encode()
    _rewrite(path, "manifest.json", fix)


@pytest.fixture
def exported(seeded: Store, writer: CheckpointWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(exporting, "ARCHIVE_ENTRIES", 4)  # three archives from a small log
    _log(seeded, writer)
    out = tmp_path / "export"
    done = export_log(seeded, out)
    assert done.archives >= 3 and done.signed_up_to == seeded.latest_checkpoint().size
    return out


def test_an_export_verifies_offline_and_grows_with_the_log(exported: Path, seeded: Store, writer, audit_pki: Pki,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporting, "ARCHIVE_ENTRIES", 4)
    report = verify_export(exported, audit_pki.trust)
    assert report.ok, report
    before = sorted(p.name for p in exported.iterdir())
    accept(seeded, "later")
    assert export_log(seeded, exported).archives == 0  # nothing newly signed: nothing written
    writer.write()
    assert export_log(seeded, exported).archives == 1
    assert sorted(p.name for p in exported.iterdir())[:len(before)] == before
    report = verify_export(exported, audit_pki.trust)
    assert report.ok and report.entries == seeded.audit_head()[0], report


def test_a_changed_entry_in_an_archive_is_named(exported: Path, audit_pki: Pki) -> None:
    first = exported / "axis-audit-000001.zip"
    _rewrite(first, "entries.jsonl", lambda data: data.replace(b'"actor":"hub"', b'"actor":"bob"', 1))
    report = verify_export(exported, audit_pki.trust)
    assert not report.ok and "axis-audit-000001.zip: entries.jsonl does not match" in report.reason, report


def test_a_changed_entry_with_its_manifest_rewritten_is_named(exported: Path, audit_pki: Pki) -> None:
    """The attacker also fixes the manifest: the next archive no longer follows it."""
    _change_an_entry_and_its_manifest(exported / "axis-audit-000001.zip")
    report = verify_export(exported, audit_pki.trust)
    assert not report.ok and "axis-audit-000002.zip: it does not follow" in report.reason, report


def test_a_lone_rewritten_archive_fails_on_its_entries(exported: Path, audit_pki: Pki) -> None:
    """Only one archive: manifest fixed, so only the content checks (chain, tree, signed root) can tell."""
    for extra in sorted(exported.iterdir())[1:]:
        extra.unlink()
    _change_an_entry_and_its_manifest(exported / "axis-audit-000001.zip")
    report = verify_export(exported, audit_pki.trust)
    assert not report.ok and report.where.startswith("entry"), report


def test_a_removed_archive_is_named(exported: Path, audit_pki: Pki) -> None:
    archives = sorted(exported.iterdir())
    archives[1].unlink()
    report = verify_export(exported, audit_pki.trust)
    assert not report.ok and "archive 2 is missing" in report.reason, report


def test_an_extra_file_in_an_archive_is_named(exported: Path, audit_pki: Pki) -> None:
    first = exported / "axis-audit-000001.zip"
    with zipfile.ZipFile(first, "a") as archive:
        archive.writestr("note.txt", b"hello")
    report = verify_export(exported, audit_pki.trust)
    assert not report.ok and "note.txt" in report.reason, report


def test_an_export_signed_by_another_key_is_named(exported: Path, audit_pki: Pki) -> None:
    from axis.trust import load_certificates
    rogue_root = load_certificates(audit_pki.root / "rogue-ca" / "ca.pem")
    report = verify_export(exported, rogue_root)
    assert not report.ok and report.where.startswith("checkpoint"), report


def test_garbage_is_a_clear_error(tmp_path: Path, audit_pki: Pki) -> None:
    (tmp_path / "axis-audit-000001.zip").write_bytes(b"not a zip")
    report = verify_export(tmp_path, audit_pki.trust)
    assert not report.ok and "cannot read" in report.reason, report
    assert not verify_export(tmp_path / "empty", audit_pki.trust).ok
