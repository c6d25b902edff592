"""The audit hash chain: canonical form, entry hash, and verification.

This module is pure (no database), so an exported log verifies offline with
exactly the code the store uses. The format, which never changes meaning:

- An entry is {seq, at, actor, action, subject, data, prev_hash}, plus
  `bound` when the entry binds rows (axis/store/bindings.py: a list of
  [table, key, row digest]), plus `sealed_from` and `seal_key` on the last
  entry of a sealed unit of work; `at` is UTC written `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
- canonical(entry) = json.dumps(entry, sort_keys=True, separators=(",", ":"),
  ensure_ascii=False, allow_nan=False) encoded as UTF-8.
- hash = SHA-256(bytes.fromhex(prev_hash) || canonical(entry)), lowercase hex.
- seq runs 1, 2, 3, ... without gaps; entry 1 has prev_hash = 64 zeros.

The last entry of each unit of work names its writer's log key and the
unit's first entry (`seal_key`, `sealed_from`, inside the hash, so a seal
cannot be removed unseen) and carries the seal (`seal`, outside it): an
Ed25519 signature by that key over `seal_message(key_id, sealed_from, seq,
hash)`.
As the hash chains every entry before it, the seal vouches for entries
sealed_from..seq exactly as they were written (axis/audit/logkeys.py says who
holds log keys and how the axis key certifies them).

Callers may rely on `verify_chain` naming the first entry at which the chain
breaks (changed, missing, inserted or reordered), and on checkpoints
(seq, hash) held outside the database catching what a chain alone cannot:
entries removed from the end, or a whole chain recomputed by an attacker.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from axis.store.records import AuditEntry, AuditReport

GENESIS_HASH = "0" * 64
SEAL_ORIGIN = "axis/audit-seal"


class Sealer(Protocol):
    """A writer's log key, as the store uses it: its id, and an Ed25519 signature over bytes."""

    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


def seal_message(key_id: str, first: int, last: int, last_hash: str) -> bytes:
    """The bytes a seal signs: entries first..last of one unit of work, through the hash of the last."""
    return f"{SEAL_ORIGIN}\n{key_id}\n{first}\n{last}\n{last_hash}\n".encode("ascii")


# One encoder for every call: json.dumps with options builds a new one each time, which was half the cost
# of a row's digest (the store computes one per row it writes).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """The one JSON form that is hashed (and stored, so the text never drifts)."""
    return _CANONICAL.encode(value)


@functools.lru_cache(maxsize=1024)  # a unit of work writes many rows with one `now`
def format_at(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware (UTC)")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_body(seq: int, at: datetime, actor: str, action: str, subject: str | None,
               data: Mapping[str, Any], prev_hash: str, bound: list[list[str | None]] | None = None,
               sealed_from: int | None = None, seal_key: str | None = None) -> dict[str, Any]:
    """The entry without its hash: exactly what is hashed (`bound` only when it binds rows; `sealed_from`
    and `seal_key` only on the sealed last entry of a unit of work)."""
    body = {"seq": seq, "at": format_at(at), "actor": actor, "action": action,
            "subject": subject, "data": dict(data), "prev_hash": prev_hash}
    if bound:
        body["bound"] = bound
    if seal_key is not None:
        body["sealed_from"] = sealed_from
        body["seal_key"] = seal_key
    return body


def entry_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_json(body).encode("utf-8")).hexdigest()


def compute_hash(entry: AuditEntry) -> str:
    """What `entry.hash` must be, recomputed from its stored fields."""
    body = entry_body(entry.seq, entry.at, entry.actor, entry.action, entry.subject, entry.data,
                      entry.prev_hash, entry.bound, entry.sealed_from, entry.seal_key)
    return entry_hash(entry.prev_hash, body)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as exported (`axis audit log --json`, GET /v1/audit/log): exactly what was hashed, its hash
    and its seal (base64) if it has one, so that `verify_chain` (or the formula above) checks an export alone."""
    exported = {**entry_body(entry.seq, entry.at, entry.actor, entry.action, entry.subject, entry.data,
                             entry.prev_hash, entry.bound, entry.sealed_from, entry.seal_key), "hash": entry.hash}
    if entry.seal is not None:
        exported["seal"] = base64.b64encode(entry.seal).decode("ascii")
    return exported


def check_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object that round-trips exactly; TypeError/ValueError otherwise.

    Checked before anything is written, so a bad payload never reaches the
    chain (a datetime or NaN would make the entry unverifiable).
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"audit data must be a JSON object (a mapping), not {type(data).__name__}")
    plain = dict(data)
    if _exact(plain):
        return plain
    try:
        text = canonical_json(plain)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"audit data is not plain JSON ({exc}); pass str/int/float/bool/None, "
                        "lists and dicts only, e.g. datetimes as ISO strings") from None
    round_tripped = json.loads(text)
    if canonical_json(round_tripped) != text:  # e.g. tuples become lists; hash must match on re-read
        raise ValueError("audit data does not survive a JSON round trip unchanged")
    return round_tripped


def _exact(value: Any) -> bool:
    """True for values JSON carries exactly (the usual case: no need to round-trip them)."""
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is list:
        return all(_exact(item) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _exact(item) for key, item in value.items())
    return False  # floats, tuples, anything else: the round trip decides


def verify_chain(entries: Iterable[AuditEntry],
                 checkpoints: Iterable[tuple[int, str]] = ()) -> AuditReport:
    """Recompute the chain over `entries` (ordered by seq) and check `checkpoints`.

    Stops at the first bad entry. When entry n+1 does not link to entry n, the
    report blames entry n if that explains it (n+1 links to n-1: n was
    inserted; n+1 is itself intact: n was changed and re-hashed), else n+1.
    """
    anchors = dict(checkpoints)
    count = 0
    prev_hash = GENESIS_HASH
    before_prev = GENESIS_HASH
    expected = 1

    def bad(seq: int, reason: str, verified: int, head: str) -> AuditReport:
        return AuditReport(ok=False, entries=verified, first_bad_seq=seq, reason=reason, head_hash=head)

    for entry in entries:
        if entry.seq != expected:
            if entry.seq > expected:
                return bad(expected, f"entry {expected} is missing (the next entry is {entry.seq})",
                           count, prev_hash)
            return bad(entry.seq, f"entry {entry.seq} is out of order (expected {expected})", count, prev_hash)
        recomputed = compute_hash(entry)
        if entry.prev_hash != prev_hash:
            if expected > 1 and entry.prev_hash == before_prev:
                return bad(expected - 1, f"entry {expected - 1} was inserted: entry {expected} links to "
                           f"entry {expected - 2}", count - 1, before_prev)
            if expected > 1 and recomputed == entry.hash:
                return bad(expected - 1, f"entry {expected - 1} was changed: entry {expected} links to "
                           "another version of it", count - 1, before_prev)
            return bad(expected, f"entry {expected} does not link to entry {expected - 1} (prev_hash differs)",
                       count, prev_hash)
        if recomputed != entry.hash:
            return bad(expected, f"entry {expected} was changed: its content does not match its hash",
                       count, prev_hash)
        anchored = anchors.get(entry.seq)
        if anchored is not None and anchored != entry.hash:
            return bad(expected, f"entry {expected} differs from the checkpoint at seq {expected} "
                       "(the chain was rewritten)", count, prev_hash)
        before_prev, prev_hash = prev_hash, entry.hash
        count += 1
        expected += 1

    beyond = [seq for seq in anchors if seq >= expected]
    if beyond:
        return bad(expected, f"entries from {expected} on are missing: a checkpoint covers seq {max(beyond)}",
                   count, prev_hash)
    return AuditReport(ok=True, entries=count, first_bad_seq=None, reason="", head_hash=prev_hash)
