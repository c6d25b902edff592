"""Evidence bundles: what proves what happened to one document, in one ZIP an auditor checks offline.

`build_bundle(store, axis_id, crl=...)` reads, in one snapshot of the store, the document's signed
packet, every receipt and status packet about it, the log entries about it and about the status
packets that answer it, the rows those entries bind, and one checkpoint covering every entry, with
an inclusion proof per entry; it returns a `Bundle`, which `write` puts in a ZIP. Checking one needs
nothing of Axis's but the roots the auditor trusts: `axis/audit/evidence_check.py`, or the standard
tools docs/evidence.md names. The layout (names relative to the ZIP's root):

    bundle.json                 {"format", "axis_id", "built_at", "complete", "checkpoint", "stamped", "crl"}
    README.txt                  how to check each part with standard tools
    MANIFEST.sha256             `<sha256>  <name>` of every other file (`sha256sum -c`)
    document.xml                the signed packet, the bytes Axis stored
    receipts/NN-<kind>[-<agency>][-<code>].xml       each of its receipts, oldest first
    answers/NN-<sender>/packet.xml                   each status packet answering it, in arrival order
    answers/NN-<sender>/receipts/NN-….xml            that status packet's own receipts
    log/entries.jsonl           the log entries, one a line: exactly the canonical JSON the chain hashes
    log/rows.jsonl              the rows they bind as they stand, one a line: canonical [table, row], whose
                                SHA-256 is the digest in the entries' `bound` lists (bindings.py)
    log/proofs.json             {"tree_size", "root", "entries": [{"seq", "hash", "path"}]}: RFC 9162
                                inclusion proofs of the entries in the checkpoint's tree
    log/checkpoint.note         the checkpoint's signed text (checkpoints.py)
    log/checkpoint.sig          Axis's signature over it (`openssl dgst -sha256 -verify`)
    log/checkpoint.tsr          the RFC 3161 TimeStampResp over checkpoint.sig, when the TSA gave one
    log/checkpoint-signer.pem   the certificate that signed the checkpoint, then its chain
    certs/<code>-<fp16>.pem     each XML signer's certificate, then its chain, as its signature presents them
    crl/revocations.pem         the CRLs Axis is configured with when the bundle is built, if any

A body that is also another row's (a status packet is both a document and a `status` receipt of
the document it answers) is carried once, under its first name. A packet whose body retention removed
(axis/store/retention.py) is not carried: the log entry that removed it, proven like the others, names
its SHA-256, which its documents row records; README.txt says so. A bundle whose newest entry no
checkpoint covers yet is refused (`NotCovered`: build it again after the next checkpoint) unless
`uncovered=True`, which carries those entries without proofs and marks the bundle incomplete.

Callers may rely on `EvidenceError` (one line saying what to do) for every bundle that cannot be
built: a store whose rows or log no longer match what the log and its checkpoint recorded builds
none. A built bundle passes `evidence_check.check_bundle` against the roots that issued its
certificates unless a certificate was not acceptable (valid, not revoked) when the log recorded
what it signed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from axis.audit import merkle
from axis.edxml.safe import decode_base64, parse_xml
from axis.refusals import Refusal
from axis.store import AuditEntry, Checkpoint, Document, Snapshot, Store, canonical_json
from axis.store.audit import compute_hash, entry_body, format_at
from axis.store.bindings import plain_row, row_digest, row_key
from axis.trust import certificate_agency_code, keys
from axis.trust.placement import DS_NS

FORMAT = "axis-evidence/1"
INDEX = "bundle.json"
README = "README.txt"
MANIFEST = "MANIFEST.sha256"
DOCUMENT = "document.xml"
ENTRIES = "log/entries.jsonl"
ROWS = "log/rows.jsonl"
PROOFS = "log/proofs.json"
NOTE = "log/checkpoint.note"
SIGNATURE = "log/checkpoint.sig"
TOKEN = "log/checkpoint.tsr"
SIGNER = "log/checkpoint-signer.pem"
CRL = "crl/revocations.pem"
CERTS = "certs/"
# The tables whose rows an entry about a document (or a status packet) binds, in the order rows.jsonl lists them.
TABLES = ("documents", "deliveries", "receipts", "submissions")
_UNSAFE = re.compile(r"[^0-9A-Za-z.]+")


class EvidenceError(Exception):
    """No evidence bundle: the message is one line saying why and what to do."""


class UnknownDocument(EvidenceError):
    """The axis id names no document the store holds (or names a status packet)."""


class NotCovered(EvidenceError):
    """Entries about the document are newer than the latest checkpoint: build the bundle after the next one."""


@dataclass(frozen=True)
class Bundle:
    """A built bundle: every file but the manifest, by name, and what it says of itself."""

    axis_id: str
    built_at: datetime
    files: Mapping[str, bytes]
    checkpoint: int | None          # the size of the checkpoint the proofs lead to
    stamped: bool                   # that checkpoint has an RFC 3161 token
    uncovered: tuple[int, ...]      # seqs of the entries carried without a proof (only with uncovered=True)
    removed: tuple[tuple[str, str, int], ...] = ()  # (axis id, SHA-256, entry seq) of each packet retention removed

    @property
    def complete(self) -> bool:
        return not self.uncovered

    def manifest(self) -> bytes:
        return "".join(f"{hashlib.sha256(self.files[name]).hexdigest()}  {name}\n"
                       for name in sorted(self.files)).encode("utf-8")

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        when = self.built_at.astimezone(UTC).timetuple()[:6]
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in [*sorted(self.files.items()), (MANIFEST, self.manifest())]:
                info = zipfile.ZipInfo(name, date_time=when)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        return buffer.getvalue()

    def write(self, path: Path) -> None:
        """Write the ZIP to `path` (replaced whole, never left half written)."""
        data = self.zip_bytes()
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def build_bundle(store: Store, axis_id: str, *, crl: Path | None = None, uncovered: bool = False,
                 now: datetime | None = None) -> Bundle:
    """The evidence bundle of document `axis_id` (see the module docstring); `crl`: the CRL file to carry."""
    revocations = _read_crl(crl) if crl is not None else None
    with store.snapshot() as snap:
        document = snap.get_document(axis_id)
        if document is None:
            raise UnknownDocument(f"the store holds no document with axis id {axis_id!r}; "
                                  "`axis receipts DOCUMENT_ID` shows a document's axis id")
        if document.kind != "document":
            raise UnknownDocument(f"{axis_id} is a status packet answering {document.response_for}; its evidence "
                                  f"is in the bundle of {document.response_for}")
        answers = snap.answers(axis_id)
        entries = sorted((e for subject in [axis_id, *(a.axis_id for a in answers)]
                          for e in snap.audit_entries_about(subject)), key=lambda e: e.seq)
        if not entries:
            raise EvidenceError(f"the log has no entry about {axis_id}: it was removed; run `axis audit verify`")
        checkpoint = (snap.checkpoint_covering(entries[-1].seq)
                      or _latest_covering_some(snap, axis_id, entries, uncovered))
        rows = _bound_rows(snap, document, answers, entries)
        answers = [a for a in answers if ("documents", a.axis_id) in rows]  # a status no entry bound is no evidence
        files: dict[str, bytes] = {}
        removed = removed_bodies(entries)
        _put_bodies(snap, document, answers, rows, removed, files)
        _put_certificates(files)
        stamped = False
        if checkpoint is not None:
            stamp = snap.checkpoint_stamp(checkpoint.size)
            signer = snap.audit_signers().get(checkpoint.signer)
            if signer is None:
                raise EvidenceError(f"the certificate that signed checkpoint {checkpoint.size} is not in the store; "
                                    "run `axis audit verify`")
            files[NOTE] = checkpoint.note.encode("utf-8")
            files[SIGNATURE] = checkpoint.signature
            files[SIGNER] = signer.certificates.encode("ascii")
            if stamp is not None:
                files[TOKEN] = stamp.token
                stamped = True
            files[PROOFS] = _json(_proofs(snap, checkpoint, entries))
    if revocations is not None:
        files[CRL] = revocations
    files[ENTRIES] = _lines(canonical_json(_body(e)) for e in entries)
    files[ROWS] = _lines(canonical_json([table, plain_row(table, row)]) for (table, _), row in rows.items())
    size = checkpoint.size if checkpoint is not None else None
    built_at = now or datetime.now(UTC)
    waiting = tuple(e.seq for e in entries if e.seq > (size or 0))
    files[INDEX] = _json({"format": FORMAT, "axis_id": axis_id, "built_at": format_at(built_at),
                          "complete": not waiting, "checkpoint": size, "stamped": stamped,
                          "crl": CRL if revocations is not None else None})
    gone = tuple((key, digest, seq) for key, (digest, seq) in removed.items())
    files[README] = _readme(axis_id, built_at, size, stamped, waiting, gone).encode("utf-8")
    return Bundle(axis_id=axis_id, built_at=built_at, files=files, checkpoint=size, stamped=stamped,
                  uncovered=waiting, removed=gone)


def removed_bodies(entries: Iterable[AuditEntry]) -> dict[str, tuple[str, int]]:
    """{axis id: (SHA-256 of the body removed, seq)} of each body an entry removed (retention)."""
    removed: dict[str, tuple[str, int]] = {}
    for entry in entries:
        for table, key, digest in entry.bound or ():
            if table == "document_bodies" and digest is None:
                named = [item for item in entry.data.get("removed", ()) if item[:2] == [table, key]]
                removed[str(key)] = (str(named[0][2]) if named else "", entry.seq)
    return removed


# ------------------------------------------------------------------ the log: entries, checkpoint, proofs

def _body(entry: AuditEntry) -> dict[str, Any]:
    return entry_body(entry.seq, entry.at, entry.actor, entry.action, entry.subject, entry.data, entry.prev_hash,
                      entry.bound, entry.sealed_from, entry.seal_key)


def _latest_covering_some(snap: Snapshot, axis_id: str, entries: Sequence[AuditEntry],
                          allowed: bool) -> Checkpoint | None:
    """No checkpoint covers the newest entry: NotCovered, or (allowed) the latest one if it covers any of them."""
    latest = snap.latest_checkpoint()
    size = latest.size if latest is not None else 0
    waiting = [e.seq for e in entries if e.seq > size]
    if not allowed:
        many = len(waiting) > 1
        raise NotCovered(f"{len(waiting)} log entr{'ies' if many else 'y'} about {axis_id} and its answers (the "
                         f"newest: {waiting[-1]}) {'are' if many else 'is'} not covered by a checkpoint yet (the "
                         f"latest covers 1..{size}); build the bundle again after the next checkpoint")
    return latest if latest is not None and latest.size >= entries[0].seq else None


def _proofs(snap: Snapshot, checkpoint: Checkpoint, entries: Sequence[AuditEntry]) -> dict[str, Any]:
    """Each covered entry's inclusion proof, checked here against the checkpoint's root: a store that no
    longer matches its checkpoint gives an error, not a bundle that fails later."""
    size = checkpoint.size
    hashes = snap.audit_hashes(size)
    if len(hashes) != size:
        raise EvidenceError(f"the log holds {len(hashes)} of the {size} entries checkpoint {size} covers; "
                            "run `axis audit verify`")
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in hashes]
    root = bytes.fromhex(checkpoint.root)
    proven = []
    shared: dict[tuple[int, int], bytes] = {}
    for entry in entries:
        if entry.seq > size:
            continue
        if compute_hash(entry) != entry.hash:
            raise EvidenceError(f"log entry {entry.seq} does not match its hash; run `axis audit verify`")
        path = merkle.inclusion_proof(leaves, entry.seq - 1, size, shared)
        try:
            merkle.verify_inclusion(leaves[entry.seq - 1], entry.seq - 1, size, path, root)
        except merkle.ProofError:
            raise EvidenceError(f"the log no longer has the root checkpoint {size} signed; "
                                "run `axis audit verify`") from None
        proven.append({"seq": entry.seq, "hash": entry.hash, "path": [p.hex() for p in path]})
    return {"tree_size": size, "root": checkpoint.root, "entries": proven}


# ------------------------------------------------------------------ the rows the entries bind

def _bound_rows(snap: Snapshot, document: Document, answers: Sequence[Document],
                entries: Sequence[AuditEntry]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(table, key): row} of every row the entries bind, as stored, which must read as the last entry that
    bound it recorded; a row they record as removed is left out."""
    latest: dict[tuple[str, str], tuple[str | None, int]] = {}
    for entry in entries:
        for table, key, digest in entry.bound or ():
            latest[(str(table), str(key))] = (digest, entry.seq)
    stored: dict[tuple[str, str], dict[str, Any]] = {}

    def keep(table: str, records: Iterable[Any]) -> None:
        for record in records:
            row = dataclasses.asdict(record)
            stored[(table, row_key(table, row))] = row

    keep("documents", [document, *answers])
    for subject in [document.axis_id, *(a.axis_id for a in answers)]:
        keep("deliveries", snap.deliveries(subject))
        keep("receipts", snap.receipts(subject))
    keep("submissions", snap.submissions([key for table, key in latest if table == "submissions"]).values())
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (table, key), (digest, seq) in sorted(latest.items(), key=lambda item: (_table_order(item[0][0]), item[0])):
        if digest is None:
            continue
        row = stored.get((table, key))
        if row is None or row_digest(table, row) != digest:
            raise EvidenceError(f"the {table} row {key} is {'missing' if row is None else 'not'} as log entry {seq} "
                                "recorded it; run `axis audit verify`")
        rows[(table, key)] = row
    return rows


def _table_order(table: str) -> int:
    return TABLES.index(table) if table in TABLES else len(TABLES)


# ------------------------------------------------------------------ bodies and certificates

def _put_bodies(snap: Snapshot, document: Document, answers: Sequence[Document],
                rows: Mapping[tuple[str, str], dict[str, Any]], removed: Mapping[str, tuple[str, int]],
                files: dict[str, bytes]) -> None:
    """Every body a row holds or names, once each, under its first name (see the module docstring), but the
    packets retention removed."""
    named: set[str] = set()

    def put(name: str, body: bytes | None) -> None:
        digest = hashlib.sha256(body).hexdigest() if body is not None else ""
        if body is not None and digest not in named:
            named.add(digest)
            files[name] = body

    def packet(axis_id: str) -> bytes | None:
        if axis_id in removed:
            if removed[axis_id][0] != rows[("documents", axis_id)]["digest"]:
                raise EvidenceError(f"log entry {removed[axis_id][1]} removed a packet of {axis_id} without its "
                                    "document's digest; run `axis audit verify`")
            return None
        body = snap.document_body(axis_id)
        if hashlib.sha256(body).hexdigest() != rows[("documents", axis_id)]["digest"]:
            raise EvidenceError(f"the stored packet of {axis_id} does not have its document's digest; "
                                "run `axis audit verify`")
        return body

    put(DOCUMENT, packet(document.axis_id))
    folders = {a.axis_id: f"answers/{n:02d}-{_safe(a.sender_code)}/" for n, a in enumerate(answers, 1)}
    for answer in answers:
        put(folders[answer.axis_id] + "packet.xml", packet(answer.axis_id))
    for subject, folder in [(document.axis_id, ""), *folders.items()]:
        receipts = sorted((row for (table, _), row in rows.items()
                           if table == "receipts" and row["axis_id"] == subject),
                          key=lambda row: (row["created_at"], row["id"]))
        for n, row in enumerate(receipts, 1):
            label = "-".join(_safe(part) for part in (row["kind"], row["recipient_code"], row["code"]) if part)
            put(f"{folder}receipts/{n:02d}-{label}.xml", row["body"])
    for (table, key), row in rows.items():
        if table == "submissions" and row["receipt"] is not None:
            put(f"submissions/{_safe(key)}.xml", row["receipt"])


def _put_certificates(files: dict[str, bytes]) -> None:
    """certs/<code>-<fingerprint>.pem: the certificates each XML signature presents, its signer's first."""
    for name in [name for name in files if name.endswith(".xml")]:
        chain = _presented_certificates(files[name])
        if not chain:
            continue
        leaf = chain[0]
        try:
            code = certificate_agency_code(leaf)
        except Refusal:
            code = "unknown"
        fingerprint = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
        files.setdefault(f"{CERTS}{_safe(code)}-{fingerprint[:16]}.pem", keys.certificate_pem(*chain))


def _presented_certificates(body: bytes) -> list[x509.Certificate]:
    """The certificates in the KeyInfo of a signed packet or receipt, the signer's (the one that is no CA)
    first; as presented, not verified. EvidenceError when the bytes are not a readable signed XML."""
    try:
        found = [x509.load_der_x509_certificate(decode_base64(element.text or ""))
                 for element in parse_xml(body).iter(f"{{{DS_NS}}}X509Certificate")]
    except (Refusal, ValueError) as exc:
        raise EvidenceError(f"a stored signed body cannot be read ({exc}); run `axis audit verify`") from None
    return sorted(found, key=_is_ca)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _read_crl(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        keys.parse_crls(data, str(path))
    except OSError as exc:
        raise EvidenceError(f"cannot read the CRL file {path}: {exc.strerror or exc}; set AXIS_CRL or --crl to "
                            "the CRL Axis uses") from None
    except ValueError as exc:
        raise EvidenceError(f"the CRL file {exc}; set AXIS_CRL or --crl to the CRL Axis uses") from None
    return data


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)


def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _lines(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


# ------------------------------------------------------------------ README.txt

def _readme(axis_id: str, built_at: datetime, checkpoint: int | None, stamped: bool,
            uncovered: Sequence[int], removed: Sequence[tuple[str, str, int]] = ()) -> str:
    """README.txt: what this bundle is and how to check each part of it with standard tools."""
    if checkpoint is None:
        coverage = ("INCOMPLETE: no checkpoint covers its log entries yet. They are carried without proofs and "
                    "prove nothing until a bundle is built again after the next checkpoint.")
    elif uncovered:
        coverage = (f"INCOMPLETE: log entries {', '.join(map(str, uncovered))} are newer than checkpoint "
                    f"{checkpoint}; they are carried without proofs and prove nothing until a bundle is built "
                    "again after the next checkpoint.")
    else:
        unstamped = " (which has no timestamp token: its time is only Axis's word)"
        coverage = (f"Complete: every log entry has its inclusion proof to checkpoint {checkpoint}"
                    f"{'' if stamped else unstamped}.")
    for key, digest, seq in removed:
        what = "The packet" if key == axis_id else f"The status packet {key}"
        coverage += (f"\n{what} is not carried: Axis removed its body by retention (log entry {seq}) after every "
                     f"recipient had it. That entry stands in for it: it names the SHA-256 {digest}, which the "
                     "documents row records and the sender's and recipients' copies must have.")
    return _README.format(axis_id=axis_id, built_at=format_at(built_at), coverage=coverage)


_README = """\
Evidence bundle of the Axis document {axis_id}
Built {built_at} from the Axis store; format axis-evidence/1 (Axis's docs/evidence.md describes it).
{coverage}

Check all of it at once, offline, with nothing but the roots you trust:

    axis evidence verify THIS.zip --trust ROOT.pem --tsa-trust TSA-ROOT.pem

Each signature is judged as of the time the log recorded it, so the bundle still verifies after
the certificates expire. Or check it part by part with standard tools, after
`unzip THIS.zip -d bundle && cd bundle`:

1. Nothing was changed since it was built:
       sha256sum -c MANIFEST.sha256
2. The packet, each status packet and each receipt is signed by a certificate of ROOT.pem
   (xmlsec1 judges the certificates as of now; `TZ=UTC xmlsec1 ... --verification-time
   "YYYY-MM-DD HH:MM:SS"` as of the time of the first entry that binds the file's row):
       xmlsec1 --verify --trusted-pem ROOT.pem document.xml
       for f in receipts/*.xml answers/*/packet.xml answers/*/receipts/*.xml; do
           xmlsec1 --verify --trusted-pem ROOT.pem "$f"; done
   certs/ holds each signer's certificate as its signature presents it; crl/ the CRLs in force.
3. Axis signed the checkpoint (log/checkpoint.note) with the certificate of log/checkpoint-signer.pem:
       openssl x509 -in log/checkpoint-signer.pem -pubkey -noout > axis-pub.pem
       openssl dgst -sha256 -verify axis-pub.pem -signature log/checkpoint.sig log/checkpoint.note
       openssl verify -CAfile ROOT.pem -untrusted log/checkpoint-signer.pem log/checkpoint-signer.pem
4. A time-stamping authority saw that signature no later than the token's time:
       openssl ts -verify -data log/checkpoint.sig -in log/checkpoint.tsr -CAfile TSA-ROOT.pem
       openssl ts -reply -in log/checkpoint.tsr -text
5. Each log entry is in the checkpoint's tree. Line n of log/entries.jsonl is the exact JSON the
   log hashed: its chain hash is SHA-256(the 32 bytes of its prev_hash || the line without its
   newline); that hash is in log/proofs.json. Its leaf is SHA-256(0x00 || the 32 bytes of the chain
   hash); RFC 9162 section 2.1.3.2 leads from the leaf at index seq-1, with the "path" of
   log/proofs.json, to the root in log/checkpoint.note (line 3, base64) for the tree size on line 2.
6. The entries bind the rows, the rows bind the files. Each line of log/rows.jsonl is
   [table, row]; its SHA-256 (the line without its newline) is the digest an entry lists in its
   "bound" for that table and key (the last entry that binds it). A documents row's "digest" is
   the SHA-256 of its packet; a receipts row's "digest" and "body" ("sha256:<hex>") that of its file.
"""
