"""Checking an evidence bundle offline, with nothing but the bundle and the roots the auditor trusts.

`check_bundle(source, trust, tsa_trust=..., as_of=...)` reads the ZIP that `evidence.build_bundle`
wrote (the layout is in axis/audit/evidence.py) and checks, stopping at the first problem, which
`BundleInvalid` names by file:

1. the ZIP and its MANIFEST.sha256: every file listed and there, none unlisted, each with its SHA-256;
2. the checkpoint: its canonical text; Axis's signature over it by a certificate that chains to
   `trust`, names AXIS and was acceptable (valid, not revoked per the bundle's CRLs) at the
   checkpoint's time; its RFC 3161 token over that signature from a TSA chaining to `tsa_trust`
   (when given), no older than the checkpoint;
3. every entry: its chain hash recomputed from its line, and the inclusion proof from the leaf that
   gives to the checkpoint's root (RFC 9162 §2.1.3.2); none dated after the checkpoint;
4. every row: its SHA-256 is what the last entry that binds it recorded, and every row an entry
   binds is there; every entry is about the document or a status packet answering it;
5. every file is accounted for: a body a row records (by SHA-256), a certificate of a signature
   verified here, or one of the log's; each documents and receipts row has its file, whose XML
   signature the Verifier accepts as of the time of the first entry that recorded the row (so the
   bundle verifies after the certificates expire, and a certificate revoked later still counts),
   signed by whom the row says: the packet by its sender (the certificate the log recorded), a
   delivery receipt by its recipient (or Axis for it) over the packet's digest, Axis's receipts by
   Axis, a status by the sender of a status packet the bundle carries; a packet retention removed
   is not there, only where an entry of the bundle removed it naming its documents row's digest
   (the note says its signature could not be checked);
6. nothing is dated after `as_of` (default now): a bundle from the future is no evidence.

What it cannot tell: an entry about the document left out of the bundle (the whole log can:
`axis audit verify`), and anything done by whoever holds Axis's key before the checkpoint was
timestamped. Callers may rely on `BundleInvalid` for every bundle that does not check, and on
`Checked` (what was proven, with notes on what was not) for every one that does; a ValueError
means `trust` holds no CA certificate (the caller's configuration, not the bundle).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from axis import wire
from axis.audit import merkle
from axis.audit.checkpoints import CLOCK_SKEW, CheckpointError, Note, check_signature, check_signer, check_stamp_time
from axis.audit.evidence import (
    CERTS,
    CRL,
    ENTRIES,
    FORMAT,
    INDEX,
    MANIFEST,
    NOTE,
    PROOFS,
    README,
    ROWS,
    SIGNATURE,
    SIGNER,
    TOKEN,
    EvidenceError,
)
from axis.receipt import read_receipt
from axis.refusals import Refusal
from axis.store import canonical_json
from axis.store.audit import entry_hash
from axis.store.bindings import BINDINGS, row_key
from axis.timestamp import TimestampInvalid, verify_timestamp
from axis.trust import VerificationResult, Verifier, keys

MAX_FILES = 10_000
MAX_BYTES = 2 * 1024 ** 3   # unpacked; a document and its receipts are a few packets of at most 64 MiB
_MANIFEST_LINE = re.compile(r"([0-9a-f]{64})  (\S[^\n]*)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BODY = re.compile(r"sha256:[0-9a-f]{64}")  # how a row carries a binary column (bindings.plain_row)
_ENTRY_KEYS = {"seq", "at", "actor", "action", "subject", "data", "prev_hash"}
_ENTRY_MAYBE = {"bound", "sealed_from", "seal_key"}  # sealed_from and seal_key: the unit's seal (logkeys.py)
_AT = "%Y-%m-%dT%H:%M:%S.%fZ"


class BundleInvalid(EvidenceError):
    """The bundle does not prove what it claims; `file` names where that shows, `reason` says how."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass
class Checked:
    """What a bundle that checks proves."""

    axis_id: str
    files: int = 0
    signatures: int = 0             # XML signatures verified, each as of its log time
    entries: int = 0
    proven: int = 0                 # entries with an inclusion proof to the checkpoint
    checkpoint: int | None = None   # its tree size
    checkpoint_at: datetime | None = None
    stamped_at: datetime | None = None  # the TSA's genTime, when its token was checked
    complete: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    seq: int
    at: datetime
    subject: str | None
    bound: tuple[tuple[str, str, str | None], ...]
    hash: str
    removes: tuple[tuple[str, str], ...] = ()  # (axis id, SHA-256) of each packet body it removed (retention)


def check_bundle(source: Path | bytes, trust: Sequence[x509.Certificate], *,
                 tsa_trust: Sequence[x509.Certificate] = (), as_of: datetime | None = None) -> Checked:
    """Check the bundle (a ZIP file or its bytes); BundleInvalid names the first thing that does not check."""
    moment = as_of or datetime.now(UTC)
    files = _unzip(source)
    digests = _check_manifest(files)
    index = _json(files, INDEX)
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("axis_id"), str):
        raise BundleInvalid(INDEX, f"not an Axis evidence bundle of format {FORMAT}")
    checked = Checked(axis_id=index["axis_id"], files=len(files))
    crls = _crls(files, index)
    clock = [moment]
    verifier = Verifier(trust, crls, clock=lambda: clock[0], lenient_codes=True)
    entries = _entries(files)
    note = _checkpoint(files, index, verifier, clock, tsa_trust, moment, checked)
    _proofs(files, entries, note, index, checked)
    rows = _rows(files, entries)
    _subjects(entries, rows, checked.axis_id)
    removed = _removed_packets(entries, rows, checked)
    named = _accounted(digests, rows, removed)
    signers = _signatures(files, named, rows, removed, verifier, clock, checked)
    _revoked_later(signers, crls, checked)
    _certificates(files, signers)
    late = next((e for e in entries if e.at > moment + CLOCK_SKEW), None)
    if late is not None:
        raise BundleInvalid(ENTRIES, f"entry {late.seq} is dated {late.at.isoformat()}, after the moment of the "
                                     f"check ({moment.isoformat()})")
    checked.entries = len(entries)
    if not checked.complete:
        checked.notes.append(f"incomplete: {len(entries) - checked.proven} entr"
                             f"{'y is' if len(entries) - checked.proven == 1 else 'ies are'} not covered by the "
                             "checkpoint and prove nothing yet; build the bundle again after the next checkpoint")
    return checked


# ------------------------------------------------------------------ the ZIP and its manifest

def _unzip(source: Path | bytes) -> dict[str, bytes]:
    where = str(source) if isinstance(source, Path) else "the bundle"
    try:
        with zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source)) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            if len(infos) > MAX_FILES or sum(info.file_size for info in infos) > MAX_BYTES:
                raise BundleInvalid(where, f"more than {MAX_FILES} files or {MAX_BYTES} bytes unpacked: not an Axis "
                                           "evidence bundle")
            files: dict[str, bytes] = {}
            for info in infos:
                if info.filename in files:
                    raise BundleInvalid(info.filename, "the ZIP holds two files of this name")
                files[info.filename] = archive.read(info)
    except FileNotFoundError:
        raise BundleInvalid(where, "no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise BundleInvalid(where, f"not a readable ZIP file ({exc}): an evidence bundle is one") from None
    except OSError as exc:
        raise BundleInvalid(where, f"cannot be read: {exc.strerror or exc}") from None
    return files


def _check_manifest(files: Mapping[str, bytes]) -> dict[str, str]:
    """{name: SHA-256} of every file but the manifest, each as the manifest lists it."""
    if MANIFEST not in files:
        raise BundleInvalid(MANIFEST, "missing: every evidence bundle has one")
    try:
        lines = files[MANIFEST].decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise BundleInvalid(MANIFEST, "not UTF-8 text") from None
    if lines[-1] != "":
        raise BundleInvalid(MANIFEST, "its last line does not end with a newline")
    listed: dict[str, str] = {}
    for number, line in enumerate(lines[:-1], 1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            raise BundleInvalid(MANIFEST, f"line {number} is not `<sha256>  <name>`")
        if match.group(2) in listed:
            raise BundleInvalid(match.group(2), f"listed twice in {MANIFEST}")
        listed[match.group(2)] = match.group(1)
    digests = {}
    for name in sorted(set(files) | set(listed)):
        if name == MANIFEST:
            continue
        if name not in listed:
            raise BundleInvalid(name, f"not listed in {MANIFEST}: it does not belong to the bundle")
        if name not in files:
            raise BundleInvalid(name, f"listed in {MANIFEST} but missing from the bundle")
        digests[name] = hashlib.sha256(files[name]).hexdigest()
        if digests[name] != listed[name]:
            raise BundleInvalid(name, f"its SHA-256 is not the one {MANIFEST} lists: it was changed")
    return digests


# ------------------------------------------------------------------ reading files

def _json(files: Mapping[str, bytes], name: str) -> Any:
    if name not in files:
        raise BundleInvalid(name, "missing")
    try:
        return json.loads(files[name].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleInvalid(name, f"not JSON ({exc})") from None


def _canonical_lines(files: Mapping[str, bytes], name: str) -> list[tuple[str, Any]]:
    """(line, value) of each line of a JSON-lines file whose lines must be canonical JSON (they are hashed)."""
    if name not in files:
        raise BundleInvalid(name, "missing")
    try:
        lines = files[name].decode("utf-8").split("\n")  # never splitlines: U+2028 may be inside a value
        if lines[-1] != "":
            raise ValueError("the last line does not end with a newline")
        parsed = [(line, json.loads(line)) for line in lines[:-1]]
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleInvalid(name, f"not JSON lines ({exc})") from None
    for number, (line, value) in enumerate(parsed, 1):
        if canonical_json(value) != line:
            raise BundleInvalid(name, f"line {number} is not in the canonical form that is hashed")
    return parsed


def _crls(files: Mapping[str, bytes], index: Mapping[str, Any]) -> list[x509.CertificateRevocationList]:
    if index.get("crl") is None:
        if CRL in files:
            raise BundleInvalid(CRL, f"{INDEX} names no CRL file, yet the bundle holds this one")
        return []
    if index["crl"] != CRL or CRL not in files:
        raise BundleInvalid(INDEX, f"it names the CRL file {index['crl']!r}, which the bundle does not hold")
    try:
        return keys.parse_crls(files[CRL], CRL)
    except ValueError as exc:
        raise BundleInvalid(CRL, str(exc).removeprefix(f"{CRL}: ")) from None


# ------------------------------------------------------------------ the log: entries, checkpoint, proofs

def _entries(files: Mapping[str, bytes]) -> list[_Entry]:
    entries: list[_Entry] = []
    for number, (_, body) in enumerate(_canonical_lines(files, ENTRIES), 1):
        try:
            if not isinstance(body, dict) or not _ENTRY_KEYS <= set(body) <= _ENTRY_KEYS | _ENTRY_MAYBE:
                raise ValueError(f"an entry has exactly the fields {sorted(_ENTRY_KEYS)} and maybe "
                                 f"{', '.join(sorted(_ENTRY_MAYBE))}")
            seq, prev = body["seq"], body["prev_hash"]
            if type(seq) is not int or seq < 1 or (entries and seq <= entries[-1].seq):
                raise ValueError("seq must be a positive integer, in increasing order")
            if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
                raise ValueError("prev_hash must be a SHA-256 in hex")
            bound = tuple(_binding(item) for item in body.get("bound", []))
            at = datetime.strptime(body["at"], _AT).replace(tzinfo=UTC)
            subject = body["subject"]
            if subject is not None and not isinstance(subject, str):
                raise ValueError("subject must be a string or null")
            named = body["data"].get("removed", []) if isinstance(body["data"], dict) else []
            removes = tuple((key, _named_digest(named, table, key)) for table, key, digest in bound
                            if table == "document_bodies" and digest is None)
        except (ValueError, TypeError) as exc:
            raise BundleInvalid(ENTRIES, f"line {number} is not a log entry: {exc}") from None
        entries.append(_Entry(seq, at, subject, bound, entry_hash(prev, body), removes))
    if not entries:
        raise BundleInvalid(ENTRIES, "no log entry: a bundle proves nothing without them")
    return entries


def _named_digest(named: Any, table: str, key: str) -> str:
    """The digest an entry's `data.removed` names for the row it binds as removed."""
    found = [item[2] for item in named if isinstance(item, list) and len(item) == 3 and item[:2] == [table, key]
             and isinstance(item[2], str)] if isinstance(named, list) else []
    if not found:
        raise ValueError(f"it removes {table} row {key} without naming the digest of the row it removed")
    return str(found[0])


def _binding(item: Any) -> tuple[str, str, str | None]:
    if (not isinstance(item, list) or len(item) != 3 or not all(isinstance(part, str) for part in item[:2])
            or not (item[2] is None or isinstance(item[2], str))):
        raise ValueError("each binding is [table, key, digest or null]")
    return item[0], item[1], item[2]


def _checkpoint(files: Mapping[str, bytes], index: Mapping[str, Any], verifier: Verifier, clock: list[datetime],
                tsa_trust: Sequence[x509.Certificate], moment: datetime, checked: Checked) -> Note | None:
    parts = (NOTE, SIGNATURE, SIGNER, PROOFS, TOKEN)
    if index.get("checkpoint") is None:
        extra = next((name for name in parts if name in files), None)
        if extra is not None:
            raise BundleInvalid(extra, f"the bundle has no checkpoint ({INDEX}), yet holds this checkpoint file")
        checked.notes.append("no checkpoint covers any of its entries: nothing in it is anchored")
        return None
    for name in parts[:4]:
        if name not in files:
            raise BundleInvalid(name, "missing: the bundle has a checkpoint")
    try:
        text = files[NOTE].decode("utf-8")
        note = Note.parse(text)
    except (UnicodeDecodeError, CheckpointError) as exc:
        raise BundleInvalid(NOTE, str(exc)) from None
    if index["checkpoint"] != note.size:
        raise BundleInvalid(INDEX, f"it names checkpoint {index['checkpoint']}, the note is of {note.size}")
    try:
        chain = x509.load_pem_x509_certificates(files[SIGNER])
    except ValueError as exc:
        raise BundleInvalid(SIGNER, f"no readable PEM certificate ({exc})") from None
    clock[0] = note.at
    try:
        check_signer(verifier, chain)
    except CheckpointError as exc:
        raise BundleInvalid(SIGNER, f"checkpoint {note.size}: {exc}") from None
    try:
        check_signature(chain[0], files[NOTE], files[SIGNATURE])
    except CheckpointError as exc:
        raise BundleInvalid(SIGNATURE, f"checkpoint {note.size}: {exc}") from None
    if note.at > moment + CLOCK_SKEW:
        raise BundleInvalid(NOTE, f"checkpoint {note.size} is dated {note.at.isoformat()}, after the moment of "
                                  f"the check ({moment.isoformat()})")
    if bool(index.get("stamped")) != (TOKEN in files):
        raise BundleInvalid(INDEX, f"it says the checkpoint is {'' if index.get('stamped') else 'not '}stamped, "
                                   f"yet {TOKEN} is {'missing' if TOKEN not in files else 'there'}")
    checked.checkpoint, checked.checkpoint_at = note.size, note.at
    if TOKEN not in files:
        checked.notes.append(f"checkpoint {note.size} has no timestamp token: its time is only Axis's word")
    elif not tsa_trust:
        checked.notes.append("the timestamp token was not checked: no TSA roots given")
    else:
        try:
            stamped_at = verify_timestamp(files[TOKEN], files[SIGNATURE], list(tsa_trust))
            check_stamp_time(stamped_at, note.at)
        except (TimestampInvalid, CheckpointError) as exc:
            raise BundleInvalid(TOKEN, f"checkpoint {note.size}: {exc}") from None
        if stamped_at > moment + CLOCK_SKEW:
            raise BundleInvalid(TOKEN, f"stamped {stamped_at.isoformat()}, after the moment of the check "
                                       f"({moment.isoformat()})")
        checked.stamped_at = stamped_at
    return note


def _proofs(files: Mapping[str, bytes], entries: Sequence[_Entry], note: Note | None, index: Mapping[str, Any],
            checked: Checked) -> None:
    proven = 0
    if note is not None:
        proofs = _json(files, PROOFS)
        try:
            if proofs["tree_size"] != note.size or proofs["root"] != note.root.hex():
                raise ValueError(f"its tree size and root are not checkpoint {note.size}'s")
            paths = {item["seq"]: (item["hash"], [bytes.fromhex(p) for p in item["path"]])
                     for item in proofs["entries"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleInvalid(PROOFS, f"not the inclusion proofs of checkpoint {note.size}: {exc}") from None
        seqs = {entry.seq for entry in entries}
        stray = next((seq for seq in paths if seq not in seqs), None)
        if stray is not None:
            raise BundleInvalid(PROOFS, f"a proof of entry {stray}, which {ENTRIES} does not hold")
        for entry in entries:
            if entry.seq > note.size:
                continue
            if entry.seq not in paths:
                raise BundleInvalid(PROOFS, f"no proof of entry {entry.seq}, which checkpoint {note.size} covers")
            listed, path = paths[entry.seq]
            if listed != entry.hash:
                raise BundleInvalid(ENTRIES, f"entry {entry.seq} does not give the chain hash {PROOFS} lists for it: "
                                             "one of the two was changed")
            try:
                merkle.verify_inclusion(merkle.leaf_hash(bytes.fromhex(entry.hash)), entry.seq - 1, note.size, path,
                                        note.root)
            except merkle.ProofError as exc:
                raise BundleInvalid(PROOFS, f"entry {entry.seq}: {exc}") from None
            if entry.at > note.at + CLOCK_SKEW:
                raise BundleInvalid(ENTRIES, f"entry {entry.seq} is dated {entry.at.isoformat()}, after checkpoint "
                                             f"{note.size} that covers it ({note.at.isoformat()})")
            proven += 1
    checked.proven = proven
    checked.complete = proven == len(entries)
    if index.get("complete") is not checked.complete:
        raise BundleInvalid(INDEX, f"it says the bundle is {'' if index.get('complete') else 'in'}complete; "
                                   f"{proven} of its {len(entries)} entries have a proof")


# ------------------------------------------------------------------ rows

@dataclass(frozen=True)
class _Row:
    table: str
    key: str
    values: Mapping[str, Any]
    first: _Entry                   # the first entry that bound it: when Axis recorded it


def _rows(files: Mapping[str, bytes], entries: Sequence[_Entry]) -> dict[tuple[str, str], _Row]:
    first: dict[tuple[str, str], _Entry] = {}
    last: dict[tuple[str, str], tuple[str | None, _Entry]] = {}
    for entry in entries:
        for table, key, digest in entry.bound:
            first.setdefault((table, key), entry)
            last[(table, key)] = (digest, entry)
    rows: dict[tuple[str, str], _Row] = {}
    for number, (line, value) in enumerate(_canonical_lines(files, ROWS), 1):
        try:
            table, values = value
            if table not in BINDINGS or not isinstance(values, dict):
                raise ValueError("each line is [table, row] of an evidence table")
            key = row_key(table, values)
        except (ValueError, TypeError, KeyError) as exc:
            raise BundleInvalid(ROWS, f"line {number} is not a row: {exc}") from None
        if (table, key) in rows:
            raise BundleInvalid(ROWS, f"line {number}: {table} row {key} again")
        if (table, key) not in last:
            raise BundleInvalid(ROWS, f"line {number}: no entry of the bundle binds {table} row {key}")
        digest, entry = last[(table, key)]
        if hashlib.sha256(line.encode("utf-8")).hexdigest() != digest:
            raise BundleInvalid(ROWS, f"line {number}: {table} row {key} is not as entry {entry.seq} recorded it")
        rows[(table, key)] = _Row(table, key, values, first[(table, key)])
    for (table, key), (digest, entry) in last.items():
        if digest is not None and (table, key) not in rows:
            raise BundleInvalid(ROWS, f"entry {entry.seq} binds {table} row {key}, which the bundle lacks")
    return rows


def _subjects(entries: Sequence[_Entry], rows: Mapping[tuple[str, str], _Row], axis_id: str) -> None:
    document = rows.get(("documents", axis_id))
    if document is None or document.values.get("kind") != "document":
        raise BundleInvalid(INDEX, f"it is about {axis_id}, of which the bundle holds no document row")
    answers = {key for (table, key), row in rows.items()
               if table == "documents" and row.values.get("kind") == "status"
               and row.values.get("response_for") == axis_id}
    stranger = next((e for e in entries if e.subject != axis_id and e.subject not in answers), None)
    if stranger is not None:
        raise BundleInvalid(ENTRIES, f"entry {stranger.seq} is about {stranger.subject}, neither the document nor a "
                                     "status packet answering it")


def _removed_packets(entries: Sequence[_Entry], rows: Mapping[tuple[str, str], _Row], checked: Checked) -> set[str]:
    """The packets whose body an entry removed (retention), each with its documents row's digest."""
    removed: set[str] = set()
    for entry in entries:
        for axis_id, digest in entry.removes:
            row = rows.get(("documents", axis_id))
            if row is None or row.values.get("digest") != digest:
                raise BundleInvalid(ENTRIES, f"entry {entry.seq} removes the packet of {axis_id} as SHA-256 "
                                             f"{digest}, which no documents row of the bundle records")
            removed.add(axis_id)
            checked.notes.append(f"the packet of {axis_id} was removed from Axis by retention (entry {entry.seq}): "
                                 f"the bundle proves its digest {digest}, not its bytes nor its signature")
    return removed


# ------------------------------------------------------------------ files, signatures, certificates

def _accounted(digests: Mapping[str, str], rows: Mapping[tuple[str, str], _Row],
               removed: set[str]) -> dict[str, str]:
    """{SHA-256: name} of the bodies the rows record; BundleInvalid for a file that is neither one of them,
    nor a certificate, nor the log's, nor a row's body missing (but a packet retention removed)."""
    recorded = {value.removeprefix("sha256:") for row in rows.values() for value in row.values.values()
                if isinstance(value, str) and _BODY.fullmatch(value)}
    recorded |= {row.values["digest"] for row in rows.values() if row.table == "documents" and row.key not in removed}
    own = {INDEX, README, ENTRIES, ROWS, NOTE, SIGNATURE, SIGNER, PROOFS, TOKEN, CRL}
    named: dict[str, str] = {}
    for name, digest in digests.items():
        if name in own or (name.startswith(CERTS) and name.endswith(".pem")):
            continue
        if digest not in recorded or digest in named:
            raise BundleInvalid(name, "not the body of any row the log binds (its SHA-256 is none they record): it "
                                      "was changed, or does not belong to the bundle")
        named[digest] = name
    missing = next((d for d in sorted(recorded) if d not in named), None)
    if missing is not None:
        raise BundleInvalid(ROWS, f"a row records a body of SHA-256 {missing}, which no file of the bundle has")
    return named


def _signatures(files: Mapping[str, bytes], named: Mapping[str, str], rows: Mapping[tuple[str, str], _Row],
                removed: set[str], verifier: Verifier, clock: list[datetime],
                checked: Checked) -> dict[str, VerificationResult]:
    """Verify each signed body as of the time the log first recorded its row; {fingerprint: a result} of the
    signers."""
    documents = {row.key: row.values for row in rows.values() if row.table == "documents"}
    done: dict[tuple[str, datetime], VerificationResult] = {}
    signers: dict[str, VerificationResult] = {}

    def verify(row: _Row, digest: str, read: Callable[[bytes], VerificationResult]) -> tuple[str, VerificationResult]:
        name = named[digest]
        if (name, row.first.at) not in done:
            clock[0] = row.first.at
            try:
                done[(name, row.first.at)] = read(files[name])
            except Refusal as refusal:
                raise BundleInvalid(name, f"its signature does not verify as of {row.first.at.isoformat()} (entry "
                                          f"{row.first.seq}, which recorded it): {refusal}") from None
            checked.signatures += 1
        result = done[(name, row.first.at)]
        signers.setdefault(result.fingerprint, result)
        return name, result

    for row in rows.values():
        values = row.values
        if row.table == "documents" and row.key in removed and values["digest"] not in named:
            continue
        if row.table == "documents":
            name, result = verify(row, values["digest"], verifier.verify)
            if result.signer_code != values["sender_code"]:
                raise BundleInvalid(name, f"signed by {result.signer_code}; the log records {values['sender_code']} "
                                          "as its sender")
            if values["signer_fingerprint"] not in (None, result.fingerprint):
                raise BundleInvalid(name, "signed with another certificate than the one the log recorded")
        elif row.table == "receipts":
            if values["body"] != f"sha256:{values['digest']}":
                raise BundleInvalid(ROWS, f"receipts row {row.key} records a body that is not its digest")
            if values["kind"] == "status":
                name, result = verify(row, values["digest"], verifier.verify)
                answer = next((d for d in documents.values() if d["digest"] == values["digest"]
                               and d["response_for"] == values["axis_id"]), None)
                if answer is None or answer["sender_code"] != result.signer_code:
                    raise BundleInvalid(name, "a status on the document's timeline that is no status packet of the "
                                              "bundle answering it")
            else:
                name, result = verify(row, values["digest"], verifier.verify_receipt)
                _receipt_matches(name, result, values, documents)
    return signers


def _receipt_matches(name: str, result: VerificationResult, row: Mapping[str, Any],
                     documents: Mapping[str, Mapping[str, Any]]) -> None:
    """The signed receipt says what its row says: Axis signs intake and error receipts; a recipient (or Axis
    for it) signs that it holds the packet's digest."""
    try:
        receipt = read_receipt(result.signed_root)
    except Refusal as refusal:
        raise BundleInvalid(name, f"not an Axis receipt: {refusal}") from None
    kind, signer = row["kind"], result.signer_code
    if kind in ("intake", "error") and signer != wire.HUB_IDENTITY:
        raise BundleInvalid(name, f"an {kind} receipt signed by {signer}, not by Axis")
    if kind == "intake" and receipt.axis_id != row["axis_id"]:
        raise BundleInvalid(name, f"the intake receipt of {receipt.axis_id}, not of {row['axis_id']}")
    if kind == "delivery":
        document = documents.get(row["axis_id"])
        if signer not in (row["recipient_code"], wire.HUB_IDENTITY) or receipt.recipient != row["recipient_code"]:
            raise BundleInvalid(name, f"a delivery receipt of {receipt.recipient} signed by {signer}, on the "
                                      f"timeline of {row['recipient_code']}")
        if receipt.axis_id != row["axis_id"] or document is None or receipt.digest != document["digest"]:
            raise BundleInvalid(name, "the delivery receipt names another packet than the one it is recorded for")


def _revoked_later(signers: Mapping[str, VerificationResult], crls: Sequence[x509.CertificateRevocationList],
                   checked: Checked) -> None:
    """A note for each signer the CRLs list: revoked after it signed, or its signatures would not have verified."""
    for result in signers.values():
        for crl in crls:
            entry = crl.get_revoked_certificate_by_serial_number(result.serial)
            if crl.issuer == result.certificate.issuer and entry is not None:
                checked.notes.append(f"the certificate of {result.signer_code} (serial {result.serial:x}) was "
                                     f"revoked on {entry.revocation_date_utc.isoformat()}, after it signed what the "
                                     "bundle holds")
                break


def _certificates(files: Mapping[str, bytes], signers: Mapping[str, VerificationResult]) -> None:
    for name in sorted(files):
        if not (name.startswith(CERTS) and name.endswith(".pem")):
            continue
        try:
            certificates = x509.load_pem_x509_certificates(files[name])
        except ValueError as exc:
            raise BundleInvalid(name, f"no readable PEM certificate ({exc})") from None
        ders = {hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in certificates}
        if not ders & signers.keys():
            raise BundleInvalid(name, "not the certificate of any signature the bundle holds")
