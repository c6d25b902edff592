"""The XML-DSig engine: computes and checks the one enveloped signature Axis uses.

`Signer` and `Verifier` decide everything around that signature: where it sits,
which algorithms and certificates are acceptable, who signed. An engine does
the cryptography in between, on a tree they have already checked:

- `sign(root, parent, place, material, method, digest)` inserts a Signature
  (one Reference with URI="", transforms enveloped-signature then exclusive
  C14N 1.0, SignedInfo in exclusive C14N 1.0, KeyInfo/X509Data with the
  certificates) where `place` puts it, fills it, and returns the root;
- `verify(data, root, signature, certificate, ...)` (called only by
  `Verifier`, on a tree `coverage.check_covered` has passed) checks the
  digest and the signature value with the public key of the certificate the
  caller has already validated, and returns the signed tree: the document
  without its Signature and without comments, as the URI="" reference covers
  it (a comment may split a text node the signature saw whole, so fields must
  never be read from a tree that still has them). It raises
  `TrustError(SIGNATURE_INVALID)` and nothing else for any signature that does
  not verify.

Two engines produce and accept the same signatures (the trust tests run on
both, and sign with one and verify with the other):

- `xmlsec`: libxmlsec1, the C library behind the xmlsec1 tool, through
  python-xmlsec. It works on lxml's tree in place (no re-serialisation, no
  re-parse) and costs about a quarter of signxml's time on a 5 KB packet. Only
  the transforms Axis allows are enabled in it, and the key is set by the
  caller, so it never reads KeyInfo to find one.
- `signxml`: pure Python over lxml and cryptography, the fallback when
  python-xmlsec is missing or was built against another libxml2 than lxml
  (python-xmlsec then refuses to load).

`default()` is xmlsec when it loads and signxml otherwise; `AXIS_XMLDSIG`
(`xmlsec` or `signxml`) forces one, and a forced engine that cannot load is
an error, not a silent fallback. `select(name)` changes the default for the
process (the command line and the tests use it).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLSigner, XMLVerifier, methods
from signxml.algorithms import CanonicalizationMethod
from signxml.exceptions import InvalidDigest, SignXMLException

from axis.edxml.safe import decode_base64
from axis.refusals import RefusalCode, TrustError
from axis.settings import load as load_settings
from axis.trust.keys import SigningKey
from axis.trust.placement import DS_NS, Placement, ds

log = logging.getLogger("axis.trust.xmldsig")

C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
SHA1_SIGNATURE_METHODS = frozenset({SignatureMethod.RSA_SHA1, SignatureMethod.ECDSA_SHA1})
STRONG_SIGNATURE_METHODS = frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256})


@dataclass(frozen=True)
class Algorithms:
    """What a SignedInfo declares, after the Verifier allowed it."""

    signature_method: SignatureMethod
    digest_method: DigestAlgorithm
    default_namespace: bool    # <SignedInfo> unprefixed, as xmlsec1 and the Java SDKs write it

    @property
    def sha1(self) -> bool:
        return self.signature_method in SHA1_SIGNATURE_METHODS or self.digest_method is DigestAlgorithm.SHA1


def reparser() -> etree.XMLParser:
    """The parser signxml gets (signing and verifying) for input `parse_xml` already accepted.

    It reads bytes `parse_xml` accepted, or lxml's serialisation of such a tree,
    with parse_xml's own settings, so both parses yield the same tree (no parser
    differential). huge_tree is on because the size and shape limits were already
    enforced; libxml2's 10 MB text-node cap would only break large attachments.
    Entities, DTDs and the network stay off. A new parser per operation: lxml
    parsers must not be shared between threads.
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=True, remove_blank_text=False, remove_comments=False, remove_pis=False,
                           strip_cdata=False, collect_ids=False)


class Engine(Protocol):
    name: str

    def signing_material(self, key: SigningKey, certificates: Sequence[x509.Certificate]) -> Any:
        """The key and certificates in the form `sign` takes; built once per Signer."""

    def can_sign(self, method: SignatureMethod, digest: DigestAlgorithm) -> bool: ...

    def sign(self, root: etree._Element, parent: etree._Element,
             place: Callable[[etree._Element, etree._Element], None], material: Any,
             method: SignatureMethod, digest: DigestAlgorithm) -> etree._Element: ...

    def verify(self, data: bytes | None, root: etree._Element, signature: etree._Element,
               certificate: x509.Certificate, fingerprint: str, algorithms: Algorithms,
               placement: Placement, now: dt.datetime) -> etree._Element: ...


def _invalid(detail: str) -> TrustError:
    return TrustError(RefusalCode.SIGNATURE_INVALID, f"the signature does not verify ({detail})")


# --------------------------------------------------------------------- signxml

class _XMLSigner(XMLSigner):
    # signxml refuses SHA-1 when constructed. The Signer signs with SHA-256 unless a
    # caller explicitly asks otherwise (interop and refusal-path tests), so the
    # choice is made there, not here.
    def check_deprecated_methods(self) -> None:
        return None


class _XMLVerifier(XMLVerifier):
    """signxml's verifier, with one interop fix for default-namespace signatures.

    A Signature written as `<Signature xmlns="...xmldsig#">` (xmlsec1, the Java
    SDK) inside edXML, whose root declares another default namespace, fails in
    signxml because lxml's inclusive C14N of the SignedInfo subtree emits
    spurious `xmlns=""` on its descendants (signxml #193, #226, #275). signxml's
    own switch, `excise_empty_xmlns_declarations`, strips them from the packet
    digest as well, which would change what a packet with a genuine `xmlns=""`
    means. Here they are stripped from SignedInfo only, and only when SignedInfo
    is unprefixed. The Verifier has already refused any SignedInfo element
    outside the XML-DSig namespace, so no correct C14N of this SignedInfo
    contains `xmlns=""`: the excision removes exactly lxml's spurious ones.
    """

    excise_signed_info_xmlns = False

    def _c14n(self, nodes, algorithm, inclusive_ns_prefixes=None):
        c14n = super()._c14n(nodes, algorithm, inclusive_ns_prefixes=inclusive_ns_prefixes)
        if (self.excise_signed_info_xmlns and getattr(nodes, "tag", None) == ds("SignedInfo")
                and not algorithm.value.startswith("http://www.w3.org/2001/10/xml-exc-c14n#")):
            c14n = c14n.replace(b' xmlns=""', b"")
        return c14n


class SignxmlEngine:
    name = "signxml"

    def signing_material(self, key: SigningKey, certificates: Sequence[x509.Certificate]) -> Any:
        return key, list(certificates)

    def can_sign(self, method: SignatureMethod, digest: DigestAlgorithm) -> bool:
        return True

    def sign(self, root: etree._Element, parent: etree._Element,
             place: Callable[[etree._Element, etree._Element], None], material: Any,
             method: SignatureMethod, digest: DigestAlgorithm) -> etree._Element:
        key, certificates = material
        place(parent, etree.Element(ds("Signature"), {"Id": "placeholder"}, nsmap={"ds": DS_NS}))
        signer = _XMLSigner(method=methods.enveloped, signature_algorithm=method, digest_algorithm=digest,
                            c14n_algorithm=C14N)
        # signxml re-parses its input with this private parser; without it a text node
        # over 10 MB (a large attachment) fails to sign.
        signer._parser = reparser()
        return signer.sign(root, key=key, cert=certificates)

    def verify(self, data: bytes | None, root: etree._Element, signature: etree._Element,
               certificate: x509.Certificate, fingerprint: str, algorithms: Algorithms,
               placement: Placement, now: dt.datetime) -> etree._Element:
        methods_ = STRONG_SIGNATURE_METHODS | ({algorithms.signature_method} & SHA1_SIGNATURE_METHODS)
        digests = frozenset({DigestAlgorithm.SHA256}) | ({algorithms.digest_method} & {DigestAlgorithm.SHA1})
        config = SignatureConfiguration(
            require_x509=True, location=placement.signxml_location, expect_references=1,
            signature_methods=frozenset(methods_), digest_algorithms=frozenset(digests),
            verification_time=now,
            # XML-DSig's default when a reference names no C14N transform (xmlsec1 does the same).
            default_reference_c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0,
        )
        # A new signxml verifier per call: verify() keeps its settings on the instance.
        verifier = _XMLVerifier()
        verifier.excise_signed_info_xmlns = algorithms.default_namespace
        try:
            # Given the bytes, signxml parses them itself (same libxml2, same settings as
            # parse_xml, which already accepted them), saving a serialisation of the tree.
            result = verifier.verify(data if data is not None else root, x509_cert=certificate,
                                     parser=reparser(), expect_config=config)
        except InvalidDigest as exc:
            raise TrustError(RefusalCode.SIGNATURE_INVALID,
                             f"the {placement.kind} was changed after signing (digest mismatch: {exc})") from None
        except (SignXMLException, etree.LxmlError, ValueError, TypeError, KeyError) as exc:
            # signxml turns hostile input into many exception types (binascii.Error,
            # KeyError for unknown curves, lxml schema errors...): all mean "does not verify".
            raise _invalid(f"{type(exc).__name__}: {exc}") from None
        signed = getattr(result, "signed_xml", None)
        if signed is None or signed.tag != root.tag:
            raise TrustError(RefusalCode.SIGNATURE_INVALID, f"the signed data is not the whole {placement.kind}")
        return signed


# ---------------------------------------------------------------------- xmlsec

def _load_xmlsec() -> Any:
    import xmlsec

    return xmlsec


class XmlsecEngine:
    name = "xmlsec"
    _KEY_CACHE = 1024

    def __init__(self) -> None:
        xmlsec = self._xmlsec = _load_xmlsec()
        c = xmlsec.constants
        self._signature = {SignatureMethod.RSA_SHA256: c.TransformRsaSha256,
                           SignatureMethod.ECDSA_SHA256: c.TransformEcdsaSha256,
                           SignatureMethod.RSA_SHA1: c.TransformRsaSha1,
                           SignatureMethod.ECDSA_SHA1: c.TransformEcdsaSha1}
        self._digest = {DigestAlgorithm.SHA256: c.TransformSha256, DigestAlgorithm.SHA1: c.TransformSha1}
        c14n = (c.TransformInclC14N, c.TransformInclC14NWithComments, c.TransformInclC14N11,
                c.TransformInclC14N11WithComments, c.TransformExclC14N, c.TransformExclC14NWithComments)
        # Everything else xmlsec knows (XSLT, XPath, base64, decryption...) stays disabled.
        self._reference_transforms = (c.TransformEnveloped, *c14n, *self._digest.values())
        self._signature_transforms = (*c14n, *self._signature.values())
        self._keys: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def signing_material(self, key: SigningKey, certificates: Sequence[x509.Certificate]) -> Any:
        # The key alone: xmlsec copies the key into every signing context, and a key that also
        # carries certificates costs ~0.1 ms to copy. The certificates go into X509Data as text.
        xmlsec = self._xmlsec
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        texts = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certificates]
        return xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem), texts

    def can_sign(self, method: SignatureMethod, digest: DigestAlgorithm) -> bool:
        return method in self._signature and digest in self._digest

    def sign(self, root: etree._Element, parent: etree._Element,
             place: Callable[[etree._Element, etree._Element], None], material: Any,
             method: SignatureMethod, digest: DigestAlgorithm) -> etree._Element:
        xmlsec = self._xmlsec
        template = xmlsec.template
        exclusive = xmlsec.constants.TransformExclC14N
        signature = template.create(root, exclusive, self._signature[method], ns="ds")
        place(parent, signature)
        reference = template.add_reference(signature, self._digest[digest], uri="")
        template.add_transform(reference, xmlsec.constants.TransformEnveloped)
        template.add_transform(reference, exclusive)
        key, certificates = material
        x509_data = template.add_x509_data(template.ensure_key_info(signature))
        for text in certificates:  # the signer's first, then its chain
            etree.SubElement(x509_data, ds("X509Certificate")).text = text
        context = xmlsec.SignatureContext()
        context.key = key
        try:
            context.sign(signature)
        except xmlsec.Error as exc:
            raise ValueError(f"xmlsec could not sign: {exc}") from None
        return root

    def _public_key(self, fingerprint: str, certificate: x509.Certificate) -> Any:
        with self._lock:
            key = self._keys.get(fingerprint)
            if key is not None:
                self._keys.move_to_end(fingerprint)
                return key
        xmlsec = self._xmlsec
        # The public key alone: copied into every context, a key holding the certificate costs ~0.1 ms.
        key = xmlsec.Key.from_memory(
            certificate.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo),
            xmlsec.constants.KeyDataFormatPem)
        with self._lock:
            self._keys[fingerprint] = key
            while len(self._keys) > self._KEY_CACHE:
                self._keys.popitem(last=False)
        return key

    def verify(self, data: bytes | None, root: etree._Element, signature: etree._Element,
               certificate: x509.Certificate, fingerprint: str, algorithms: Algorithms,
               placement: Placement, now: dt.datetime) -> etree._Element:
        xmlsec = self._xmlsec
        context = xmlsec.SignatureContext()
        context.key = self._public_key(fingerprint, certificate)
        for transform in self._reference_transforms:
            context.enable_reference_transform(transform)
        for transform in self._signature_transforms:
            context.enable_signature_transform(transform)
        large = _large_texts(root)
        if large and _streamable(signature):
            self._verify_streamed(context, root, signature, large, algorithms, placement)
            etree.strip_tags(root, etree.Comment)
            return root
        del large
        try:
            context.verify(signature)
        except xmlsec.VerificationError:
            raise TrustError(RefusalCode.SIGNATURE_INVALID,
                             f"the signature does not verify: the {placement.kind} or its SignedInfo was changed "
                             "after signing, or it was signed with another key than the certificate's") from None
        except xmlsec.Error as exc:
            raise _invalid(f"xmlsec: {exc}") from None
        _remove_keeping_text(signature)
        # URI="" covers the document without comments (XML-DSig §4.4.3.3), whatever the C14N.
        etree.strip_tags(root, etree.Comment)
        return root


    def _verify_streamed(self, context: Any, root: etree._Element, signature: etree._Element,
                         large: list[etree._Element], algorithms: Algorithms, placement: Placement) -> None:
        """The same signature check as `context.verify`, for a packet with large text nodes (an attachment):
        libxmlsec1 canonicalises the whole packet in memory, holding each text node twice more beside the
        tree (libxml2's escaped copy and its output buffer: 3x a 133 MiB packet, bench_large.py). Here the
        Reference's digest is computed with each large text node taken out of the tree, its canonical form
        (escaped as C14N escapes text) hashed in pieces at its place in the canonical form of the rest, and
        the SignatureValue is checked by libxmlsec1 over the canonical SignedInfo (`verify_binary`). Only
        the transforms `_streamable` accepts take this road; the Verifier has checked the rest of the shape
        (one Reference, URI="", enveloped first, the algorithms). On success the Signature is removed, as
        the enveloped transform removes it; the large texts are back in the tree."""
        xmlsec = self._xmlsec
        signed_info = signature.find(ds("SignedInfo"))
        assert signed_info is not None  # _inspect_signed_info found exactly one
        method = signed_info.find(ds("CanonicalizationMethod"))
        # SignedInfo's canonical form is taken where it stands (exclusive C14N reads the in-scope namespaces
        # it uses from its ancestors).
        signed_info_c14n = etree.tostring(signed_info, method="c14n", exclusive=True,
                                          with_comments=method is not None and method.get("Algorithm") == _EXC_C)
        reference = signed_info.find(ds("Reference"))
        assert reference is not None
        transforms = [t.get("Algorithm") for t in reference.iterfind(f"{ds('Transforms')}/{ds('Transform')}")]
        c14n = transforms[1] if len(transforms) > 1 else _C14N_1_0
        try:
            expected = decode_base64(reference.findtext(ds("DigestValue")) or "")
            value = decode_base64(signature.findtext(ds("SignatureValue")) or "")
        except ValueError as exc:
            raise _invalid(f"DigestValue or SignatureValue is not base64: {exc}") from None
        _remove_keeping_text(signature)  # the enveloped-signature transform
        large = _large_texts(root)  # those of the Signature left with it
        digest = hashlib.new("sha1" if algorithms.digest_method is DigestAlgorithm.SHA1 else "sha256")
        texts = [element.text or "" for element in large]
        markers = [f"axis-large-text-{secrets.token_hex(16)}" for _ in large]
        try:
            for element, marker in zip(large, markers, strict=True):
                element.text = marker  # the tree's copy of the text is freed; `texts` holds the only one
            # URI="" covers the document without comments, whatever the C14N (XML-DSig §4.4.3.3).
            canonical = etree.tostring(root.getroottree(), method="c14n", exclusive=c14n.startswith(_EXC),
                                       with_comments=False)
            at = 0
            for number, marker in enumerate(markers):
                found = canonical.find(marker.encode("ascii"), at)
                if found < 0 or canonical.count(marker.encode("ascii")) != 1:
                    raise _invalid("a large text node is not where the canonical form puts it")
                digest.update(canonical[at:found])
                _digest_c14n_text(digest, texts[number])
                at = found + len(marker)
            digest.update(canonical[at:])
        finally:
            for number, element in enumerate(large):
                if texts[number].isascii():
                    # lxml would encode the str beside it before libxml2 copies the bytes: encoded here, the str
                    # is gone before the copy (2x a large text at the most, not 3x). lxml takes ASCII bytes only.
                    encoded, texts[number] = texts[number].encode("ascii"), ""
                    element.text = encoded
                    del encoded
                else:
                    element.text = texts[number]
        if not hmac.compare_digest(digest.digest(), expected):
            raise TrustError(RefusalCode.SIGNATURE_INVALID,
                             f"the signature does not verify: the {placement.kind} was changed after signing "
                             "(digest mismatch)")
        try:
            context.verify_binary(signed_info_c14n, self._signature[algorithms.signature_method], value)
        except xmlsec.VerificationError:
            raise TrustError(RefusalCode.SIGNATURE_INVALID,
                             f"the signature does not verify: the {placement.kind}'s SignedInfo was changed after "
                             "signing, or it was signed with another key than the certificate's") from None
        except (xmlsec.Error, KeyError) as exc:
            raise _invalid(f"xmlsec: {exc}") from None


# A text node at least this many characters long, and its element's only child, is digested in pieces
# (`XmlsecEngine._verify_streamed`); a packet without one is verified by libxmlsec1 alone.
LARGE_TEXT = 4 * 1024 * 1024
_EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
_EXC_C = _EXC + "WithComments"
_C14N_1_0 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
# The reference transforms whose canonical form lxml's C14N 1.0 writer gives (with or without comments is
# the same for URI="", which excludes them); C14N 1.1 is left to libxmlsec1.
_STREAMED_C14N = frozenset({_EXC, _EXC_C, _C14N_1_0, _C14N_1_0 + "#WithComments"})
_C14N_ESCAPES = ((b"&", b"&amp;"), (b"<", b"&lt;"), (b">", b"&gt;"), (b"\r", b"&#xD;"))  # & first
_TEXT_PIECE = 1024 * 1024


def _large_texts(root: etree._Element) -> list[etree._Element]:
    """The elements whose only child is a text node of at least LARGE_TEXT characters, in document order."""
    found = root.xpath("//*[count(node()) = 1 and string-length(text()) >= $n]", n=LARGE_TEXT)
    return [element for element in found if isinstance(element, etree._Element)]


def _streamable(signature: etree._Element) -> bool:
    """Whether `_verify_streamed` computes exactly what libxmlsec1 would: SignedInfo in exclusive C14N and the
    Reference's C14N one lxml writes, neither with an InclusiveNamespaces prefix list."""
    signed_info = signature.find(ds("SignedInfo"))
    if signed_info is None or next(signed_info.iter(f"{{{_EXC}}}InclusiveNamespaces"), None) is not None:
        return False
    method = signed_info.find(ds("CanonicalizationMethod"))
    if method is None or method.get("Algorithm") not in (_EXC, _EXC_C):
        return False
    transforms = [t.get("Algorithm") for t in signed_info.iterfind(
        f"{ds('Reference')}/{ds('Transforms')}/{ds('Transform')}")]
    return len(transforms) <= 2 and all(t in _STREAMED_C14N for t in transforms[1:])


def _digest_c14n_text(digest: Any, text: str) -> None:
    """Hash a text node as C14N writes it (&, <, > and CR escaped; UTF-8), a piece at a time."""
    for start in range(0, len(text), _TEXT_PIECE):
        piece = text[start:start + _TEXT_PIECE].encode("utf-8")
        for character, escaped in _C14N_ESCAPES:
            if character in piece:  # never, in base64
                piece = piece.replace(character, escaped)
        digest.update(piece)


def _remove_keeping_text(element: etree._Element) -> None:
    """Remove an element but not the text after it (lxml would drop its tail with it)."""
    parent = element.getparent()
    tail = element.tail or ""
    previous = element.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(element)


# --------------------------------------------------------------------- choice

SIGNXML = SignxmlEngine()
_engines: dict[str, Engine] = {"signxml": SIGNXML}
_default: Engine | None = None


def engine(name: str) -> Engine:
    """The engine called `name` ("xmlsec" or "signxml"); `ValueError` says why one cannot load."""
    if name in _engines:
        return _engines[name]
    if name != "xmlsec":
        raise ValueError(f"unknown XML-DSig engine {name!r}; use 'xmlsec' or 'signxml'")
    try:
        loaded = XmlsecEngine()
    except Exception as exc:  # noqa: BLE001 - ImportError, or xmlsec's libxml2 mismatch error
        raise ValueError(f"the xmlsec engine cannot load ({type(exc).__name__}: {exc}); install python-xmlsec "
                         "built against lxml's libxml2 (pip install 'xmlsec==1.3.17' with lxml 6.1), or use "
                         "AXIS_XMLDSIG=signxml") from None
    _engines[name] = loaded
    return loaded


def default() -> Engine:
    """The process's engine: `select()`ed, else AXIS_XMLDSIG, else xmlsec if it loads, else signxml."""
    global _default
    if _default is None:
        forced = load_settings().xmldsig
        if forced:
            _default = engine(forced)
        else:
            try:
                _default = engine("xmlsec")
            except ValueError as exc:
                log.info("%s; using signxml", exc)
                _default = SIGNXML
    return _default


def select(name: str) -> Engine:
    """Make `name` the process's engine from now on; returns it."""
    global _default
    _default = engine(name)
    return _default
