"""`open_transport(url)`: the one way the rest of Axis gets a transport.

URLs:
- `amqp://user:password@host:port/vhost` (or `amqps://`) → RabbitMQ;
- `embedded:///absolute/path/transport.db` or `embedded:relative/path.db` → the
  embedded SQLite transport on that file (created if missing);
- `embedded` alone → the embedded transport on `default_embedded_path`, which the
  caller chooses (the CLI puts it beside its other data); without one, the file
  `axis-transport.db` in the current directory.

Callers may rely on getting back a started transport (connected, topology
declared, database schema in place) or a `TransportError` saying why not.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import unquote

from axis.settings import redact_url

from .base import RetryPolicy, Transport
from .embedded import EmbeddedTransport
from .errors import TransportError


async def open_transport(
    url: str,
    *,
    retry: RetryPolicy | None = None,
    name: str | None = None,
    lease: float = 30.0,
    timeout: float = 30.0,
    default_embedded_path: str | os.PathLike[str] | None = None,
) -> Transport:
    """Open the transport `url` names.

    retry: backoff and attempt limit for `Delivery.retry()` (default `RetryPolicy()`).
    name: how this process shows up in the RabbitMQ management UI (connection name).
    lease: embedded only: seconds before an unsettled delivery of a dead consumer is redelivered.
    timeout: RabbitMQ only: the longest any broker operation (a publish confirm, a declaration)
        may take before it fails with `TransportError`.
    """
    path = embedded_path(url, default_embedded_path)
    if path is not None:
        transport: Transport = EmbeddedTransport(path, retry=retry, lease=lease)
        await transport.start()
        return transport
    if url.startswith(("amqp://", "amqps://")):
        from .rabbitmq import RabbitMQTransport  # aio-pika is only imported when a broker is used

        transport = RabbitMQTransport(url, retry=retry, timeout=timeout,
                                      connection_name=name or f"axis:{socket.gethostname()}:{os.getpid()}")
        await transport.start()
        return transport
    raise ValueError(f"unknown transport URL {redact_url(url)!r}: use amqp://… for RabbitMQ or "
                     "embedded:///path/to/file.db")


def embedded_path(url: str, default: str | os.PathLike[str] | None = None) -> Path | None:
    """The SQLite file of an embedded transport URL (`default` for plain `embedded`); None for another broker."""
    if not (url == "embedded" or url.startswith("embedded:")):
        return None
    rest = url[len("embedded:"):] if url != "embedded" else ""
    if rest.startswith("//"):
        rest = rest[2:]
    if "?" in rest or "#" in rest:
        raise ValueError(f"embedded transport URL {url!r}: options go in keyword arguments, not the URL")
    return Path(unquote(rest)) if rest else Path(default or "axis-transport.db")


__all__ = ["TransportError", "embedded_path", "open_transport"]
