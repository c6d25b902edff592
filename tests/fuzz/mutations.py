"""The mutations of the fuzz campaign (issue 12): a valid signed packet with exactly one thing wrong.

A `Case` is one valid packet before it is signed (a document, or a status answering a delivered
document), the agency that sends it, and the key material a mutation may sign with (`Materials`).
`mutate(case, draw)` draws a family, a mutation of that family and its parameters, and returns a
`Mutant`: the bytes to submit and what the oracle may expect of them. The four families:

- structure: drop, duplicate, reorder or rename an element, a wrong namespace, a DOCTYPE (entities,
  external ones, a parameter entity), XInclude, deep nesting, many elements, a truncated packet, a
  comment or processing instruction; applied before signing (a signed packet of the wrong shape: the
  schema and field checks must refuse it) or after (the signature must);
- signature: one bit of SignatureValue or DigestValue changed, the Reference URI swapped, the
  Signature moved, a second Signature, wrapping (the signed content kept in a ds:Object while the
  visible one changes), another algorithm (SignedInfo edited, or a real SHA-1 signature), signed
  content edited, Transforms changed, no Signature at all;
- certificate: another agency's certificate in KeyInfo, another agency's key, a self-signed
  certificate with the right subject, a forged root with the real root's name, expired, not yet
  valid, revoked, no digitalSignature, no agency code, valid but never registered, garbage KeyInfo,
  a chain that does not chain;
- encoding: BOMs, UTF-16/UTF-32 re-encoding, a declared encoding that is not the real one, invalid
  UTF-8, NULs, control characters (raw and as character references), CRLF changes, over-long fields
  and base64 garbage in attachments (signed), whitespace outside the root.

`Draw` hides where the choices come from: hypothesis (`HypothesisDraw`, so a failure shrinks and
replays, derandomized in CI) or a seeded `random.Random` (`RandomDraw`, the long campaign of
bench/bench_fuzz.py, where each example has a seed of its own to replay it).

What a mutant promises the oracle (tests/fuzz/road.py):
- `signed_by_test`: the bytes are exactly what a registered agency key signed (a mutation made
  before signing); accepting them delivers nothing unsigned, whatever Axis then decides;
- `must_refuse`: acceptance is a defect (a forged or misplaced signature, a certificate Axis must
  not trust): the reason says why;
- neither: a change that may keep the signature valid (a BOM, another encoding of the same text,
  line ends the parser normalizes); accepted only if the signed content is what the test signed.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from lxml import etree

from axis.edxml.ns import NS
from axis.trust import Signer, pki
from axis.trust.identity import agency_subject
from axis.trust.placement import DS_NS

T = TypeVar("T")
FAMILIES = ("structure", "signature", "certificate", "encoding")
DS = f"{{{DS_NS}}}"
ED = f"{{{NS}}}"
XI = "http://www.w3.org/2001/XInclude"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


# ------------------------------------------------------------------ where the choices come from

class Draw(Protocol):
    def choice(self, options: Sequence[T]) -> T: ...
    def integer(self, low: int, high: int) -> int: ...
    def blob(self, low: int, high: int) -> bytes: ...


class HypothesisDraw:
    """Choices drawn from hypothesis's `st.data()`, so a failing example shrinks and replays."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st
        self._data, self._st = data, st

    def choice(self, options: Sequence[T]) -> T:
        return self._data.draw(self._st.sampled_from(list(options)))

    def integer(self, low: int, high: int) -> int:
        return int(self._data.draw(self._st.integers(low, high)))

    def blob(self, low: int, high: int) -> bytes:
        return bytes(self._data.draw(self._st.binary(min_size=low, max_size=high)))


class RandomDraw:
    """Choices from a seeded `random.Random`: the same seed makes the same mutant."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def choice(self, options: Sequence[T]) -> T:
        return options[self._rng.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def blob(self, low: int, high: int) -> bytes:
        return self._rng.randbytes(self._rng.randint(low, high))


# ------------------------------------------------------------------ what a mutation starts from

@dataclass(frozen=True)
class Materials:
    """Keys and certificates the certificate family signs with, made once per campaign.

    `ca_cert`/`ca_key`: the deployment's real root (so an expired or revoked certificate is otherwise
    valid); `revoked` is the serial the deployment's CRL lists (`crl_revoking` makes that CRL)."""

    signers: dict[str, Signer]                       # each registered agency's own key and certificate
    ca_cert: x509.Certificate
    ca_key: Any
    revoked: dict[str, Signer]                       # per agency: a certificate of the real root, revoked
    other: dict[str, Signer] = field(default_factory=dict)   # name -> a signer Axis must refuse

    @classmethod
    def build(cls, signers: dict[str, Signer], ca_cert: x509.Certificate, ca_key: Any) -> Materials:
        revoked = {}
        for code in signers:
            key = pki.generate_key("ec")
            revoked[code] = Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key))
        return cls(signers, ca_cert, ca_key, revoked)

    def crl(self) -> x509.CertificateRevocationList:
        """A fresh CRL of the real root listing the `revoked` certificates (numbered high, so it supersedes the
        deployment's own)."""
        when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        return pki.build_crl(self.ca_cert, self.ca_key,
                             [(s.certificate.serial_number, when) for s in self.revoked.values()], number=1000)

    def bad_signer(self, kind: str, code: str) -> Signer:
        """A signer for `code` whose certificate Axis must refuse (`kind`), made on first use."""
        name = f"{kind}:{code}"
        if name not in self.other:
            self.other[name] = _bad_signer(kind, code, self.ca_cert, self.ca_key)
        return self.other[name]


def _self_signed(code: str, key: Any) -> x509.Certificate:
    """A certificate with the agency's exact subject, signed by its own key: no CA vouches for it."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(agency_subject(code)).issuer_name(agency_subject(code))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([pki.DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                              critical=False)
               .add_extension(x509.SubjectAlternativeName(
                   [x509.UniformResourceIdentifier(pki.AGENCY_SAN_PREFIX + code)]), critical=False))
    return builder.sign(key, hashes.SHA256())


def _bad_signer(kind: str, code: str, ca_cert: x509.Certificate, ca_key: Any) -> Signer:
    key = pki.generate_key("ec")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    if kind == "self-signed":
        return Signer(key, _self_signed(code, key))
    if kind == "forged-root":
        # A root with the real root's name and another key: every name in the chain looks right.
        forged_key = pki.generate_key("ec")
        forged = pki.build_root_certificate(forged_key, common_name=ca_cert.subject.rfc4514_string().split(
            "CN=")[-1].split(",")[0])
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), forged, forged_key), [forged])
    if kind == "expired":
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key, not_before=past,
                                                        not_after=past + dt.timedelta(days=30)))
    if kind == "not-yet-valid":
        future = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key, not_before=future,
                                                        not_after=future + dt.timedelta(days=30)))
    if kind == "no-digital-signature":
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key,
                                                        digital_signature=False))
    if kind == "no-key-usage":
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key, key_usage=False))
    if kind == "no-agency-code":
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key,
                                                        with_agency_code=False))
    if kind == "unregistered":
        return Signer(key, pki.build_agency_certificate(code, key.public_key(), ca_cert, ca_key))
    if kind == "rsa-2048-self-signed":
        rsa_key = pki.generate_key("rsa", rsa_bits=2048)
        return Signer(rsa_key, _self_signed(code, rsa_key))
    raise ValueError(kind)


BAD_CERTIFICATES = ("self-signed", "forged-root", "expired", "not-yet-valid", "no-digital-signature",
                    "no-key-usage", "no-agency-code", "unregistered", "revoked")


@dataclass
class Case:
    """One valid packet before signing, and who sends it."""

    kind: str                  # "document" | "status"
    unsigned: bytes
    sender: str
    materials: Materials
    others: tuple[str, ...]    # registered agencies other than the sender

    @property
    def signer(self) -> Signer:
        return self.materials.signers[self.sender]

    def signed(self) -> bytes:
        return self.signer.sign(self.unsigned)


@dataclass
class Mutant:
    family: str
    name: str
    data: bytes
    base: bytes                         # the valid packet the mutation started from (signed)
    signed_by_test: bool = False
    must_refuse: str | None = None      # why acceptance would be a defect
    submit_as: str | None = None        # the credential to submit with (default: the sender's)

    @property
    def label(self) -> str:
        return f"{self.family}/{self.name}"


# ------------------------------------------------------------------ tree helpers

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True,
                          remove_blank_text=False, remove_comments=False, remove_pis=False)


def tree(data: bytes) -> etree._Element:
    return etree.fromstring(data, _PARSER)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _signature(root: etree._Element) -> etree._Element:
    found = root.find(f".//{DS}Signature")
    assert found is not None, "a signed packet has a Signature"
    return found


def _content_elements(root: etree._Element) -> list[etree._Element]:
    """Every element of the packet outside the Signature, except the root."""
    return [e for e in root.iter() if isinstance(e.tag, str) and e is not root
            and not any(a.tag == f"{DS}Signature" for a in [e, *e.iterancestors()])]


def _text_elements(root: etree._Element) -> list[etree._Element]:
    return [e for e in _content_elements(root) if len(e) == 0 and (e.text or "").strip()]


def _flip_base64(text: str, draw: Draw) -> str:
    """The same base64 value with one byte changed (decoded, changed, encoded: a change in padding bits only
    would decode to the same value and not be a change at all)."""
    raw = bytearray(base64.b64decode("".join(text.split())))
    at = draw.integer(0, len(raw) - 1)
    raw[at] ^= 1 << draw.integer(0, 7)
    return base64.b64encode(bytes(raw)).decode()


def _set_text(root: etree._Element, path: str, text: str) -> None:
    found = root.find(path)
    assert found is not None, path
    found.text = text


# ------------------------------------------------------------------ structure

_DOCTYPES = (
    b'<!DOCTYPE edXML:edXML [<!ENTITY x "injected">]>',
    b'<!DOCTYPE edXML:edXML SYSTEM "file:///etc/passwd">',
    b'<!DOCTYPE edXML:edXML [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE edXML:edXML [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>',
    b'<!DOCTYPE edXML:edXML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
    b"<!DOCTYPE edXML:edXML>",
)


def _structure_tree(root: etree._Element, name: str, draw: Draw) -> None:
    """Change the tree in place (before or after signing)."""
    elements = _content_elements(root)
    target = draw.choice(elements)
    parent = target.getparent()
    assert parent is not None
    if name == "drop":
        parent.remove(target)
    elif name == "duplicate":
        target.addnext(copy.deepcopy(target))
    elif name == "reorder":
        siblings = [e for e in parent if isinstance(e.tag, str)]
        other = draw.choice(siblings)
        if other is target:
            parent.insert(0, target) if parent.index(target) else parent.append(target)
        else:
            i, j = parent.index(target), parent.index(other)
            parent.insert(j, target)
            parent.insert(i, other)
    elif name == "rename":
        local = etree.QName(target).localname
        target.tag = ED + draw.choice([local + "X", local.lower(), "Subject", "OrganId", "To", "Signature",
                                       "edXMLHeader", "DocumentId"])
    elif name == "wrong-namespace":
        where = draw.choice([root, target])
        local = etree.QName(where).localname
        where.tag = "{" + draw.choice(["http://www.mic.gov.vn/TBT/QCVN_102_2015", "", "urn:x",
                                       "http://www.w3.org/2000/09/xmldsig#"]) + "}" + local
    elif name == "unknown-element":
        etree.SubElement(target, ED + draw.choice(["Extra", "Object", "Script"])).text = "x"
    elif name == "unknown-attribute":
        target.set(draw.choice(["Id", "ID", "id", f"{{{XI}}}href", "{urn:x}a"]), draw.choice(["x", "", "#", "1"]))
    elif name == "xinclude":
        include = etree.SubElement(target, f"{{{XI}}}include", nsmap={"xi": XI})
        include.set("href", draw.choice(["file:///etc/passwd", "http://127.0.0.1:9/x", "#xpointer(/)"]))
        include.set("parse", draw.choice(["text", "xml"]))
    elif name == "deep":
        depth = draw.integer(60, 3000)
        node = target
        for _ in range(depth):
            node = etree.SubElement(node, ED + "Nest")
    elif name == "wide":
        for _ in range(draw.integer(1000, 20_000)):
            etree.SubElement(target, ED + "To").text = "000.00.00.H41"
    elif name == "comment":
        comment = etree.Comment(draw.choice(["x", " - ", " <Subject>y</Subject> "]))
        if draw.choice(["between elements", "inside a value"]) == "inside a value":
            # Splits a value (`G22<!-- -->01`): a reader may see only the first part (AX305).
            target = draw.choice(_text_elements(root))
            text = target.text or ""
            cut = draw.integer(0, len(text))
            target.text, comment.tail = text[:cut], text[cut:]
            target.insert(0, comment)
        else:
            target.append(comment)
    elif name == "processing-instruction":
        target.append(etree.ProcessingInstruction("xml-stylesheet", 'href="http://127.0.0.1:9/x.xsl"'))
    elif name == "cdata":
        texts = _text_elements(root)
        chosen = draw.choice(texts)
        chosen.text = etree.CDATA(chosen.text or "")
    else:
        raise ValueError(name)


_TREE_STRUCTURES = ("drop", "duplicate", "reorder", "rename", "wrong-namespace", "unknown-element",
                    "unknown-attribute", "xinclude", "deep", "wide", "comment", "processing-instruction", "cdata")


def structure(case: Case, draw: Draw) -> Mutant:
    name = draw.choice([*_TREE_STRUCTURES, "doctype", "truncate", "entity-reference", "not-xml"])
    base = case.signed()
    if name == "not-xml":
        data = draw.choice([b"", b" ", b"null", b'{"edXML": 1}', b"<", b"<?xml version='1.0'?>", draw.blob(1, 64),
                            base[base.index(b"<edXML:edXMLEnvelope>"):], base + base])
        return Mutant("structure", name, data, base, must_refuse="not one edXML document")
    if name == "doctype":
        declaration, _, rest = base.partition(b"?>")
        data = declaration + b"?>\n" + draw.choice(_DOCTYPES) + rest
        return Mutant("structure", name, data, base, must_refuse="a DOCTYPE is never accepted (AX201)")
    if name == "entity-reference":
        at = draw.choice(_text_positions(base))
        reference = b"&" + draw.choice([b"x", b"lt", b"amp", b"#0", b"#x41", b"unknown", b"#xD;"]) + b";"
        return Mutant("structure", name, base[:at] + reference + base[at:], base)
    if name == "truncate":
        return Mutant("structure", name, base[:draw.integer(0, len(base) - 1)], base,
                      must_refuse="a truncated packet is not well-formed")
    stage = draw.choice(["before", "after"])
    if stage == "before":
        root = tree(case.unsigned)
        _structure_tree(root, name, draw)
        try:
            data = case.signer.sign(serialize(root))
        except Exception:  # noqa: BLE001 - the signer refused the shape (a DOCTYPE, too deep, a PI): mutate after
            pass
        else:
            return Mutant("structure", f"{name}-then-sign", data, base, signed_by_test=True)
    root = tree(base)
    _structure_tree(root, name, draw)
    return Mutant("structure", f"sign-then-{name}", serialize(root), base)


# ------------------------------------------------------------------ signature

_SIGNATURE_METHODS = ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
                      "http://www.w3.org/2000/09/xmldsig#hmac-sha1", "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
                      "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
                      "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
                      "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "urn:none", "")
_DIGEST_METHODS = ("http://www.w3.org/2000/09/xmldsig#sha1", "http://www.w3.org/2001/04/xmlenc#sha512",
                   "http://www.w3.org/2001/04/xmldsig-more#md5", "urn:none", "")
_C14N_METHODS = ("http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
                 "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
                 "http://www.w3.org/2001/10/xml-exc-c14n#WithComments", "http://www.w3.org/2006/12/xml-c14n11",
                 "urn:none")
_TRANSFORMS = ("http://www.w3.org/TR/1999/REC-xslt-19991116", "http://www.w3.org/TR/1999/REC-xpath-19991116",
               "http://www.w3.org/2002/06/xmldsig-filter2", "http://www.w3.org/2000/09/xmldsig#base64",
               "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments", "urn:none")


def signature(case: Case, draw: Draw) -> Mutant:
    names = ("flip-signature-value", "flip-digest-value", "reference-uri", "move", "second-signature",
             "foreign-signature", "wrapping", "signature-method", "digest-method", "c14n-method", "transform",
             "drop-transforms", "edit-signed-content", "remove", "empty-signature-value", "drop-signed-info",
             "sha1-signature")
    name = draw.choice(names)
    base = case.signed()
    if name == "sha1-signature":
        from signxml import DigestAlgorithm, SignatureMethod
        data = case.signer.sign(case.unsigned, signature_method=SignatureMethod.ECDSA_SHA1,
                                digest_method=draw.choice([DigestAlgorithm.SHA1, DigestAlgorithm.SHA256]))
        return Mutant("signature", name, data, base, must_refuse="SHA-1 is refused unless allowed (AX303)")
    root = tree(base)
    sig = _signature(root)
    why = "the signature does not cover this packet as sent"
    if name == "flip-signature-value":
        value = sig.find(f"{DS}SignatureValue")
        assert value is not None
        value.text = _flip_base64(value.text or "", draw)
    elif name == "flip-digest-value":
        value = sig.find(f".//{DS}DigestValue")
        assert value is not None
        value.text = _flip_base64(value.text or "", draw)
    elif name == "reference-uri":
        reference = sig.find(f".//{DS}Reference")
        assert reference is not None
        uri = draw.choice(["#", "#x", "#xpointer(/)", "#xpointer(id('x'))", "http://127.0.0.1:9/x",
                           "file:///etc/passwd", None])
        if uri is None:
            del reference.attrib["URI"]
        else:
            reference.set("URI", uri)
    elif name == "move":
        where = draw.choice(_present(root, root[0], root.find(f".//{ED}edXMLBody"),
                                     root.find(f".//{ED}MessageHeader"), root.find(f".//{ED}TraceHeaderList")))
        sig.getparent().remove(sig)
        where.insert(draw.integer(0, len(where)), sig)
        why = "the signature must sit in edXMLHeader (AX302)"
    elif name == "second-signature":
        sig.addnext(copy.deepcopy(sig)) if draw.choice([True, False]) else root.append(copy.deepcopy(sig))
        why = "a packet carries exactly one signature (AX302)"
    elif name == "foreign-signature":
        # Another agency's genuine signature, over another packet, added beside the sender's own.
        other = draw.choice(case.others)
        foreign = _signature(tree(case.materials.signers[other].sign(case.unsigned)))
        target = draw.choice(_present(sig.getparent(), root, root.find(f".//{ED}edXMLBody")))
        target.append(foreign)
        why = "a packet carries exactly one signature (AX302)"
    elif name == "wrapping":
        # The signed envelope kept, unchanged, inside the signature; the visible one says something else.
        envelope = root.find(f"{ED}edXMLEnvelope")
        assert envelope is not None
        obj = etree.SubElement(sig, f"{DS}Object")
        obj.set("Id", "signed")
        obj.append(copy.deepcopy(envelope))
        texts = _text_elements(root)
        chosen = draw.choice([e for e in texts if not any(a is obj for a in e.iterancestors())])
        chosen.text = draw.choice(["000.00.00.H14", "Chuyển tiền", (chosen.text or "") + "1"])
        if draw.choice([True, False]):
            reference = sig.find(f".//{DS}Reference")
            assert reference is not None
            reference.set("URI", "#signed")
    elif name == "signature-method":
        _attr(sig, f"{DS}SignedInfo/{DS}SignatureMethod", draw.choice(_SIGNATURE_METHODS))
    elif name == "digest-method":
        _attr(sig, f".//{DS}DigestMethod", draw.choice(_DIGEST_METHODS))
    elif name == "c14n-method":
        _attr(sig, f"{DS}SignedInfo/{DS}CanonicalizationMethod", draw.choice(_C14N_METHODS))
    elif name == "transform":
        transforms = sig.find(f".//{DS}Transforms")
        assert transforms is not None
        added = etree.SubElement(transforms, f"{DS}Transform", Algorithm=draw.choice(_TRANSFORMS))
        if draw.choice([True, False]):
            transforms.insert(0, added)
    elif name == "drop-transforms":
        transforms = sig.find(f".//{DS}Transforms")
        assert transforms is not None
        victim = draw.choice([transforms, *transforms])
        victim.getparent().remove(victim)
    elif name == "edit-signed-content":
        chosen = draw.choice(_text_elements(root))
        old = chosen.text or ""
        new = draw.choice([old + " ", old[:-1], "000.00.00.H14", old.upper(), old + "Đ"])
        chosen.text = new if new != old else old + "1"
    elif name == "remove":
        sig.getparent().remove(sig)
        why = "an unsigned packet is refused (AX300)"
    elif name == "empty-signature-value":
        _set_text(sig, f"{DS}SignatureValue", draw.choice(["", "AAAA", "=", " "]))
    elif name == "drop-signed-info":
        signed_info = sig.find(f"{DS}SignedInfo")
        assert signed_info is not None
        sig.remove(signed_info)
    else:
        raise ValueError(name)
    data = serialize(root)
    if data == base:   # e.g. a Transform added then moved where it was: nothing changed
        why = None  # type: ignore[assignment]
    return Mutant("signature", name, data, base, must_refuse=why)


def _present(*elements: etree._Element | None) -> list[etree._Element]:
    """The elements that exist (a status packet has no edXMLBody, no TraceHeaderList)."""
    return [e for e in elements if e is not None]


def _attr(sig: etree._Element, path: str, value: str) -> None:
    found = sig.find(path)
    assert found is not None, path
    found.set("Algorithm", value)


# ------------------------------------------------------------------ certificate

def certificate(case: Case, draw: Draw) -> Mutant:
    names = ("other-agency-certificate", "other-agency-key", *BAD_CERTIFICATES, "garbage-key-info",
             "no-key-info", "chain-does-not-chain", "extra-key-name")
    name = draw.choice(names)
    base = case.signed()
    materials = case.materials
    if name == "other-agency-key":
        # Another registered agency signs, with its own genuine key, a packet naming the sender.
        other = draw.choice(case.others)
        data = materials.signers[other].sign(case.unsigned)
        return Mutant("certificate", name, data, base, must_refuse="signed by another agency than From (AX316)",
                      submit_as=draw.choice([case.sender, other]))
    if name in BAD_CERTIFICATES:
        signer = materials.revoked[case.sender] if name == "revoked" else materials.bad_signer(name, case.sender)
        return Mutant("certificate", name, signer.sign(case.unsigned), base,
                      must_refuse=f"a {name} certificate is not trusted")
    root = tree(base)
    sig = _signature(root)
    cert_element = sig.find(f".//{DS}X509Certificate")
    assert cert_element is not None
    if name == "other-agency-certificate":
        other = draw.choice(case.others)
        cert_element.text = _b64_cert(materials.signers[other].certificate)
        why = "KeyInfo's certificate did not make this signature"
    elif name == "garbage-key-info":
        der = base64.b64decode(cert_element.text or "")
        cert_element.text = draw.choice([
            base64.b64encode(draw.blob(0, 600)).decode(),
            base64.b64encode(der[:draw.integer(0, len(der) - 1)]).decode(),
            "not base64 at all!", "", "====",
            base64.b64encode(der + draw.blob(1, 8)).decode(),
            _b64_cert(materials.ca_cert),
        ])
        why = "KeyInfo holds no usable certificate of the sender"
    elif name == "no-key-info":
        key_info = sig.find(f"{DS}KeyInfo")
        assert key_info is not None
        sig.remove(key_info)
        why = "no certificate: nothing to verify with"
    elif name == "chain-does-not-chain":
        # The sender's genuine certificate first, then certificates that chain to nothing trusted.
        x509_data = cert_element.getparent()
        forged = materials.bad_signer("forged-root", case.sender)
        stranger = materials.signers[case.others[0]].certificate
        for extra in draw.choice([[forged.chain[0]], [forged.certificate], [stranger],
                                  [forged.certificate, forged.chain[0]]]):
            etree.SubElement(x509_data, f"{DS}X509Certificate").text = _b64_cert(extra)
        if draw.choice([True, False]):
            x509_data.append(cert_element)   # the genuine certificate last, not first
        data = serialize(root)
        # The sender's own certificate is still there: a verifier may find it and accept the genuine signature;
        # what it must not do is trust a certificate the extra ones vouch for. Accepted only if unchanged otherwise.
        return Mutant("certificate", name, data, base)
    elif name == "extra-key-name":
        key_info = sig.find(f"{DS}KeyInfo")
        assert key_info is not None
        etree.SubElement(key_info, f"{DS}KeyName").text = draw.choice(case.others)
        why = "KeyName is content the signature does not cover (AX305)"
    else:
        raise ValueError(name)
    return Mutant("certificate", name, serialize(root), base, must_refuse=why)


def _b64_cert(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


# ------------------------------------------------------------------ encoding

_INVALID_UTF8 = (b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe1\xbb", b"\x80",
                 b"\xf4\x90\x80\x80")
_CONTROL = (b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f", b"&#0;", b"&#x1;", b"&#xFFFE;",
            b"&#xD800;", b"&#x110000;", b"&#13;", b"\xc2\x85", b"\xe2\x80\xa8")


def _text_positions(data: bytes) -> list[int]:
    """Offsets just after a start tag's '>' whose next byte is text (inside a value)."""
    return [i + 1 for i in range(len(data) - 1) if data[i] == ord(">") and data[i + 1] not in b"<\n"]


def encoding(case: Case, draw: Draw) -> Mutant:
    names = ("bom-utf8", "utf16", "utf32", "declared-mismatch", "no-declaration", "invalid-utf8", "control",
             "crlf", "cr-only", "overlong-field", "base64-garbage", "whitespace-outside-root", "bom-mismatch")
    name = draw.choice(names)
    base = case.signed()
    text = base.decode("utf-8")
    body = text.split("?>", 1)[1]
    if name == "bom-utf8":
        return Mutant("encoding", name, b"\xef\xbb\xbf" + base, base)
    if name in ("utf16", "utf32"):
        codec = draw.choice({"utf16": ["utf-16", "utf-16-le", "utf-16-be"], "utf32": ["utf-32", "utf-32-le"]}[name])
        declared = draw.choice([codec.upper()[:6] if name == "utf16" else "UTF-32", "UTF-8", codec.upper()])
        data = f"<?xml version='1.0' encoding='{declared}'?>{body}".encode(codec)
        return Mutant("encoding", f"{name}-{codec}-declared-{declared}", data, base)
    if name == "declared-mismatch":
        declared = draw.choice(["ISO-8859-1", "US-ASCII", "windows-1258", "UTF-16", "EBCDIC-US", "UTF-7", "bogus"])
        return Mutant("encoding", f"{name}-{declared}", f"<?xml version='1.0' encoding='{declared}'?>{body}".encode(),
                      base)
    if name == "bom-mismatch":
        bom = draw.choice([b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xef\xbb"])
        return Mutant("encoding", name, bom + base, base)
    if name == "no-declaration":
        return Mutant("encoding", name, body.encode(), base)
    if name == "whitespace-outside-root":
        return Mutant("encoding", name, base + draw.choice([b"\n", b"\n\n  \t", b"\r\n"]), base)
    if name in ("invalid-utf8", "control"):
        positions = _text_positions(base)
        at = draw.choice(positions) + draw.integer(0, 3)
        inserted = draw.choice(_INVALID_UTF8 if name == "invalid-utf8" else _CONTROL)
        data = base[:at] + inserted + base[at:]
        return Mutant("encoding", f"{name}-{inserted!r}", data, base)
    if name == "crlf":
        return Mutant("encoding", name, base.replace(b"\n", b"\r\n"), base)
    if name == "cr-only":
        return Mutant("encoding", name, base.replace(b"\n", b"\r"), base)
    root = tree(case.unsigned)
    if name == "overlong-field":
        chosen = draw.choice(_text_elements(root))
        chosen.text = (chosen.text or "x") * draw.integer(2, 50) + draw.choice(["", "Đ" * draw.integer(1, 20_000),
                                                                                 "9" * 5000])
    else:  # base64-garbage
        attachment = root.find(f".//{ED}ContentTransferEncoded")
        if attachment is None:   # a status carries no attachment: garbage where a field is
            attachment = draw.choice(_text_elements(root))
        attachment.text = draw.choice(["!!! not base64 $$$", "====", base64.b64encode(draw.blob(0, 200)).decode()[:-1],
                                       "A" * draw.integer(1, 100_000), "ĐĐĐ", " \n\t "])
    try:
        data = case.signer.sign(serialize(root))
    except Exception:  # noqa: BLE001 - the signer refuses it (too large a text node?): submit it unsigned
        return Mutant("encoding", f"{name}-unsigned", serialize(root), base, must_refuse="unsigned")
    return Mutant("encoding", name, data, base, signed_by_test=True)


MUTATORS: dict[str, Callable[[Case, Draw], Mutant]] = {
    "structure": structure, "signature": signature, "certificate": certificate, "encoding": encoding}


def mutate(case: Case, draw: Draw, family: str | None = None) -> Mutant:
    """One mutant of `case`: of `family`, or of a family drawn too."""
    return MUTATORS[family or draw.choice(FAMILIES)](case, draw)


