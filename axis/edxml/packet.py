"""Reading and writing edXML packets: bytes ⇄ tree ⇄ the models of `model.py`.

Writing follows the element order of the standard (§3.2, §4) with the
`edXML:` prefix on every element. Reading is order-independent and tolerant of
the real-world variants documented in `schemas/README.md` (`Business` for
`Bussiness`, unprefixed children in the default namespace).

Callers may rely on:
- `packet_to_bytes(p)` gives UTF-8 bytes with an XML declaration that
  validate against `schemas/` and `read_packet(parse_xml(bytes)) == p`;
- `load_packet(data)` refuses with a `PacketError` (MALFORMED, FORBIDDEN_XML,
  TOO_LARGE, LIMIT_EXCEEDED, NOT_EDXML, SCHEMA_INVALID or INVALID_FIELD) or
  returns a model; it never raises anything else for any input bytes.

A parsed model is for reading fields. The signed bytes stay the authority:
Axis forwards exactly the bytes it received and never re-serialises a packet
someone else signed.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import functools
import types
import typing
from typing import Any

from lxml import etree

from axis.edxml import model
from axis.edxml.model import DocumentPacket, Packet, StatusPacket
from axis.edxml.ns import NSMAP, q
from axis.edxml.safe import DEFAULT_LIMITS, Limits, decode_base64, parse_xml
from axis.edxml.schema import PacketKind, detect_kind, validate
from axis.refusals import PacketError, RefusalCode

DATE_FORMAT = "%Y/%m/%d"
TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M:%S"


# ---------------------------------------------------------------- field types

@dataclasses.dataclass(frozen=True)
class _Field:
    attr: str
    path: tuple[str, ...]   # ("Appendixes", "Appendix") for a wrapped list
    kind: type
    optional: bool
    repeated: bool
    required: bool


@functools.cache
def _fields(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "xml" not in f.metadata:
            continue
        tp, optional, repeated = hints[f.name], False, False
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional, tp = True, args[0]
        if typing.get_origin(tp) is tuple:
            repeated, tp = True, typing.get_args(tp)[0]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(_Field(f.name, tuple(f.metadata["xml"].split("/")), tp, optional, repeated, required))
    return tuple(out)


def _text_of(value: Any, kind: type) -> str:
    if kind is bool:
        return "true" if value else "false"
    if kind is dt.datetime:
        return value.strftime(TIMESTAMP_FORMAT)
    if kind is dt.date:
        return value.strftime(DATE_FORMAT)
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _value_of(element: etree._Element, kind: type, name: str) -> Any:
    text = element.text or ""
    try:
        if kind is str:
            return text
        stripped = text.strip()
        if kind is bytes:
            return decode_base64(text)
        if kind is bool:
            if stripped.lower() in ("true", "1"):
                return True
            if stripped.lower() in ("false", "0"):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(stripped)
        if kind is dt.datetime:
            return dt.datetime.strptime(stripped, TIMESTAMP_FORMAT)
        if kind is dt.date:
            return dt.datetime.strptime(stripped, DATE_FORMAT).date()
        if issubclass(kind, enum.Enum):
            return kind(stripped)
    except (ValueError, binascii.Error) as exc:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise PacketError(RefusalCode.INVALID_FIELD,
                          f"line {element.sourceline}: {name} {shown!r} is not valid: {exc}") from None
    raise TypeError(f"no XML mapping for {kind}")


def _is_empty_optional(element: etree._Element, f: _Field) -> bool:
    # An empty <PromulgationDate/> in a real packet means "not given", not an error.
    scalar = f.kind is not str and not dataclasses.is_dataclass(f.kind)
    return f.optional and scalar and not (element.text or "").strip() and len(element) == 0


# ------------------------------------------------------------------- writing

def _write_fields(parent: etree._Element, obj: Any) -> None:
    for f in _fields(typing.cast(type, type(obj))):
        value = getattr(obj, f.attr)
        if value is None:
            continue
        container = parent
        *wrappers, leaf = f.path
        for wrapper in wrappers:
            container = etree.SubElement(container, q(wrapper))
        for item in (value if f.repeated else (value,)):
            child = etree.SubElement(container, q(leaf))
            if dataclasses.is_dataclass(f.kind):
                _write_fields(child, item)
            else:
                child.text = _text_of(item, f.kind)


def build_tree(packet: Packet) -> etree._Element:
    """The packet as an lxml tree (unsigned)."""
    root = etree.Element(q("edXML"), nsmap=NSMAP)
    envelope = etree.SubElement(root, q("edXMLEnvelope"))
    header = etree.SubElement(envelope, q("edXMLHeader"))
    message_header = etree.SubElement(header, q("MessageHeader"))
    if isinstance(packet, StatusPacket):
        _write_fields(message_header, packet)
        return root
    _write_fields(message_header, packet.header)
    if packet.traces or packet.business:
        trace_list = etree.SubElement(header, q("TraceHeaderList"))
        for trace in packet.traces:
            _write_fields(etree.SubElement(trace_list, q("TraceHeader")), trace)
        if packet.business:
            _write_fields(etree.SubElement(trace_list, q("Bussiness")), packet.business)
    body = etree.SubElement(envelope, q("edXMLBody"))
    manifest = etree.SubElement(body, q("edXMLManifest"), version="1.0")
    for reference in packet.manifest:
        _write_fields(etree.SubElement(manifest, q("Reference")), reference)
    if packet.attachments:
        encoded = etree.SubElement(root, q("AttachmentEncoded"))
        for attachment in packet.attachments:
            _write_fields(etree.SubElement(encoded, q("Attachment")), attachment)
    return root


def packet_to_bytes(packet: Packet) -> bytes:
    """UTF-8 bytes with an XML declaration, ready to be signed."""
    return etree.tostring(build_tree(packet), xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------- reading

def _children(parent: etree._Element, name: str) -> list[etree._Element]:
    found = parent.findall(q(name))
    if not found and name.startswith("Bussiness"):
        found = parent.findall(q("Business" + name[len("Bussiness"):]))
    return found


def _read_fields(cls: type, element: etree._Element) -> Any:
    values: dict[str, Any] = {}
    for f in _fields(cls):
        *wrappers, leaf = f.path
        containers = [element]
        for wrapper in wrappers:
            containers = [c for parent in containers for c in _children(parent, wrapper)]
        if wrappers and not containers:
            if f.required:
                raise PacketError(RefusalCode.SCHEMA_INVALID,
                                  f"line {element.sourceline}: {etree.QName(element).localname} has no {wrappers[0]}")
            continue  # the wrapper is absent: the field stays None
        items = [c for parent in containers for c in _children(parent, leaf)]
        items = [c for c in items if not _is_empty_optional(c, f)]
        if dataclasses.is_dataclass(f.kind):
            parsed = [_read_fields(f.kind, c) for c in items]
        else:
            parsed = [_value_of(c, f.kind, leaf) for c in items]
        if f.repeated:
            if parsed or wrappers or not f.optional:
                values[f.attr] = tuple(parsed)
        elif parsed:
            values[f.attr] = parsed[0]
        elif f.required:
            raise PacketError(RefusalCode.SCHEMA_INVALID,
                              f"line {element.sourceline}: {etree.QName(element).localname} has no {leaf}")
    return cls(**values)


def _find_path(root: etree._Element, *names: str) -> etree._Element | None:
    node: etree._Element | None = root
    for name in names:
        node = node.find(q(name)) if node is not None else None
    return node


def read_packet(root: etree._Element) -> Packet:
    """The model of a parsed (and, in the hub, verified) edXML tree."""
    kind = detect_kind(root)
    header = _find_path(root, "edXMLEnvelope", "edXMLHeader")
    message_header = _find_path(header, "MessageHeader") if header is not None else None
    if message_header is None:
        raise PacketError(RefusalCode.SCHEMA_INVALID, "edXMLEnvelope/edXMLHeader/MessageHeader is missing")
    if kind is PacketKind.STATUS:
        return _read_fields(StatusPacket, message_header)
    assert header is not None  # message_header was found inside it
    trace_list = header.find(q("TraceHeaderList"))
    traces: tuple[model.TraceHeader, ...] = ()
    business = None
    if trace_list is not None:
        traces = tuple(_read_fields(model.TraceHeader, t) for t in _children(trace_list, "TraceHeader"))
        found = _children(trace_list, "Bussiness")
        business = _read_fields(model.Business, found[0]) if found else None
    manifest_el = _find_path(root, "edXMLEnvelope", "edXMLBody", "edXMLManifest")
    manifest = tuple(_read_fields(model.ManifestReference, r)
                     for r in (manifest_el.findall(q("Reference")) if manifest_el is not None else ()))
    encoded = root.find(q("AttachmentEncoded"))
    attachments = tuple(_read_fields(model.Attachment, a)
                        for a in (encoded.findall(q("Attachment")) if encoded is not None else ()))
    return DocumentPacket(_read_fields(model.MessageHeader, message_header), traces, business,
                          manifest, attachments)


def load_packet(data: bytes, *, limits: Limits = DEFAULT_LIMITS, schema: bool = True) -> Packet:
    """Safe parse, schema validation, then the model. The one entry point for untrusted bytes."""
    root = parse_xml(data, limits)
    if schema:
        validate(root)
    return read_packet(root)
