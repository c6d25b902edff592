"""`SignerClient`: the `AxisSigner` that asks the signer process, over its Unix socket, and holds no key.

Each call opens one connection, sends one request for the whole batch, reads
one answer and closes: no connection outlives a call, so a restarted signer is
simply found again by the next call, and whichever of the signer's signing
processes is free takes it. A client is a socket path and a timeout: it
pickles, so the hub hands it to its worker processes, and it may be shared
between threads.

Errors (see `axis.signer.interface`): `SignerUnavailable` when no signer
listens at the path, the connection breaks (the signer died or was restarted
during the call) or no answer came within `timeout` seconds;
`SignerRefused` when the signer answered with an error, or with an answer
that does not fit the request.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from axis import wire
from axis.signer import protocol
from axis.signer.interface import SealRequest, SignerRefused, SignerUnavailable

DEFAULT_TIMEOUT = 30.0  # seconds; a batch of 200 RSA-3072 receipts takes ~0.2 s of one core


class SignerClient:
    """Asks the signer listening at `socket_path` (see the module docstring)."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SignerClient({str(self.socket_path)!r})"

    def sign_receipts(self, receipts: Sequence[bytes]) -> list[bytes]:
        if not receipts:
            return []
        _, blobs = self._call(protocol.request("sign_receipts", [bytes(r) for r in receipts]), "sign_receipts")
        if len(blobs) != len(receipts):
            raise SignerRefused(f"the signer at {self.socket_path} answered {len(blobs)} receipts for "
                                f"{len(receipts)}")
        return blobs

    def sign_and_seal(self, receipts: Sequence[bytes],
                      packets: Sequence[SealRequest]) -> tuple[list[bytes], list[dict[str, str]]]:
        if not packets:
            return self.sign_receipts(receipts), []
        if not receipts:
            return [], self.seal_many(packets)
        header, blobs = self._call(protocol.request("sign_receipts", [bytes(r) for r in receipts],
                                                    packets=_packets(packets)), "sign_receipts")
        if len(blobs) != len(receipts):
            raise SignerRefused(f"the signer at {self.socket_path} answered {len(blobs)} receipts for "
                                f"{len(receipts)}")
        return blobs, self._seals(header, packets)

    def seal_many(self, packets: Sequence[SealRequest]) -> list[dict[str, str]]:
        if not packets:
            return []
        header, _ = self._call(protocol.request("seal", packets=_packets(packets)), "seal")
        return self._seals(header, packets)

    def _seals(self, header: dict[str, Any], packets: Sequence[SealRequest]) -> list[dict[str, str]]:
        seals, certificate = header.get("seals"), header.get("certificate")
        if (not isinstance(seals, list) or len(seals) != len(packets) or not isinstance(certificate, str)
                or not all(isinstance(s, list) and len(s) == 2 and all(isinstance(v, str) for v in s) for s in seals)):
            raise SignerRefused(f"the signer at {self.socket_path} did not answer one seal per packet")
        return [{wire.H_SEAL: seal, wire.H_SEAL_TO: to, wire.H_SEAL_CERT: certificate} for seal, to in seals]

    def seal(self, axis_id: str, recipients: Sequence[str], digest: str) -> dict[str, str]:
        return self.seal_many([(axis_id, recipients, digest)])[0]

    def sign_bytes(self, data: bytes) -> bytes:
        _, blobs = self._call(protocol.request("sign_bytes", [bytes(data)]), "sign_bytes")
        if len(blobs) != 1:
            raise SignerRefused(f"the signer at {self.socket_path} did not answer one signature")
        return blobs[0]

    def certificates(self) -> list[bytes]:
        _, blobs = self._call(protocol.request("certificates"), "certificates")
        if not blobs:
            raise SignerRefused(f"the signer at {self.socket_path} answered no certificate")
        return blobs

    def _call(self, request: bytes, what: str) -> tuple[dict[str, Any], list[bytes]]:
        if len(request) > protocol.MAX_REQUEST_BYTES:
            raise SignerRefused(f"a {what} request of {len(request)} bytes is larger than the signer takes "
                                f"({protocol.MAX_REQUEST_BYTES}); send smaller batches")
        where = self.socket_path
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(where))
            except TimeoutError:
                raise SignerUnavailable(f"the signer at {where} did not take the connection within "
                                        f"{self.timeout:g} s") from None
            except OSError as exc:
                raise SignerUnavailable(f"no signer answers at {where} ({exc.strerror or exc}); is the `axis serve`, "
                                        "`axis gateway` or `axis signer serve` that owns it running?") from None
            sent: OSError | None = None
            try:
                sock.sendall(request)
            except TimeoutError:
                raise SignerUnavailable(f"the signer at {where} did not read {what} within {self.timeout:g} s") \
                    from None
            except OSError as exc:  # it may have closed early with an error answer: read it
                sent = exc
            try:
                header, blobs = protocol.read_frame(sock, protocol.MAX_ANSWER_BYTES)
            except TimeoutError:
                raise SignerUnavailable(f"the signer at {where} did not answer {what} within {self.timeout:g} s") \
                    from None
            except (protocol.Closed, OSError) as exc:
                raise SignerUnavailable(f"the signer at {where} went away during {what} "
                                        f"({sent or exc}); it is restarted by its owner, try again") from None
            except protocol.ProtocolError as exc:
                raise SignerRefused(f"the answer of {where} to {what} is not a signer's answer: {exc}") from None
        if header.get("ok") is not True:
            raise SignerRefused(f"the signer at {where} refused {what}: {header.get('error')}: "
                                f"{header.get('message')}")
        return header, blobs


def _packets(packets: Sequence[SealRequest]) -> list[list[Any]]:
    items = []
    for axis_id, recipients, digest in packets:
        if isinstance(recipients, str):
            raise TypeError("seal takes the list of recipients, not one code")
        items.append([axis_id, list(recipients), digest])
    return items
