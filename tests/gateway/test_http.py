"""The HTTP edge itself, over real HTTP: size limits while reading, the rate limit, request ids, the
access log, error shapes, health, metrics and who may read them, the OpenAPI document."""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.support import G22, H14, H41, ServedGateway, served_gateway

XML = {"Content-Type": "application/xml"}


@pytest.fixture
def small_gateway(tmp_path: Path, pki_dir: Path) -> Iterator[ServedGateway]:
    """50 KB packets at most; 1 request per second per credential, 3 at once."""
    with served_gateway("embedded", tmp_path, pki_dir, max_packet_bytes=50_000, rate=1.0, burst=3) as served:
        yield served


def test_an_upload_over_the_limit_is_refused_while_it_is_read(small_gateway: ServedGateway) -> None:
    gw = small_gateway
    with gw.client(G22) as g22:
        declared = g22.post("/v1/packets", content=b"<x/>" * 20_000, headers=XML)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "AX202"
    # No Content-Length (chunked): the limit is applied while reading. The answer comes while the
    # client is still sending, after about the limit, not after the 100 MB it announces nothing of.
    answer = _chunked_upload_answer(gw, gw.tokens[G22], chunk=8192, chunks_before_reading=10, total_chunks=12_800)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"AX202"' in answer and b"x-request-id" in answer.lower()
    with gw.client(G22) as g22:
        assert g22.get("/v1/sent").json()["items"] == []
    # A packet within the limit goes through.
    time.sleep(2)  # the rate limit of this gateway
    gw.send(G22, [H41])


def _chunked_upload_answer(gw: ServedGateway, token: str, *, chunk: int, chunks_before_reading: int,
                           total_chunks: int) -> bytes:
    """Send a chunked POST /v1/packets, reading the answer as soon as one comes; what came back."""
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/packets HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        piece = f"{chunk:x}\r\n".encode() + b"\0" * chunk + b"\r\n"
        sock.setblocking(False)
        answer = b""
        for number in range(total_chunks):
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.sendall(piece)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            if number == chunks_before_reading:
                time.sleep(0.5)  # give the gateway time to answer
        assert answer, "no answer while the whole upload was sent"
        assert number < total_chunks - 1, "the gateway read the whole upload before it answered"
        sock.setblocking(True)
        try:
            while b"\r\n\r\n" in answer and not answer.rstrip().endswith(b"}"):
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        except OSError:
            pass
        return answer


def test_the_rate_limit_is_per_credential_with_retry_after(small_gateway: ServedGateway) -> None:
    gw = small_gateway
    with gw.client(H41) as h41, gw.client(H14) as h14:
        answers = [h41.get("/v1/inbox") for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        limited = answers[3]
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "GW429"
        assert int(limited.headers["retry-after"]) >= 1 and limited.headers["x-request-id"]
        assert h14.get("/v1/inbox").status_code == 200          # another credential has its own bucket
        time.sleep(int(limited.headers["retry-after"]) + 0.1)
        assert h41.get("/v1/inbox").status_code == 200


def test_request_ids_errors_and_the_access_log(embedded_gateway: ServedGateway,
                                               caplog: pytest.LogCaptureFixture) -> None:
    gw = embedded_gateway
    caplog.set_level(logging.INFO, logger="axis.gateway.access")
    caplog.set_level(logging.INFO, logger="axis.gateway.credentials")
    with gw.client(H41) as h41:
        echoed = h41.get("/v1/inbox", headers={"X-Request-Id": "trace-42.a"})
        assert echoed.status_code == 200 and echoed.headers["x-request-id"] == "trace-42.a"
        replaced = h41.get("/v1/inbox", headers={"X-Request-Id": "no spaces allowed"})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
        invalid = h41.get("/v1/inbox", params={"limit": 0})
        assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "GW422"
        assert invalid.json()["error"]["request_id"] == invalid.headers["x-request-id"]
        nowhere = h41.get("/v1/nowhere")
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "GW404"
        wrong_method = h41.delete("/v1/inbox")
        assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["allow"]
        bad_cursor = h41.get("/v1/inbox", params={"after": "garbage!"})
        assert bad_cursor.status_code == 422, bad_cursor.text
    deadline = time.monotonic() + 5
    while not any("trace-42.a" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(r.getMessage() for r in caplog.records if "trace-42.a" in r.getMessage())
    assert re.fullmatch(rf"trace-42\.a {gw.ids[H41]} {re.escape(H41)} GET /v1/inbox 200 [0-9.]+ms", line), line
    with gw.client("revoked") as revoked:
        assert revoked.get("/v1/sent", headers={"X-Request-Id": "trace-43"}).status_code == 401
    deadline = time.monotonic() + 5
    while not any("trace-43" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(r.getMessage() for r in caplog.records if "trace-43" in r.getMessage())
    assert re.fullmatch(rf"trace-43 {gw.ids['revoked']} - GET /v1/sent 401 [0-9.]+ms", line), line
    assert any(gw.ids["revoked"] in r.getMessage() and "revoked" in r.getMessage() for r in caplog.records
               if r.name == "axis.gateway.credentials")
    assert gw.tokens[H41] not in caplog.text, "a credential appeared in a log line"


def test_health_readiness_docs_and_the_openapi_document(embedded_gateway: ServedGateway) -> None:
    with embedded_gateway.client() as anyone:
        assert anyone.get("/healthz").json()["status"] == "ok"
        ready = anyone.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok", "checks": {"store": "ok", "broker": "ok"}}
        assert "swagger" in anyone.get("/docs").text.lower()
        spec = anyone.get("/openapi.json").json()
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations >= {("POST", "/v1/packets"), ("GET", "/v1/submissions/{submission}"), ("GET", "/v1/inbox"),
                          ("GET", "/v1/inbox/{axis_id}"), ("POST", "/v1/inbox/{axis_id}/ack"),
                          ("POST", "/v1/inbox/{axis_id}/fail"), ("GET", "/v1/sent"),
                          ("GET", "/v1/documents/{axis_id}/receipts"), ("GET", "/v1/agencies")}
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"200", "401", "429"} <= set(responses), (method, path, sorted(responses))
            assert operation.get("security"), (method, path)
            error = responses["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_for_loopback_clients_and_operators_only(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 1)
    with gateway.client() as loopback:
        text = loopback.get("/metrics").text
    assert _metric(text, "axis_gateway_requests_total", route="/v1/packets", method="POST", status="200") == 1
    assert _metric(text, "axis_gateway_intake_outcomes_total", outcome="accepted") == 1
    assert _metric(text, "axis_gateway_request_seconds_count", route="/v1/packets", method="POST") == 1
    assert _metric(text, "axis_deliveries", state="queued") == 1
    assert _metric(text, "axis_inbox_size", agency=H41) == 1
    entries, unsigned = _metric(text, "axis_audit_entries"), _metric(text, "axis_audit_unsigned_entries")
    assert entries is not None and unsigned is not None and 0 <= unsigned <= entries and entries >= 1
    assert gateway.world is not None  # no TSA here: every checkpoint so far waits for a timestamp
    awaiting = _metric(text, "axis_audit_checkpoints_awaiting_timestamp")
    assert awaiting is not None and 0 <= awaiting <= len(list(gateway.world.hub.store.checkpoints()))
    assert sent["axis_id"] not in text, "an axis id became a label"

    async def from_afar(who: str | None) -> httpx.Response:  # the same app, seen from a non-loopback client
        transport = httpx.ASGITransport(app=gateway.app, client=("203.0.113.7", 40000))
        headers = {"Authorization": f"Bearer {gateway.tokens[who]}"} if who else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get("/metrics", headers=headers)

    assert asyncio.run(from_afar(None)).status_code == 401
    assert asyncio.run(from_afar(G22)).status_code == 403
    assert asyncio.run(from_afar("auditor")).status_code == 403
    allowed = asyncio.run(from_afar("operator"))
    assert allowed.status_code == 200 and "axis_gateway_requests_total" in allowed.text


async def test_the_sdk_waits_as_long_as_a_429_says_and_is_refused_once(small_gateway: ServedGateway) -> None:
    """Retry-After is the gateway's word on when to come back: the SDK's retries wait at least that long,
    instead of coming back sooner (and being refused again) on its own backoff."""
    from adapters.edge import GatewayEdge

    gw = small_gateway
    async with GatewayEdge(gw.url, gw.tokens[G22]) as edge:
        for _ in range(3):  # the burst
            await edge.agencies()
        started = time.monotonic()
        assert await edge.agencies()  # refused once with 429 and Retry-After: 1, then answered
        assert time.monotonic() - started >= 0.9
    scrape = httpx.get(f"{gw.url}/metrics").text
    refused = re.search(r'axis_gateway_requests_total\{method="GET",route="/v1/agencies",status="429"\} (\S+)',
                        scrape)
    assert refused is not None and float(refused.group(1)) == 1.0, scrape
