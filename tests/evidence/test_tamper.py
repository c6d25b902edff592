"""Every change to a bundle is named by file: a byte flipped in any file, a file added or removed, and the changes
of an attacker who also rewrites MANIFEST.sha256 (so only the signatures, the proofs and the bindings can tell)."""
from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from pathlib import Path

from axis.timestamp import request_timestamp
from axis.trust import keys, pki
from tests.evidence.conftest import H41, Story, axis, rezip
from tests.tsa_support import ServedTSA


def _verify(story: Story, bundle: Path):
    return axis(story.home, "evidence", "verify", bundle, "--trust", story.root, "--tsa-trust", story.tsa_root)


def _fails_naming(story: Story, bundle: Path, name: str, *words: str) -> str:
    result = _verify(story, bundle)
    assert result.exit_code == 1, result.output
    assert f"{bundle}: {name}: " in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def test_a_byte_flipped_in_any_file_is_named(story: Story, tmp_path: Path) -> None:
    files = story.files()
    listed = [name for name in files if name != "MANIFEST.sha256"]
    assert len(listed) >= 25
    for name in listed:
        changed = bytearray(files[name])
        changed[len(changed) // 2] ^= 0x01
        bundle = rezip({**files, name: bytes(changed)}, tmp_path / "flipped.zip", manifest=False)
        _fails_naming(story, bundle, name, "SHA-256", "changed")


def test_a_file_missing_or_not_listed_is_named(story: Story, tmp_path: Path) -> None:
    files = story.files()
    missing = {name: data for name, data in files.items() if name != "receipts/03-delivery-000.00.00.H41-delivered.xml"}
    _fails_naming(story, rezip(missing, tmp_path / "missing.zip", manifest=False),
                  "receipts/03-delivery-000.00.00.H41-delivered.xml", "missing")
    extra = {**files, "receipts/05-delivery-000.00.00.H41-delivered.xml": files["receipts/01-intake-accepted.xml"]}
    _fails_naming(story, rezip(extra, tmp_path / "extra.zip", manifest=False),
                  "receipts/05-delivery-000.00.00.H41-delivered.xml", "not listed")
    # Listed by an attacker who rewrites the manifest: still no row of the log has it.
    _fails_naming(story, rezip(extra, tmp_path / "extra-listed.zip"),
                  "receipts/05-delivery-000.00.00.H41-delivered.xml", "not the body of any row")


def test_a_changed_packet_is_named_even_with_the_manifest_rewritten(story: Story, tmp_path: Path) -> None:
    files = story.files()
    changed = files["document.xml"].replace("thử nghiệm".encode(), "thử nghiện".encode())
    assert changed != files["document.xml"]
    _fails_naming(story, rezip({**files, "document.xml": changed}, tmp_path / "b.zip"), "document.xml",
                  "not the body of any row")
    # ... and with its row's digest rewritten too, the row is no longer what the log bound.
    rows = files["log/rows.jsonl"].decode().replace(_sha(files["document.xml"]), _sha(changed))
    _fails_naming(story, rezip({**files, "document.xml": changed, "log/rows.jsonl": rows.encode()},
                               tmp_path / "c.zip"), "log/rows.jsonl", "documents row", "not as entry")


def test_a_changed_or_left_out_entry_is_named(story: Story, tmp_path: Path) -> None:
    files = story.files()
    lines = files["log/entries.jsonl"].decode().split("\n")[:-1]
    proofs = json.loads(files["log/proofs.json"])
    # Who did it, rewritten: the chain hash no longer is the one the proof is of.
    forged = [line.replace('"actor":"gateway"', '"actor":"mallory"', 1) for line in lines]
    assert forged != lines
    _fails_naming(story, rezip({**files, "log/entries.jsonl": _lines(forged)}, tmp_path / "a.zip"),
                  "log/entries.jsonl", "chain hash")
    # ... with the proofs' hashes recomputed as well: no path leads from the new leaf to the signed root.
    from axis.store.audit import entry_hash
    by_seq = {json.loads(line)["seq"]: json.loads(line) for line in forged}
    for item in proofs["entries"]:
        item["hash"] = entry_hash(by_seq[item["seq"]]["prev_hash"], by_seq[item["seq"]])
    _fails_naming(story, rezip({**files, "log/entries.jsonl": _lines(forged), "log/proofs.json": _json(proofs)},
                               tmp_path / "b.zip"), "log/proofs.json", "root")
    # The entry that recorded H41's delivery receipt, left out with its proof: its rows are bound by nothing.
    [delivered] = [line for line in lines if '"action":"delivered"' in line and H41 in line]
    seq = json.loads(delivered)["seq"]
    proofs = json.loads(files["log/proofs.json"])
    fewer = {**files, "log/entries.jsonl": _lines([line for line in lines if line != delivered]),
             "log/proofs.json": _json({**proofs, "entries": [p for p in proofs["entries"] if p["seq"] != seq]})}
    _fails_naming(story, rezip(fewer, tmp_path / "c.zip"), "log/rows.jsonl", "no entry of the bundle binds")


def test_a_changed_delivery_state_is_named(story: Story, tmp_path: Path) -> None:
    files = story.files()
    rows = files["log/rows.jsonl"].decode()
    changed = rows.replace('"recipient_code":"000.00.00.H41","state":"accepted"',
                           '"recipient_code":"000.00.00.H41","state":"refused"', 1)
    assert changed != rows
    _fails_naming(story, rezip({**files, "log/rows.jsonl": changed.encode()}, tmp_path / "b.zip"),
                  "log/rows.jsonl", f"deliveries row {story.axis_id}/{H41}")


def test_a_checkpoint_signed_by_a_look_alike_axis_is_refused(story: Story, tmp_path: Path) -> None:
    """Mallory's own CA, named like the real one, issues an AXIS certificate; she re-signs the checkpoint with
    it and rewrites the manifest. The checkpoint's signer does not chain to the root the auditor trusts."""
    pki.init_ca(tmp_path / "rogue-ca")
    pki.issue("AXIS", tmp_path / "rogue-ca", tmp_path / "rogue")
    key = keys.load_private_key(tmp_path / "rogue" / "AXIS.key.pem")
    files = story.files()
    chain = (tmp_path / "rogue" / "AXIS.cert.pem").read_bytes() + (tmp_path / "rogue-ca" / "ca.pem").read_bytes()
    forged = {**files, "log/checkpoint.sig": keys.sign_raw(key, files["log/checkpoint.note"]),
              "log/checkpoint-signer.pem": chain}
    _fails_naming(story, rezip(forged, tmp_path / "rogue.zip"), "log/checkpoint-signer.pem", "CERT_UNTRUSTED",
                  "not acceptable when it was signed")
    # Her signature under the real certificate does not check either.
    _fails_naming(story, rezip({**forged, "log/checkpoint-signer.pem": files["log/checkpoint-signer.pem"]},
                               tmp_path / "rogue-sig.zip"), "log/checkpoint.sig", "not the signer's")


def test_a_changed_checkpoint_or_another_token_is_named(story: Story, tsa: ServedTSA, tmp_path: Path) -> None:
    files = story.files()
    note = files["log/checkpoint.note"].decode().split("\n")
    note[4] = note[4][:-7] + ("111111Z" if not note[4].endswith("111111Z") else "222222Z")  # still canonical
    _fails_naming(story, rezip({**files, "log/checkpoint.note": "\n".join(note).encode()}, tmp_path / "a.zip"),
                  "log/checkpoint.sig", "not the signer's")
    other = request_timestamp(tsa.url, b"something else", timeout=10)
    _fails_naming(story, rezip({**files, "log/checkpoint.tsr": other}, tmp_path / "b.zip"), "log/checkpoint.tsr",
                  "does not verify")


def test_a_certificate_no_signature_presents_is_named(story: Story, tmp_path: Path) -> None:
    files = story.files()
    [name] = [n for n in files if n.startswith("certs/000.00.00.H41-")]
    stranger = (story.pki / "keys" / "000.00.00.G17.cert.pem").read_bytes()  # a real certificate, no signer here
    _fails_naming(story, rezip({**files, name: stranger}, tmp_path / "b.zip"), name, "not the certificate")


def test_a_signer_revoked_before_it_signed_fails(story: Story, ca_copy: Path, tmp_path: Path) -> None:
    """A CRL (genuine, from the CA) saying H41's certificate was revoked before it signed its first status."""
    h41 = keys.load_certificate(story.pki / "keys" / f"{H41}.cert.pem")
    ca = pki.load_ca(ca_copy)
    crl = pki.build_crl(ca.certificate, ca.key, [(h41.serial_number, h41.not_valid_before_utc + timedelta(seconds=1))],
                        number=9)
    files = {**story.files(), "crl/revocations.pem": keys.crl_pem(crl)}
    stderr = _fails_naming(story, rezip(files, tmp_path / "b.zip"), f"answers/01-{H41}/packet.xml", "CERT_REVOKED")
    assert "does not verify as of" in stderr


def test_a_signer_revoked_after_it_signed_still_verifies_and_is_noted(story: Story, ca_copy: Path,
                                                                      tmp_path: Path) -> None:
    time.sleep(1.1)  # CRL times have whole seconds: the revocation is after every signature of the story
    pki.revoke(story.pki / "keys" / f"{H41}.cert.pem", ca_copy)
    bundle = tmp_path / "revoked-later.zip"
    built = axis(story.home, "evidence", story.axis_id, "--out", bundle, "--db", story.db,
                 "--crl", ca_copy / "crl.pem")
    assert built.exit_code == 0, built.output
    result = _verify(story, bundle)
    assert result.exit_code == 0, result.output
    assert f"the certificate of {H41}" in result.stderr and "after it signed" in result.stderr


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lines(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2).encode()
