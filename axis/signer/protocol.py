"""The signer's wire format: one request, then one answer, per connection to its Unix socket.

A frame (a request or an answer) is

    4 bytes  big-endian N: the length of what follows these 8 bytes
    4 bytes  big-endian H: the length of the header (H <= N)
    H bytes  the header: a JSON object, UTF-8
    N-H bytes the blobs the header's "sizes" list cuts, in order (raw bytes: receipts, data, PEMs)

Requests (`"v": 1` in every header):

    {"op": "sign_receipts", "sizes": [...]}               blobs: the unsigned receipts; may also carry
                                                          "packets" (as `seal`): they are sealed in the same
                                                          request, and the answer has "seals" and "certificate"
    {"op": "seal", "packets": [[axis_id, [code, ...], digest], ...], "sizes": []}
    {"op": "sign_bytes", "sizes": [n]}                     one blob: the data
    {"op": "certificates", "sizes": []}

Answers: `{"ok": true, "sizes": [...]}` with the signed receipts, the signature or the PEMs as blobs;
for `seal`, `"seals": [[signature, recipients], ...]` (the `ax-seal` and `ax-seal-to` of each packet)
and `"certificate"`, the `ax-seal-cert` they share (sent once, not once per packet); or
`{"ok": false, "error": KIND, "message": "..."}`, KIND one of `malformed`, `too-large`, `refused`,
`forbidden`, `internal`.

Nothing in a frame is executed or unpickled: the signer reads JSON and bytes and checks every
field's type (`parse_request`), so a process that can reach the socket can ask for signatures and
nothing else. A request is at most `MAX_REQUEST_BYTES` (a batch of 200 receipts is ~100 KB) and
`MAX_ITEMS` items.
"""
from __future__ import annotations

import json
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_ANSWER_BYTES = 512 * 1024 * 1024   # what a client reads at most (signed receipts carry certificates)
MAX_HEADER_BYTES = 8 * 1024 * 1024
MAX_ITEMS = 10_000
OPS = ("sign_receipts", "seal", "sign_bytes", "certificates")
ERRORS = ("malformed", "too-large", "refused", "forbidden", "internal")

_PREFIX = struct.Struct(">II")


class ProtocolError(Exception):
    """A frame that does not follow this format; the message says what is wrong with it."""


class FrameTooLarge(ProtocolError):
    """A frame longer than the reader accepts."""


class Closed(Exception):
    """The other end closed the connection before a whole frame arrived."""


@dataclass(frozen=True)
class Request:
    op: str
    blobs: list[bytes] = field(default_factory=list)
    packets: list[tuple[str, list[str], str]] = field(default_factory=list)


def encode(header: dict[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    """One frame: `header` (which gets "v" and "sizes") and the blobs."""
    head = json.dumps({**header, "v": VERSION, "sizes": [len(blob) for blob in blobs]},
                      separators=(",", ":"), ensure_ascii=False).encode()
    return b"".join((_PREFIX.pack(len(head) + sum(map(len, blobs)), len(head)), head, *blobs))


def request(op: str, blobs: Sequence[bytes] = (), **fields: Any) -> bytes:
    return encode({"op": op, **fields}, blobs)


def answer(blobs: Sequence[bytes] = (), **fields: Any) -> bytes:
    return encode({"ok": True, **fields}, blobs)


def error(kind: str, message: str) -> bytes:
    return encode({"ok": False, "error": kind, "message": message[:2000]})


def read_frame(sock: socket.socket, limit: int) -> tuple[dict[str, Any], list[bytes]]:
    """The next frame from `sock`: its header and blobs. Raises FrameTooLarge (nothing after the 8-byte
    prefix has been read), ProtocolError, Closed, or the socket's own OSError/TimeoutError."""
    total, head_length = _PREFIX.unpack(_receive(sock, _PREFIX.size))
    if total > limit:
        raise FrameTooLarge(f"a frame of {total} bytes; at most {limit} are accepted")
    if head_length > total or head_length > MAX_HEADER_BYTES:
        raise ProtocolError(f"a header of {head_length} bytes in a frame of {total}")
    body = memoryview(_receive(sock, total))
    try:
        header = json.loads(body[:head_length].tobytes())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("the header is not a JSON object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"version {header.get('v')!r}; this signer speaks version {VERSION}")
    sizes = header.get("sizes")
    if (not isinstance(sizes, list) or len(sizes) > MAX_ITEMS
            or not all(type(size) is int and size >= 0 for size in sizes)):
        raise ProtocolError(f"\"sizes\" must be a list of at most {MAX_ITEMS} byte counts")
    if sum(sizes) != total - head_length:
        raise ProtocolError(f"\"sizes\" add up to {sum(sizes)} bytes; the frame carries {total - head_length}")
    blobs, at = [], head_length
    for size in sizes:
        blobs.append(body[at:at + size].tobytes())
        at += size
    return header, blobs


def parse_request(header: dict[str, Any], blobs: list[bytes]) -> Request:
    """The request a frame asks for, every field's type checked; ProtocolError otherwise."""
    op = header.get("op")
    if op not in OPS:
        raise ProtocolError(f"unknown op {str(op)[:40]!r}; one of {', '.join(OPS)}")
    if op == "sign_bytes" and len(blobs) != 1:
        raise ProtocolError("sign_bytes takes exactly one blob")
    if op in ("seal", "certificates") and blobs:
        raise ProtocolError(f"{op} takes no blobs")
    packets: list[tuple[str, list[str], str]] = []
    if op == "seal" or (op == "sign_receipts" and "packets" in header):
        raw = header.get("packets")
        if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
            raise ProtocolError(f"{op} takes \"packets\": a list of at most {MAX_ITEMS}")
        for item in raw:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], list) and all(isinstance(code, str) for code in item[1])
                    and isinstance(item[2], str)):
                raise ProtocolError("each packet to seal is [axis_id, [recipient, ...], digest]")
            packets.append((item[0], item[1], item[2]))
    return Request(op, blobs, packets)


def _receive(sock: socket.socket, size: int) -> bytearray:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            raise Closed(f"the connection closed after {got} of {size} bytes")
        got += count
    return data
