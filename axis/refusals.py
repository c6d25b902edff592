"""Stable refusal codes: the one table every part of Axis refuses with.

Modelled on sedex's receipt codes: a number that never changes meaning, a
symbolic name, and a human message saying what went wrong and what to do.
Adapters, the CLI, receipts and the docs (`docs/refusal-codes.md`) all use
this table; `tests/test_refusals.py` checks that the doc and the code agree.

Callers may rely on:
- `RefusalCode.X.number` and `.name` never changing once released;
- every exception Axis raises for bad input being a `Refusal` subclass whose
  `.code` is a `RefusalCode`, and whose `str()` starts with `AX<number>`.
"""
from __future__ import annotations

import enum


class RefusalCode(enum.Enum):
    """number, short name, what it means and what to do."""

    # 2xx: the envelope (bytes, XML, schema, fields)
    MALFORMED = (200, "The packet is not well-formed XML. Fix the XML at the line and column given.")
    FORBIDDEN_XML = (201, "The packet uses a DOCTYPE, DTD or entity declaration, which Axis never accepts. "
                          "Send plain XML without a DOCTYPE.")
    TOO_LARGE = (202, "The packet is larger than the configured size limit. Send smaller attachments "
                      "or ask the operator about the limit.")
    LIMIT_EXCEEDED = (203, "The packet exceeds a structural limit (nesting depth, text node size or element "
                           "count). Simplify the XML.")
    NOT_EDXML = (204, "The document is not an edXML packet in the QCVN 102:2016 namespace "
                      "(http://www.mic.gov.vn/TBT/QCVN_102_2016).")
    SCHEMA_INVALID = (205, "The packet does not follow the edXML schema. Fix the element named in the message.")
    INVALID_AGENCY_CODE = (206, "An agency code is neither a QCVN 102:2016 code (000.00.00.G22) nor a "
                                "QĐ 20/2020 code (at most 35 characters of .0-9A-Z).")
    INVALID_FIELD = (207, "A field has a value the standard does not allow (date format, code list). "
                          "Fix the field named in the message.")

    # 3xx: signature and certificate
    SIGNATURE_MISSING = (300, "The packet carries no XML signature. Sign it with the agency key "
                              "(axis packet sign).")
    SIGNATURE_INVALID = (301, "The XML signature does not verify: the packet was changed after signing, or "
                              "the signature is broken. Re-sign the unchanged packet.")
    SIGNATURE_MISPLACED = (302, "The signature is not where the standard puts it (one enveloped signature "
                                "inside edXMLHeader, Reference URI=\"\"). Re-sign with a conforming signer.")
    WEAK_ALGORITHM = (303, "The packet is signed with SHA-1, which Axis refuses unless the operator allows it "
                           "for this agency. Re-sign with RSA-SHA256 or ECDSA-P256-SHA256.")
    ALGORITHM_NOT_ALLOWED = (304, "The signature or digest algorithm is not one Axis accepts "
                                  "(RSA-SHA256, ECDSA-SHA256).")
    UNSIGNED_CONTENT = (305, "The packet holds content its signature does not cover (a comment inside a text "
                             "value, a processing instruction, or anything in the Signature besides SignedInfo, "
                             "SignatureValue, X509Data and KeyValue). Remove it and re-sign.")
    CERT_MALFORMED = (310, "The signer's certificate in KeyInfo cannot be read. Embed the full "
                           "X.509 certificate (base64 DER).")
    CERT_UNTRUSTED = (311, "The signer's certificate does not chain to a trusted root. Use a certificate "
                           "from a CA the axis trusts.")
    CERT_EXPIRED = (312, "The signer's certificate is expired or not yet valid. Renew the certificate.")
    CERT_REVOKED = (313, "The signer's certificate has been revoked. Use a current certificate.")
    CERT_KEY_USAGE = (314, "The signer's certificate is not allowed to sign (KeyUsage digitalSignature "
                           "missing). Use a signing certificate.")
    CERT_NO_AGENCY_CODE = (315, "The signer's certificate names no agency code. Use a certificate issued "
                                "for the agency.")
    SIGNER_NOT_SENDER = (316, "The packet is signed by another agency than its sender (From/OrganId). "
                              "Sign with the sending agency's own key.")
    CRL_INVALID = (317, "The revocation list is unreadable, not signed by the CA, or out of date. "
                        "The operator must publish a fresh CRL.")

    # 4xx: registry and business rules (the hub)
    UNKNOWN_SENDER = (400, "The sending agency is not registered on the axis.")
    SENDER_SUSPENDED = (401, "The sending agency is suspended on the axis.")
    UNKNOWN_RECIPIENT = (402, "A recipient agency is not registered on the axis.")
    RECIPIENT_SUSPENDED = (403, "A recipient agency is suspended on the axis.")
    CERT_NOT_REGISTERED = (404, "The signer's certificate is not registered for the sending agency. "
                                "Ask the operator to register it (axis cert add).")
    UNKNOWN_DOCUMENT = (405, "The status packet answers a document the axis does not know.")
    NOT_A_RECIPIENT = (406, "The status packet answers a document that was not delivered to its sender.")
    DUPLICATE = (407, "This document was already accepted; the first receipt is returned.")
    NOT_ALLOWED = (408, "This agency may not send this kind of packet.")
    STATUS_BEFORE_RECEIPT = (409, "A business status (01-06, 15, 16) is accepted only from a recipient whose delivery "
                                  "receipt for the document is recorded. Store the document (axis inbox pull) before "
                                  "sending its status.")
    CERT_WRONG_AGENCY = (410, "The signing certificate is issued for another agency than the one the adapter acts for. "
                              "Use the agency's own key and certificate.")
    UNSEALED_DELIVERY = (411, "A delivery carries no valid Axis seal (ax-seal), so Axis did not route it to this "
                              "agency. The SDK never stores it.")
    RECEIPT_MISMATCH = (412, "A receipt does not match what it answers (axis id, sender, recipient = signer, "
                             "digest). Nothing changes; the receipt is refused.")
    RECEIPT_REFUSED = (413, "A delivery receipt's signature or certificate does not verify (see the detail). Nothing "
                            "changes; the receipt is refused.")
    SENDER_UNKNOWN = (414, "A submission whose sender cannot be told (no verified signer, no registered claimed "
                           "sender). No receipt is sent; it is dead-lettered on axis.intake.")
    DEAD_LETTER_UNMATCHED = (415, "Retired: a dead letter that matched no delivery. Deliveries are no longer "
                                  "broker messages, so no dead letter is matched against them; not issued.")
    CALLER_NOT_SENDER = (416, "The packet's sender (From/OrganId, and its signer) is not the agency whose credential "
                              "submitted it. Submit each agency's packets with that agency's own credential.")

    # 5xx: delivery and internal
    DELIVERY_FAILED = (500, "The recipient could not take the document (its reason is in the detail); the delivery "
                            "is parked until the axis operator replays or purges it.")
    INTERNAL = (501, "An internal error stopped processing. Nothing was accepted; send the packet again.")

    def __init__(self, number: int, message: str) -> None:
        self.number = number
        self.message = message

    @property
    def label(self) -> str:
        """`AX301 SIGNATURE_INVALID`: how the code is shown to people."""
        return f"AX{self.number} {self.name}"

    @classmethod
    def from_number(cls, number: int) -> RefusalCode:
        for code in cls:
            if code.number == number:
                return code
        raise KeyError(number)


class Refusal(Exception):
    """Bad input, refused with a stable code. Never a crash, never a partial effect."""

    def __init__(self, code: RefusalCode, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code.label}: {detail or code.message}")

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code.number, "name": self.code.name,
                "message": self.code.message, "detail": self.detail}


class PacketError(Refusal):
    """The bytes are not an acceptable edXML packet (2xx)."""


class TrustError(Refusal):
    """The signature or the signer's certificate is not acceptable (3xx)."""


class RegistryError(Refusal):
    """The registry or a business rule refuses the packet (4xx)."""
