"""How an agency code is bound to an X.509 certificate.

The agency code travels in the certificate subject as `organizationIdentifier`
(OID 2.5.4.97), the attribute ETSI EN 319 412-1 §5.1.4 defines for the
identifier of a legal person. Its value is the bare, canonical agency code
(`000.00.00.G22`, or a QĐ 20/2020 code such as `G09.01`), with no ETSI
`VATxx-`/`NTRxx-` prefix: no ETSI identity type names Vietnamese agency codes,
and a prefix would only be something to strip before comparing with
`From/OrganId`. The CN repeats the code for people reading the certificate; it
is informational, never read for trust.

Callers may rely on:
- `certificate_agency_code(cert)` returns the canonical code named by exactly
  one `organizationIdentifier` attribute, or raises
  `TrustError(CERT_NO_AGENCY_CODE)` (none, several, or not a valid code);
- `canonical_agency_code(text)` returns the canonical code or raises
  `PacketError(INVALID_AGENCY_CODE)`; strict mode only, because a certificate
  binds one exact routing key.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from axis.edxml.codes import parse_agency_code
from axis.refusals import PacketError, RefusalCode, TrustError

AGENCY_CODE_OID = NameOID.ORGANIZATION_IDENTIFIER  # 2.5.4.97


def canonical_agency_code(text: str) -> str:
    """The canonical form of an agency code, or `PacketError(INVALID_AGENCY_CODE)`."""
    return parse_agency_code(text).text


def agency_subject(code: str) -> x509.Name:
    """The subject Axis issues to an agency: C=VN, organizationIdentifier=CODE, CN=CODE."""
    code = canonical_agency_code(code)
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(AGENCY_CODE_OID, code),
        x509.NameAttribute(NameOID.COMMON_NAME, code),
    ])


def certificate_agency_code(cert: x509.Certificate) -> str:
    """The agency code a certificate is issued for; see the module docstring."""
    try:
        attributes = cert.subject.get_attributes_for_oid(AGENCY_CODE_OID)
    except ValueError as exc:  # an undecodable subject
        raise TrustError(RefusalCode.CERT_MALFORMED, f"the certificate subject cannot be read: {exc}") from None
    if not attributes:
        raise TrustError(RefusalCode.CERT_NO_AGENCY_CODE,
                         f"the certificate subject {_subject_text(cert)!r} has no organizationIdentifier "
                         "(2.5.4.97) naming the agency code")
    if len(attributes) > 1:
        raise TrustError(RefusalCode.CERT_NO_AGENCY_CODE,
                         f"the certificate subject names {len(attributes)} organizationIdentifier values; "
                         "an agency certificate names exactly one agency code")
    value = attributes[0].value
    if not isinstance(value, str):
        raise TrustError(RefusalCode.CERT_NO_AGENCY_CODE, "the organizationIdentifier is not a text value")
    try:
        return canonical_agency_code(value)
    except PacketError as exc:
        raise TrustError(RefusalCode.CERT_NO_AGENCY_CODE,
                         f"the organizationIdentifier {value!r} is not an agency code: {exc.detail}") from None


def _subject_text(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "<unreadable subject>"
