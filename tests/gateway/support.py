"""A gateway over real HTTP on a real hub: `ServedGateway`.

A thread of its own runs an event loop with the in-process hub of tests/hub (`running_world`: a real
PKI, SQLite or PostgreSQL, the embedded transport or RabbitMQ), the real `AgencyService`, and uvicorn
serving `create_app(...)` on a free loopback port. Tests talk to it with a plain synchronous
`httpx.Client` (or curl, or schemathesis), exactly as an agency's system would. Credentials are issued
with `axis.gateway.credentials` for each agency, an auditor and an operator, and one revoked
credential of G22.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from yarl import URL

from axis.gateway import credentials
from axis.gateway.app import create_app
from axis.gateway.server import bind, listening_url
from tests.hub.conftest import AGENCIES, World, running_world
from tests.store.conftest import _fresh_pg_database, _pg_url
from tests.transport.support import AMQP_URL, RabbitAdmin

G22, H41, H14, G17 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17"
CONFIGURATIONS = ("embedded", "rabbitmq+postgres")


class ServedGateway:
    def __init__(self, root: Path, pki_dir: Path, *, store_url: str | None = None, transport_url: str | None = None,
                 cache_seconds: float = credentials.MAX_CACHE_SECONDS, **app_options: Any) -> None:
        self.root, self.pki_dir = root, pki_dir
        self.store_url, self.transport_url = store_url, transport_url
        self.cache_seconds = cache_seconds
        self.app_options = {"rate": 10_000.0, "burst": 10_000, **app_options}
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.url = ""
        self.world: World | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="served-gateway", daemon=True)

    # ---- lifecycle
    def __enter__(self) -> ServedGateway:
        self._thread.start()
        if not self._ready.wait(120):
            raise AssertionError("the gateway did not start within 120 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test by __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with running_world(self.root, self.pki_dir, store_url=self.store_url,
                                 transport_url=self.transport_url) as world:
            self.world, self.loop = world, asyncio.get_running_loop()
            store = world.store
            for code in AGENCIES:
                self._issue(code, "agency", code)
            self._issue("auditor", "auditor")
            self._issue("operator", "operator")
            self._issue("revoked", "agency", G22)
            credentials.revoke(store, self.ids["revoked"])
            self.authenticator = credentials.Authenticator(store, cache_seconds=self.cache_seconds)
            self.app = create_app(world.service, self.authenticator, **self.app_options)
            sock = bind("127.0.0.1", 0)
            self.url = listening_url(sock, tls=False)
            self._server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, access_log=False,
                                                         lifespan="off"))
            serving = asyncio.create_task(self._server.serve(sockets=[sock]))
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await serving
            sock.close()

    def _issue(self, name: str, role: str, agency: str | None = None) -> None:
        assert self.world is not None
        issued = credentials.issue(self.world.store, role, agency, label=f"test {name}")
        self.tokens[name], self.ids[name] = issued.token, issued.id

    # ---- helpers for tests
    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def run(self, coroutine: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the gateway's loop (the hub's store and transport live there)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def document(self, sender: str, recipients: list[str], **kwargs: Any) -> bytes:
        assert self.world is not None
        return self.world.document(sender, recipients, **kwargs)

    def send(self, sender: str, recipients: list[str], **kwargs: Any) -> dict[str, Any]:
        """POST a fresh signed document from `sender`; the 200 answer (accepted), checked."""
        body = self.document(sender, recipients, **kwargs)
        with self.client(sender) as c:
            answer = c.post("/v1/packets", content=body, headers={"Content-Type": "application/xml"},
                            params={"wait": 30})
        assert answer.status_code == 200, answer.text
        found = answer.json()
        assert found["outcome"] == "accepted", found
        return {**found, "body": body}

    def wait_inbox(self, who: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.client(who) as c:
            while True:
                items = c.get("/v1/inbox", params={"limit": 1000}).json()["items"]
                if len(items) >= count or time.monotonic() > deadline:
                    return items
                time.sleep(0.05)


@contextlib.contextmanager
def served_gateway(kind: str, root: Path, pki_dir: Path, pg_template: str | None = None,
                   **options: Any) -> Iterator[ServedGateway]:
    """A `ServedGateway` on the embedded defaults, or on a fresh PostgreSQL database and RabbitMQ vhost."""
    if kind == "embedded":
        with ServedGateway(root, pki_dir, **options) as served:
            yield served
        return
    assert pg_template is not None
    admin = RabbitAdmin()
    vhost = f"axis-gw-{uuid.uuid4().hex[:12]}"
    admin.create_vhost(vhost)
    try:
        with _fresh_pg_database(pg_template) as database:
            with ServedGateway(root, pki_dir, store_url=_pg_url(database),
                               transport_url=str(URL(AMQP_URL).with_path("/" + vhost)), **options) as served:
                yield served
    finally:
        admin.delete_vhost(vhost)


_SCRIPT = Path(sys.executable).with_name("axis")
AXIS = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from cli.main import main; main()"]


def axis_env(data: Path) -> dict[str, str]:
    """The environment of an `axis` command on the data folder `data`, and no other AXIS_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXIS_")}
    return {**env, "AXIS_DATA": str(data)}


class Process:
    """An `axis` command as a real process, its stderr read line by line."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*AXIS, *args], env={**axis_env(data), **(env or {})}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; saw:\n{''.join(self.seen)}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)
