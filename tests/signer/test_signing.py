"""What callers of the axis's signer may rely on (axis/signer/interface.py), through a real signer process.

Receipts signed through the socket are what `Signer.sign_receipt` makes with the key in process (byte
for byte with RSA, whose PKCS#1 v1.5 signatures are deterministic), and both our Verifier and xmlsec1
accept them; seals pass the agency's check; `sign_bytes` verifies with `openssl dgst`; a batch is
signed whole or refused whole; two callers are served at once; the gateway's service signs through it.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from axis import wire
from axis.receipt import Receipt, build_receipt, now_utc, read_receipt
from axis.refusals import RegistryError
from axis.seal import SealChecker
from axis.signer import LocalSigner, SignerChild, SignerClient, SignerRefused
from axis.signer.protocol import request
from axis.signer.service import REQUEST_TIMEOUT
from axis.trust import Verifier, keys
from tests.hub.conftest import pki_dir, running_world  # noqa: F401 - fixture reused
from tests.signer.conftest import AxisKey

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"


@pytest.fixture(scope="module")
def signers(axis_keys: dict[str, AxisKey]) -> Iterator[dict[str, SignerChild]]:
    """One signer process per key type."""
    started = {}
    try:
        for kind, axis_key in axis_keys.items():
            started[kind] = SignerChild(axis_key.key, axis_key.cert, processes=2)
            started[kind].start()
        yield started
    finally:
        for child in started.values():
            child.stop()


def receipts(count: int) -> list[tuple[Receipt, bytes]]:
    """Intake receipts as the hub writes them: accepted and refused ones."""
    made = []
    for i in range(count):
        if i % 3:
            receipt = Receipt(kind="intake", outcome="accepted", issuer=wire.HUB_IDENTITY, time=now_utc(),
                              axis_id=wire.new_axis_id(), submission=wire.new_submission_id(), sender=G22,
                              document_id=f"{i}/VPCP-TTĐT", digest=f"{i:064x}")
        else:
            receipt = Receipt(kind="intake", outcome="refused", issuer=wire.HUB_IDENTITY, time=now_utc(),
                              submission=wire.new_submission_id(), sender=G22, refusal_code=301,
                              refusal_name="SIGNATURE_INVALID", refusal_detail=f"thử nghiệm <{i}> & co")
        made.append((receipt, build_receipt(receipt)))
    return made


def _without_signature_value(signed: bytes) -> bytes:
    return re.sub(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>", b"", signed)


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_receipts_signed_through_the_socket_are_the_in_process_signers_and_verify(
        kind: str, signers: dict[str, SignerChild], axis_keys: dict[str, AxisKey]) -> None:
    axis_key = axis_keys[kind]
    made = receipts(30)
    signed = SignerClient(signers[kind].socket).sign_receipts([body for _, body in made])
    local = LocalSigner.from_files(axis_key.key, axis_key.cert).sign_receipts([body for _, body in made])

    verifier = Verifier.from_files(axis_key.ca, axis_key.crl)
    assert len(signed) == len(made)
    for (receipt, _), body, in_process in zip(made, signed, local, strict=True):
        result = verifier.verify_receipt(body)
        assert result.signer_code == wire.HUB_IDENTITY
        assert read_receipt(result.signed_root) == receipt
        if kind == "rsa":  # deterministic signatures: the very same bytes
            assert body == in_process
        else:  # ECDSA draws a new nonce per signature: the same bytes but for the signature value
            assert _without_signature_value(body) == _without_signature_value(in_process)
            assert body != in_process


@pytest.mark.xmlsec1
@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_xmlsec1_accepts_receipts_signed_through_the_signer(kind: str, signers: dict[str, SignerChild],
                                                            axis_keys: dict[str, AxisKey], tmp_path: Path) -> None:
    xmlsec1 = shutil.which("xmlsec1")
    assert xmlsec1 is not None
    [(_, body)] = receipts(1)
    [signed] = SignerClient(signers[kind].socket).sign_receipts([body])

    def verify(data: bytes) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "receipt.xml"
        path.write_bytes(data)
        return subprocess.run([xmlsec1, "--verify", "--trusted-pem", str(axis_keys[kind].ca), str(path)],
                              capture_output=True, text=True, timeout=60)

    result = verify(signed)
    assert result.returncode == 0 and "OK" in result.stdout + result.stderr, result.stderr
    assert verify(signed.replace(b"<axr:Kind>intake", b"<axr:Kind>delivery")).returncode != 0


def test_seals_through_the_socket_pass_the_agencys_check(client: SignerClient, axis_keys: dict[str, AxisKey]) -> None:
    packets = [(wire.new_axis_id(), [H41, H14, H41], "a" * 64), (wire.new_axis_id(), [G22], "b" * 64)]
    seals = client.seal_many(packets)
    checker = SealChecker(Verifier.from_files(axis_keys["ec"].ca, axis_keys["ec"].crl))
    certificate = LocalSigner.from_files(axis_keys["ec"].key, axis_keys["ec"].cert).seal("x", [H41], "c")
    for (axis_id, recipients, digest), headers in zip(packets, seals, strict=True):
        assert set(headers) == {wire.H_SEAL, wire.H_SEAL_TO, wire.H_SEAL_CERT}
        assert headers[wire.H_SEAL_TO] == ",".join(sorted(set(recipients)))
        assert headers[wire.H_SEAL_CERT] == certificate[wire.H_SEAL_CERT]
        for recipient in recipients:
            checker.check(headers, axis_id, recipient, digest)
        with pytest.raises(RegistryError, match="AX411"):
            checker.check(headers, axis_id, recipients[0], "f" * 64)
    one = client.seal(packets[0][0], packets[0][1], packets[0][2])
    checker.check(one, packets[0][0], H14, "a" * 64)
    assert client.seal_many([]) == [] and client.sign_receipts([]) == []


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_sign_bytes_verifies_with_openssl_dgst(kind: str, signers: dict[str, SignerChild], tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    signer = SignerClient(signers[kind].socket)
    data = b"axis-checkpoint:1\nseq 1042\nhead " + bytes(range(256))
    (tmp_path / "sig").write_bytes(signer.sign_bytes(data))
    certificate = x509.load_pem_x509_certificate(signer.certificates()[0])
    (tmp_path / "pub.pem").write_bytes(certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def verify(signed: bytes) -> subprocess.CompletedProcess[str]:
        (tmp_path / "data").write_bytes(signed)
        return subprocess.run([openssl, "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
                               str(tmp_path / "sig"), str(tmp_path / "data")], capture_output=True, text=True,
                              timeout=60)

    result = verify(data)
    assert result.returncode == 0 and "Verified OK" in result.stdout, result.stdout + result.stderr
    assert verify(data + b"!").returncode != 0


@pytest.mark.parametrize("data", [b"<ds:SignedInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">",
                                  b"axis-delivery-seal:2\nAX1\n" + b"0" * 64 + b"\n000.00.00.H41"])
def test_sign_bytes_never_signs_what_would_pass_for_a_receipt_or_a_seal(
        data: bytes, client: SignerClient, axis_keys: dict[str, AxisKey]) -> None:
    with pytest.raises(SignerRefused, match="prefix of its own"):
        client.sign_bytes(data)
    with pytest.raises(SignerRefused, match="prefix of its own"):
        LocalSigner.from_files(axis_keys["ec"].key, axis_keys["ec"].cert).sign_bytes(data)


def test_certificates_are_the_axis_certificate_then_its_chain(client: SignerClient,
                                                              axis_keys: dict[str, AxisKey]) -> None:
    assert client.certificates() == [keys.certificate_pem(c) for c in keys.load_certificates(axis_keys["ec"].cert)]


def test_receipts_and_seals_in_one_request_are_what_the_two_requests_give(
        client: SignerClient, axis_keys: dict[str, AxisKey]) -> None:
    made = receipts(3)
    packets = [(wire.new_axis_id(), [H41, H14], "a" * 64)]
    signed, seals = client.sign_and_seal([body for _, body in made], packets)
    verifier = Verifier.from_files(axis_keys["ec"].ca, axis_keys["ec"].crl)
    for (receipt, _), one in zip(made, signed, strict=True):
        assert read_receipt(verifier.verify_receipt(one).signed_root) == receipt
    SealChecker(verifier).check(seals[0], packets[0][0], H14, "a" * 64)
    assert client.sign_and_seal([], []) == ([], [])
    with pytest.raises(SignerRefused, match=r"receipt #2 of 2 cannot be signed"):  # all of it, or the error
        client.sign_and_seal([made[0][1], b"<not-a-receipt"], packets)
    reply = _raw(client, request("sign_receipts", [made[0][1]], packets=[["ax", "not a list", "d"]]))
    assert b'"malformed"' in reply


def _raw(client: SignerClient, frame: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(client.socket_path))
        sock.sendall(frame)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_a_batch_with_one_receipt_it_cannot_sign_is_refused_whole(client: SignerClient) -> None:
    [(_, good)] = receipts(1)
    with pytest.raises(SignerRefused, match=r"receipt #2 of 3 cannot be signed"):
        client.sign_receipts([good, b"<not-a-receipt", good])
    assert len(client.sign_receipts([good, good])) == 2  # and the signer goes on


def test_a_stalled_caller_does_not_hold_up_another(client: SignerClient) -> None:
    """Two signing processes: while one waits for a caller that sent 8 bytes of its request and stopped,
    the other answers at once."""
    [(_, good)] = receipts(1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.connect(str(client.socket_path))
        stalled.sendall(request("sign_receipts", [good])[:8])
        time.sleep(0.2)  # it has been taken by a signing process
        start = time.monotonic()
        assert len(client.sign_receipts([good])) == 1
        assert time.monotonic() - start < REQUEST_TIMEOUT / 2


def test_concurrent_callers_each_get_their_own_batch(client: SignerClient, axis_keys: dict[str, AxisKey]) -> None:
    verifier = Verifier.from_files(axis_keys["ec"].ca, axis_keys["ec"].crl)
    batches = [receipts(20) for _ in range(6)]
    answers: dict[int, list[bytes]] = {}

    def sign(index: int) -> None:
        answers[index] = client.sign_receipts([body for _, body in batches[index]])
    threads = [threading.Thread(target=sign, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for index, batch in enumerate(batches):
        assert [read_receipt(verifier.verify_receipt(body).signed_root) for body in answers[index]] == \
            [receipt for receipt, _ in batch]


async def test_the_gateways_own_receipts_and_its_intake_are_signed_through_the_signer_process(
        tmp_path: Path, pki_dir: Path) -> None:  # noqa: F811
    """The service a gateway runs, next to a hub with a worker process, all signing through one signer process
    (the service, its intake and the hub's worker each hold a SignerClient): intake receipts, seals, and the
    receipts Axis signs for an ack without one and for a failure verify."""
    async with running_world(tmp_path, pki_dir, workers=1) as world:
        assert isinstance(world.service._signer, SignerClient)
        outcomes = [await world.service.send(world.caller(G22), world.document(G22, [H41]), wait=30) for _ in range(2)]
        assert [o.outcome for o in outcomes] == ["accepted", "accepted"]
        for outcome in outcomes:
            assert outcome.receipt is not None
            assert world.verifier.verify_receipt(outcome.receipt).signer_code == wire.HUB_IDENTITY
        served = await world.inbox(H41, 2)
        checker = SealChecker(world.verifier)
        for delivery in served:
            checker.check(delivery.headers, delivery.axis_id, H41, delivery.digest)

        acked = await world.service.ack(world.caller(H41), served[0].axis_id, None)
        failed_axis_id = served[1].axis_id
        await world.service.fail(world.caller(H41), failed_axis_id, "the disk is full")
        receipts = {r["kind"]: r["body"] for r in await world.service.receipts(world.caller(G22), failed_axis_id)}
        for body, kind in ((acked["receipt"], "delivery"), (receipts["error"], "error")):
            result = world.verifier.verify_receipt(body)
            assert result.signer_code == wire.HUB_IDENTITY and read_receipt(result.signed_root).kind == kind
