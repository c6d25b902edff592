"""One Axis deployment per test, driven the way operators and agencies drive it: through `axis`.

A `Deployment` is a data directory (AXIS_DATA) with the PKI where `axis serve`
looks for it, a broker (the embedded transport in the data directory, or a
RabbitMQ vhost) and a database (SQLite in the data directory, or a PostgreSQL
database). It runs:

- the hub as a real process: `axis serve --workers 1` with one signing process
  (AXIS_SIGNER_PROCESSES=1: each spawned process costs about half a second of
  start-up CPU, and the suite runs four deployments on two cores) (`serve()`), in a session
  of its own so that the hub, its verification worker and its gateway child can
  always be ended together (`HubProcess.stop()` / `crash()`). The gateway
  listens on a port chosen once per deployment, so a restarted `axis serve`
  answers where the agencies' commands already look;
- agencies on the gateway road (`road == "gateway"`, whenever the gateway is
  installed): every agency command gets `--gateway URL --credential-file FILE`
  with a credential the operator issued to that agency (`axis credentials
  issue`, once per agency), and no broker or database option. Without the
  gateway the agency commands take the operator's own road (`--db`, `--broker`);
- agency and operator commands either in-process through typer's `CliRunner`
  on the real `cli.main.app` (`cli()`, no interpreter start-up: 0.3 to
  0.8 s of CPU per command as a process), or as real processes of the `axis` console script
  (`run()`, `spawn()`), which is what commands running side by side need.

Every wait is bounded; `close()` ends every process this deployment started.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from typer.testing import CliRunner

from adapters.client import summarize_packet
from adapters.edge import Edge, GatewayEdge, LocalEdge, read_credential
from axis import wire
from axis.store import Store, open_store
from axis.transport import RetryPolicy, Transport, TransportError, UnroutableError, open_transport
from tests.e2e.packets import AGENCIES, HUB, TestPKI

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).with_name("axis")
AXIS = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from cli.main import main; main()"]
LEASE = 5.0      # embedded transport: a dead process's deliveries come back after this many seconds
STEP = 60.0      # upper bound of any single wait that is not a long run; never reached when things work
_T = TypeVar("_T")

# Which commands take which deployment options (the rest take neither).
_AGENCY_COMMANDS = {("send",), ("inbox", "pull"), ("status", "send"), ("adapter", "folder")}
_DLQ_COMMANDS = {("dlq", "list"), ("dlq", "show"), ("dlq", "replay"), ("dlq", "purge")}
_TAKES_DB = {("serve",), ("agency", "add"), ("agency", "list"), ("agency", "suspend"), ("agency", "resume"),
             ("agency", "import"), ("agency", "show"),
             ("receipts",), ("audit", "verify"), ("credentials", "issue"), ("credentials", "list"),
             ("credentials", "revoke"), ("gateway",), *_AGENCY_COMMANDS, *_DLQ_COMMANDS,
             ("traffic", "list"), ("traffic", "show"), ("traffic", "tail"), ("queues",)}
_TAKES_BROKER = {("serve",), ("gateway",), *_DLQ_COMMANDS, *_AGENCY_COMMANDS, ("queues",)}
_GROUPS = ("agency", "inbox", "status", "audit", "dlq", "credentials", "adapter", "traffic")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Outcome:
    """How a command ended, the same whether it ran in-process or as a process."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    def __str__(self) -> str:  # what a failed assertion shows
        return (f"axis {' '.join(self.args)} -> exit {self.exit_code}\n--- stdout\n{self.stdout[-4000:]}"
                f"\n--- stderr\n{self.stderr[-4000:]}")


def wait_until(predicate: Callable[[], _T], what: str, timeout: float = STEP, interval: float = 0.1) -> _T:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Running:
    """An `axis` command running as a process (stdout and stderr go to files, so nothing blocks)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], logs: Path) -> None:
        self.args = tuple(args)
        logs.mkdir(parents=True, exist_ok=True)
        stem = f"{time.monotonic_ns()}-{'-'.join(a for a in args[:2] if '/' not in a)}"
        self.out_path, self.err_path = logs / f"{stem}.out", logs / f"{stem}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen([*AXIS, *args], env=env, cwd=REPO, stdout=out, stderr=err,
                                            start_new_session=True)

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float = STEP) -> Outcome:
        """Wait for the command to end (killing it after `timeout`, which fails the test)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"axis {' '.join(self.args)} did not finish within {timeout:g} s\n"
                                 f"{self.stderr()[-3000:]}") from None
        return Outcome(self.args, code, self.stdout(), self.stderr())

    def kill(self) -> None:
        """SIGKILL the command and anything it started (its session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


class HubProcess(Running):
    """`axis serve`: its log is its stderr file."""

    def wait_serving(self, deployment: Deployment, timeout: float = STEP) -> None:
        """Until the hub announced itself, its intake queue exists and its gateway answers; fail with its log
        if it died."""
        def serving() -> bool:
            if not self.alive():
                raise AssertionError(f"axis serve exited with {self.process.returncode}:\n{self.stderr()[-3000:]}")
            return "axis hub serving" in self.stderr()

        wait_until(serving, "axis serve to start", timeout)
        deployment.wait_for_queue(wire.INTAKE_QUEUE, timeout)
        if deployment.road == "gateway":
            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(f"{deployment.gateway_url}/healthz", timeout=2) as answer:
                        return bool(answer.status == 200)
                except OSError:
                    return False
            wait_until(healthy, "the gateway to answer /healthz", timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; then end whatever is left in its session. Exit code or None."""
        code: int | None = None
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
        else:
            code = self.process.returncode
        self.kill()
        return code

    def crash(self) -> None:
        """SIGKILL the hub process, as a crash would; its orphaned verification worker is ended too."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.kill()

    def leftovers(self) -> list[int]:
        """Processes still in the hub's session (its children outlive it if they ignore their parent's death)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid and fields[0] != "Z":  # field 6 (session id)
                found.append(int(entry.name))
        return found


@dataclass
class Deployment:
    """See the module docstring. `broker`/`db` None mean the embedded defaults."""

    kind: str
    data: Path
    pki: TestPKI
    broker: str | None = None
    db: str | None = None
    hubs: list[HubProcess] = field(default_factory=list)
    commands: list[Running] = field(default_factory=list)
    road: str = "gateway"           # agency commands through the gateway; "local": the operator's own road
    gateway_port: int = field(default_factory=free_port)
    credentials: dict[str, Path] = field(default_factory=dict)
    tsa_url: str | None = None      # the TSA `axis serve` has its checkpoints stamped by (AXIS_TSA_URL)
    extra_env: dict[str, str] = field(default_factory=dict)  # more settings for every command (AXIS_…)

    def __post_init__(self) -> None:
        for source, target in ((self.pki.ca / "ca.pem", "pki/ca.pem"), (self.pki.ca / "crl.pem", "pki/crl.pem"),
                               (self.pki.key(HUB), f"hub/{HUB}.key.pem"), (self.pki.cert(HUB), f"hub/{HUB}.cert.pem")):
            (self.data / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, self.data / target)

    # ------------------------------------------------------------ configuration

    @property
    def transport_url(self) -> str:
        return self.broker or f"embedded://{self.data / 'transport.db'}"

    @property
    def store_url(self) -> str:
        return self.db or f"sqlite:///{self.data / 'axis.db'}"

    def env(self) -> dict[str, str]:
        """What every command of this deployment sees (the defaults live in AXIS_DATA)."""
        env = {"AXIS_DATA": str(self.data), "AXIS_EMBEDDED_LEASE": str(LEASE), "COLUMNS": "400", "AXIS_LOG": "INFO",
               "AXIS_SIGNER_PROCESSES": "1"}
        if self.tsa_url is not None:
            env["AXIS_TSA_URL"] = self.tsa_url
        return {**env, **self.extra_env}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def options(self, args: Sequence[str]) -> list[str]:
        """`args` plus what the command needs to reach this deployment: --db/--broker where the command takes
        them and this deployment is not embedded; for an agency command on the gateway road, --gateway and
        the acting agency's --credential-file instead."""
        extra: list[str] = []
        command = tuple(args[:2]) if args[0] in _GROUPS else (args[0],)
        if command in _AGENCY_COMMANDS and self.road == "gateway":
            credential = self.credential_file(self.acting_agency(command, args))
            return [*args, "--gateway", self.gateway_url, "--credential-file", str(credential)]
        if command == ("serve",) and self.road == "gateway":
            extra += ["--gateway-port", str(self.gateway_port)]
        if self.db is not None and command in _TAKES_DB:
            extra += ["--db", self.db]
        if self.broker is not None and command in _TAKES_BROKER:
            extra += ["--broker", self.broker]
        return [*args, *extra]

    @staticmethod
    def acting_agency(command: tuple[str, ...], args: Sequence[str]) -> str:
        """The agency an agency command acts for (a gateway credential acts for exactly one)."""
        if command == ("inbox", "pull"):
            return args[2]
        flag = {("status", "send"): "--from", ("adapter", "folder"): "--agency"}.get(command)
        if flag is not None:
            return args[list(args).index(flag) + 1]
        senders = set()
        for arg in args[1:]:
            path = Path(arg)
            files = sorted(path.glob("*.edxml")) if path.is_dir() else [path] if path.is_file() else []
            for file in files:
                try:
                    senders.add(summarize_packet(file.read_bytes()).sender)
                except Exception:  # noqa: BLE001 - a broken packet: `axis send` reports it itself
                    continue
        if len(senders) != 1:
            raise AssertionError(f"`axis send` on the gateway road acts for one agency; these packets come from "
                                 f"{sorted(senders) or 'nobody'}: send each agency's packets separately")
        return senders.pop()

    def credential_file(self, code: str) -> Path:
        """A file holding a credential the operator issued to `code` with `axis credentials issue` (once)."""
        if code not in self.credentials:
            issued = self.cli("credentials", "issue", "--agency", code, "--json")
            assert issued.exit_code == 0, issued
            path = self.data / "credentials" / f"{code}.credential"
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_text(json.loads(issued.stdout)["credential"] + "\n")
            path.chmod(0o600)
            self.credentials[code] = path
        return self.credentials[code]

    def agency_files(self, code: str) -> list[str]:
        """`--key KEY --cert CERT` of an agency."""
        return ["--key", str(self.pki.key(code)), "--cert", str(self.pki.cert(code))]

    # ------------------------------------------------------------ running commands

    def cli(self, *args: str) -> Outcome:
        """Run `axis ARGS` in this process (the real typer app) and return how it ended."""
        from cli.main import app

        full = self.options(args)
        result = CliRunner().invoke(app, full, env=self.env())
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"axis {' '.join(full)} raised {result.exception!r}") from result.exception
        return Outcome(tuple(full), result.exit_code, result.stdout, result.stderr)

    def spawn(self, *args: str) -> Running:
        """Start `axis ARGS` as a process of its own."""
        running = Running(self.options(args), {**os.environ, **self.env()}, self.data / "logs")
        self.commands.append(running)
        return running

    def run(self, *args: str, timeout: float = STEP) -> Outcome:
        return self.spawn(*args).finish(timeout)

    def serve(self) -> HubProcess:
        """Start `axis serve --workers 1` and wait until it serves."""
        hub = HubProcess(self.options(["serve", "--workers", "1"]), {**os.environ, **self.env()}, self.data / "logs")
        self.hubs.append(hub)
        hub.wait_serving(self)
        return hub

    def register(self, *codes: str) -> None:
        for code in codes:
            outcome = self.cli("agency", "add", code, "--name", AGENCIES[code], "--cert", str(self.pki.cert(code)))
            assert outcome.exit_code == 0, outcome

    def close(self) -> None:
        """End every process this deployment started (hubs last, so nothing waits on them)."""
        for running in self.commands:
            running.kill()
        for hub in self.hubs:
            hub.stop()

    def edge(self, code: str) -> Edge:
        """How agency `code`'s own software reaches this deployment: the gateway with its credential, or the
        operator's road (the service in process, on this deployment's store and broker). Use as
        `async with deployment.edge(code) as edge:`."""
        if self.road == "gateway":
            return GatewayEdge(self.gateway_url, read_credential(self.credential_file(code)))
        return _LocalRoad(self, code)

    # ------------------------------------------------------------ looking inside

    def transport_call(self, action: Callable[[Transport], Any], *, retry: RetryPolicy | None = None) -> Any:
        """Run `await action(transport)` on a transport of its own (from synchronous test code)."""
        async def main() -> Any:
            transport = await open_transport(self.transport_url, retry=retry, lease=LEASE, timeout=15.0,
                                             name="axis-e2e-test")
            try:
                return await action(transport)
            finally:
                await transport.close()

        return asyncio.run(main())

    def depths(self, *queues: str) -> dict[str, int]:
        async def action(transport: Transport) -> dict[str, int]:
            return {queue: await transport.depth(queue) for queue in queues}
        return self.transport_call(action)

    def wait_for_queue(self, queue: str, timeout: float = STEP) -> None:
        async def action(transport: Transport) -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await transport.depth(queue)
                    return
                except (UnroutableError, TransportError):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"queue {queue} was not declared within {timeout:g} s") from None
                    await asyncio.sleep(0.1)
        self.transport_call(action)

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """The hub's store, opened read-mostly by the test (no migration: the hub owns the schema)."""
        store = open_store(self.store_url, migrate=False)
        try:
            yield store
        finally:
            store.close()


class _LocalRoad(LocalEdge):
    """`LocalEdge` on a deployment's store and broker, opened on entry and closed on exit (the operator's road)."""

    def __init__(self, deployment: Deployment, code: str) -> None:
        self.deployment, self.code = deployment, code

    async def __aenter__(self) -> _LocalRoad:
        from axis.gateway import AgencyService
        from axis.signer import LocalSigner

        pki = self.deployment.pki
        self._store = open_store(self.deployment.store_url, migrate=False)
        self._transport = await open_transport(self.deployment.transport_url, lease=LEASE, timeout=15.0,
                                               name="axis-e2e-agency")
        # The operator's own road, as `axis send` without --gateway takes it: the axis key in this process.
        service = AgencyService(self._store, self._transport,
                                signer=LocalSigner.from_files(pki.key(HUB), pki.cert(HUB)), verifier=pki.verifier())
        super().__init__(service, self.code)
        return self

    async def aclose(self) -> None:
        await self._transport.close()
        self._store.close()
