"""GatewayEdge over real TCP and TLS: the CA file, an untrusted certificate, errors with their stable codes.

The gateway app runs under uvicorn on a free loopback port, with a server certificate from a CA made
here; nothing is mocked.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.client import AgencyClient
from adapters.edge import EdgeError, EdgeNotFound, EdgeRefused, EdgeUnauthorized, EdgeUnavailable, GatewayEdge
from tests.adapters.support import G22, H41, Axis, free_socket, signed_document


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test TLS root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
async def tls_axis(dev_pki, tmp_path: Path):
    import uvicorn

    axis = await Axis(dev_pki, f"sqlite:///{tmp_path / 'axis.db'}", f"embedded://{tmp_path / 'transport.db'}",
                      "gateway").start()
    ca, cert, key = _tls_files(tmp_path)
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(axis.app, log_level="warning", lifespan="off",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key)))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    try:
        yield axis, f"https://127.0.0.1:{sock.getsockname()[1]}", ca
    finally:
        server.should_exit = True
        await task
        await axis.close()


async def test_tls_with_the_ca_file_works_and_an_untrusted_certificate_fails_at_once(tls_axis) -> None:
    axis, url, ca = tls_axis
    packet = signed_document(axis.pki, G22, [H41], 1)
    async with GatewayEdge(url, axis.credential(G22), ca_file=ca) as edge:
        answer = await edge.submit(packet, wait=10)
        assert answer.outcome == "accepted" and answer.receipt
        assert {a["code"] for a in await edge.agencies()} >= {G22, H41}
    async with GatewayEdge(url, axis.credential(G22)) as untrusting:  # the system's roots only
        started = time.monotonic()
        with pytest.raises(EdgeError, match="does not verify") as raised:
            await untrusting.agencies()
        assert not isinstance(raised.value, EdgeUnavailable) and time.monotonic() - started < 5  # not retried


async def test_errors_carry_the_gateways_stable_code_and_request_id(tls_axis) -> None:
    axis, url, ca = tls_axis
    async with GatewayEdge(url, "axis_" + "A" * 43, ca_file=ca) as stranger:
        with pytest.raises(EdgeUnauthorized) as raised:
            await stranger.inbox()
        assert raised.value.status == 401 and raised.value.code == "GW401" and raised.value.request_id
    async with GatewayEdge(url, axis.credential(G22), ca_file=ca) as edge:
        with pytest.raises(EdgeNotFound) as missing:
            await edge.fetch("0190a1b2-0000-7000-8000-000000000000")
        assert missing.value.code == "GW404"
        with pytest.raises(EdgeRefused) as invalid:
            await edge.inbox(kind="bogus")
        assert invalid.value.status == 422 and invalid.value.code == "GW422" and invalid.value.request_id
        foreign = await edge.submit(signed_document(axis.pki, H41, [G22], 2), wait=10)
        assert (foreign.outcome, foreign.code) == ("refused", "AX416") and foreign.receipt  # intake's, signed


async def test_a_gateway_that_does_not_answer_is_unavailable(tmp_path: Path, monkeypatch) -> None:
    import adapters.edge

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there
    monkeypatch.setattr(adapters.edge, "retrying", lambda what: (lambda fn: fn))  # one try, not 120 s of them
    async with GatewayEdge(f"http://127.0.0.1:{port}", "axis_" + "A" * 43) as edge:
        with pytest.raises(EdgeUnavailable) as raised:
            await edge.inbox()
    assert raised.value.code == "GW000" and "ConnectError" in raised.value.message


class _LosesFirstAnswer(httpx.AsyncBaseTransport):
    """The first POST reaches the gateway and is handled, but its answer is lost (connection reset)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.lost = inner, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and not self.lost:
            await response.aread()
            self.lost += 1
            raise httpx.ReadError("connection reset after the gateway answered", request=request)
        return response


async def test_a_submission_repeated_after_a_lost_answer_is_the_same_submission(dev_pki, tmp_path: Path) -> None:
    axis = await Axis(dev_pki, f"sqlite:///{tmp_path / 'axis.db'}", f"embedded://{tmp_path / 'transport.db'}",
                      "gateway").start()
    try:
        losing = _LosesFirstAnswer(httpx.ASGITransport(app=axis.app, client=("127.0.0.1", 5000)))
        async with httpx.AsyncClient(transport=losing, base_url="http://gateway.test") as http:
            edge = GatewayEdge("http://gateway.test", axis.credential(G22), client=http)
            sender = AgencyClient(G22, edge, verifier=dev_pki.verifier, state_dir=tmp_path / "g22")
            submission = await sender.submit(signed_document(dev_pki, G22, [H41], 3), wait=10)
            intake = (await sender.intake([submission], 10))[submission]
        assert losing.lost == 1
        assert intake.outcome == "accepted"  # not "duplicate": the retry carried the same Axis-Submission
        assert len(axis.store.sent(G22)) == 1 and list(axis.store.submissions([submission])) == [submission]
        assert sender.journal.pending() == {}
        sender.close()
    finally:
        await axis.close()
