"""What README.txt and docs/evidence.md tell a third party to run, run: sha256sum, xmlsec1, openssl, and the log
checks followed with hashlib alone (no Axis code), as someone who has only the bundle and the documentation would."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.evidence.conftest import Story


@pytest.fixture
def unpacked(story: Story, tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    for name, data in story.files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _run(folder: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(str(args[0]))
    if tool is None:
        pytest.fail(f"{args[0]} is not installed: the documented checks need it (Debian: apt-get install {args[0]})")
    return subprocess.run([tool, *map(str, args[1:])], cwd=folder, capture_output=True, text=True, timeout=60)


def test_sha256sum_checks_the_manifest(unpacked: Path) -> None:
    result = _run(unpacked, "sha256sum", "-c", "MANIFEST.sha256")
    assert result.returncode == 0, result.stdout + result.stderr
    (unpacked / "document.xml").write_bytes((unpacked / "document.xml").read_bytes() + b" ")
    assert _run(unpacked, "sha256sum", "-c", "--quiet", "MANIFEST.sha256").returncode != 0


@pytest.mark.xmlsec1
def test_xmlsec1_accepts_the_packet_and_every_receipt(story: Story, unpacked: Path) -> None:
    signed = sorted(p.relative_to(unpacked) for p in unpacked.rglob("*.xml"))
    assert len(signed) == 14  # the packet, 4 receipts, 3 status packets with 2 receipts each
    for path in signed:
        result = _run(unpacked, "xmlsec1", "--verify", "--trusted-pem", story.root, path)
        assert result.returncode == 0 and "OK" in result.stderr, (path, result.stderr)


def test_openssl_checks_the_checkpoint_signature_its_signer_and_its_token(story: Story, unpacked: Path) -> None:
    key = _run(unpacked, "openssl", "x509", "-in", "log/checkpoint-signer.pem", "-pubkey", "-noout")
    assert key.returncode == 0, key.stderr
    (unpacked / "axis-pub.pem").write_text(key.stdout)
    signed = _run(unpacked, "openssl", "dgst", "-sha256", "-verify", "axis-pub.pem", "-signature",
                  "log/checkpoint.sig", "log/checkpoint.note")
    assert signed.returncode == 0 and "Verified OK" in signed.stdout, signed.stdout + signed.stderr
    chained = _run(unpacked, "openssl", "verify", "-CAfile", story.root, "-untrusted", "log/checkpoint-signer.pem",
                   "log/checkpoint-signer.pem")
    assert chained.returncode == 0 and ": OK" in chained.stdout, chained.stdout + chained.stderr
    stamped = _run(unpacked, "openssl", "ts", "-verify", "-data", "log/checkpoint.sig", "-in", "log/checkpoint.tsr",
                   "-CAfile", story.tsa_root)
    assert stamped.returncode == 0 and "Verification: OK" in stamped.stdout, stamped.stdout + stamped.stderr


def test_the_log_checks_follow_from_the_documentation_alone(unpacked: Path) -> None:
    """README.txt steps 5 and 6, with the standard library only."""
    note = (unpacked / "log/checkpoint.note").read_text().split("\n")
    size, root = int(note[1]), base64.b64decode(note[2])
    proofs = {p["seq"]: p for p in json.loads((unpacked / "log/proofs.json").read_text())["entries"]}
    bound: dict[tuple[str, str], str | None] = {}
    for line in (unpacked / "log/entries.jsonl").read_bytes().split(b"\n")[:-1]:
        entry = json.loads(line)
        chain_hash = hashlib.sha256(bytes.fromhex(entry["prev_hash"]) + line).digest()
        proof = proofs[entry["seq"]]
        assert proof["hash"] == chain_hash.hex()
        leaf = hashlib.sha256(b"\x00" + chain_hash).digest()
        assert _rfc9162_root(leaf, entry["seq"] - 1, size, [bytes.fromhex(p) for p in proof["path"]]) == root
        for table, key, digest in entry.get("bound", []):
            bound[(table, key)] = digest
    bodies = {hashlib.sha256(p.read_bytes()).hexdigest() for p in unpacked.rglob("*.xml")}
    for line in (unpacked / "log/rows.jsonl").read_bytes().split(b"\n")[:-1]:
        table, row = json.loads(line)
        digest = hashlib.sha256(line).hexdigest()
        assert digest in bound.values()
        if table == "documents":
            assert row["digest"] in bodies
        if table == "receipts":
            assert row["body"] == "sha256:" + row["digest"] and row["digest"] in bodies


def _rfc9162_root(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, as written there."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r
