"""Log keys: how the verifier tells the entries Axis wrote from entries added behind its back.

Anyone who can write the `audit_log` table can append an entry with a
correctly computed hash, and the next checkpoint would sign it. So every
process that writes the store (a hub, a gateway, an operator's command)
makes an Ed25519 key when it starts, keeps it only in its memory, has the
axis key certify it, and seals every unit of work it commits with it
(axis/store/audit.py: the seal goes on the unit's last entry and covers
entries `sealed_from`..seq). A process never writes its log key down; when it
exits, nobody can seal with that key again.

The certificate is a statement the axis key signs (`AxisSigner.sign_bytes`,
so RSA PKCS#1 v1.5 or ECDSA with SHA-256, like a checkpoint):

    axis/audit-log-key
    <key id: SHA-256 of the raw public key, hex>
    <the raw Ed25519 public key, base64>
    writer hub
    time 2026-12-06T10:02:03.123456Z

kept in `audit_log_keys` with the certifying certificate's fingerprint
(its chain in `audit_signers`). The verifier accepts a seal only by a key
whose statement verifies under a certificate chaining to the auditor's roots,
naming AXIS and valid at the statement's time, and only over exactly the
entries of the unit it closes.

What a seal proves: the entries were written by a process to which the
axis signer gave a certificate, unchanged since. What it does not: anything
against whoever holds the axis key or can talk to the signer's socket, or
against a writing process taken over while it runs (it holds its log key).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from axis.audit.checkpoints import CheckpointError, check_signed, fingerprint
from axis.signer import AxisSigner
from axis.store import AuditSigner, LogKey, Store
from axis.store.audit import format_at, seal_message
from axis.trust import Verifier

ORIGIN = "axis/audit-log-key"
_WRITER = re.compile(r"[a-z][a-z0-9-]{0,63}")


class SealError(ValueError):
    """A log key or a seal that does not check; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Statement:
    key_id: str
    public_key: bytes
    writer: str
    at: datetime

    def text(self) -> str:
        return (f"{ORIGIN}\n{self.key_id}\n{base64.b64encode(self.public_key).decode('ascii')}\n"
                f"writer {self.writer}\ntime {format_at(self.at)}\n")

    @classmethod
    def parse(cls, text: str) -> Statement:
        lines = text.split("\n")
        try:
            if len(lines) != 6 or lines[5] != "" or lines[0] != ORIGIN:
                raise ValueError("not an Axis log key statement")
            if not lines[3].startswith("writer ") or not lines[4].startswith("time "):
                raise ValueError("its lines are not key id, key, writer, time")
            statement = cls(key_id=lines[1], public_key=base64.b64decode(lines[2], validate=True),
                            writer=lines[3][7:], at=datetime.strptime(lines[4][5:], "%Y-%m-%dT%H:%M:%S.%fZ")
                            .replace(tzinfo=UTC))
        except (ValueError, binascii.Error) as exc:
            raise SealError(f"the log key's statement cannot be read: {exc}") from None
        if statement.text() != text:
            raise SealError("the log key's statement is not in its one canonical form")
        return statement


class LogSealer:
    """A writer's log key in memory: what `Store.seal_with` takes."""

    def __init__(self, private: Ed25519PrivateKey, key_id: str) -> None:
        self._private = private
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def certify(signer: AxisSigner, writer: str, at: datetime) -> tuple[LogSealer, LogKey, str]:
    """A new log key for `writer` ("hub", "gateway", "operator"), certified by the axis key: the sealer, the
    row to register, and the certifying certificate's PEM chain. Blocking (it asks the signer)."""
    if not _WRITER.fullmatch(writer):
        raise ValueError(f"a log key's writer is a short lowercase name, not {writer!r}")
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    statement = Statement(key_id(public), public, writer, at)
    text = statement.text()
    signature = signer.sign_bytes(text.encode("ascii"))
    chain = signer.certificates()
    certifier = fingerprint(x509.load_pem_x509_certificate(chain[0]))
    row = LogKey(key_id=statement.key_id, public_key=public, created_at=at, writer=writer, statement=text,
                 signature=signature, signer=certifier)
    return LogSealer(private, statement.key_id), row, b"".join(chain).decode("ascii")


def seal_store(store: Store, signer: AxisSigner, writer: str) -> str:
    """Make, certify and register a log key for this process, and seal the store's units of work with it from
    now on; the key's id. Blocking: call it once at start, before the store is shared."""
    sealer, row, pem = certify(signer, writer, store.clock())
    with store.write() as tx:
        tx.add_log_key(row, pem)
    store.seal_with(sealer)
    return sealer.key_id


class SealChecker:
    """Checks seals against the log keys of one database (or export), each key's statement once."""

    def __init__(self, keys: Mapping[str, LogKey], signers: Mapping[str, AuditSigner],
                 trust: Sequence[x509.Certificate]) -> None:
        self._keys = keys
        self._signers = signers
        self._verifier = Verifier(trust, clock=self._as_of) if trust else None
        self._at = datetime.now(UTC)
        self._checked: dict[str, Ed25519PublicKey] = {}

    def _as_of(self) -> datetime:
        return self._at

    def public_key(self, key: str) -> Ed25519PublicKey:
        """The log key `key`, once its statement checks; SealError otherwise."""
        found = self._checked.get(key)
        if found is not None:
            return found
        row = self._keys.get(key)
        if row is None:
            raise SealError(f"its log key {key[:16]}… is not in the database")
        statement = Statement.parse(row.statement)
        if (statement.key_id, statement.public_key, statement.writer, statement.at) != (
                row.key_id, row.public_key, row.writer, row.created_at) or key_id(row.public_key) != row.key_id:
            raise SealError(f"log key {key[:16]}…: its row differs from the statement the axis key signed")
        signer = self._signers.get(row.signer)
        if signer is None:
            raise SealError(f"log key {key[:16]}…: its certifying certificate is not in the database")
        self._at = row.created_at
        try:
            check_signed(signer, row.signer, row.statement.encode("ascii"), row.signature, self._verifier)
        except (CheckpointError, ValueError) as exc:
            raise SealError(f"log key {key[:16]}… is not certified by the axis key: "
                            f"{str(exc).replace('checkpoint', 'statement')}") from None
        public = Ed25519PublicKey.from_public_bytes(row.public_key)
        self._checked[key] = public
        return public

    def check(self, key: str, first: int, last: int, last_hash: str, seal: bytes) -> None:
        """SealError unless `seal` is log key `key`'s over entries first..last, the last with `last_hash`."""
        public = self.public_key(key)
        try:
            public.verify(seal, seal_message(key, first, last, last_hash))
        except InvalidSignature:
            raise SealError(f"its seal is not log key {key[:16]}…'s over entries {first}..{last}") from None
