"""Signed means everything delivered was signed: refuse what the signature does not cover.

The one signature Axis accepts is enveloped with Reference URI="". What that
reference covers is the whole document minus two things: comments (a URI=""
node-set never holds them, whatever the C14N) and the Signature element itself
(the enveloped-signature transform cuts it out). Everything a reader sees in
either place is text the signer never signed, so `check_covered(root,
signature)` refuses it with `TrustError(UNSIGNED_CONTENT)`, except an explicit
allow-list:

- comments whose text neighbours are whitespace, outside or between elements
  (the national SDK writes such comments). A comment touching text splits what
  a reader sees: `<OrganId>000.00.00.H<!-- H14 -->41</OrganId>` is signed as
  `000.00.00.H41`, yet lxml's `.text` is `000.00.00.H` and a browser shows
  both parts. This holds inside the Signature's own text nodes too;
- in the Signature, in this order: SignedInfo (covered by SignatureValue),
  SignatureValue, KeyInfo; in KeyInfo only X509Data (X509Certificate,
  X509SubjectName, X509IssuerSerial) and KeyValue (RSAKeyValue, ECKeyValue);
  an `Id` attribute on Signature, SignatureValue, KeyInfo and ECKeyValue, `URI`
  on NamedCurve; whitespace between these elements. The key material is not
  trusted for being there: the Verifier validates the certificate, and the
  engines take the key from it, never from KeyInfo.

Refused besides: every processing instruction (inside the Signature it is
unsigned, inside text it splits a value as a comment does, and no edXML
sender needs one), ds:Object, ds:KeyName, ds:RetrievalMethod, any element or
attribute not listed above (an `<edXML:Subject>` in KeyInfo, a second edXML
packet in an Object), and non-blank text or tails anywhere in the Signature,
including its own tail.

Not refused, because it holds nothing a reader sees: whitespace outside the
root, and namespace declarations that no element or attribute uses (exclusive
C14N leaves those out; Axis reads no QName-valued content).

Cost: one C-level pass over the comments and processing instructions (lxml
builds no Python object for the other nodes) and a walk over the ~15 elements
of the Signature.
"""
from __future__ import annotations

from lxml import etree

from axis.refusals import RefusalCode, TrustError
from axis.trust.placement import DS_NS, ds

DSIG11_NS = "http://www.w3.org/2009/xmldsig11#"

# element -> (children it may hold, attributes it may carry); an element with no
# allowed children holds text only.
_ALLOWED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    ds("KeyInfo"): (frozenset({ds("X509Data"), ds("KeyValue")}), frozenset({"Id"})),
    ds("X509Data"): (frozenset({ds("X509Certificate"), ds("X509SubjectName"), ds("X509IssuerSerial")}),
                     frozenset()),
    ds("X509IssuerSerial"): (frozenset({ds("X509IssuerName"), ds("X509SerialNumber")}), frozenset()),
    ds("KeyValue"): (frozenset({ds("RSAKeyValue"), f"{{{DSIG11_NS}}}ECKeyValue"}), frozenset()),
    ds("RSAKeyValue"): (frozenset({ds("Modulus"), ds("Exponent")}), frozenset()),
    f"{{{DSIG11_NS}}}ECKeyValue": (frozenset({f"{{{DSIG11_NS}}}NamedCurve", f"{{{DSIG11_NS}}}PublicKey"}),
                                   frozenset({"Id"})),
    f"{{{DSIG11_NS}}}NamedCurve": (frozenset(), frozenset({"URI"})),
    ds("SignatureValue"): (frozenset(), frozenset({"Id"})),
}
for _leaf in ("X509Certificate", "X509SubjectName", "X509IssuerName", "X509SerialNumber", "Modulus", "Exponent"):
    _ALLOWED[ds(_leaf)] = (frozenset(), frozenset())
_ALLOWED[f"{{{DSIG11_NS}}}PublicKey"] = (frozenset(), frozenset())

# The Signature's own children, in the one order XML-DSig allows; SignedInfo's
# content is covered by SignatureValue and is not walked here.
_SIGNATURE_SEQUENCE = (ds("SignedInfo"), ds("SignatureValue"), ds("KeyInfo"))
_SIGNATURE_ATTRIBUTES = frozenset({"Id"})


def _refuse(node: etree._Element, what: str) -> TrustError:
    return TrustError(RefusalCode.UNSIGNED_CONTENT,
                      f"line {node.sourceline or '?'}: {what}; the signature does not cover it (remove it and re-sign)")


def _name(element: etree._Element) -> str:
    qname = etree.QName(element)
    if qname.namespace == DS_NS:
        return f"ds:{qname.localname}"
    if element.prefix:
        return f"{element.prefix}:{qname.localname}"
    return f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname


def _blank(text: str | None) -> bool:
    # XML's whitespace only: str.isspace() would also pass U+00A0 or U+2003, which a reader sees.
    return not text or not text.strip(" \t\r\n")


def _show(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _check_comments_and_pis(root: etree._Element) -> None:
    outside = [*root.itersiblings(preceding=True), *root.itersiblings()]
    for node in (*outside, *root.iter(etree.Comment, etree.ProcessingInstruction)):
        if node.tag is etree.ProcessingInstruction:
            raise _refuse(node, f"a processing instruction <?{node.target} ...?>")
        if node.tag is not etree.Comment:
            continue
        parent = node.getparent()
        if parent is None:
            continue  # outside the root element: no text to split
        previous = node.getprevious()
        before = previous.tail if previous is not None else parent.text
        if not _blank(before) or not _blank(node.tail):
            around = " | ".join(_show(t) for t in (before, node.tail) if not _blank(t))
            raise _refuse(node, f"a comment inside the text of <{_name(parent)}> ({around}) splits what a reader "
                                "sees")


def _check_element(element: etree._Element) -> None:
    children, attributes = _ALLOWED[element.tag]
    for attribute in element.attrib:
        if attribute not in attributes:
            raise _refuse(element, f"attribute {attribute!r} on <{_name(element)}>")
    if children and not _blank(element.text):
        raise _refuse(element, f"text {_show(element.text or '')} in <{_name(element)}>")
    for child in element:
        if child.tag is etree.Comment:
            continue  # judged with the other comments; its tail too
        if child.tag not in children:
            raise _refuse(child, f"<{_name(child)}> inside <{_name(element)}>")
        if not _blank(child.tail):
            raise _refuse(child, f"text {_show(child.tail or '')} after <{_name(child)}>")
        _check_element(child)


def _check_signature(signature: etree._Element) -> None:
    for attribute in signature.attrib:
        if attribute not in _SIGNATURE_ATTRIBUTES:
            raise _refuse(signature, f"attribute {attribute!r} on <ds:Signature>")
    if not _blank(signature.text):
        raise _refuse(signature, f"text {_show(signature.text or '')} in <ds:Signature>")
    if not _blank(signature.tail):
        raise _refuse(signature, f"text {_show(signature.tail or '')} after <ds:Signature>")
    position = 0
    for child in signature:
        if child.tag is etree.Comment:
            continue
        # Each child at most once, in XML-DSig's order; a missing SignedInfo or
        # SignatureValue is left to the signature checks, which name it.
        while position < len(_SIGNATURE_SEQUENCE) and child.tag != _SIGNATURE_SEQUENCE[position]:
            position += 1
        if position == len(_SIGNATURE_SEQUENCE):
            raise _refuse(child, f"<{_name(child)}> inside <ds:Signature>")
        position += 1
        if not _blank(child.tail):
            raise _refuse(child, f"text {_show(child.tail or '')} after <{_name(child)}>")
        if child.tag != ds("SignedInfo"):
            _check_element(child)


def check_covered(root: etree._Element, signature: etree._Element) -> None:
    """Refuse (`TrustError(UNSIGNED_CONTENT)`) anything in the document that `signature`, an
    enveloped URI="" signature located in it, does not cover; see the module docstring."""
    _check_comments_and_pis(root)
    _check_signature(signature)
