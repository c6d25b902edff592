"""Safe XML parsing: the only way Axis turns untrusted bytes into a tree.

No DTD is loaded, no entity is expanded, nothing is fetched from the network
or the file system, and sizes are bounded before and after libxml2 sees the
bytes. Any DOCTYPE is refused outright (as signxml does since 4.4), so an
entity bomb or an external entity never gets a chance to matter.

Callers may rely on: `parse_xml` either returns the root element of a tree
with no DOCTYPE, at most `limits.max_depth` deep and `limits.max_elements`
large, from at most `limits.max_bytes` bytes, or raises `PacketError` with
code MALFORMED, FORBIDDEN_XML, TOO_LARGE or LIMIT_EXCEEDED. Nothing else.

`decode_base64` reads the text of an xs:base64Binary element (a certificate, a digest, a signature value, an
attachment) the one way every part of Axis must read it.
"""
from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from axis.refusals import PacketError, RefusalCode

# libxml2 refuses text nodes over 10,000,000 bytes unless huge_tree is on.
_LIBXML2_TEXT_LIMIT = 10_000_000
# A DOCTYPE or ENTITY declaration anywhere before the root, in any ASCII-compatible encoding.
_DTD_MARKER = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """Bounds on a packet. `max_bytes` is AXIS_MAX_PACKET_BYTES's default (200 MiB: a 100 MB attachment in
    base64 and more), so a packet the gateway takes is one every party can also sign, verify and read."""

    max_bytes: int = 200 * 1024 * 1024
    max_depth: int = 64
    max_elements: int = 100_000


DEFAULT_LIMITS = Limits()


_PARSERS = threading.local()


def _parser(huge: bool) -> etree.XMLParser:
    # One parser per thread and kind (lxml parsers are not thread-safe; making one per packet cost
    # as much as parsing a 5 KB packet).
    name = "huge" if huge else "plain"
    parser: etree.XMLParser | None = getattr(_PARSERS, name, None)
    if parser is None:
        parser = _new_parser(huge)
        setattr(_PARSERS, name, parser)
    return parser


def _new_parser(huge: bool) -> etree.XMLParser:
    # Every flag explicit: lxml's defaults changed across releases (see stack-notes §4).
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=huge,
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
        strip_cdata=False,
        collect_ids=False,
    )


def parse_xml(data: bytes, limits: Limits = DEFAULT_LIMITS) -> etree._Element:
    """Parse untrusted bytes into an element tree, or refuse them."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("parse_xml takes bytes; pass the exact bytes received, not decoded text")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise PacketError(RefusalCode.TOO_LARGE,
                          f"{len(data)} bytes is over the limit of {limits.max_bytes} bytes")
    if not data.strip():
        raise PacketError(RefusalCode.MALFORMED, "line 1, column 1: the packet is empty")
    # The prolog check is a fast path for the usual encodings; the docinfo check
    # after parsing catches a DOCTYPE in any encoding.
    root_start = data.find(b"<", data.find(b"?>") + 1 if data.lstrip().startswith(b"<?xml") else 0)
    if _DTD_MARKER.search(data, 0, max(root_start, 0) + 64 if root_start >= 0 else len(data)):
        raise PacketError(RefusalCode.FORBIDDEN_XML, "a DOCTYPE or ENTITY declaration is present")
    huge = limits.max_bytes > _LIBXML2_TEXT_LIMIT
    return _checked(lambda: etree.fromstring(data, _parser(huge)), limits)


# How much of a file is searched for a DOCTYPE before parsing (the fast path; the docinfo check after parsing
# is the rule).
_PROLOG_BYTES = 64 * 1024


def parse_xml_file(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> etree._Element:
    """`parse_xml` for untrusted bytes in a file: the same checks and refusals, with the bytes read by libxml2
    in chunks instead of held whole in memory beside the tree (a large attachment)."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > limits.max_bytes:
            raise PacketError(RefusalCode.TOO_LARGE, f"{size} bytes is over the limit of {limits.max_bytes} bytes")
        head = file.read(_PROLOG_BYTES)
        if not head.strip() and size <= len(head):
            raise PacketError(RefusalCode.MALFORMED, "line 1, column 1: the packet is empty")
        root_start = head.find(b"<", head.find(b"?>") + 1 if head.lstrip().startswith(b"<?xml") else 0)
        if _DTD_MARKER.search(head, 0, max(root_start, 0) + 64 if root_start >= 0 else len(head)):
            raise PacketError(RefusalCode.FORBIDDEN_XML, "a DOCTYPE or ENTITY declaration is present")
        file.seek(0)
        huge = limits.max_bytes > _LIBXML2_TEXT_LIMIT
        # A new parser: the per-thread one is for fromstring, and this one reads a file object in chunks.
        return _checked(lambda: etree.parse(file, _new_parser(huge)).getroot(), limits)


def _checked(parse: Callable[[], etree._Element | None], limits: Limits) -> etree._Element:
    """Run `parse` and apply the checks every parsed packet passes (errors named, no DOCTYPE, its shape)."""
    try:
        root = parse()
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (exc.lineno or 1, 1)
        # libxml2 repeats the position at the end of its message; say it once.
        message = re.sub(r",? line \d+, column \d+$", "", (exc.msg or str(exc)).strip())
        if "Resource limit exceeded" in message or "Excessive depth" in message or "huge" in message.lower():
            raise PacketError(RefusalCode.LIMIT_EXCEEDED, f"line {line}, column {column}: {message}") from None
        raise PacketError(RefusalCode.MALFORMED, f"line {line}, column {column}: {message}") from None
    if root is None:
        raise PacketError(RefusalCode.MALFORMED, "line 1, column 1: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise PacketError(RefusalCode.FORBIDDEN_XML, "a DOCTYPE declaration is present")
    _check_shape(root, limits)
    return root


def _check_shape(root: etree._Element, limits: Limits) -> None:
    # Each bound is one XPath or iterator walk inside libxml2 (no Python per node, no recursion, so a
    # deep tree cannot blow the stack): a walk in Python cost more than the parse of a small packet.
    if root.xpath("count(descendant-or-self::*)") > limits.max_elements:
        raise PacketError(RefusalCode.LIMIT_EXCEEDED, f"more than {limits.max_elements} elements")
    too_deep = root.xpath("self::*" + "/*" * limits.max_depth)
    if too_deep:
        raise PacketError(RefusalCode.LIMIT_EXCEEDED,
                          f"line {too_deep[0].sourceline}: nesting deeper than {limits.max_depth} levels")
    entity = next(root.iter(etree.Entity), None)
    if entity is not None:
        raise PacketError(RefusalCode.FORBIDDEN_XML, f"line {entity.sourceline}: entity reference {entity.text}")


# XML's whitespace (#x20, #x9, #xD, #xA) and nothing more: str.split() also drops U+00A0, U+0085, U+2028 and
# the other Unicode spaces, so a value carrying one decoded as if it were not there, and a packet a standard
# XML-DSig verifier refuses was accepted and delivered as received (found by tests/fuzz).
_XML_WHITESPACE = str.maketrans("", "", " \t\r\n")


def decode_base64(text: str) -> bytes:
    """The bytes of an xs:base64Binary value, XML whitespace anywhere in it ignored; ValueError (a
    binascii.Error) when anything else is not base64."""
    return base64.b64decode(text.translate(_XML_WHITESPACE), validate=True)
