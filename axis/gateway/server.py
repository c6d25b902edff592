"""Running the gateway: the listening socket, the TLS rule, uvicorn, and the child process of `axis serve`.

- `check_listen(host, tls_cert, tls_key)`: plain HTTP only on a loopback address; any other address
  needs both a certificate and a key. Returns the reason it refuses, or None.
- `bind(host, port)`: the listening socket, made before anything starts (so a busy port is a one-line
  error, and port 0 picks a free one, reported by `listening_url`).
- `serve_gateway(config, sock)`: opens the store and the broker, builds the `AgencyService`, and runs
  uvicorn on `sock` until SIGINT/SIGTERM.
- `start_child(config, sock)`: the same in a separate process (multiprocessing, spawn), so the hub's
  event loop is not shared with HTTP; the child ends itself when its parent dies (PR_SET_PDEATHSIG on
  Linux, and a watch on its parent's pid everywhere).
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import multiprocessing
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axis.hub.verification import TrustSettings
from axis.lifetime import die_with_parent
from axis.settings import Settings

log = logging.getLogger("axis.gateway")


class GatewayConfigError(ValueError):
    """The gateway cannot start as configured; the message is one line."""


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs (picklable: it crosses to the spawned child).

    `intake`: the trust the hubs decide submissions with, when the gateway decides them where they
    arrive (`Settings.intake_at` = gateway); None: every submission is queued for the hubs.
    """

    settings: Settings
    intake: TrustSettings | None = None

    @property
    def host(self) -> str:
        return self.settings.gateway_host

    @property
    def port(self) -> int:
        return self.settings.gateway_port

    @property
    def tls_cert(self) -> Path | None:
        return self.settings.gateway_tls_cert

    @property
    def tls_key(self) -> Path | None:
        return self.settings.gateway_tls_key

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_listen(host: str, tls_cert: Path | None, tls_key: Path | None) -> str | None:
    """Why the gateway refuses to listen this way, or None."""
    if (tls_cert is None) != (tls_key is None):
        return "give both --tls-cert and --tls-key, or neither"
    if tls_cert is None and not is_loopback(host):
        return (f"refusing plain HTTP on {host}, which is not a loopback address: credentials and documents "
                "would cross the network in clear. Give --tls-cert and --tls-key (`axis pki tls HOSTNAME` "
                "issues them), or listen on 127.0.0.1")
    for what, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not Path(path).is_file():
            return f"{what} {path}: no such file"
    if tls_cert is not None and tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(tls_cert), str(tls_key))
        except (ssl.SSLError, OSError) as exc:
            return f"cannot use {tls_cert} with {tls_key}: {exc}"
    return None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; GatewayConfigError (one line) when the address cannot be had."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise GatewayConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise GatewayConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def listening_url(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def build_app(config: GatewayConfig, service: Any) -> Any:
    """The FastAPI app over `service`, with the limits the settings name."""
    from axis.gateway.app import create_app
    from axis.gateway.credentials import Authenticator

    chosen = config.settings
    return create_app(service, Authenticator(service.store), max_packet_bytes=chosen.max_packet_bytes,
                      rate=chosen.gateway_rate, burst=chosen.gateway_burst)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the gateway's event loop: uvloop's where it is installed (a dependency; it is not on Windows),
    else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def serve_gateway(config: GatewayConfig, sock: socket.socket, *, announce: bool = True) -> None:
    """Run the gateway on `sock` until SIGINT or SIGTERM (uvicorn's own handlers)."""
    import uvicorn

    from axis.gateway.service import open_service

    async with open_service(config.settings, intake=config.intake) as service:
        app = build_app(config, service)
        uv = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", server_header=False,
                            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
                            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
                            timeout_keep_alive=30, timeout_graceful_shutdown=5)
        server = uvicorn.Server(uv)
        if announce:
            print(f"axis gateway listening on {listening_url(sock, config.tls)}", file=sys.stderr, flush=True)
        await server.serve(sockets=[sock])


# ------------------------------------------------------------------ the child process of `axis serve`

def _die_with_parent(parent: int) -> None:
    die_with_parent(parent)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                log.warning("axis serve is gone: the gateway stops")
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(config: GatewayConfig, sock: socket.socket, parent: int) -> None:
    from axis.private import restrict_umask

    restrict_umask()
    _die_with_parent(parent)
    from axis.logs import log_to_stderr

    log_to_stderr(config.settings.log, config.settings.log_format, config.settings.log_rate)
    run(serve_gateway(config, sock, announce=False))


def start_child(config: GatewayConfig, sock: socket.socket) -> multiprocessing.process.BaseProcess:
    """The gateway in a spawned child process serving `sock` (which the parent may close afterwards)."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_child_main, args=(config, sock, os.getpid()), name="axis-gateway",
                              daemon=False)
    process.start()
    return process


def stop_child(process: multiprocessing.process.BaseProcess, timeout: float = 10.0) -> None:
    """SIGTERM (uvicorn finishes the requests in flight), then SIGKILL after `timeout` seconds."""
    if process.is_alive():
        process.terminate()
        process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(5)
