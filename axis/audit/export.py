"""`axis audit export DIR`: the log, its checkpoints and timestamp tokens as archives that chain by hash.

Each archive `DIR/axis-audit-NNNNNN.zip` holds the entries from one signed
checkpoint to a later one (at least `ARCHIVE_ENTRIES` entries, or every entry
signed so far), as X-Road's message-log archives do:

- `entries.jsonl`: one entry a line, every field (the chain's canonical JSON of
  axis/store/audit.py plus `hash`, and `seal` in base64 on a unit's sealed last
  entry), in seq order;
- `log-keys.jsonl`: the log keys that sealed those entries (axis/audit/logkeys.py),
  every column (binaries in base64);
- `checkpoints.jsonl`: the checkpoints whose sizes fall in the archive, every
  column (`signature` in base64), smallest first;
- `timestamps/SIZE.tsr`: the RFC 3161 TimeStampResp of each of those that has one;
- `signers.pem`: the certificates that signed the checkpoints and certified the log keys;
- `manifest.json`: `first_seq`, `last_seq`, `previous` (the SHA-256 of the
  previous archive's manifest.json, 64 zeros for the first) and the SHA-256
  of every other file of the archive.

An archive is written once and never changed: a new export adds archives for
what was signed since the last one (entries after the newest checkpoint wait
for the next export). `axis audit verify --export DIR` checks them offline
(`axis.audit.verify.verify_export`): each archive's files against its
manifest, the manifests' chain, then the entries, the tree and the
checkpoints exactly as for a database.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from axis.store import AuditEntry, AuditSigner, Checkpoint, CheckpointStamp, LogKey, Store
from axis.store.audit import canonical_json, entry_json, format_at

ARCHIVE_ENTRIES = 10_000
_NAME = re.compile(r"axis-audit-(\d{6})\.zip")
_GENESIS = "0" * 64
_UNKNOWN_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # when a signer was first kept: not exported, not checked


class ExportError(ValueError):
    """An export directory that cannot be written or read as a chain of archives."""


@dataclass(frozen=True, slots=True)
class Exported:
    archives: int          # archives written by this export
    entries: int           # entries they hold
    signed_up_to: int      # the last entry exported (the newest checkpoint's size)
    waiting: int           # entries after it, for a later export


def _archives(directory: Path) -> list[Path]:
    found = sorted(p for p in directory.iterdir() if _NAME.fullmatch(p.name)) if directory.is_dir() else []
    for index, path in enumerate(found, start=1):
        if int(_NAME.fullmatch(path.name).group(1)) != index:  # type: ignore[union-attr]
            raise ExportError(f"{path.name}: archive {index} is missing from {directory}")
    return found


def _checkpoint_json(cp: Checkpoint) -> dict:
    return {"size": cp.size, "root": cp.root, "head_hash": cp.head_hash, "at": format_at(cp.at), "note": cp.note,
            "signature": base64.b64encode(cp.signature).decode("ascii"), "signer": cp.signer,
            "frontier": cp.frontier}


def _log_key_json(key: LogKey) -> dict:
    return {"key_id": key.key_id, "public_key": base64.b64encode(key.public_key).decode("ascii"),
            "created_at": format_at(key.created_at), "writer": key.writer, "statement": key.statement,
            "signature": base64.b64encode(key.signature).decode("ascii"), "signer": key.signer}


def export_log(store: Store, directory: Path) -> Exported:
    """Add archives to `directory` for every checkpoint signed since the last archive there."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = _archives(directory)
    done, previous = 0, _GENESIS
    if existing:
        manifest = _manifest(existing[-1])
        done, previous = manifest["last_seq"], hashlib.sha256(_read(existing[-1], "manifest.json")).hexdigest()
    with store.snapshot() as snap:
        checkpoints = [c for c in snap.checkpoints() if c.size > done]
        signers = snap.audit_signers()
        log_keys = snap.log_keys()
        head = snap.audit_head()[0]
        written = entries = 0
        while checkpoints:
            # Whole checkpoints, at least ARCHIVE_ENTRIES entries per archive (the last one takes what is left).
            take = next((i + 1 for i, c in enumerate(checkpoints) if c.size - done >= ARCHIVE_ENTRIES),
                        len(checkpoints))
            batch, checkpoints = checkpoints[:take], checkpoints[take:]
            last = batch[-1].size
            batch_entries = list(snap.audit_entries(from_seq=done + 1, to_seq=last))
            used = [log_keys[k] for k in sorted({e.seal_key for e in batch_entries if e.seal_key}) if k in log_keys]
            files = {
                "entries.jsonl": b"".join(canonical_json(entry_json(e)).encode("utf-8") + b"\n"
                                          for e in batch_entries),
                "checkpoints.jsonl": b"".join(canonical_json(_checkpoint_json(c)).encode("utf-8") + b"\n"
                                              for c in batch),
                "log-keys.jsonl": b"".join(canonical_json(_log_key_json(k)).encode("utf-8") + b"\n" for k in used),
                "signers.pem": "".join(signers[fp].certificates for fp in sorted({c.signer for c in batch}
                                                                                 | {k.signer for k in used})
                                       if fp in signers).encode("ascii"),
            }
            for c in batch:
                stamp = snap.checkpoint_stamp(c.size)
                if stamp is not None:
                    files[f"timestamps/{c.size}.tsr"] = stamp.token
            manifest = {"format": "axis-audit-archive/1", "first_seq": done + 1, "last_seq": last,
                        "previous": previous, "files": {name: hashlib.sha256(data).hexdigest()
                                                        for name, data in sorted(files.items())}}
            manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8") + b"\n"
            path = directory / f"axis-audit-{len(existing) + written + 1:06d}.zip"
            _write_zip(path, {**files, "manifest.json": manifest_bytes})
            entries += last - done
            written += 1
            done, previous = last, hashlib.sha256(manifest_bytes).hexdigest()
    return Exported(archives=written, entries=entries, signed_up_to=done, waiting=max(0, head - done))


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0)), data)
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    partial.replace(path)  # an archive appears whole or not at all


def _read(path: Path, name: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ExportError(f"{path.name}: cannot read {name}: {exc}") from None


def _manifest(path: Path) -> dict:
    try:
        return dict(json.loads(_read(path, "manifest.json")))
    except ValueError as exc:
        raise ExportError(f"{path.name}: manifest.json is not JSON: {exc}") from None


# ------------------------------------------------------------------ reading an export back

@dataclass
class ExportContents:
    """What an export holds, checked against its manifests; entries are read archive by archive."""
    archives: list[Path]
    checkpoints: list[Checkpoint]
    signers: dict[str, AuditSigner]
    stamps: dict[int, CheckpointStamp]
    log_keys: dict[str, LogKey]

    def entries(self) -> Iterator[AuditEntry]:
        for path in self.archives:
            for line in io.BytesIO(_read(path, "entries.jsonl")):
                e = json.loads(line)
                yield AuditEntry(seq=e["seq"], at=_time(e["at"]), actor=e["actor"], action=e["action"],
                                 subject=e["subject"], data=e["data"], prev_hash=e["prev_hash"], hash=e["hash"],
                                 bound=e.get("bound"), sealed_from=e.get("sealed_from"), seal_key=e.get("seal_key"),
                                 seal=base64.b64decode(e["seal"]) if "seal" in e else None)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_export(directory: Path) -> ExportContents:
    """The archives of `directory`, each file checked against its manifest and the manifests' chain;
    ExportError naming the first archive or file that does not check."""
    archives = _archives(directory)
    if not archives:
        raise ExportError(f"no archives (axis-audit-NNNNNN.zip) in {directory}")
    previous, expected_first = _GENESIS, 1
    contents = ExportContents(archives, [], {}, {}, {})
    for path in archives:
        manifest_bytes = _read(path, "manifest.json")
        manifest = _manifest(path)
        if manifest.get("previous") != previous:
            raise ExportError(f"{path.name}: it does not follow the archive before it (its `previous` is not "
                              "that archive's manifest digest): an archive was changed, removed or inserted")
        if manifest.get("first_seq") != expected_first:
            raise ExportError(f"{path.name}: it starts at entry {manifest.get('first_seq')}, not {expected_first}")
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist()) - {"manifest.json"}
        listed = manifest.get("files", {})
        if names != set(listed):
            extra, missing = sorted(names - set(listed)), sorted(set(listed) - names)
            raise ExportError(f"{path.name}: files {extra} are not in its manifest" if extra else
                              f"{path.name}: files {missing} of its manifest are missing")
        for name, digest in listed.items():
            if hashlib.sha256(_read(path, name)).hexdigest() != digest:
                raise ExportError(f"{path.name}: {name} does not match its manifest digest: it was changed")
        for line in io.BytesIO(_read(path, "checkpoints.jsonl")):
            c = json.loads(line)
            contents.checkpoints.append(Checkpoint(
                size=c["size"], root=c["root"], head_hash=c["head_hash"], at=_time(c["at"]), note=c["note"],
                signature=base64.b64decode(c["signature"]), signer=c["signer"], frontier=c["frontier"]))
            if f"timestamps/{c['size']}.tsr" in listed:
                contents.stamps[c["size"]] = CheckpointStamp(c["size"], _read(path, f"timestamps/{c['size']}.tsr"),
                                                             "", _time(c["at"]))
        if "log-keys.jsonl" in listed:
            for line in io.BytesIO(_read(path, "log-keys.jsonl")):
                k = json.loads(line)
                contents.log_keys[k["key_id"]] = LogKey(
                    key_id=k["key_id"], public_key=base64.b64decode(k["public_key"]), created_at=_time(k["created_at"]),
                    writer=k["writer"], statement=k["statement"], signature=base64.b64decode(k["signature"]),
                    signer=k["signer"])
        pem = _read(path, "signers.pem")
        for chain in _chains(pem):
            leaf = chain[0]
            fp = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
            contents.signers[fp] = AuditSigner(fp, b"".join(c.public_bytes(serialization.Encoding.PEM)
                                                            for c in chain).decode("ascii"), _UNKNOWN_TIME)
        previous = hashlib.sha256(manifest_bytes).hexdigest()
        expected_first = manifest["last_seq"] + 1
    return contents


def _chains(pem: bytes) -> list[list[x509.Certificate]]:
    """The signer chains of signers.pem: each leaf (a certificate that is not a CA) with the CAs after it."""
    chains: list[list[x509.Certificate]] = []
    for cert in (x509.load_pem_x509_certificates(pem) if pem.strip() else []):
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca and chains:
            chains[-1].append(cert)
        else:
            chains.append([cert])
    return chains
