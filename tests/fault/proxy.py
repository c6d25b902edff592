"""A loopback TCP proxy that a test can cut and restore: an outage of one server, for one test only.

`TcpProxy(host, port)` listens on 127.0.0.1 on an ephemeral port and forwards
each connection to `host:port`. `cut()` closes every open connection at once
(both sides see a reset, as when a server or the network goes away) and, until
`restore()`, resets every new connection as soon as it is accepted, so a
client sees its connect fail. Nothing happens to the server behind it, which
other tests may be sharing.

It runs an asyncio loop in a thread of its own, so synchronous tests and the
processes they start can use it alike; `close()` stops it.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

_CHUNK = 1 << 16
_T = TypeVar("_T")


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.accepted = 0           # connections forwarded since the start
        self.refused = 0            # connections reset while cut
        self._open: set[asyncio.StreamWriter] = set()
        self._cut = False
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{port}", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Reset every open connection and every new one, until `restore()`."""
        async def cut() -> None:
            self._cut = True
            for writer in list(self._open):
                _reset(writer)
            self._open.clear()
        self._call(cut())

    def restore(self) -> None:
        async def restore() -> None:
            self._cut = False
        self._call(restore())

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.cut()
        try:
            yield
        finally:
            self.restore()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._open):
                _reset(writer)
        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        if self._cut:
            self.refused += 1
            _reset(client)
            return
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client)
            return
        if self._cut:  # cut while we were connecting
            _reset(client)
            _reset(server)
            return
        self.accepted += 1
        self._open.update((client, server))
        try:
            await asyncio.gather(_pipe(client_reader, server), _pipe(server_reader, client))
        finally:
            for writer in (client, server):
                self._open.discard(writer)
                if not writer.is_closing():
                    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a vanished peer would: no orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
