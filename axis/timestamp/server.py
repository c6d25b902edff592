"""The TSA over HTTP (RFC 3161 §3.4): what `axis tsa serve` runs.

`POST /` with `Content-Type: application/timestamp-query` and a DER TimeStampReq is answered
200 `application/timestamp-reply` with the DER TimeStampResp, granted or a rejection (a malformed
request is a rejection with failInfo badRequest, never a 500). Any other content type is 415; a
body larger than `MAX_REQUEST_BYTES` is 413, refused as soon as it passes the limit (or at once when
Content-Length says so). Any other method is 405, any other path 404.

Plain HTTP on any address: a request carries only a hash, and a token is checked by its signature,
not by the channel it came over (RFC 3161 §4).

Logs (logger `axis.tsa`): "TSA listening on URL" at start and "TSA stopped" at stop (INFO), one
line per request (DEBUG).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from axis.timestamp.authority import MAX_REQUEST_BYTES, TimeStampAuthority
from axis.timestamp.client import QUERY_TYPE, REPLY_TYPE

log = logging.getLogger("axis.tsa")


def create_app(authority: TimeStampAuthority) -> Starlette:
    """The HTTP face of `authority` (see the module's docstring)."""

    async def stamp(request: Request) -> Response:
        peer = request.client.host if request.client else "?"
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != QUERY_TYPE:
            log.debug("TSA %s: 415 (content type %r)", peer, kind)
            return PlainTextResponse(f"send a DER TimeStampReq with Content-Type {QUERY_TYPE}\n", 415)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            return _too_large(peer)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return _too_large(peer)
        # Signing takes well under a millisecond with EC P-256 (about 2 ms with RSA-3072): done inline,
        # a thread hop would cost about as much.
        answer = authority.answer(bytes(body))
        log.debug("TSA %s: %s", peer, answer.summary)
        return Response(answer.der, media_type=REPLY_TYPE)

    return Starlette(routes=[Route("/", stamp, methods=["POST"])])


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free one); OSError when the address cannot be had."""
    family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host.strip("[]"), port), family=family)


def listening_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(authority: TimeStampAuthority, sock: socket.socket) -> None:
    """Answer on `sock` until SIGINT or SIGTERM (uvicorn's handlers), then return (so the process exits 0).

    Call it from the main thread: signals are delivered there.
    """
    import uvicorn

    config = uvicorn.Config(create_app(authority), log_config=None, access_log=False, lifespan="off",
                            server_header=False, timeout_graceful_shutdown=5)
    # Once it has shut down, uvicorn raises the signal that stopped it again, for the handler that was
    # there before it; the default one would kill the process before "TSA stopped" is logged.
    previous = {sig: signal.signal(sig, _stop_requested) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("TSA listening on %s", listening_url(sock))
    try:
        asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("TSA stopped")


def _stop_requested(signum: int, frame: object) -> None:
    log.debug("TSA: signal %d", signum)


def _too_large(peer: str) -> Response:
    log.debug("TSA %s: 413 (more than %d bytes)", peer, MAX_REQUEST_BYTES)
    return PlainTextResponse(f"a TimeStampReq is at most {MAX_REQUEST_BYTES} bytes\n", 413)
