"""A real `axis tsa serve` process for any test: the `tsa` fixture and `running_tsa(directory)`.

tests/conftest.py imports the fixture, so every test folder can ask for it:

    def test_something(tsa: ServedTSA) -> None:
        token = request_timestamp(tsa.url, b"...", timeout=5)
        verify_timestamp(token, b"...", [tsa.root.read_bytes()])

`tsa` is one TSA per test session (per xdist worker): `(url, root)` where `root` is its tsa-root.pem,
what AXIS_TSA_TRUST would name. A test that stops or breaks its TSA starts its own with
`running_tsa(tmp_path)`, which also gives the process and the log lines it wrote.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

from axis.trust.pki import KeyType, TsaFiles, init_tsa

_SCRIPT = Path(sys.executable).with_name("axis")
AXIS = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from cli.main import main; main()"]
_LISTENING = re.compile(r"TSA listening on (http://\S+)")


class ServedTSA(NamedTuple):
    """A running TSA: its URL and the PEM file of the root its tokens chain to."""

    url: str
    root: Path


@dataclass
class TSAProcess:
    """`axis tsa serve` as a real process (its own session), with the lines it wrote to stderr so far."""

    url: str
    files: TsaFiles
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def served(self) -> ServedTSA:
        return ServedTSA(self.url, self.files.root)

    def wait_for_line(self, pattern: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if re.search(pattern, line)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"the TSA logged no line matching {pattern!r}:\n{''.join(self.lines)}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL to its session if it has not ended within 10 s; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


@contextlib.contextmanager
def running_tsa(directory: Path, *, key_type: KeyType = "ec", files: TsaFiles | None = None,
                port: int = 0) -> Iterator[TSAProcess]:
    """`axis tsa init` (in process) into `directory` unless `files` are given, then `axis tsa serve` on
    `port` (0: a free loopback port), logging at DEBUG; stopped when the block ends. A TSA started again
    with the same `files` and `port` is the same TSA to its clients."""
    files = files or init_tsa(directory, key_type)
    env = {name: value for name, value in os.environ.items() if not name.startswith("AXIS_")}
    env.update(AXIS_DATA=str(directory / "axis-data"), AXIS_LOG="DEBUG")
    proc = subprocess.Popen([*AXIS, "tsa", "serve", "--key", str(files.key), "--cert", str(files.cert),
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:  # drains stderr for the life of the process, so a chatty log never blocks it
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if _LISTENING.search(line):
                started.set()
        started.set()

    threading.Thread(target=read, daemon=True).start()
    served: TSAProcess | None = None
    try:
        if not started.wait(60) or not (found := next(filter(None, map(_LISTENING.search, lines)), None)):
            raise AssertionError(f"`axis tsa serve` did not start:\n{''.join(lines)}")
        served = TSAProcess(found.group(1), files, proc, lines)
        yield served
    finally:
        if served is not None:
            served.stop()
        elif proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTSA]:
    """A running `axis tsa serve` shared by the session: `(url, tsa-root.pem)`."""
    with running_tsa(tmp_path_factory.mktemp("tsa")) as process:
        yield process.served
