"""`SignerChild`: the signer as a child process of `axis serve` or `axis gateway`, restarted if it dies.

Each machine that runs a hub or a gateway runs its own signer; these commands
start it before anything that signs, in a spawned process that ends with them
(even when they are killed), and hand the others its socket, never the key.

What callers may rely on:
- `start()` returns once the signer listens (its socket answers), or raises
  `SignerStartError` with the signer's own one-line reason (a key file that
  cannot be read, a socket folder open to others);
- without a `socket`, the socket is made in a new private folder
  (`tempfile.mkdtemp`: 0700) that `stop()` removes;
- `watch()` runs until cancelled: when the signer process ends, it starts a
  new one on the same socket (callers meanwhile get `SignerUnavailable`,
  which the retry policy waits out), and raises `SignerStartError` when it
  cannot (the caller then stops, loudly) or when the signer keeps ending
  within seconds of its start;
- `stop()` ends the signer (SIGTERM: it removes its socket; SIGKILL after
  `timeout` seconds).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import tempfile
import time
from pathlib import Path

from axis.signer.interface import SignerStartError
from axis.signer.service import SignerConfig, child_main

log = logging.getLogger("axis.signer")

SOCKET_NAME = "signer.sock"
START_TIMEOUT = 60.0     # seconds for a signer to listen (an RSA key takes ~0.1 s to load)
_QUICK_END = 5.0         # seconds: a signer that ends sooner after its start ...
_QUICK_ENDS = 5          # ... this many times in a row is not restarted again


class SignerChild:
    """One signer process started by this process (see the module docstring)."""

    def __init__(self, key: Path, cert: Path, *, socket: Path | None = None, processes: int = 1,
                 log_level: str = "INFO") -> None:
        self._folder: Path | None = None
        if socket is None:
            # A short path (Unix socket paths are limited to 107 bytes), in a folder only this user may enter.
            self._folder = Path(tempfile.mkdtemp(prefix="axis-signer-"))
            socket = self._folder / SOCKET_NAME
        self.config = SignerConfig(key=Path(key), cert=Path(cert), socket=Path(socket), processes=processes,
                                   log=log_level, remove_folder=self._folder is not None)
        self.process: multiprocessing.process.BaseProcess | None = None
        self._started = 0.0

    @property
    def socket(self) -> Path:
        return self.config.socket

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the signer; return once it listens. SignerStartError (its reason) if it does not."""
        context = multiprocessing.get_context("spawn")
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=child_main, args=(self.config, os.getpid(), writer), name="axis-signer",
                                  daemon=False)  # not a daemon: it starts signing processes of its own
        process.start()
        writer.close()
        deadline = time.monotonic() + timeout
        try:
            while not reader.poll(0.1):
                if time.monotonic() > deadline:
                    _end(process)
                    raise SignerStartError(f"the signer did not listen on {self.socket} within {timeout:g} s")
            try:
                reason = reader.recv()
            except EOFError:
                process.join(5)
                reason = f"the signer process ended as it started (exit code {process.exitcode})"
        finally:
            reader.close()
        if reason is not None:
            _end(process)
            raise SignerStartError(str(reason))
        self.process, self._started = process, time.monotonic()

    async def watch(self, interval: float = 0.5) -> None:
        """Restart the signer whenever it ends, until cancelled (see the module docstring)."""
        quick = 0
        while True:
            await asyncio.sleep(interval)
            process = self.process
            if process is None or process.is_alive():
                continue
            quick = quick + 1 if time.monotonic() - self._started < _QUICK_END else 0
            if quick >= _QUICK_ENDS:
                raise SignerStartError(f"the signer keeps ending within {_QUICK_END:g} s of its start (last exit "
                                       f"code {process.exitcode}); not restarting it again")
            log.warning("the signer process ended (exit code %s); starting a new one on %s", process.exitcode,
                        self.socket)
            await asyncio.to_thread(self.start)
            log.warning("the signer listens again on %s (pid %s)", self.socket, self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            _end(self.process, timeout)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> SignerChild:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _end(process: multiprocessing.process.BaseProcess, timeout: float = 10.0) -> None:
    if process.is_alive():
        process.terminate()
        process.join(timeout)
    if process.is_alive():
        with contextlib.suppress(OSError):
            process.kill()
        process.join(5)
