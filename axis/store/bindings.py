"""Row bindings: the digest of every evidence row, as the audit log records it.

Every write the store makes to an evidence table is recorded, in the same
transaction, in the `bound` list of an audit entry: `[table, key, digest]`,
the digest of the row as it now stands (or null for a row removed). Replaying
the log's bindings therefore gives what every evidence table must hold; a row
changed, added or removed behind the store's back no longer matches
(`axis.audit.verify`). The format, which never changes meaning:

- digest = SHA-256 of canonical_json([table, {column: value, ...}]) (the
  audit chain's canonical JSON), over every column of the table but those in
  `Binding.skip` (surrogate ids nobody relies on). A binary value is written
  "sha256:<hex of its SHA-256>", a time as the audit chain writes `at`
  (UTC, microseconds, Z); everything else as JSON.
- key = the table's natural key columns, joined by "/" (a NULL as "").

`document_bodies` is bound through its document: the body's SHA-256 is the
document row's `digest`. `submissions` rows are bound once decided (the
gateway writes a row before the hub decides it: bookkeeping, not evidence).
`inbox` (de-duplication) and the audit tables themselves are not bound.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring  # C-accelerated, as json.dumps uses
from typing import Any

from axis.store.audit import canonical_json, format_at


@dataclass(frozen=True, slots=True)
class Binding:
    key: tuple[str, ...]
    subject: tuple[str, ...]  # what an entry about this row is about: the first of these columns not NULL
    skip: tuple[str, ...] = ()


BINDINGS: dict[str, Binding] = {
    "agencies": Binding(("code",), ("code",)),
    "agency_certificates": Binding(("fingerprint",), ("agency_code",), skip=("id",)),
    # A renamed code's alias decides where documents go (axis/hub/intake.py): one written behind Axis's back
    # would divert an agency's mail unseen.
    "agency_aliases": Binding(("old_code",), ("old_code",)),
    "documents": Binding(("axis_id",), ("axis_id",)),
    "deliveries": Binding(("axis_id", "recipient_code"), ("axis_id",)),
    "receipts": Binding(("axis_id", "recipient_code", "kind", "code"), ("axis_id",), skip=("id",)),
    # A decided submission is about the document it became, if any: the intake entry of that document.
    "submissions": Binding(("id",), ("axis_id", "id")),
    "credentials": Binding(("id",), ("id",)),
}


_AS_IS = frozenset({str, int, type(None), bool, float})


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, datetime):
        return format_at(value)
    return value


def row_key(table: str, row: Mapping[str, Any]) -> str:
    key = BINDINGS[table].key
    if len(key) == 1:  # most tables: a plain loop costs more than the digest's hashing (profiled)
        value = row[key[0]]
        return "" if value is None else str(value)
    return "/".join("" if row[c] is None else str(row[c]) for c in key)


def plain_row(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as its digest covers it: without the `skip` columns, binaries as "sha256:<hex>", times as
    text. Plain JSON; `row_digest` of it is the row's own digest (an evidence bundle carries rows so)."""
    skip = BINDINGS[table].skip
    return {column: value if type(value) in _AS_IS else _plain(value) for column, value in row.items()
            if column not in skip}


def row_digest(table: str, row: Mapping[str, Any]) -> str:
    """SHA-256 of canonical_json([table, plain_row(table, row)]), the text written out directly: the store
    computes one per row it writes, and the JSON encoder's set-up per call was most of that cost (profiled).
    tests/store/test_bindings.py holds it to the definition, byte for byte."""
    parts = [name + _json(row[column]) for column, name in _columns(table, tuple(row))]
    text = "[" + encode_basestring(table) + ",{" + ",".join(parts) + "}]"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def uniform_digests(table: str, rows: Sequence[Mapping[str, Any]], varying: tuple[str, ...]) -> list[str]:
    """`row_digest` of each of `rows`, which share the same columns and the same value in each but those named
    in `varying` (strings): the text between those values is written once (a document's deliveries at intake,
    one per recipient, are the hot case). Callers guarantee the sharing; tests hold the result to row_digest."""
    if not rows:
        return []
    first = rows[0]
    segments: list[str] = []
    order: list[str] = []
    text = "[" + encode_basestring(table) + ",{"
    for n, (column, name) in enumerate(_columns(table, tuple(first))):
        text += ("," if n else "") + name
        if column in varying:
            segments.append(text)
            order.append(column)
            text = ""
        else:
            text += _json(first[column])
    tail = text + "}]"
    digests = []
    for row in rows:
        parts = [segment + encode_basestring(row[column]) for segment, column in zip(segments, order, strict=True)]
        digests.append(hashlib.sha256(("".join(parts) + tail).encode("utf-8")).hexdigest())
    return digests


@functools.lru_cache(maxsize=256)
def _columns(table: str, columns: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The columns a digest covers, in canonical (sorted) order, each with its JSON key and colon."""
    skip = BINDINGS[table].skip
    return tuple((column, encode_basestring(column) + ":") for column in sorted(columns) if column not in skip)


def _json(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    if kind is datetime:  # its text is digits, "-", ":", ".", "T" and "Z": nothing to escape
        return '"' + format_at(value) + '"'
    if kind is bytes:
        return '"sha256:' + hashlib.sha256(value).hexdigest() + '"'
    if kind is bool:
        return "true" if value else "false"
    return canonical_json(_plain(value))  # memoryviews, floats, anything else: exactly as defined


def row_subject(table: str, row: Mapping[str, Any]) -> str | None:
    for column in BINDINGS[table].subject:
        value = row[column]
        if value is not None:
            return str(value)
    return None
