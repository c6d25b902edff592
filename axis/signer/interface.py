"""What code that needs the axis key's signature may ask for: `AxisSigner`, and the errors it raises.

The axis key (the `AXIS` certificate's) signs intake, error and Axis-vouched
delivery receipts, seals deliveries and will sign the audit log's checkpoints.
Code that needs one of those signatures holds an `AxisSigner`, never the key:
in `axis serve` and `axis gateway` it is a `SignerClient` talking to the
signer process over a local socket (`axis.signer.client`); only the signer
process (and, by choice, an in-process `LocalSigner`) holds the key.

Every method is blocking (call it from a thread, e.g. `asyncio.to_thread`, on
an event loop) and may be called from several threads at once. What callers
may rely on, whichever implementation they hold:

- `sign_receipts(receipts)`: one signed receipt per unsigned one, in order,
  byte for byte what `axis.trust.Signer.sign_receipt` makes with the axis key
  (an enveloped XML-DSig, its last child, with the certificate and chain in
  KeyInfo): `Verifier.verify_receipt` and `xmlsec1 --verify` accept them.
  The whole batch is signed, or `SignerRefused` names why not (an input
  `build_receipt` did not make);
- `seal_many(packets)`: for each `(axis_id, recipients, digest)`, exactly the
  headers `axis.seal.Sealer.seal` returns (`ax-seal`, `ax-seal-to`,
  `ax-seal-cert`); `seal(...)` is one of them;
- `sign_and_seal(receipts, packets)`: `(sign_receipts(receipts),
  seal_many(packets))` in one request (intake signs and seals each batch:
  one round trip to the signer instead of two); all of it, or the error;
- `sign_bytes(data)`: a signature by the axis key over `data` with SHA-256,
  RSA PKCS#1 v1.5 or ECDSA (DER) by the key's type, which
  `openssl dgst -sha256 -verify pub.pem -signature sig data` accepts. Data
  that begins with `<` or `axis-delivery-seal:` is refused (`SignerRefused`):
  that is what the key's receipts and seals sign, and a raw signature must
  never pass for one of them; give the data a prefix of its own
  (`axis-checkpoint:1` ...);
- `certificates()`: the PEM of the axis certificate, then its chain, as the
  signer loaded them; a verifier checks a `sign_bytes` signature with the
  first one's public key;
- errors: `SignerUnavailable` when no answer came (no signer listens, it
  died or was restarted during the call, it did not answer in time): the
  same call may succeed later, and the retry policy (`axis/retry.py`)
  treats it as a passing outage; `SignerRefused` when the signer answered
  that it will not do this request (malformed, too large, input it cannot
  sign, a caller of another user): repeating it will not help.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# (axis_id, recipients, digest): what one delivery seal covers (see axis/seal.py).
SealRequest = tuple[str, Sequence[str], str]


class AxisSigner(Protocol):
    """The narrow interface to the axis key; see the module docstring for what each method promises."""

    def sign_receipts(self, receipts: Sequence[bytes]) -> list[bytes]: ...

    def seal_many(self, packets: Sequence[SealRequest]) -> list[dict[str, str]]: ...

    def sign_and_seal(self, receipts: Sequence[bytes],
                      packets: Sequence[SealRequest]) -> tuple[list[bytes], list[dict[str, str]]]: ...

    def seal(self, axis_id: str, recipients: Sequence[str], digest: str) -> dict[str, str]: ...

    def sign_bytes(self, data: bytes) -> bytes: ...

    def certificates(self) -> list[bytes]: ...


class SignerError(Exception):
    """Something about the axis's signer went wrong; the message is one line saying what to do."""


class SignerUnavailable(SignerError):
    """No answer from the signer (not listening, died, restarted, too slow): the same call may succeed later."""


class SignerRefused(SignerError):
    """The signer answered that it will not do this request; repeating it will not help."""


class SignerStartError(SignerError):
    """The signer cannot start as configured (its key, its certificate, its socket's folder)."""
