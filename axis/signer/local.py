"""`LocalSigner`: the axis key loaded in this process, behind the `AxisSigner` interface.

The signer process (`axis.signer.service`) answers every request with one of
these. Anything else that holds a `LocalSigner` holds the axis key in its own
memory: the hub with `workers=0` (tests, `axis demo`) and the operator's local
commands on the axis's machine do, knowingly; `axis serve` and `axis gateway`
never do (they talk to a signer process through `SignerClient`).

It signs exactly as `axis.trust.Signer` (receipts) and `axis.seal.Sealer`
(seals) do with the same key, and raises `SignerRefused` for input it cannot
sign, as the client does when the signer process refuses it. Immutable once
built; safe to share between threads.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography import x509

from axis.refusals import Refusal
from axis.seal import Sealer
from axis.signer.interface import SealRequest, SignerRefused, SignerStartError
from axis.trust import Signer, keys
from axis.trust.keys import SigningKey

# What the axis key's other signatures cover begins so: a delivery seal's bytes (axis/seal.py), and the
# canonical SignedInfo of a receipt's XML-DSig ("<"). `sign_bytes` refuses such data, so that raw
# signatures (audit checkpoints) can never be taken for a seal or a receipt.
_NOT_RAW = (b"axis-delivery-seal:", b"<")


class LocalSigner:
    """The axis key, its certificate and chain, in this process (see the module docstring)."""

    def __init__(self, key: SigningKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = ()) -> None:
        self._receipts = Signer(key, certificate, chain)
        self._seals = Sealer(key, certificate)
        self._key = key
        self._pems = [keys.certificate_pem(each) for each in (certificate, *chain)]

    @classmethod
    def from_files(cls, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str]) -> LocalSigner:
        """Load the PEM key and the PEM certificate file (leaf first, then its chain); SignerStartError
        (one line naming the file) when either cannot be used."""
        try:
            certs = keys.load_certificates(cert_path)
            return cls(keys.load_private_key(key_path), certs[0], certs[1:])
        except ValueError as exc:
            raise SignerStartError(f"cannot use the axis key {key_path} with {cert_path}: {exc}") from None

    def sign_receipts(self, receipts: Sequence[bytes]) -> list[bytes]:
        signed = []
        for index, receipt in enumerate(receipts):
            try:
                signed.append(self._receipts.sign_receipt(receipt))
            except Refusal as refusal:
                raise SignerRefused(f"receipt #{index + 1} of {len(receipts)} cannot be signed: {refusal}") from None
        return signed

    def sign_and_seal(self, receipts: Sequence[bytes],
                      packets: Sequence[SealRequest]) -> tuple[list[bytes], list[dict[str, str]]]:
        return self.sign_receipts(receipts), self.seal_many(packets)

    def seal_many(self, packets: Sequence[SealRequest]) -> list[dict[str, str]]:
        return [self._seals.seal(axis_id, recipients, digest) for axis_id, recipients, digest in packets]

    def seal(self, axis_id: str, recipients: Sequence[str], digest: str) -> dict[str, str]:
        return self._seals.seal(axis_id, recipients, digest)

    def sign_bytes(self, data: bytes) -> bytes:
        data = bytes(data)
        if data.startswith(_NOT_RAW):
            raise SignerRefused("sign_bytes does not sign data beginning with '<' or 'axis-delivery-seal:' (what "
                                "the axis key's receipts and seals sign); give the data a prefix of its own")
        return keys.sign_raw(self._key, data)

    def certificates(self) -> list[bytes]:
        return list(self._pems)
