"""Verifying the record without trusting the operator: the log, its checkpoints, the rows it binds.

`verify_store` reads the database in one snapshot and checks, stopping at
the first problem, which it names:

1. every checkpoint: its signed text (canonical, matching its row), its link
   to the previous checkpoint (`prev`: one removed from the middle is seen),
   its signature by a certificate that chains to the given trust roots, names
   Axis (AXIS) and was valid when the checkpoint was made, and its RFC 3161
   token over that signature (when TSA roots are given);
2. every entry: the hash chain (axis/store/audit.py), then the Merkle root at
   each checkpoint's size must be the signed one, so an entry changed, removed
   or inserted before a checkpoint is seen even when the attacker recomputed
   every hash after it; entries beyond the log's end that a checkpoint covers
   are reported missing;
3. every evidence row (axis/store/bindings.py): each must read as the last
   entry that bound it recorded, none may be missing, none may be there that
   no entry bound, and every document body must have its document's digest.
   A row (or body) may be missing only where an entry removed it: one that
   binds it as removed ([table, key, null]) and names, in `data.removed`, the
   digest of the row it removed, which must be the digest the log last
   recorded for it (for a body: its document's), so a row changed and then
   removed is still named (axis/store/retention.py writes these entries);
4. with a checkpoint the auditor saved (`against`): that the log today extends
   it, by the RFC 9162 consistency proof from it to the newest checkpoint (or
   to the whole log), so truncation, rewriting and insertion before it are
   seen even if the attacker rewrote the database and every checkpoint in it.

Throughout, every entry must be sealed by the log key of the Axis process
that wrote it (axis/audit/logkeys.py), a key the axis key certified: an entry
appended by someone who can write the table, even after the newest
checkpoint, is named. Entries from before Axis sealed its log are accepted
only ahead of the first sealed one (the report says how many).

What it cannot see: entries cut from the end after the newest checkpoint
the auditor holds, and anything done by someone who holds the axis key or can
use the signer. docs/auditor-guide.md says what each check proves.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from axis.audit import merkle
from axis.audit.checkpoints import (
    CheckpointError,
    Note,
    Saved,
    check_signed,
    check_stamp_time,
    note_digest,
)
from axis.audit.export import ExportError, read_export
from axis.audit.logkeys import SealChecker, SealError
from axis.store import AuditEntry, AuditSigner, Checkpoint, CheckpointStamp, Snapshot, Store, verify_chain
from axis.store.bindings import BINDINGS, row_digest, row_key
from axis.timestamp import TimestampError, verify_timestamp
from axis.trust import Verifier


@dataclass
class Report:
    ok: bool = True
    entries: int = 0
    checkpoints: int = 0
    stamped: int = 0
    unstamped: int = 0
    rows: int = 0
    removed: int = 0                # rows and bodies that entries removed (retention)
    sealed: int = 0                 # units of work whose seal checked
    where: str | None = None        # the first bad thing: "entry 17", "checkpoint 1000", "deliveries row …"
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    def fail(self, where: str, reason: str) -> Report:
        self.ok, self.where, self.reason = False, where, reason
        return self


def verify_store(store: Store, trust: Sequence[x509.Certificate], *,
                 tsa_roots: Sequence[x509.Certificate] | None = None, against: Saved | None = None) -> Report:
    """Check everything (see the module docstring); the report names the first problem.

    `trust`: the roots Axis's checkpoint-signing certificate must chain to. `tsa_roots`: the roots of
    the TSA; None leaves the timestamp tokens unchecked (the report says so). `against`: a checkpoint
    the auditor kept (`checkpoints.read_saved`).
    """
    report = Report()
    with store.snapshot() as snap:
        checkpoints = list(snap.checkpoints())
        if not _check_checkpoints(checkpoints, snap.audit_signers(), snap.checkpoint_stamps(), trust, tsa_roots,
                                  report):
            return report
        by_size = {c.size: c for c in checkpoints}
        expected: dict[tuple[str, str], tuple[str | None, int]] = {}
        removed: dict[str, tuple[str, int]] = {}
        leaves: list[bytes] = []
        seals = SealChecker(snap.log_keys(), snap.audit_signers(), trust)
        if not _check_entries(snap.audit_entries(), by_size, expected, removed, leaves, seals, report):
            return report
        if against is not None and not _check_against(against, checkpoints, leaves, report):
            return report
        if not _check_rows(snap, expected, removed, report):
            return report
    covered = checkpoints[-1].size if checkpoints else 0
    if report.entries > covered:
        report.notes.append(f"entries {covered + 1}..{report.entries} are not covered by a checkpoint yet "
                            "(the next one covers them)")
    if report.unstamped:
        report.notes.append(f"{report.unstamped} checkpoint(s) wait for a timestamp")
    if report.removed:
        report.notes.append(f"{report.removed} row(s) and bodies are missing where an entry removed them "
                            "(retention), each with the digest the log had recorded")
    return report


def verify_export(directory: Path, trust: Sequence[x509.Certificate], *,
                  tsa_roots: Sequence[x509.Certificate] | None = None) -> Report:
    """Check an `axis audit export` directory offline: the archives' manifests and their chain, then the
    checkpoints and the entries as `verify_store` does (rows are not exported, so they are not checked; each
    removal is checked against the digest the log had recorded)."""
    report = Report()
    try:
        contents = read_export(directory)
        if not _check_checkpoints(contents.checkpoints, contents.signers, contents.stamps, trust, tsa_roots,
                                  report):
            return report
        by_size = {c.size: c for c in contents.checkpoints}
        seals = SealChecker(contents.log_keys, contents.signers, trust)
        if not _check_entries(contents.entries(), by_size, {}, {}, [], seals, report):
            return report
    except ExportError as exc:
        return report.fail(str(directory), str(exc))
    except (ValueError, KeyError, TypeError) as exc:  # a file that parses but is not what an export writes
        return report.fail(str(directory), f"an archive holds something an export does not write: {exc!r}")
    if contents.checkpoints and report.entries != contents.checkpoints[-1].size:
        return report.fail(str(directory), f"the archives hold {report.entries} entries, their last checkpoint "
                                           f"covers {contents.checkpoints[-1].size}")
    if report.unstamped:
        report.notes.append(f"{report.unstamped} checkpoint(s) had no timestamp when they were exported")
    return report


def _check_checkpoints(checkpoints: list[Checkpoint], signers: Mapping[str, AuditSigner],
                       stamps: Mapping[int, CheckpointStamp], trust: Sequence[x509.Certificate],
                       tsa_roots: Sequence[x509.Certificate] | None, report: Report) -> bool:
    as_of = [datetime.now(UTC)]
    verifier = Verifier(trust, clock=lambda: as_of[0]) if trust else None
    previous: Checkpoint | None = None
    for cp in checkpoints:
        where = f"checkpoint {cp.size}"
        try:
            note = Note.parse(cp.note)
        except CheckpointError as exc:
            report.fail(where, str(exc))
            return False
        if (note.size, note.root.hex(), note.head, note.at) != (cp.size, cp.root, cp.head_hash, cp.at):
            report.fail(where, "its row differs from the text its signature covers")
            return False
        previous_size = previous.size if previous else 0
        if note.prev_size != previous_size:
            report.fail(where, f"it follows checkpoint {note.prev_size}, which is not in the database "
                               "(a checkpoint was removed)" if note.prev_size > previous_size else
                        f"it follows checkpoint {note.prev_size}, not {previous_size} (a checkpoint was inserted)")
            return False
        if previous is not None and note.prev_digest != note_digest(previous.note):
            report.fail(where, f"checkpoint {previous.size} is not the one it follows (it was replaced)")
            return False
        signer = signers.get(cp.signer)
        if signer is None:
            report.fail(where, f"its signer's certificate {cp.signer[:16]}… is not in the database")
            return False
        as_of[0] = cp.at
        try:
            check_signed(signer, cp.signer, cp.note.encode("utf-8"), cp.signature, verifier)
        except (CheckpointError, ValueError) as exc:
            report.fail(where, str(exc))
            return False
        stamp = stamps.get(cp.size)
        if stamp is None:
            report.unstamped += 1
        else:
            if not _stamp_ok(stamp, cp, tsa_roots, report):
                return False
            report.stamped += 1
        previous = cp
        report.checkpoints += 1
    if checkpoints and tsa_roots is None and report.stamped:
        report.notes.append("timestamp tokens were not checked: no TSA roots given (--tsa-trust)")
    return True


def _stamp_ok(stamp: CheckpointStamp, cp: Checkpoint, tsa_roots: Sequence[x509.Certificate] | None,
              report: Report) -> bool:
    if tsa_roots is None:
        return True
    try:
        check_stamp_time(verify_timestamp(stamp.token, cp.signature, tsa_roots), cp.at)
    except TimestampError as exc:
        report.fail(f"checkpoint {cp.size}", f"its timestamp token does not verify: {exc}")
        return False
    except CheckpointError as exc:
        report.fail(f"checkpoint {cp.size}", str(exc))
        return False
    return True


def _check_entries(entries: Iterable[AuditEntry], by_size: dict[int, Checkpoint],
                   expected: dict[tuple[str, str], tuple[str | None, int]], removed: dict[str, tuple[str, int]],
                   leaves: list[bytes], seals: SealChecker, report: Report) -> bool:
    frontier = merkle.Frontier()
    problem: list[tuple[str, str]] = []
    # The first entry no seal covers yet; None until the first sealed entry (entries before it were written
    # before writers sealed: nothing can tell them from forgeries but the checkpoints and the saved one).
    unsealed: list[int | None] = [None]
    legacy = [0]
    units = [0]

    def walked() -> Iterator[AuditEntry]:
        last_ok = 0
        for entry in entries:
            yield entry  # the chain check decides first whether this entry is sound
            if not _sealed_ok(entry, seals, unsealed, legacy, problem):
                return
            units[0] += entry.seal is not None
            leaf = merkle.leaf_hash(bytes.fromhex(entry.hash))
            frontier.append(leaf)
            leaves.append(leaf)
            for table, key, digest in entry.bound or ():
                if digest is None and not _removal_ok(entry, str(table), str(key), expected, removed, problem):
                    return
                expected[(str(table), str(key))] = (digest, entry.seq)
            cp = by_size.get(frontier.size)
            if cp is not None:
                if frontier.root().hex() != cp.root or entry.hash != cp.head_hash:
                    problem.append((f"entries {last_ok + 1}..{cp.size}",
                                    f"they no longer have the root checkpoint {cp.size} signed: one of them was "
                                    "changed, removed or inserted, and the hashes after it recomputed"))
                    return
                last_ok = cp.size

    chain = verify_chain(walked())
    report.entries = chain.entries
    report.sealed = units[0]
    if problem:
        report.fail(*problem[0])
        return False
    if not chain.ok:
        report.fail(f"entry {chain.first_bad_seq}", chain.reason)
        return False
    beyond = [size for size in by_size if size > chain.entries]
    if beyond:
        report.fail(f"entry {chain.entries + 1}", f"entries {chain.entries + 1}..{max(beyond)} are missing: "
                                                  f"checkpoint {max(beyond)} covers them (the log was cut)")
        return False
    start = unsealed[0]
    if start is not None and start <= chain.entries:
        report.fail(f"entry {start}", f"entries {start}..{chain.entries} carry no seal of an Axis writer: they "
                                      "were added behind Axis's back (or a sealed entry after them was removed)")
        return False
    if legacy[0]:
        report.notes.append(f"entries 1..{legacy[0]} carry no seal: they were written before Axis sealed its "
                            "log (only the checkpoints vouch for them)")
    return True


def _removal_ok(entry: AuditEntry, table: str, key: str, expected: dict[tuple[str, str], tuple[str | None, int]],
                removed: dict[str, tuple[str, int]], problem: list[tuple[str, str]]) -> bool:
    """An entry that binds a row as removed names the digest of the row it removed, the one last recorded."""
    named = entry.data.get("removed")
    digest = next((item[2] for item in (named if isinstance(named, list) else ())
                   if isinstance(item, list) and len(item) == 3 and item[:2] == [table, key]
                   and isinstance(item[2], str)), None)
    where = f"entry {entry.seq}"
    if digest is None:
        problem.append((where, f"it records {table} row {key} as removed without naming the row it removed"))
        return False
    if table == "document_bodies":
        removed[key] = (digest, entry.seq)  # a body is bound through its document: checked with the rows
        return True
    last = expected.get((table, key))
    if last is None or last[0] is None:
        problem.append((where, f"it removes {table} row {key}, which no entry before it recorded"))
        return False
    if last[0] != digest:
        problem.append((where, f"it removed {table} row {key} as it was not when entry {last[1]} recorded it: the "
                               "row was changed before it was removed"))
        return False
    return True


def _sealed_ok(entry: AuditEntry, seals: SealChecker, unsealed: list[int | None], legacy: list[int],
               problem: list[tuple[str, str]]) -> bool:
    """Follow the seals: every entry after the first sealed one must be in the range a later seal covers."""
    if entry.seal_key is None:
        if unsealed[0] is None:
            legacy[0] = entry.seq
        return True
    where = f"entry {entry.seq}"
    if entry.sealed_from is None or entry.seal is None:
        problem.append((where, "it names a seal it does not carry (the seal was removed)"))
        return False
    if not 1 <= entry.sealed_from <= entry.seq:
        problem.append((where, f"its seal claims entries from {entry.sealed_from}, not up to it"))
        return False
    if unsealed[0] is None:  # the first seal: the entries before its unit are the unsealed past
        legacy[0] = entry.sealed_from - 1
    start = unsealed[0] if unsealed[0] is not None else entry.sealed_from
    if entry.sealed_from > start:
        problem.append((f"entry {start}", f"entries {start}..{entry.sealed_from - 1} carry no seal of an Axis "
                                          "writer: they were added behind Axis's back"))
        return False
    if entry.sealed_from < start:
        problem.append((where, f"its seal claims entries from {entry.sealed_from}, which another seal covers"))
        return False
    try:
        seals.check(entry.seal_key, entry.sealed_from, entry.seq, entry.hash, entry.seal)
    except SealError as exc:
        problem.append((where, str(exc)))
        return False
    unsealed[0] = entry.seq + 1
    return True


def _check_against(saved: Saved, checkpoints: list[Checkpoint], leaves: list[bytes], report: Report) -> bool:
    size = saved.note.size
    where = f"the saved checkpoint {size}"
    kept = next((c for c in checkpoints if c.size == size), None)
    if kept is not None and kept.note != saved.text:
        report.fail(where, "the database holds another checkpoint of that size (it was replaced)")
        return False
    if kept is not None and kept.signature != saved.signature:
        report.fail(where, "the database holds it with another signature (it was replaced)")
        return False
    if size > len(leaves):
        report.fail(f"entry {len(leaves) + 1}", f"the log holds {len(leaves)} entries, but the saved checkpoint "
                                                f"covers {size}: entries were cut from its end")
        return False
    newest = checkpoints[-1] if checkpoints and checkpoints[-1].size >= size else None
    new_size = newest.size if newest else len(leaves)
    new_root = bytes.fromhex(newest.root) if newest else merkle.root(leaves[:new_size])
    proof = merkle.consistency_proof(leaves, size, new_size)
    try:
        merkle.verify_consistency(size, new_size, saved.note.root, new_root, proof)
    except merkle.ProofError as exc:
        report.fail(f"entries 1..{size}", f"{exc} (consistency proof from the saved checkpoint {size} to "
                                          f"{'checkpoint' if newest else 'the log of'} {new_size})")
        return False
    if kept is None:
        report.fail(where, "the log extends it, but the database no longer holds it (a checkpoint was removed)")
        return False
    report.notes.append(f"the log extends the saved checkpoint {size}: consistency proof to "
                        f"{'checkpoint' if newest else 'the log of'} {new_size} ({len(proof)} hashes) checks")
    return True


def _check_rows(snap: Snapshot, expected: dict[tuple[str, str], tuple[str | None, int]],
                removed: dict[str, tuple[str, int]], report: Report) -> bool:
    digests: dict[str, str] = {}
    for table in BINDINGS:
        for row in snap.evidence_rows(table):
            key = row_key(table, row)
            where = f"{table} row {key}"
            bound = expected.pop((table, key), None)
            if table == "submissions" and row["outcome"] is None:
                if bound is not None and bound[0] is not None:
                    report.fail(where, f"entry {bound[1]} recorded its outcome, the row shows none")
                    return False
                continue  # not decided yet: bookkeeping, not evidence
            if bound is None or bound[0] is None:
                report.fail(where, "no audit entry recorded it: it was written behind Axis's back")
                return False
            if row_digest(table, row) != bound[0]:
                report.fail(where, f"it differs from what entry {bound[1]} recorded: it was changed")
                return False
            if table == "documents":
                digests[row["axis_id"]] = row["digest"]
            report.rows += 1
    for (table, key), (digest, seq) in sorted(expected.items(), key=lambda item: item[1][1]):
        if digest is not None:
            report.fail(f"{table} row {key}", f"entry {seq} recorded it, the table no longer has it: it was removed "
                                              "behind Axis's back (no entry removed it)")
            return False
        report.removed += table in BINDINGS
    for axis_id, digest in snap.body_digests():
        if axis_id in removed:
            report.fail(f"document_bodies row {axis_id}", f"entry {removed[axis_id][1]} removed it, yet it is there: "
                                                          "it was written back behind Axis's back")
            return False
        if digests.pop(axis_id, None) != digest:
            report.fail(f"document_bodies row {axis_id}", "the body does not have its document's digest: "
                                                          "it was changed, or belongs to no document")
            return False
    for axis_id, digest in digests.items():
        gone = removed.get(axis_id)
        if gone is None:
            report.fail(f"document_bodies row {axis_id}", "the document's body is missing: it was removed behind "
                                                          "Axis's back (no entry removed it)")
            return False
        if gone[0] != digest:
            report.fail(f"document_bodies row {axis_id}", f"entry {gone[1]} removed a body that did not have its "
                                                          "document's digest: it was changed before it was removed")
            return False
        report.removed += 1
    return True

