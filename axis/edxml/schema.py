"""Schema validation of edXML packets (QCVN 102:2016): which kind a packet is, and is it well-shaped.

The XSDs live in `schemas/` at the repository root (edxml-document.xsd, edxml-status.xsd and the
edxml-common.xsd / xmldsig-lax.xsd they include); `schemas/README.md` says what they accept and why.

Callers may rely on:
- `detect_kind(root)` returns `PacketKind.STATUS` when edXMLEnvelope/edXMLHeader/MessageHeader has a
  StatusCode child, else `PacketKind.DOCUMENT`; it raises `PacketError(NOT_EDXML)` when the root is
  not `{http://www.mic.gov.vn/TBT/QCVN_102_2016}edXML`, and nothing else.
- `validate(root, kind=None)` returns the kind it validated against, or raises
  `PacketError(NOT_EDXML)` or `PacketError(SCHEMA_INVALID)`. A SCHEMA_INVALID detail starts with
  `document packet: ` or `status packet: ` and lists up to 5 problems in plain words, separated by
  `; `, each with its line (when the tree came from a parser) and the element concerned, e.g.
  `line 12: element To: missing child OrganId`; more problems are counted, not listed.
- The tree is never modified (no default attributes are added).
- Each XSD is compiled at most once per process, on first use. Both functions are thread-safe;
  validations against the same XSD run one at a time (about 2 ms for a 360 KB packet).

Validate a tree that is already parsed (by `axis.edxml.safe.parse_xml`); never validate while
parsing: lxml's `XMLParser(schema=...)` grows superlinearly with large base64 text (stack-notes §4).
"""
from __future__ import annotations

import enum
import re
import threading
from pathlib import Path

from lxml import etree

from axis.edxml.ns import NS
from axis.refusals import PacketError, RefusalCode

_DS = "http://www.w3.org/2000/09/xmldsig#"
_ROOT = f"{{{NS}}}edXML"
_MESSAGE_HEADER_PATH = f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/{{{NS}}}MessageHeader"
_MAX_REPORTED = 5

# schemas/ sits beside axis/ at the repository root. Editable installs (`pip install -e .`) import
# axis from the checkout, so the same relative path works there and in a plain source checkout.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


class PacketKind(enum.Enum):
    """The two edXML packet kinds, each with its own XSD."""

    DOCUMENT = "document"
    STATUS = "status"

    @property
    def schema_path(self) -> Path:
        return SCHEMA_DIR / f"edxml-{self.value}.xsd"


def detect_kind(root: etree._Element) -> PacketKind:
    """DOCUMENT or STATUS, from the root element of a parsed packet."""
    _require_edxml_root(root)
    header = root.find(_MESSAGE_HEADER_PATH)
    if header is not None and header.find(f"{{{NS}}}StatusCode") is not None:
        return PacketKind.STATUS
    return PacketKind.DOCUMENT


def validate(root: etree._Element, kind: PacketKind | None = None) -> PacketKind:
    """Check `root` against the XSD of `kind` (detected when None); return the kind checked."""
    if kind is None:
        kind = detect_kind(root)
    else:
        _require_edxml_root(root)
    schema, lock = _compiled(kind)
    # An XMLSchema object keeps one error log; concurrent validations would mix their errors.
    with lock:
        if schema.validate(root):
            return kind
        entries = list(schema.error_log)
    problems = _describe(entries, root, kind)
    shown = problems[:_MAX_REPORTED]
    more = len(problems) - len(shown)
    detail = f"{kind.value} packet: " + "; ".join(shown)
    if more > 0:
        detail += f"; and {more} more problem{'s' if more > 1 else ''}"
    raise PacketError(RefusalCode.SCHEMA_INVALID, detail)


# ---------------------------------------------------------------------------------------------
# compiling


_compile_lock = threading.Lock()
_schemas: dict[PacketKind, tuple[etree.XMLSchema, threading.Lock]] = {}


def _compiled(kind: PacketKind) -> tuple[etree.XMLSchema, threading.Lock]:
    found = _schemas.get(kind)
    if found is not None:
        return found
    with _compile_lock:
        if kind not in _schemas:
            _schemas[kind] = (_compile(kind.schema_path), threading.Lock())
        return _schemas[kind]


def _compile(path: Path) -> etree.XMLSchema:
    if not path.is_file():
        raise FileNotFoundError(
            f"edXML schema {path} is missing; run Axis from a source checkout or an editable install "
            f"(pip install -e .), which keep schemas/ beside the axis package")
    # The XSDs are ours, but parse them as carefully as packets: includes are local files only.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))


def _require_edxml_root(root: etree._Element) -> None:
    tag = root.tag if isinstance(root.tag, str) else ""
    if tag == _ROOT:
        return
    qname = etree.QName(tag) if tag else None
    if qname is None:
        found = "no element"
    elif qname.namespace is None:
        found = f"element {qname.localname} with no namespace"
    else:
        found = f"element {qname.localname} in namespace {qname.namespace}"
    raise PacketError(RefusalCode.NOT_EDXML,
                      f"line {root.sourceline or 1}: the root is {found}; an edXML packet starts with "
                      f"<edXML xmlns=\"{NS}\">")


# ---------------------------------------------------------------------------------------------
# turning libxml2's messages into plain words

_ELEMENT_PREFIX = re.compile(r"^Element '(?P<element>[^']*)'(?:, attribute '(?P<attribute>[^']*)')?: ")
_MISSING_CHILD = re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (?P<names>.*) \)\.")
_NOT_EXPECTED = re.compile(r"This element is not expected\.(?: Expected is (?:one of )?\( (?P<names>.*) \)\.)?")
# The value a facet or type refused: `[facet 'pattern'] The value 'x' is not…` or `'x' is not a valid…`.
# libxml2 quotes the whole value, cut off at 64 KB for a broken attachment: the quote may not close.
_VALUE = re.compile(r"(?:\[facet '\w+'\] The value )?'(?P<value>[^']*)(?:'|$)")
_MAX_VALUE = 60
_MAX_PROBLEM = 300
_IDC_MISSING = re.compile(r"Not all fields of key identity-constraint '(?:\{[^}]*\})?exactly-one-(?P<name>\w+)'")
_IDC_MANY = re.compile(r"identity-constraint '(?:\{[^}]*\})?(?:exactly|at-most)-one-(?P<name>\w+)' evaluates to a "
                       r"node-set with more than one member")
_FIXED = re.compile(r"The value '(?P<value>.*)' does not match the fixed value constraint '(?P<fixed>.*)'")

# What each patterned element must look like, in the words of schemas/README.md. Keyed by element
# name because libxml2's facet messages name the element and the pattern, not the type.
_EXPECTED_FORM = {
    "PromulgationDate": "a date written yyyy/MM/dd (e.g. 2018/09/28)",
    "DueDate": "a date written yyyy/MM/dd (e.g. 2018/09/28)",
    "Timestamp": "a timestamp written yyyy/MM/dd HH:mm:ss (e.g. 2018/09/28 17:25:11)",
    "OrganId": "an agency code (letters, digits and dots, e.g. 000.00.00.G22)",
    "Priority": "a priority 0-4",
    "StatusCode": "a status code 01, 02, 03, 04, 05, 06, 13, 15 or 16",
    "BussinessDocType": "a business type 0-3",
    "SteeringType": "a steering type 0-3",
    "Paper": "0 or 1",
    "DocumentInfo": "0 or 1",
    "DocumentReceiver": "0 or 1",
    "ReceiverType": "0 or 1",
    "Type": "a whole number",
    "TypeDetail": "a whole number",
    "PromulgationAmount": "a whole number",
    "PageAmount": "a whole number",
    "Direction": "true or false",
    "ContentId": "an id without spaces (e.g. cid:209)",
    "ContentTransferEncoded": "base64 text",
    "DigitalSignature": "empty",
}
# In the document MessageHeader every child but To may come anywhere, so when To is missing libxml2
# lists (the first ten of) the names that could come next; the one actually required is To.
# Document packets only: the status MessageHeader is an xs:all, whose messages are already exact.
_POSITIONALLY_REQUIRED = {"MessageHeader": "To"}


def _plain(name: str) -> str:
    """`{QCVN ns}To` → `To`; `{xmldsig}Signature` → `ds:Signature`; others keep their namespace."""
    if name.startswith(f"{{{NS}}}"):
        return name[len(NS) + 2:]
    if name.startswith(f"{{{_DS}}}"):
        return "ds:" + name[len(_DS) + 2:]
    return name


def _names(listing: str) -> list[str]:
    return [_plain(n.strip()) for n in listing.split(",") if n.strip()]


def _find(root: etree._Element, tag: str, line: int) -> etree._Element | None:
    """The element an error is about: libxml2 gives its name and line, not the node."""
    if not line:
        return None
    for element in root.iter(tag):
        if element.sourceline == line:
            return element
    return None


def _describe(entries: list, root: etree._Element, kind: PacketKind) -> list[str]:
    problems: list[str] = []
    missing_once: list[tuple[int, str]] = []
    for entry in entries:
        message = entry.message or ""
        if "No precomputed value available" in message:
            continue  # libxml2's echo, for the identity constraints, of a value error already reported
        line = entry.line or 0
        if missing := _IDC_MISSING.search(message):
            missing_once.append((line, missing["name"]))
            continue
        where = f"line {line}" + (f", column {entry.column}" if entry.column else "") + ": " if line else ""
        problems.append(where + _cut(_translate(message, line, root, kind), _MAX_PROBLEM))
    # "Not all fields of key exactly-one-From" means From, or the OrganId inside it, is missing. When
    # From is there, the error inside it already says what is wrong; repeating it would mislead.
    header = root.find(_MESSAGE_HEADER_PATH)
    for line, name in missing_once:
        if problems and header is not None and header.find(f"{{{NS}}}{name}") is not None:
            continue
        where = f"line {line}: " if line else ""
        problems.append(f"{where}element MessageHeader: missing child {name} (exactly one is required)")
    return list(dict.fromkeys(problems))


def _translate(message: str, line: int, root: etree._Element, kind: PacketKind) -> str:
    head = _ELEMENT_PREFIX.match(message)
    if head is None:
        return _plain_namespaces(message)
    tag, attribute = head["element"], head["attribute"]
    element = _plain(tag)
    rest = message[head.end():].strip()

    if attribute:
        if fixed := _FIXED.search(rest):
            return f"element {element}: attribute {attribute} must be '{fixed['fixed']}', not '{fixed['value']}'"
        if "is not allowed" in rest:
            return f"element {element}: attribute {attribute} is not allowed"
        return f"element {element}: attribute {attribute}: {_plain_namespaces(rest)}"

    if missing := _MISSING_CHILD.search(rest):
        names = _names(missing["names"])
        required = _POSITIONALLY_REQUIRED.get(element) if kind is PacketKind.DOCUMENT else None
        node = _find(root, tag, line) if required else None
        if required and node is not None and node.find(f"{{{NS}}}{required}") is None:
            names = [required]
        if len(names) == 1:
            return f"element {element}: missing child {names[0]}"
        # libxml2 lists every child that may still come, optional ones included.
        return f"element {element}: missing child elements (expected one of {', '.join(names)})"
    if unexpected := _NOT_EXPECTED.search(rest):
        node = _find(root, tag, line)
        parent = node.getparent() if node is not None else None
        why = ""
        if not tag.startswith("{"):
            why = f" (it has no namespace; edXML elements belong to {NS})"
        elif not tag.startswith(f"{{{NS}}}") and not tag.startswith(f"{{{_DS}}}"):
            why = " (it is in another namespace)"
        elif unexpected["names"]:
            why = f" (expected {' or '.join(_names(unexpected['names']))})"
        if parent is not None and isinstance(parent.tag, str):
            return f"element {_plain(parent.tag)}: unexpected child {element}{why}"
        return f"element {element} is not allowed here{why}"
    if many := _IDC_MANY.search(rest):
        return f"element MessageHeader: more than one {many['name']} (at most one is allowed)"
    if "is required but missing" in rest:
        found = re.search(r"attribute '([^']*)'", rest)
        return f"element {element}: missing attribute {found[1] if found else ''}".rstrip()
    if "Character content other than whitespace is not allowed" in rest:
        return f"element {element}: text is not allowed here, only child elements"
    if "Element content is not allowed" in rest:
        return f"element {element}: child elements are not allowed here, only text"
    if rest.startswith(("[facet", "'")):
        # A value of the wrong form: a facet (pattern, enumeration, length) or the type refused it.
        form = _EXPECTED_FORM.get(element)
        value = _VALUE.match(rest)
        if form and value:
            return f"element {element}: '{_cut(value['value'], _MAX_VALUE)}' is not {form}"
        if form:
            return f"element {element}: must be {form}"
        if value and not value["value"].strip():
            return f"element {element}: must not be empty"
        if value:
            return f"element {element}: value '{_cut(value['value'], _MAX_VALUE)}' is not allowed"
    return f"element {element}: {_plain_namespaces(rest)}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _plain_namespaces(text: str) -> str:
    return text.replace(f"{{{NS}}}", "").replace(f"{{{_DS}}}", "ds:")
