"""Signing edXML packets: one enveloped XML-DSig over the whole packet.

A `Signer` holds one agency's private key and certificate, parsed once (an RSA
key costs ~100 ms to load and validate; a sign with a loaded key costs a few ms).
`sign(data)` parses the packet with `axis.edxml.safe.parse_xml`, removes any
old signature or `DigitalSignature` placeholder from edXMLHeader, puts the
signature right after TraceHeaderList (or MessageHeader in a status
packet), and lets the XML-DSig engine (`xmldsig`: libxmlsec1 or signxml) fill it:

- SignatureMethod RSA-SHA256 or ECDSA-SHA256, from the key type;
- one Reference with URI="" (the whole packet), transforms enveloped-signature
  then exclusive C14N 1.0, DigestMethod SHA-256;
- CanonicalizationMethod exclusive C14N 1.0 (every XML-DSig implementation has
  it; it keeps the edXML namespace declarations out of SignedInfo);
- KeyInfo/X509Data/X509Certificate: the signer's certificate, then its chain.

`sign_receipt(data)` signs an Axis receipt the same way, the signature being
the receipt's last child (`placement.AXIS_RECEIPT`).

Callers may rely on: the output is UTF-8 bytes with an XML declaration, never
pretty-printed after signing, that `Verifier.verify` (`verify_receipt`)
accepts when the certificate is trusted and names the packet's sender (the
receipt's Issuer); `sign` raises `PacketError` for input that is not a
signable edXML packet (`TrustError(SIGNATURE_MISPLACED)` for a stray signature
outside edXMLHeader, `TrustError(UNSIGNED_CONTENT)` for a comment inside a text
value or a processing instruction, which the Verifier refuses) and nothing else
for bad input. A `Signer` is immutable and may be shared between threads.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod

from axis.edxml.safe import parse_xml
from axis.refusals import Refusal, RefusalCode, TrustError
from axis.trust import keys, xmldsig
from axis.trust.coverage import check_covered
from axis.trust.identity import certificate_agency_code
from axis.trust.keys import SigningKey
from axis.trust.placement import AXIS_RECEIPT, DIGITAL_SIGNATURE, EDXML_PACKET, SIGNATURE, Placement, edxml


class Signer:
    """Signs packets as one agency. Build once, reuse for every packet."""

    def __init__(self, key: SigningKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = (), *, engine: xmldsig.Engine | None = None) -> None:
        """`engine`: the XML-DSig engine (`axis.trust.xmldsig`); default: the process's, at each call."""
        self._key = keys.check_signing_key(key)
        if not keys.same_public_key(key, certificate):
            raise keys.KeyFileError("the private key does not belong to the certificate "
                                    f"{certificate.subject.rfc4514_string()!r}: give the key file made with it")
        self._certificate = certificate
        self._chain = tuple(chain)
        self._engine = engine
        self._materials: dict[str, object] = {}  # engine name -> its form of the key, built on first use
        self._method = (SignatureMethod.RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey)
                        else SignatureMethod.ECDSA_SHA256)
        try:
            self._agency_code: str | None = certificate_agency_code(certificate)
        except Refusal:
            # Signing with such a certificate is allowed (tests need the refusal it earns).
            self._agency_code = None

    @classmethod
    def from_files(cls, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str], *,
                   password: bytes | None = None) -> Signer:
        """Load a PEM key and a PEM certificate file (leaf first; any further certificates are its chain)."""
        certs = keys.load_certificates(cert_path)
        key = keys.load_private_key(key_path, password)
        if not keys.same_public_key(key, certs[0]):  # here the files are known: name them
            raise keys.KeyFileError(f"{key_path}: the private key does not belong to the certificate in {cert_path} "
                                    f"({certs[0].subject.rfc4514_string()}); give the key file made with it")
        return cls(key, certs[0], certs[1:])

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self._chain

    @property
    def agency_code(self) -> str | None:
        """The agency code the certificate names, or None if it names none."""
        return self._agency_code

    @property
    def signature_method(self) -> SignatureMethod:
        return self._method

    def sign(self, data: bytes, *, signature_method: SignatureMethod | None = None,
             digest_method: DigestAlgorithm | None = None) -> bytes:
        """Sign an edXML packet; return the signed bytes.

        `signature_method`/`digest_method` override the algorithms. They exist for
        interop and for tests of the refusal paths (e.g. RSA-SHA1 with SHA-1 digests,
        which the verifier refuses by default); Axis itself never passes them.
        """
        return self._sign(data, EDXML_PACKET, signature_method, digest_method)

    def sign_receipt(self, data: bytes, *, signature_method: SignatureMethod | None = None,
                     digest_method: DigestAlgorithm | None = None) -> bytes:
        """Sign an Axis receipt (`axis.receipt.build_receipt`): the signature becomes its last child."""
        return self._sign(data, AXIS_RECEIPT, signature_method, digest_method)

    def _sign(self, data: bytes, placement: Placement, signature_method: SignatureMethod | None,
              digest_method: DigestAlgorithm | None) -> bytes:
        root = parse_xml(data, placement.limits)
        parent = placement.signature_parent(root)
        _remove_old_signatures(parent)
        stray = next(root.iter(SIGNATURE), None)
        if stray is not None:
            raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                             f"line {stray.sourceline}: a Signature outside {placement.parent_name}; remove it "
                             f"before signing (a {placement.kind} carries exactly one signature, in "
                             f"{placement.parent_name})")
        method, digest = signature_method or self._method, digest_method or DigestAlgorithm.SHA256
        engine = self._engine or xmldsig.default()
        if not engine.can_sign(method, digest):
            engine = xmldsig.SIGNXML  # an unusual algorithm asked for by an interop or refusal test
        material = self._materials.get(engine.name)
        if material is None:
            material = self._materials[engine.name] = engine.signing_material(
                self._key, [self._certificate, *self._chain])
        signed = engine.sign(root, parent, placement.place_signature, material, method, digest)
        # What the Verifier would refuse as unsigned content (a comment inside a value, a processing
        # instruction) is refused here, so that a signed packet always verifies.
        check_covered(signed, parent.find(SIGNATURE))
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


_OLD_SIGNATURE_TAGS = (SIGNATURE, DIGITAL_SIGNATURE, edxml("Signature"))


def _remove_old_signatures(parent: etree._Element) -> None:
    """Drop old signatures and placeholders from the signature's parent, keeping the text around them."""
    for element in list(parent):
        if element.tag in _OLD_SIGNATURE_TAGS:
            # lxml removes an element's tail with it; keep non-blank text, and the
            # removed element's indentation in place of its predecessor's.
            previous = element.getprevious()
            before = (previous.tail if previous is not None else parent.text) or ""
            tail = element.tail or ""
            joined = tail if not before.strip() and not tail.strip() else before + tail
            if previous is not None:
                previous.tail = joined
            else:
                parent.text = joined
            parent.remove(element)
