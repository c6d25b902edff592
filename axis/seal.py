"""Delivery seals: proof, served with every delivery, that Axis routed it.

Whoever serves an agency its deliveries (a gateway, or anyone who can write the
store's tables) could hand it bytes Axis never accepted for it; only the
axis's signer process holds the hub's key (`axis.signer`). When intake accepts a packet, it signs a few bytes naming
the axis id, the SHA-256 of the body and every recipient it routes the packet
to (`ax-seal`; the store keeps it with the document), and the gateway serves it
with the recipients (`ax-seal-to`) and the hub's certificate (`ax-seal-cert`).
The agency's SDK checks, before it stores anything, that the certificate chains
to its trusted roots and names the hub (AXIS), that its own code is among the
sealed recipients, and that the seal is the hub's signature over this axis id,
these bytes and that list. A delivery that fails is refused with AX411
UNSEALED_DELIVERY and never stored.

One seal per packet, not per delivery: a packet to ten agencies costs one
signature, not ten (per delivery, sealing was 4 % of the hub's work with ten
recipients). Raw ECDSA/RSA over a few hundred bytes, not XML-DSig: sealing and
checking each cost well under a millisecond (docs/architecture.md). The
certificate's chain is validated once per certificate and then re-checked at
most every `SealChecker.recheck` seconds, so revocation still takes effect.
"""
from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from axis import wire
from axis.refusals import Refusal, RefusalCode, RegistryError
from axis.trust import SigningKey, Verifier, load_certificate, load_private_key
from axis.trust.keys import sign_raw, verify_raw

_CONTEXT = b"axis-delivery-seal:2"
_MAX_CACHED = 16  # hub certificates remembered; there are one or two at a time (rotation)


def _sealed_bytes(axis_id: str, digest: str, recipients: str) -> bytes:
    return b"\n".join((_CONTEXT, axis_id.encode(), digest.encode(), recipients.encode()))


class SealCertificate:
    """The hub certificate a seal is checked with: stored nowhere, served with every delivery (`encoded`)."""

    def __init__(self, certificate: x509.Certificate) -> None:
        self.encoded = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
        self._key = certificate.public_key()

    def made(self, seal: str, axis_id: str, digest: str, recipients: str) -> bool:
        """Whether this certificate's key made `seal` (the `ax-seal` header) over this axis id, digest and
        recipient list: which certificate to serve with a packet sealed before `axis key rotate`."""
        if not isinstance(self._key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            return False
        try:
            verify_raw(self._key, base64.b64decode(seal, validate=True), _sealed_bytes(axis_id, digest, recipients))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    @classmethod
    def from_pem(cls, pem: bytes) -> SealCertificate:
        """From the PEM the axis's signer hands out (`AxisSigner.certificates()[0]`)."""
        return cls(x509.load_pem_x509_certificate(pem))


class Sealer:
    """The hub's side: seals packets with the hub's key (in the signer process: `axis.signer.LocalSigner`)."""

    def __init__(self, key: SigningKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = SealCertificate(certificate)

    @classmethod
    def from_files(cls, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str]) -> Sealer:
        return cls(load_private_key(key_path), load_certificate(cert_path))

    def seal(self, axis_id: str, recipients: Iterable[str], digest: str) -> dict[str, str]:
        """The headers that prove Axis routed these bytes under this axis id to each of `recipients`
        (the store keeps only `ax-seal`; the gateway serves the other two with it)."""
        if isinstance(recipients, str):
            raise TypeError("seal() takes the list of recipients, not one code")
        to = ",".join(sorted(set(recipients)))
        signature = sign_raw(self._key, _sealed_bytes(axis_id, digest, to))
        return {wire.H_SEAL: base64.b64encode(signature).decode("ascii"), wire.H_SEAL_TO: to,
                wire.H_SEAL_CERT: self.certificate.encoded}


class SealChecker:
    """The agency's side: checks a delivery's seal against the hub's certificate."""

    def __init__(self, verifier: Verifier, *, recheck: float = 300.0) -> None:
        self._verifier = verifier
        self.recheck = recheck
        self._keys: dict[str, tuple[ec.EllipticCurvePublicKey | rsa.RSAPublicKey, float]] = {}

    def check(self, headers: Mapping[str, str], axis_id: str, recipient: str, digest: str) -> None:
        """Return if Axis sealed this delivery of these bytes to `recipient`; else raise RegistryError(AX411)."""
        seal, certificate, to = headers.get(wire.H_SEAL), headers.get(wire.H_SEAL_CERT), headers.get(wire.H_SEAL_TO)
        if not seal or not certificate or to is None:
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                             f"delivery {axis_id} carries no seal ({wire.H_SEAL}): Axis did not route it; not stored")
        if recipient not in to.split(","):
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                                f"delivery {axis_id} is sealed for {to}, not for {recipient}; not stored")
        key = self._hub_key(certificate)
        data = _sealed_bytes(axis_id, digest, to)
        try:
            verify_raw(key, base64.b64decode(seal, validate=True), data)
        except (InvalidSignature, binascii.Error, ValueError):
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                             f"the seal of delivery {axis_id} is not Axis's seal over this axis id, recipient "
                             f"{recipient} and body; not stored") from None

    def _hub_key(self, certificate: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        now = time.monotonic()
        cached = self._keys.get(certificate)
        if cached is not None and now - cached[1] < self.recheck:
            return cached[0]
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(certificate, validate=True))
            code = self._verifier.check_certificate(cert)
        except Refusal as refusal:
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                             f"the seal's certificate is not acceptable: {refusal}") from None
        except (binascii.Error, ValueError) as exc:
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                                f"the seal's certificate cannot be read: {exc}") from None
        if code != wire.HUB_IDENTITY:
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                             f"the seal is made with the certificate of {code}, not of the hub ({wire.HUB_IDENTITY})")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise RegistryError(RefusalCode.UNSEALED_DELIVERY,
                                "the seal's certificate has neither an EC nor an RSA key")
        if len(self._keys) >= _MAX_CACHED:
            self._keys.clear()
        self._keys[certificate] = (key, now)
        return key
