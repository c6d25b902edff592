"""Verifying signed edXML packets (and Axis receipts): signature, chain, revocation, signer = sender.

A `Verifier` is built once from the trusted roots and CRLs (parsed once) and
shared between threads. `verify(data)` either returns a `VerificationResult`
or raises a `Refusal`: `PacketError` (2xx) when the bytes are not an edXML
packet, `TrustError` (3xx) for everything about the signature. Nothing else,
for any input. The checks run in this order; the first failure decides:

 1. parse (`axis.edxml.safe.parse_xml`)                     MALFORMED, FORBIDDEN_XML, TOO_LARGE, ...
 2. one edXML/edXMLEnvelope/edXMLHeader                     NOT_EDXML; SIGNATURE_MISPLACED if repeated
 3. exactly one ds:Signature, a child of edXMLHeader        SIGNATURE_MISSING, SIGNATURE_MISPLACED
    (a Signature element in another namespace, as the
    national SDK samples have: SIGNATURE_MISPLACED)
 3b. nothing the signature does not cover: a comment inside
    a text value, a processing instruction, anything in the
    Signature besides SignedInfo, SignatureValue, KeyInfo/
    X509Data and KeyInfo/KeyValue (`coverage.check_covered`:
    every packet and receipt, whichever engine, before any
    value is read from the tree)                           UNSIGNED_CONTENT
 4. SignedInfo: only XML-DSig elements; one Reference,
    URI="", first transform enveloped-signature            SIGNATURE_INVALID, SIGNATURE_MISPLACED
 5. SignatureMethod RSA-SHA256 / ECDSA-SHA256 and DigestMethod
    SHA-256 (SHA-1 variants only for allowed senders), then
    the C14N method and transforms (W3C C14N URIs only)     ALGORITHM_NOT_ALLOWED, WEAK_ALGORITHM
 6. the certificates in KeyInfo/X509Data                   CERT_MALFORMED
 7. the signer's certificate (cached, see below):
    signed with SHA-1                                      WEAK_ALGORITHM
    key not RSA >= 2048 / EC P-256                         ALGORITHM_NOT_ALLOWED
    no path to a configured root                           CERT_UNTRUSTED
    a certificate on the path outside its validity         CERT_EXPIRED
    a CA certificate, or no KeyUsage digitalSignature      CERT_KEY_USAGE
    for each certificate on the path, leaf first: its
    issuer's CRL not signed by it, past nextUpdate, with
    critical extensions (or none, with require_crl)        CRL_INVALID
    its serial on that CRL, revoked at or before the clock CERT_REVOKED
    no organizationIdentifier agency code                  CERT_NO_AGENCY_CODE
 8. signature value and digest (the XML-DSig engine,
    `xmldsig`, with the key of the certificate validated
    above and only the allowed transforms)                 SIGNATURE_INVALID
 9. From/OrganId of the SIGNED tree: exactly one, and equal
    to the certificate's code                              SIGNER_NOT_SENDER
    (for a SHA-1 signature, that signed sender allowed)    WEAK_ALGORITHM

`verify_receipt(data)` runs the same checks on an Axis receipt
(`placement.AXIS_RECEIPT`): the signature is a child of `Receipt`, the signer
is named by its `Issuer`, and SHA-1 is never accepted.

Why certificates are validated here and not by the XML-DSig library: signxml
would rebuild and re-check the chain on every packet (and, given no CA file, fall back to
the system store). Here `cryptography.x509.verification` does RFC 5280 path
building (CA constraints, path length, validity of every certificate on the
path) against the configured roots only, with extension policies that accept
what agency certificates carry (a critical CertificatePolicies), and our own
code adds the checks it lacks or that need their own refusal codes: KeyUsage,
CRLs, the agency code. The verdict is cached per set of presented
certificates (SHA-256 of their DER) until the first notAfter on the path or
the CRLs' nextUpdate, and all verdicts are dropped when `replace_crls`
installs new CRLs; failures are never cached. The engine then gets the
validated leaf, so per packet the cost is a base64 decode and hash of the
certificate, the signature math and c14n.

Callers must use only `VerificationResult.signed_root`: the tree as the
signature covers it (the packet without its Signature, which the enveloped
transform removes, and without comments, which a URI="" reference never
covers and which could split a text node). `verify(root)` takes the tree over:
the engine may return that very tree, changed, or a new one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod
from signxml.algorithms import CanonicalizationMethod, SignatureConstructionMethod
from signxml.exceptions import SignXMLException

from axis.edxml.codes import parse_agency_code
from axis.edxml.safe import decode_base64, parse_xml
from axis.refusals import PacketError, RefusalCode, TrustError
from axis.trust import keys, xmldsig
from axis.trust.coverage import check_covered
from axis.trust.identity import certificate_agency_code
from axis.trust.placement import AXIS_RECEIPT, DIGITAL_SIGNATURE, DS_NS, EDXML_PACKET, SIGNATURE, Placement, ds
from axis.trust.xmldsig import SHA1_SIGNATURE_METHODS, STRONG_SIGNATURE_METHODS, Algorithms

_C14N_URIS = frozenset(method.value for method in CanonicalizationMethod)
ENVELOPED = SignatureConstructionMethod.enveloped.value
_SIGNED_INFO_NAMESPACES = frozenset({DS_NS, "http://www.w3.org/2001/10/xml-exc-c14n#"})  # ds:, ec:InclusiveNamespaces
DEFAULT_CACHE_SIZE = 4096
MAX_CHAIN_DEPTH = 4
# A leaf and its intermediates; more is no real chain, only work for path building.
MAX_PRESENTED_CERTIFICATES = 8

# Real agency certificates often carry a critical CertificatePolicies extension,
# which cryptography's defaults reject as "unaccounted-for" (pyca/cryptography#14850).
# KeyUsage, EKU and the rest are checked below, with refusal codes of their own.
_EE_POLICY = ExtensionPolicy.permit_all().may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.CertificatePolicies, Criticality.AGNOSTIC, None)


@dataclass(frozen=True)
class VerificationResult:
    """What a verified packet proves. Read packet fields from `signed_root` only."""

    signed_root: etree._Element        # the tree as the signature covers it (see the module docstring)
    signer_code: str                   # the agency code of the certificate = From/OrganId
    certificate: x509.Certificate      # the signer's certificate, validated
    fingerprint: str                   # SHA-256 of its DER, lower-case hex
    subject: str                       # RFC 4514
    serial: int
    not_before: dt.datetime            # UTC
    not_after: dt.datetime             # UTC
    signature_algorithm: str           # XML-DSig URI, e.g. ...xmldsig-more#ecdsa-sha256
    digest_algorithm: str              # XML-DSig URI, e.g. ...xmlenc#sha256
    verified_at: dt.datetime           # UTC, the verifier's clock


@dataclass(frozen=True)
class _Shape:
    """What the (still unverified) SignedInfo declares; its form is checked, its algorithms not yet."""

    signature_method_uri: str | None
    digest_method_uri: str | None
    c14n_uri: str | None
    extra_transforms: tuple[str | None, ...]   # after enveloped-signature
    default_namespace: bool                    # <SignedInfo> unprefixed, as xmlsec1 / Java SDKs write it


@dataclass(frozen=True)
class _Verdict:
    """A validated signer certificate, valid for packets verified in [valid_from, valid_until]."""

    certificate: x509.Certificate
    fingerprint: str
    subject: str
    agency_code: str
    valid_from: dt.datetime
    valid_until: dt.datetime


class _VerdictCache:
    """A small thread-safe LRU of chain verdicts. Only successes are cached."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[bytes, ...], _Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, ...]) -> _Verdict | None:
        with self._lock:
            verdict = self._entries.get(key)
            if verdict is not None:
                self._entries.move_to_end(key)
            return verdict

    def put(self, key: tuple[bytes, ...], verdict: _Verdict) -> None:
        with self._lock:
            self._entries[key] = verdict
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def drop(self, key: tuple[bytes, ...]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class _RevocationState:
    """CRLs by issuer name, and the verdicts computed with them. Swapped as one object."""

    crls: dict[x509.Name, tuple[x509.CertificateRevocationList, ...]]
    cache: _VerdictCache


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Verifier:
    """Verifies packets against fixed trusted roots and CRLs. Build once, share between threads."""

    def __init__(
        self,
        trust_roots: Iterable[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList] = (),
        *,
        allow_sha1_for: frozenset[str] = frozenset(),
        clock: Callable[[], dt.datetime] | None = None,
        require_crl: bool = False,
        lenient_codes: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
        engine: xmldsig.Engine | None = None,
    ) -> None:
        """`trust_roots`: the CA certificates chains must end in (never a system store).

        `crls`: full CRLs of those CAs (or of intermediates). An issuer without a
        CRL is not revocation-checked unless `require_crl`, which refuses it.
        `allow_sha1_for`: agency codes whose SHA-1 signatures (RSA-SHA1 /
        ECDSA-SHA1, SHA-1 digests) are accepted. `clock` returns the aware UTC
        time to verify at (tests); default now. `lenient_codes`: read the sender
        as `parse_agency_code(..., lenient=True)` does (`28.22.H17` is
        `000.28.22.H17`) before comparing it with the certificate's code, which
        is always strict. `engine`: the XML-DSig engine (`axis.trust.xmldsig`);
        default: the process's, at each call.
        """
        roots = list(trust_roots)
        if not roots:
            raise ValueError("no trusted root certificates given; a Verifier never falls back to a system store")
        for root in roots:
            try:
                constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
            except (x509.ExtensionNotFound, ValueError):
                constraints = None
            if constraints is None or not constraints.ca:
                raise ValueError(f"trusted root {root.subject.rfc4514_string()!r} is not a CA certificate "
                                 "(BasicConstraints ca=TRUE)")
        self._roots = tuple(roots)
        self._store = Store(roots)
        allowed = set()
        for code in allow_sha1_for:
            try:
                allowed.add(parse_agency_code(code).text)
            except PacketError as exc:
                raise ValueError(f"allow_sha1_for: {exc.detail}") from None
        self._allow_sha1_for = frozenset(allowed)
        self._clock = clock or _utcnow
        self._require_crl = require_crl
        self._lenient_codes = lenient_codes
        self._cache_size = cache_size
        self._engine = engine
        self._state = self._revocation_state(crls)

    @classmethod
    def from_files(
        cls,
        trust_pem: str | os.PathLike[str],
        crl_pem: str | os.PathLike[str] | None = None,
        *,
        allow_sha1_for: frozenset[str] = frozenset(),
        clock: Callable[[], dt.datetime] | None = None,
        require_crl: bool = False,
        lenient_codes: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
        engine: xmldsig.Engine | None = None,
    ) -> Verifier:
        """Roots from a PEM bundle, CRLs from a PEM file (one or more CRLs); options as for `__init__`."""
        roots = keys.load_certificates(trust_pem)
        crls = keys.load_crls(crl_pem) if crl_pem is not None else ()
        return cls(roots, crls, allow_sha1_for=allow_sha1_for, clock=clock, require_crl=require_crl,
                   lenient_codes=lenient_codes, cache_size=cache_size, engine=engine)

    # ------------------------------------------------------------ configuration

    @property
    def trust_roots(self) -> tuple[x509.Certificate, ...]:
        return self._roots

    @property
    def allow_sha1_for(self) -> frozenset[str]:
        return self._allow_sha1_for

    def replace_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> None:
        """Install new CRLs; every cached certificate verdict is dropped with the old ones."""
        self._state = self._revocation_state(crls)

    def _revocation_state(self, crls: Iterable[x509.CertificateRevocationList]) -> _RevocationState:
        by_issuer: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        for crl in crls:
            by_issuer.setdefault(crl.issuer, []).append(crl)
        return _RevocationState({name: tuple(found) for name, found in by_issuer.items()},
                                _VerdictCache(self._cache_size))

    def check_certificate(self, certificate: x509.Certificate, chain: Iterable[x509.Certificate] = ()) -> str:
        """The agency code `certificate` is issued for, if a signature made with it would verify now:
        it chains to a trusted root, is valid and not revoked (else the TrustError a packet would get).
        Verdicts are cached as for signatures, so checking the same certificate again costs a hash."""
        now = self._clock().astimezone(dt.UTC)
        ders = [cert.public_bytes(serialization.Encoding.DER) for cert in (certificate, *chain)]
        return self._verdict(ders, now).agency_code

    # ------------------------------------------------------------------ verify

    def verify(self, data: bytes | etree._Element) -> VerificationResult:
        """Verify one edXML packet (its bytes, or a root from `parse_xml`, which verify takes over)."""
        return self._verify(data, EDXML_PACKET)

    def verify_receipt(self, data: bytes | etree._Element) -> VerificationResult:
        """Verify one Axis receipt: the same checks, the signature being the last child of
        `Receipt` and its `Issuer` the signer. SHA-1 is never accepted on a receipt."""
        return self._verify(data, AXIS_RECEIPT)

    def _verify(self, data: bytes | etree._Element, placement: Placement) -> VerificationResult:
        now = self._clock()
        if now.tzinfo is None:
            raise TypeError("the Verifier's clock must return an aware datetime (UTC)")
        now = now.astimezone(dt.UTC)
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            root = parse_xml(data, placement.limits)
        elif isinstance(data, etree._Element):
            root, data = data, None
        else:
            raise TypeError(f"verify takes the bytes or an lxml root, not {type(data).__name__}")
        parent = placement.signature_parent(root)
        signature = _locate_signature(root, parent, placement)
        check_covered(root, signature)
        shape = self._check_algorithms(_inspect_signed_info(signature), root, placement)
        verdict = self._verdict(_presented_certificates(signature), now)
        signed_root = self._check_signature(data, root, signature, verdict, shape, placement, now)
        sender = self._canonical(placement.signed_sender(signed_root))
        if shape.sha1 and not self._sha1_allowed(sender, placement):
            raise TrustError(RefusalCode.WEAK_ALGORITHM,
                             f"signed with {_algorithm_names(shape)} and the signed {placement.sender_name} "
                             f"{sender!r} is not allowed to use SHA-1")
        if sender != verdict.agency_code:
            raise TrustError(RefusalCode.SIGNER_NOT_SENDER,
                             f"the {placement.kind} names {sender!r} ({placement.sender_name}) but is signed with "
                             f"the certificate of {verdict.agency_code!r} (serial "
                             f"{verdict.certificate.serial_number:x})")
        cert = verdict.certificate
        return VerificationResult(
            signed_root=signed_root,
            signer_code=verdict.agency_code,
            certificate=cert,
            fingerprint=verdict.fingerprint,
            subject=verdict.subject,
            serial=cert.serial_number,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            signature_algorithm=shape.signature_method.value,
            digest_algorithm=shape.digest_method.value,
            verified_at=now,
        )

    def _canonical(self, code: str) -> str:
        """The code as the registry spells it; text that is no code is returned as it is."""
        try:
            return parse_agency_code(code, lenient=self._lenient_codes).text
        except PacketError:
            return code

    def _sha1_allowed(self, code: str, placement: Placement) -> bool:
        return placement is EDXML_PACKET and code in self._allow_sha1_for

    # ------------------------------------------------------------- signature

    def _check_algorithms(self, shape: _Shape, root: etree._Element, placement: Placement) -> Algorithms:
        method = _enum(SignatureMethod, shape.signature_method_uri, "SignatureMethod")
        digest = _enum(DigestAlgorithm, shape.digest_method_uri, "DigestMethod")
        if method not in STRONG_SIGNATURE_METHODS | SHA1_SIGNATURE_METHODS:
            raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED,
                             f"SignatureMethod {shape.signature_method_uri} is not allowed "
                             "(RSA-SHA256 or ECDSA-SHA256)")
        if digest not in {DigestAlgorithm.SHA256, DigestAlgorithm.SHA1}:
            raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED,
                             f"DigestMethod {shape.digest_method_uri} is not allowed (SHA-256)")
        algorithms = Algorithms(method, digest, shape.default_namespace)
        if algorithms.sha1:
            # The unverified sender only opens the door; step 9 checks the signed one.
            claimed = self._canonical(placement.claimed_sender(root))
            if not self._sha1_allowed(claimed, placement):
                raise TrustError(RefusalCode.WEAK_ALGORITHM,
                                 f"signed with {_algorithm_names(algorithms)}; SHA-1 is refused unless the operator "
                                 f"allows it for the sending agency ({claimed or 'no ' + placement.sender_name} "
                                 f"is not allowed{'; never on receipts' if placement is AXIS_RECEIPT else ''})")
        if shape.c14n_uri not in _C14N_URIS:
            raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED,
                             f"CanonicalizationMethod {shape.c14n_uri!r} is not allowed")
        for extra in shape.extra_transforms:
            if extra not in _C14N_URIS:
                raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED,
                                 f"transform {extra!r} is not allowed (only enveloped-signature and C14N)")
        if len(shape.extra_transforms) > 1:
            raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED,
                             f"{1 + len(shape.extra_transforms)} transforms; at most enveloped-signature and one "
                             "C14N are allowed")
        return algorithms

    def _check_signature(self, data: bytes | None, root: etree._Element, signature: etree._Element,
                         verdict: _Verdict, algorithms: Algorithms, placement: Placement,
                         now: dt.datetime) -> etree._Element:
        engine = self._engine or xmldsig.default()
        return engine.verify(data, root, signature, verdict.certificate, verdict.fingerprint, algorithms,
                             placement, now)

    # ----------------------------------------------------------- certificate

    def _verdict(self, ders: list[bytes], now: dt.datetime) -> _Verdict:
        """The cached or freshly computed verdict for the certificates of one KeyInfo."""
        state = self._state
        hashes_ = tuple(hashlib.sha256(der).digest() for der in ders)
        verdict = state.cache.get(hashes_)
        if verdict is not None and verdict.valid_from <= now <= verdict.valid_until:
            return verdict
        if verdict is not None:
            state.cache.drop(hashes_)
        certs = [_load_certificate(der, f"X509Certificate #{i + 1}") for i, der in enumerate(ders)]
        index = _leaf_index(certs)
        leaf, others = certs[index], [cert for i, cert in enumerate(certs) if i != index]
        try:
            verdict = self._validate(leaf, others, hashes_[index].hex(), now, state)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise TrustError(RefusalCode.CERT_MALFORMED,
                             f"the certificate cannot be processed ({type(exc).__name__}: {exc})") from None
        state.cache.put(hashes_, verdict)
        return verdict

    def _validate(self, leaf: x509.Certificate, presented: list[x509.Certificate], fingerprint: str,
                  now: dt.datetime, state: _RevocationState) -> _Verdict:
        for cert in (leaf, *presented):
            algorithm = _signature_hash(cert)
            if isinstance(algorithm, (hashes.SHA1, hashes.MD5)):
                raise TrustError(RefusalCode.WEAK_ALGORITHM,
                                 f"certificate {_describe(cert)} is signed with {algorithm.name.upper()}; "
                                 "certificates must be signed with SHA-256 or stronger")
        _check_key(leaf)
        chain = self._path(leaf, presented, now)
        _check_leaf_usage(leaf)
        valid_until = min(cert.not_valid_after_utc for cert in chain)
        for cert, issuer in itertools.pairwise(chain):
            crl = self._crl_for(issuer, state, now)
            if crl is None:
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and entry.revocation_date_utc <= now:
                raise TrustError(RefusalCode.CERT_REVOKED,
                                 f"certificate {_describe(cert)} was revoked on "
                                 f"{entry.revocation_date_utc.isoformat()} (CRL of {issuer.subject.rfc4514_string()})")
            if entry is not None:
                # Revoked after the moment judged (an evidence bundle's signing time): good until then.
                valid_until = min(valid_until, entry.revocation_date_utc - dt.timedelta(microseconds=1))
            if crl.next_update_utc is not None:  # always: _crl_for refuses CRLs without one
                valid_until = min(valid_until, crl.next_update_utc)
        code = certificate_agency_code(leaf)
        return _Verdict(
            certificate=leaf,
            fingerprint=fingerprint,
            subject=leaf.subject.rfc4514_string(),
            agency_code=code,
            valid_from=max(cert.not_valid_before_utc for cert in chain),
            valid_until=valid_until,
        )

    def _path(self, leaf: x509.Certificate, presented: list[x509.Certificate],
              now: dt.datetime) -> list[x509.Certificate]:
        try:
            return self._build_path(leaf, presented, now)
        except VerificationError as exc:
            failure = str(exc)
        # Is the failure about time? Then the certificates still link up, signature by
        # signature, to a trusted root, and one of them is outside its validity now.
        for cert in self._linked_path(leaf, presented):
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                state = "not yet valid" if now < cert.not_valid_before_utc else "expired"
                raise TrustError(RefusalCode.CERT_EXPIRED,
                                 f"certificate {_describe(cert)} is {state} at {now.isoformat()} "
                                 f"(valid {cert.not_valid_before_utc.isoformat()} to "
                                 f"{cert.not_valid_after_utc.isoformat()})")
        raise TrustError(RefusalCode.CERT_UNTRUSTED,
                         f"certificate {_describe(leaf)} issued by {leaf.issuer.rfc4514_string()!r} does not chain "
                         f"to a trusted root ({failure})")

    def _linked_path(self, leaf: x509.Certificate, presented: list[x509.Certificate]) -> list[x509.Certificate]:
        """leaf → … → trusted root by issuer signatures alone (no time, no constraints), or []."""
        path, cert = [leaf], leaf
        for _ in range(MAX_CHAIN_DEPTH + 1):
            for root in self._roots:
                if _issued_by(cert, root):
                    return path if cert is root else [*path, root]
            issuer = next((c for c in presented if c not in path and _issued_by(cert, c)), None)
            if issuer is None:
                return []
            path.append(issuer)
            cert = issuer
        return []

    def _build_path(self, leaf: x509.Certificate, presented: list[x509.Certificate],
                    moment: dt.datetime) -> list[x509.Certificate]:
        verifier = (
            PolicyBuilder().store(self._store).time(moment).max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(ee_policy=_EE_POLICY, ca_policy=_CA_POLICY)
            .build_client_verifier()
        )
        return list(verifier.verify(leaf, presented).chain)

    def _crl_for(self, issuer: x509.Certificate, state: _RevocationState,
                 now: dt.datetime) -> x509.CertificateRevocationList | None:
        candidates = state.crls.get(issuer.subject, ())
        if not candidates:
            if self._require_crl:
                raise TrustError(RefusalCode.CRL_INVALID,
                                 f"no CRL is configured for {issuer.subject.rfc4514_string()!r} and revocation "
                                 "checking is required")
            return None
        genuine = [crl for crl in candidates if _signed_by(crl, issuer)]
        if not genuine:
            raise TrustError(RefusalCode.CRL_INVALID,
                             f"the CRL naming {issuer.subject.rfc4514_string()!r} as issuer is not signed by that CA")
        crl = max(genuine, key=crl_order)
        if crl.next_update_utc is None:
            raise TrustError(RefusalCode.CRL_INVALID,
                             f"the CRL of {issuer.subject.rfc4514_string()!r} has no nextUpdate")
        if now > crl.next_update_utc:
            raise TrustError(RefusalCode.CRL_INVALID,
                             f"the CRL of {issuer.subject.rfc4514_string()!r} expired at "
                             f"{crl.next_update_utc.isoformat()} (nextUpdate); publish a fresh one")
        critical = [ext.oid.dotted_string for ext in crl.extensions if ext.critical]
        if critical:
            raise TrustError(RefusalCode.CRL_INVALID,
                             f"the CRL of {issuer.subject.rfc4514_string()!r} has critical extensions "
                             f"{critical} (delta or partitioned CRLs are not supported); publish a full CRL")
        return crl


# ------------------------------------------------------------------ helpers

def _locate_signature(root: etree._Element, parent: etree._Element, placement: Placement) -> etree._Element:
    signatures = list(root.iter(SIGNATURE))
    where = placement.parent_name
    if not signatures:
        foreign = [el for el in root.iter("{*}Signature") if el.tag != SIGNATURE]
        if foreign:
            raise TrustError(RefusalCode.SIGNATURE_MISPLACED, _describe_foreign_signature(foreign[0]))
        placeholder = parent.find(DIGITAL_SIGNATURE)
        raise TrustError(RefusalCode.SIGNATURE_MISSING,
                         f"{where} holds only an empty DigitalSignature placeholder"
                         if placeholder is not None else
                         f"the {placement.kind} has no XML-DSig Signature element")
    if len(signatures) > 1:
        lines = ", ".join(str(sig.sourceline) for sig in signatures)
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"the {placement.kind} carries {len(signatures)} Signature elements (lines {lines}); "
                         f"exactly one enveloped signature in {where} is allowed")
    signature = signatures[0]
    if signature.getparent() is not parent:
        holder = signature.getparent()
        inside = etree.QName(holder).localname if holder is not None else "the document"
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"line {signature.sourceline}: the Signature is inside {inside}, not a child of {where}")
    return signature


def _describe_foreign_signature(element: etree._Element) -> str:
    namespace = etree.QName(element).namespace or "no namespace"
    notes = []
    method = next(element.iter("{*}SignatureMethod"), None)
    if method is not None and method.get("Algorithm"):
        notes.append(f"it declares {method.get('Algorithm')}")
    cert = next(element.iter("{*}X509Certificate"), None)
    if cert is not None:
        text = (cert.text or "").strip()
        try:
            x509.load_der_x509_certificate(decode_base64(text))
        except ValueError:
            notes.append(f"its X509Certificate ({len(text)} characters) is not a readable certificate")
    extra = ("; " + " and ".join(notes)) if notes else ""
    return (f"line {element.sourceline}: the Signature element is in namespace {namespace!r}, not the XML-DSig "
            f"namespace {DS_NS}, so it is not an XML signature{extra}. Re-sign with RSA-SHA256 or "
            "ECDSA-SHA256 and embed the full certificate")


def _only(parent: etree._Element, tag: str, what: str, code: RefusalCode) -> etree._Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise TrustError(code, f"SignedInfo must have exactly one {what}, found {len(found)}")
    return found[0]


def _inspect_signed_info(signature: etree._Element) -> _Shape:
    signed_info = _only(signature, ds("SignedInfo"), "SignedInfo", RefusalCode.SIGNATURE_INVALID)
    # What is checked here must be what the engine verifies: an element moved out of the
    # XML-DSig namespace (xmlns="") would be invisible here yet, for a default-namespace
    # Signature, present in the SignedInfo the engine verifies (see xmldsig._XMLVerifier).
    for element in signed_info.iter(etree.Element):
        if etree.QName(element).namespace not in _SIGNED_INFO_NAMESPACES:
            raise TrustError(RefusalCode.SIGNATURE_INVALID,
                             f"line {element.sourceline}: SignedInfo contains {element.tag!r}, outside the "
                             "XML-DSig namespace")
    c14n = _only(signed_info, ds("CanonicalizationMethod"), "CanonicalizationMethod", RefusalCode.SIGNATURE_INVALID)
    method = _only(signed_info, ds("SignatureMethod"), "SignatureMethod", RefusalCode.SIGNATURE_INVALID)
    references = signed_info.findall(ds("Reference"))
    if len(references) != 1:
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"SignedInfo has {len(references)} References; exactly one, with URI=\"\", is allowed")
    reference = references[0]
    uri = reference.get("URI")
    if uri != "":
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"the Reference URI is {uri!r}; it must be \"\" (the whole packet)"
                         if uri is not None else "the Reference has no URI; it must be URI=\"\" (the whole packet)")
    transforms = [t.get("Algorithm") for t in reference.findall(f"{ds('Transforms')}/{ds('Transform')}")]
    if not transforms or transforms[0] != ENVELOPED:
        raise TrustError(RefusalCode.SIGNATURE_MISPLACED,
                         f"the Reference transforms are {transforms}; the first must be {ENVELOPED} "
                         "(an enveloped signature)")
    digest = _only(reference, ds("DigestMethod"), "DigestMethod", RefusalCode.SIGNATURE_INVALID)
    return _Shape(method.get("Algorithm"), digest.get("Algorithm"), c14n.get("Algorithm"), tuple(transforms[1:]),
                  default_namespace=signed_info.prefix is None)


def _enum(kind, uri: str | None, what: str):
    try:
        return kind(uri)
    except (ValueError, SignXMLException):
        raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED, f"{what} {uri!r} is not a supported algorithm") from None


def _algorithm_names(shape: Algorithms) -> str:
    return f"{shape.signature_method.name} / digest {shape.digest_method.name}"


def _presented_certificates(signature: etree._Element) -> list[bytes]:
    """The DER of every certificate in KeyInfo/X509Data, in document order."""
    texts = [el.text or "" for el in signature.iterfind(
        f"{ds('KeyInfo')}/{ds('X509Data')}/{ds('X509Certificate')}")]
    if not texts:
        raise TrustError(RefusalCode.CERT_MALFORMED,
                         "KeyInfo/X509Data carries no X509Certificate (subject names or key values are not enough)")
    if len(texts) > MAX_PRESENTED_CERTIFICATES:
        raise TrustError(RefusalCode.CERT_MALFORMED,
                         f"KeyInfo/X509Data carries {len(texts)} certificates; at most "
                         f"{MAX_PRESENTED_CERTIFICATES} (the signer's and its intermediates) are accepted")
    ders = []
    for index, text in enumerate(texts):
        try:
            # XML whitespace only: another Unicode space would ride along in KeyInfo, unsigned, to every
            # recipient (any other text in KeyInfo is refused, AX305).
            ders.append(decode_base64(text))
        except ValueError:
            raise TrustError(RefusalCode.CERT_MALFORMED,
                             f"X509Certificate #{index + 1} is not valid base64") from None
    return ders


def _leaf_index(certs: list[x509.Certificate]) -> int:
    """Which certificate signed: X509Data has no order (XML-DSig §4.5.4), so the one that
    is not a CA; when that is ambiguous, the first, where every signer writes it."""
    if len(certs) == 1:
        return 0
    non_ca = [i for i, cert in enumerate(certs) if not _is_ca(cert)]
    return non_ca[0] if len(non_ca) == 1 else 0


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _load_certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses lazily: touch what validation reads, so a malformed
        # extension or name is reported here as CERT_MALFORMED.
        _ = cert.extensions, cert.subject.rfc4514_string(), cert.issuer, cert.public_key()
        _ = cert.not_valid_before_utc, cert.not_valid_after_utc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TrustError(RefusalCode.CERT_MALFORMED,
                         f"{what} ({len(der)} bytes of DER) cannot be read: {exc}") from None
    return cert


def _signature_hash(cert: x509.Certificate) -> hashes.HashAlgorithm | None:
    try:
        return cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None  # path validation refuses what it does not know


def _check_key(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= keys.MIN_RSA_BITS:
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    size = getattr(key, "key_size", "?")
    curve = getattr(getattr(key, "curve", None), "name", None)
    raise TrustError(RefusalCode.ALGORITHM_NOT_ALLOWED,
                     f"the signer's key is {type(key).__name__.lstrip('_')} "
                     f"{curve or str(size) + ' bits'}; Axis accepts RSA of at least "
                     f"{keys.MIN_RSA_BITS} bits or EC P-256")


def _check_leaf_usage(leaf: x509.Certificate) -> None:
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise TrustError(RefusalCode.CERT_KEY_USAGE,
                         f"certificate {_describe(leaf)} is a CA certificate; sign with an agency certificate")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise TrustError(RefusalCode.CERT_KEY_USAGE,
                         f"certificate {_describe(leaf)} has no KeyUsage extension; digitalSignature is required"
                         ) from None
    if not usage.digital_signature:
        raise TrustError(RefusalCode.CERT_KEY_USAGE,
                         f"certificate {_describe(leaf)} KeyUsage does not include digitalSignature")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):  # ValueError: the names differ
        return False
    return True


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(keys.issuer_public_key(issuer))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def crl_order(crl: x509.CertificateRevocationList) -> tuple[int, dt.datetime]:
    """Which of a CA's CRLs is the newest: the highest CRLNumber, then the latest thisUpdate."""
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        number = -1
    return number, crl.last_update_utc


def _describe(cert: x509.Certificate) -> str:
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = "<unreadable subject>"
    return f"{subject!r} (serial {cert.serial_number:x})"
