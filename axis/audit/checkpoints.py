"""Signed checkpoints of the audit log: their text, their signature, and the process that writes them.

A checkpoint is a signed tree head in the C2SP `tlog-checkpoint` layout: the
origin, the tree size and the base64 Merkle root (axis/audit/merkle.py, whose
leaves are the chain hashes of the entries), then Axis's extension lines:

    axis/audit-log
    1042
    q7S0cq0eS5pmb1ByrgvHPYNPVn0A7hrIc1tP0bk+0dM=
    head 3f1c…            (the chain hash of entry 1042)
    time 2026-12-06T07:31:02.123456Z
    prev 1000 9a0e…       (size and SHA-256 of the previous checkpoint's text; 0 and zeros for the first)

The axis key signs exactly those bytes (RSA PKCS#1 v1.5 or ECDSA, SHA-256:
`openssl dgst -sha256 -verify axis-pub.pem -signature cp.sig cp.note`), and
an RFC 3161 TSA timestamps the signature (`openssl ts -verify -data cp.sig`).
The `prev` line chains the checkpoints: one removed from the middle breaks
the next one's link; one removed from the end is seen only against a copy the
auditor kept (`axis audit checkpoint --out`).

`CheckpointWriter` runs inside `axis serve`: every `every_entries` entries or
`every_seconds` (whichever comes first) it reads the entries written since the
last checkpoint, checks their chain, extends the tree's compact range, signs
and appends a checkpoint; a database lock decides which process writes when
several hubs run. It then asks the TSA for the tokens still missing, oldest
first. A TSA that does not answer never stops traffic: checkpoints wait for
their token (`unstamped`) and are stamped when it answers again, and the log
says how far behind that is.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from axis import wire
from axis.audit import merkle
from axis.refusals import Refusal
from axis.signer import AxisSigner
from axis.store import GENESIS_HASH, AuditSigner, Checkpoint, CheckpointStamp, Store
from axis.store.audit import format_at
from axis.trust import Verifier, keys

log = logging.getLogger("axis.audit")

ORIGIN = "axis/audit-log"
CLOCK_SKEW = timedelta(minutes=5)  # a TSA's clock and the hub's may differ this much
_HEX64 = re.compile("[0-9a-f]{64}")
_NO_PREVIOUS = "0" * 64


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose signature does not check."""


class LogBroken(RuntimeError):
    """The entries since the last checkpoint do not chain: the writer refuses to sign them."""


@dataclass(frozen=True, slots=True)
class Note:
    """The signed text of a checkpoint, parsed."""
    size: int
    root: bytes
    head: str
    at: datetime
    prev_size: int
    prev_digest: str

    def text(self) -> str:
        return (f"{ORIGIN}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"
                f"head {self.head}\ntime {format_at(self.at)}\nprev {self.prev_size} {self.prev_digest}\n")

    @classmethod
    def parse(cls, text: str) -> Note:
        lines = text.split("\n")
        try:
            if len(lines) != 7 or lines[6] != "" or lines[0] != ORIGIN:
                raise ValueError("not an Axis checkpoint (origin, size, root, head, time, prev)")
            keys = [line.split(" ", 1)[0] for line in lines[3:6]]
            if keys != ["head", "time", "prev"]:
                raise ValueError(f"extension lines {keys} are not head, time, prev")
            prev_size, prev_digest = lines[5].split(" ")[1:]
            note = cls(size=int(lines[1]), root=base64.b64decode(lines[2], validate=True),
                       head=lines[3][5:], at=datetime.strptime(lines[4][5:], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                           tzinfo=UTC), prev_size=int(prev_size), prev_digest=prev_digest)
            if not (_HEX64.fullmatch(note.head) and _HEX64.fullmatch(note.prev_digest) and len(note.root) == 32):
                raise ValueError("head, root and prev must be SHA-256 values")
        except (ValueError, binascii.Error) as exc:
            raise CheckpointError(f"the checkpoint text cannot be read: {exc}") from None
        if note.text() != text:
            raise CheckpointError("the checkpoint text is not in its one canonical form")
        return note


def note_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_signer(verifier: Verifier, chain: Sequence[x509.Certificate]) -> None:
    """CheckpointError unless `chain[0]` (its chain after it) was Axis's certificate at the verifier's clock
    (the checkpoint's time): chaining to the verifier's roots, valid, not revoked, naming AXIS."""
    try:
        code = verifier.check_certificate(chain[0], chain[1:])
    except Refusal as refusal:
        raise CheckpointError(f"its signer's certificate was not acceptable when it was signed: {refusal}") from None
    if code != wire.HUB_IDENTITY:
        raise CheckpointError(f"it is signed with the certificate of {code}, not Axis's")


def check_signed(signer: AuditSigner, expected: str, data: bytes, signature: bytes,
                 verifier: Verifier | None) -> None:
    """CheckpointError (or ValueError for PEM that cannot be read) unless `signer`, kept under the fingerprint
    `expected`, signed `data` and, with a `verifier`, was Axis's certificate at that verifier's clock."""
    chain = x509.load_pem_x509_certificates(signer.certificates.encode("ascii"))
    if fingerprint(chain[0]) != expected:
        raise CheckpointError("the certificate kept under its fingerprint is another one")
    if verifier is not None:
        check_signer(verifier, chain)
    check_signature(chain[0], data, signature)


def check_stamp_time(stamped_at: datetime, checkpoint_at: datetime) -> None:
    """CheckpointError when a token's genTime is before the checkpoint it stamps (beyond clock skew)."""
    if stamped_at < checkpoint_at.replace(microsecond=0).astimezone(UTC) - CLOCK_SKEW:
        raise CheckpointError(f"its timestamp ({stamped_at.isoformat()}) is older than the checkpoint it stamps")


def check_signature(certificate: x509.Certificate, data: bytes, signature: bytes) -> None:
    """CheckpointError unless `signature` is the certificate key's signature over `data`."""
    try:
        keys.verify_raw(keys.issuer_public_key(certificate), signature, data)
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's certificate cannot sign: {exc}") from None
    except InvalidSignature:
        raise CheckpointError("the signature is not the signer's over this checkpoint") from None


# ------------------------------------------------------------------ the saved copy an auditor keeps

def saved_form(checkpoint: Checkpoint) -> str:
    """The checkpoint as an auditor keeps it: its text, a blank line, then `— axis <signer> <signature>`."""
    signature = base64.b64encode(checkpoint.signature).decode("ascii")
    return f"{checkpoint.note}\n\u2014 axis {checkpoint.signer} {signature}\n"


@dataclass(frozen=True, slots=True)
class Saved:
    note: Note
    text: str
    signer: str
    signature: bytes


def read_saved(text: str) -> Saved:
    """Parse what `saved_form` wrote; CheckpointError when it is not one."""
    body, sep, last = text.rstrip("\n").rpartition("\n\n")
    if not sep:
        raise CheckpointError("not a saved checkpoint: no blank line before its signature line")
    parts = last.split(" ")
    if len(parts) != 4 or parts[0] != "\u2014" or parts[1] != "axis":
        raise CheckpointError("not a saved checkpoint: the last line is not '\u2014 axis <signer> <signature>'")
    try:
        signature = base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        raise CheckpointError("the saved checkpoint's signature is not base64") from None
    note_text = body + "\n"
    return Saved(Note.parse(note_text), note_text, parts[2], signature)


# ------------------------------------------------------------------ the writer

class CheckpointWriter:
    """Writes signed checkpoints and fetches their timestamps (see the module docstring).

    `signer` signs with the axis key (`sign_bytes`; its `certificates` are
    kept with the checkpoints), the signer process's client inside `axis
    serve`. `stamp(data)`, if given, returns an RFC 3161 TimeStampResp (DER)
    over `data` from the TSA named `tsa`, or raises when the TSA does not answer.
    """

    def __init__(self, store: Store, signer: AxisSigner, *, every_entries: int = 1000, every_seconds: float = 10.0,
                 stamp: Callable[[bytes], bytes] | None = None, tsa: str = "",
                 clock: Callable[[], datetime] | None = None) -> None:
        if every_entries < 1 or every_seconds <= 0:
            raise ValueError("checkpoints need every_entries >= 1 and every_seconds > 0")
        self._store = store
        self._signer = signer
        self._identity: tuple[str, str] | None = None  # (fingerprint, PEM chain), asked of the signer once
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self._stamp = stamp
        self._tsa = tsa
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tsa_down_since: float | None = None
        self._started = self._clock()

    def due(self) -> bool:
        size = self._store.audit_head()[0]
        latest = self._store.latest_checkpoint()
        done = latest.size if latest else 0
        if size <= done:
            return False
        if size - done >= self.every_entries:
            return True
        since = latest.at if latest is not None else self._started  # a first checkpoint: T after start
        return (self._clock() - since).total_seconds() >= self.every_seconds

    def write(self) -> Checkpoint | None:
        """Sign and append a checkpoint of every entry written so far; None when there is nothing new
        or another process wrote one first. LogBroken when the new entries do not chain."""
        latest = self._store.latest_checkpoint()
        size = self._store.audit_head()[0]
        done = latest.size if latest else 0
        if size <= done:
            return None
        frontier = merkle.Frontier(done, [bytes.fromhex(h) for h in latest.frontier] if latest else [])
        head = latest.head_hash if latest else GENESIS_HASH
        # The links only, not each entry's content: an entry changed without its hash is named by any
        # verification anyway (its content no longer gives its hash), and one changed with every later hash
        # recomputed passes a recomputation as well; what a checkpoint must not do is sign a broken chain.
        for seq, prev_hash, digest in self._store.audit_links(done + 1, size):
            if seq != frontier.size + 1 or prev_hash != head:
                raise LogBroken(f"audit entry {seq} does not chain to the entries before it; no checkpoint "
                                "is signed over it (run `axis audit verify`)")
            frontier.append(merkle.leaf_hash(bytes.fromhex(digest)))
            head = digest
        if frontier.size != size:
            raise LogBroken(f"audit entries {frontier.size + 1}..{size} are missing; no checkpoint is signed")
        note = Note(size=size, root=frontier.root(), head=head, at=self._clock(), prev_size=done,
                    prev_digest=note_digest(latest.note) if latest else _NO_PREVIOUS)
        text = note.text()
        signer, pem = self._signing_identity()
        checkpoint = Checkpoint(size=size, root=note.root.hex(), head_hash=head, at=note.at, note=text,
                                signature=self._signer.sign_bytes(text.encode("utf-8")), signer=signer,
                                frontier=[h.hex() for h in frontier.hashes])
        with self._store.write() as tx:
            if not tx.add_checkpoint(checkpoint, pem, follows=done):
                return None
        return checkpoint

    def _signing_identity(self) -> tuple[str, str]:
        if self._identity is None:
            chain = self._signer.certificates()
            self._identity = fingerprint(x509.load_pem_x509_certificate(chain[0])), b"".join(chain).decode("ascii")
        return self._identity

    def stamp_pending(self) -> int:
        """Fetch the tokens of checkpoints still waiting for one, oldest first; how many were stamped.
        Stops at the first TSA failure (logged; the rest wait for the next round)."""
        if self._stamp is None:
            return 0
        stamped = 0
        while True:
            pending = self._store.unstamped_checkpoints(limit=50)
            if not pending:
                break
            for checkpoint in pending:
                try:
                    token = self._stamp(checkpoint.signature)
                except Exception as exc:  # noqa: BLE001 - any TSA failure is an outage to ride out
                    self._tsa_failed(exc)
                    return stamped
                with self._store.write() as tx:
                    tx.add_checkpoint_stamp(CheckpointStamp(size=checkpoint.size, token=token, tsa=self._tsa,
                                                            stamped_at=self._clock()))
                stamped += 1
        if self._tsa_down_since is not None:
            log.info("the TSA %s answers again after %.0f s; %d checkpoint(s) stamped", self._tsa,
                     time.monotonic() - self._tsa_down_since, stamped)
            self._tsa_down_since = None
        return stamped

    def _tsa_failed(self, exc: Exception) -> None:
        backlog = self.backlog()
        if self._tsa_down_since is None:
            self._tsa_down_since = time.monotonic()
            log.warning("the TSA %s does not answer (%s); checkpoints are kept and will be stamped when it "
                        "does: %d waiting, the oldest %.0f s old", self._tsa, exc, backlog[0], backlog[1])
        else:
            log.debug("the TSA %s still does not answer (%s)", self._tsa, exc)

    def backlog(self) -> tuple[int, float]:
        """(checkpoints waiting for a timestamp, age in seconds of the oldest)."""
        pending = self._store.unstamped_checkpoints(limit=100_000) if self._stamp is not None else []
        age = (self._clock() - pending[0].at).total_seconds() if pending else 0.0
        return len(pending), age

    async def run(self, tick: float = 1.0) -> None:
        """Write checkpoints and stamp them until cancelled; a database error is logged and retried."""
        warned_at = 0.0
        while True:
            try:
                if await asyncio.to_thread(self.due):
                    checkpoint = await asyncio.to_thread(self.write)
                    if checkpoint is not None:
                        log.debug("checkpoint of %d entries signed", checkpoint.size)
                await asyncio.to_thread(self.stamp_pending)
                if self._tsa_down_since is not None and time.monotonic() - warned_at >= 60:
                    warned_at = time.monotonic()
                    waiting, age = await asyncio.to_thread(self.backlog)
                    log.warning("%d checkpoint(s) wait for a timestamp from %s, the oldest for %.0f s",
                                waiting, self._tsa, age)
            except LogBroken as exc:
                log.error("%s", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the writer outlives a database hiccup
                log.warning("writing a checkpoint failed (%s: %s); trying again", type(exc).__name__, exc)
            await asyncio.sleep(min(tick, self.every_seconds))
