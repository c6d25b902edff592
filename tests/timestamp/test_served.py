"""`axis tsa serve` as a real process over real HTTP: tokens, refusals, its log, and what a stopped TSA costs.

The shared TSA is the `tsa` fixture (tests/tsa_support.py); tests that stop their TSA or read its log
start their own with `running_tsa`.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rfc3161_client import PKIStatus, decode_timestamp_response

from axis.timestamp import MAX_REQUEST_BYTES, TimestampUnavailable, request_timestamp, verify_timestamp
from tests.timestamp.conftest import openssl_ts_verify, request_der
from tests.tsa_support import AXIS, ServedTSA, running_tsa

DATA = b"signed tree head 3: size 17"
QUERY = {"Content-Type": "application/timestamp-query"}


def test_a_token_from_the_served_tsa_verifies_with_the_client_and_openssl(tsa: ServedTSA, tmp_path: Path) -> None:
    url, root = tsa
    token = request_timestamp(url, DATA, timeout=5)
    assert verify_timestamp(token, DATA, [root.read_bytes()])
    result = openssl_ts_verify(tmp_path, DATA, token, root, root.parent / "tsa.pem")
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr


def test_garbage_gets_a_rejection_not_a_500(tsa: ServedTSA) -> None:
    answer = httpx.post(tsa.url, content=b"\x30\x03\x02\x01", headers=QUERY, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/timestamp-reply"
    response = decode_timestamp_response(answer.content)
    assert response.status == PKIStatus.REJECTION
    assert response.status_string == ["not a DER TimeStampReq"]


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 4096 + 1):
        yield b"\x00" * 4096


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_body_is_413(declared: bool, tsa: ServedTSA) -> None:
    body = b"\x00" * (MAX_REQUEST_BYTES + 1)
    content = body if declared else _chunks(len(body))  # a generator: sent chunked, no Content-Length
    answer = httpx.post(tsa.url, content=content, headers=QUERY, timeout=10)
    assert answer.status_code == 413
    # The limit itself is accepted: a request of exactly MAX_REQUEST_BYTES is read and answered.
    answer = httpx.post(tsa.url, content=b"\x00" * MAX_REQUEST_BYTES, headers=QUERY, timeout=10)
    assert answer.status_code == 200
    assert decode_timestamp_response(answer.content).status == PKIStatus.REJECTION


def test_wrong_content_type_method_and_path(tsa: ServedTSA) -> None:
    query = request_der(DATA)
    assert httpx.post(tsa.url, content=query, headers={"Content-Type": "application/octet-stream"},
                      timeout=5).status_code == 415
    assert httpx.get(tsa.url, timeout=5).status_code == 405
    assert httpx.post(tsa.url + "other", content=query, headers=QUERY, timeout=5).status_code == 404
    assert httpx.post(tsa.url, content=query, headers=QUERY, timeout=5).status_code == 200


def test_it_logs_start_each_request_and_stop_and_a_stopped_tsa_is_unavailable_at_once(tmp_path: Path) -> None:
    with running_tsa(tmp_path) as process:
        process.wait_for_line(r"axis\.tsa TSA listening on http://127\.0\.0\.1:\d+")
        request_timestamp(process.url, DATA, timeout=5)
        process.wait_for_line(r"axis\.tsa TSA 127\.0\.0\.1: granted serial [0-9a-f]{32}")
        httpx.post(process.url, content=b"nonsense", headers=QUERY, timeout=5)
        process.wait_for_line(r"axis\.tsa TSA 127\.0\.0\.1: rejected bad_request: not a DER TimeStampReq")
        assert process.stop() == 0
        process.wait_for_line(r"axis\.tsa TSA stopped")
        started = time.monotonic()
        with pytest.raises(TimestampUnavailable, match=f"cannot get a timestamp from {process.url}"):
            request_timestamp(process.url, DATA, timeout=3)
        assert time.monotonic() - started < 3


def _axis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AXIS, *args], capture_output=True, text=True, timeout=60, check=False)


def test_serve_refuses_a_certificate_that_is_not_a_tsas_in_one_line(tmp_path: Path) -> None:
    init = _axis("pki", "init", str(tmp_path / "ca"))
    assert init.returncode == 0, init.stderr
    result = _axis("tsa", "serve", "--key", str(tmp_path / "ca" / "ca.key.pem"),
                   "--cert", str(tmp_path / "ca" / "ca.pem"), "--port", "0")
    assert result.returncode == 1
    assert "not a TSA certificate: RFC 3161 requires extendedKeyUsage timeStamping" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_busy_port_in_one_line(tsa: ServedTSA, tmp_path: Path) -> None:
    port = tsa.url.rstrip("/").rsplit(":", 1)[1]
    result = _axis("tsa", "serve", "--key", str(tsa.root.parent / "tsa.key"),
                   "--cert", str(tsa.root.parent / "tsa.pem"), "--port", port)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
