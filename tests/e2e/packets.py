"""The agencies of the end-to-end tests, their keys, and the signed packets they send.

`TestPKI` wraps a directory that the real `axis pki init` / `axis pki issue`
commands filled (see `conftest.e2e_pki`): `ca/` (ca.pem, ca.key.pem, crl.pem),
`keys/<CODE>.key.pem` and `keys/<CODE>.cert.pem` (EC P-256) for the hub and
every agency, and `other-ca/` (a root nobody trusts). Signers are built once
per key. Packets are signed with the library (`axis.trust.Signer`, the same
code `axis packet sign` runs) because the long runs need thousands of them.

A document's DocumentId is `<sender>,<today>,<number>/E2E` (`document_id()`),
so a test picks distinct numbers and knows every id in advance.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from axis import wire
from axis.edxml import Organization, SignerInfo, packet_to_bytes
from axis.edxml.compose import new_document, now_vietnam
from axis.trust import Signer, Verifier

G22, H41, H14, G17 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17"
H99 = "000.00.00.H99"  # never registered
HUB = wire.HUB_IDENTITY
AGENCIES = {G22: "Văn phòng Chính phủ", H41: "UBND Tỉnh Nghệ An", H14: "UBND Tỉnh Cao Bằng",
            G17: "Bộ Thông tin và Truyền thông"}
NOTATION = "E2E"
SUBJECT = "V/v thử nghiệm trục liên thông"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_id(sender: str, number: int) -> str:
    """The DocumentId `new_document` derives for a document numbered `number` today."""
    return f"{sender},{now_vietnam():%Y/%m/%d},{number}/{NOTATION}"


def unsigned_document(sender: str, recipients: list[str], number: int, *, priority: int = 0) -> bytes:
    packet = new_document(Organization(sender, organ_name=AGENCIES.get(sender, "?")),
                          [Organization(code) for code in recipients], code_number=str(number),
                          code_notation=NOTATION, subject=SUBJECT,
                          signer=SignerInfo(position="Thứ trưởng", full_name="Nguyễn Văn A"), priority=priority)
    return packet_to_bytes(packet)


@dataclass(frozen=True)
class TestPKI:
    directory: Path

    __test__ = False  # not a test class, whatever pytest thinks of the name

    @property
    def ca(self) -> Path:
        return self.directory / "ca"

    @property
    def other_ca(self) -> Path:
        return self.directory / "other-ca"

    def key(self, code: str) -> Path:
        return self.directory / "keys" / f"{code}.key.pem"

    def cert(self, code: str) -> Path:
        return self.directory / "keys" / f"{code}.cert.pem"

    @functools.cache  # noqa: B019 - one parsed key per agency for the whole session is the point
    def signer(self, code: str) -> Signer:
        return Signer.from_files(self.key(code), self.cert(code))

    @functools.cache  # noqa: B019
    def verifier(self) -> Verifier:
        return Verifier.from_files(self.ca / "ca.pem", self.ca / "crl.pem")

    def document(self, sender: str, recipients: list[str], number: int, *, priority: int = 0,
                 signed_by: str | None = None) -> bytes:
        """A document signed by `signed_by` (default: its sender)."""
        return self.signer(signed_by or sender).sign(unsigned_document(sender, recipients, number,
                                                                       priority=priority))


_MARKER = b"QVhJUy1MQVJHRS1NQVJLRVI="  # base64 of b"AXIS-LARGE-MARKER": where the attachment's base64 goes


def large_document(pki: TestPKI, sender: str, recipients: list[str], number: int, path: Path, *,
                   attachment_bytes: int) -> str:
    """Write to `path` a document signed by `sender` whose one attachment is `attachment_bytes` random bytes;
    return the SHA-256 of the signed file.

    The base64 text is made in chunks of random bytes (a multiple of 3 bytes each, so the chunks' base64
    joins into the whole's) and goes into the packet in place of a marker, so the attachment is never held
    decoded and encoded at once.
    """
    import base64

    from axis.edxml import Attachment
    from axis.edxml.model import SignerInfo as _SignerInfo

    attachment = Attachment(content_id="large-1", attachment_name="large.bin", content_type="application/octet-stream",
                            data=base64.b64decode(_MARKER))
    packet = new_document(Organization(sender, organ_name=AGENCIES.get(sender, "?")),
                          [Organization(code) for code in recipients], code_number=str(number),
                          code_notation=NOTATION, subject=SUBJECT,
                          signer=_SignerInfo(position="Thứ trưởng", full_name="Nguyễn Văn A"), attachments=[attachment])
    head, tail = packet_to_bytes(packet).split(_MARKER)
    encoded = bytearray(head)
    chunk = 3 * 1024 * 1024
    for start in range(0, attachment_bytes, chunk):
        encoded += base64.b64encode(os.urandom(min(chunk, attachment_bytes - start)))
    encoded += tail
    signed = pki.signer(sender).sign(bytes(encoded))
    del encoded
    path.write_bytes(signed)
    return hashlib.sha256(signed).hexdigest()
