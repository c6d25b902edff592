"""`request_timestamp` against servers that misbehave: real HTTP on loopback, each answering one way.

A replayed token, a token for other data, HTTP errors, a web page, a rejection, an endless body, a
server that never answers or answers a byte at a time: each ends in the specific exception, in
bounded time.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asn1crypto import tsp

from axis.timestamp import (
    TimeStampAuthority,
    TimestampInvalid,
    TimestampUnavailable,
    load_authority,
    request_timestamp,
    verify_timestamp,
)
from axis.trust.pki import TsaFiles
from tests.timestamp.conftest import request_der

DATA = b"checkpoint 12"
Answer = tuple[int, str, bytes]


@contextlib.contextmanager
def http_server(answer: Callable[[bytes], Answer]) -> Iterator[str]:
    """A loopback HTTP server whose every POST is answered by `answer(body)`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, kind, payload = answer(body)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def authority(tsa_files: TsaFiles) -> TimeStampAuthority:
    return load_authority(tsa_files.key, tsa_files.cert)


def test_an_honest_server_gives_a_token_that_verifies(authority: TimeStampAuthority, tsa_files: TsaFiles) -> None:
    # The control: the same harness, answering with the real responder.
    with http_server(lambda body: (200, "application/timestamp-reply", authority.respond(body))) as url:
        token = request_timestamp(url, DATA, timeout=5)
    assert verify_timestamp(token, DATA, [tsa_files.root.read_bytes()])


def test_a_replayed_token_is_not_an_answer(authority: TimeStampAuthority) -> None:
    old = authority.respond(request_der(DATA))  # a genuine token for the same data, from an earlier request
    with http_server(lambda body: (200, "application/timestamp-reply", old)) as url, \
            pytest.raises(TimestampInvalid, match="another nonce: not an answer to this request"):
        request_timestamp(url, DATA, timeout=5)


def test_a_token_for_other_data_with_our_nonce_is_refused(authority: TimeStampAuthority) -> None:
    def swap(body: bytes) -> Answer:
        request = tsp.TimeStampReq.load(body)
        other = tsp.TimeStampReq({"version": "v1", "nonce": request["nonce"].native, "cert_req": True,
                                  "message_imprint": tsp.TimeStampReq.load(request_der(b"other"))["message_imprint"]})
        return 200, "application/timestamp-reply", authority.respond(other.dump())

    with http_server(swap) as url, pytest.raises(TimestampInvalid, match="stamped another imprint"):
        request_timestamp(url, DATA, timeout=5)


@pytest.mark.parametrize(("status", "kind", "payload", "error", "says"), [
    (500, "text/plain", b"boom", TimestampUnavailable, "answered HTTP 500"),
    (404, "text/html", b"<html>", TimestampUnavailable, "answered HTTP 404"),
    (200, "text/html", b"<html>welcome</html>", TimestampUnavailable, "answered text/html, not application/timestamp"),
    (200, "application/timestamp-reply", b"garbage", TimestampInvalid, "not a DER TimeStampResp"),
    (200, "application/timestamp-reply", b"\x00" * (300 * 1024), TimestampInvalid, "sent more than"),
    # TimeStampResp { status granted } and no token
    (200, "application/timestamp-reply", bytes.fromhex("30053003020100"), TimestampInvalid,
     "granted without a readable token"),
], ids=["500", "404", "web-page", "garbage", "endless", "granted-without-token"])
def test_a_bad_answer_raises_the_specific_error(status: int, kind: str, payload: bytes,
                                               error: type[Exception], says: str) -> None:
    with http_server(lambda body: (status, kind, payload)) as url, pytest.raises(error, match=says):
        request_timestamp(url, DATA, timeout=5)


def test_a_rejection_is_unavailable_with_the_tsas_reason(authority: TimeStampAuthority) -> None:
    with http_server(lambda body: (200, "application/timestamp-reply", authority.respond(b"no"))) as url, \
            pytest.raises(TimestampUnavailable, match=r"refused the request \(rejection: not a DER TimeStampReq\)"):
        request_timestamp(url, DATA, timeout=5)


@contextlib.contextmanager
def raw_server(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server handing each connection to `serve` in a thread; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        listener.close()


def _silent(conn: socket.socket) -> None:
    with conn:
        conn.recv(65536)
        time.sleep(10)


def _drip(conn: socket.socket) -> None:
    with conn:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: 100000\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(100):
                conn.sendall(b"\x30")
                time.sleep(0.2)


@pytest.mark.parametrize(("serve", "says"), [(_silent, "cannot get a timestamp from .*timed out"),
                                             (_drip, "took more than 1.0 s to answer")],
                         ids=["never-answers", "a-byte-at-a-time"])
def test_a_server_that_stalls_is_given_up_on_in_bounded_time(serve: Callable[[socket.socket], None],
                                                             says: str) -> None:
    with raw_server(serve) as url:
        started = time.monotonic()
        with pytest.raises(TimestampUnavailable, match=says):
            request_timestamp(url, DATA, timeout=1.0)
        assert time.monotonic() - started < 2.5


def test_an_address_nobody_listens_on_is_unavailable_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TimestampUnavailable, match=f"cannot get a timestamp from http://127.0.0.1:{port}/"):
        request_timestamp(f"http://127.0.0.1:{port}/", DATA, timeout=5)
    assert time.monotonic() - started < 2
    with pytest.raises(TimestampUnavailable, match="cannot get a timestamp from ftp://"):
        request_timestamp("ftp://127.0.0.1/", DATA, timeout=5)
