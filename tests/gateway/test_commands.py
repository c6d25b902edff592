"""The commands: `axis credentials`, `axis gateway` (the TLS rule, HTTPS with `axis pki tls`), and
`axis serve` starting its gateway in a child process that ends with it."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from axis.gateway.credentials import Authenticator
from axis.store import open_store
from cli.main import app
from tests.gateway.support import Process, axis_env

G22 = "000.00.00.G22"


def _axis(data: Path, *args: str):  # typer's Result
    return CliRunner().invoke(app, list(args), env=axis_env(data))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An axis data folder with a PKI, the hub's key, and G22 registered."""
    root = tmp_path / "axis-data"
    for args in (("pki", "init", str(root / "pki")),
                 ("pki", "issue", "AXIS", "--pki", str(root / "pki"), "--out", str(root / "hub")),
                 ("agency", "add", G22, "--name", "Văn phòng Chính phủ")):
        result = _axis(root, *args)
        assert result.exit_code == 0, result.output
    return root


def test_credentials_are_issued_once_listed_and_revoked_with_audit_entries(data: Path) -> None:
    issued = _axis(data, "credentials", "issue", "--agency", G22, "--label", "DMS", "--json")
    assert issued.exit_code == 0, issued.output
    shown = json.loads(issued.stdout)
    assert set(shown) == {"id", "credential"} and re.fullmatch(r"cred_[0-9a-f]{12}", shown["id"])
    assert re.fullmatch(r"axis_[A-Za-z0-9_-]{43}", shown["credential"])
    plain = _axis(data, "credentials", "issue", "--role", "auditor")
    assert plain.exit_code == 0 and re.fullmatch(r"axis_[A-Za-z0-9_-]{43}\n", plain.stdout), plain.output

    listed = _axis(data, "credentials", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["role"], r["agency"], r["state"]) for r in rows] == [("agency", G22, "active"),
                                                                     ("auditor", None, "active")]
    assert shown["credential"] not in listed.stdout
    assert [r["id"] for r in json.loads(_axis(data, "credentials", "list", "--agency", G22, "--json").stdout)] == \
        [shown["id"]]

    revoked = _axis(data, "credentials", "revoke", shown["id"])
    assert revoked.exit_code == 0 and f"revoked {shown['id']}" in revoked.stdout
    assert "already revoked" in _axis(data, "credentials", "revoke", shown["id"]).stdout
    assert json.loads(_axis(data, "credentials", "list", "--json").stdout)[0]["state"] == "revoked"

    with open_store(f"sqlite:///{data / 'axis.db'}") as store:
        audit = [(e.action, e.subject) for e in store.audit_entries() if e.action.startswith("credential-")]
        assert audit == [("credential-issued", shown["id"]), ("credential-issued", rows[1]["id"]),
                         ("credential-revoked", shown["id"])]
        try:
            Authenticator(store).authenticate(shown["credential"])
            raise AssertionError("a revoked credential authenticated")
        except Exception as exc:  # noqa: BLE001 - checked below
            assert type(exc).__name__ == "Unauthorized"


@pytest.mark.parametrize(("args", "says", "code"), [
    (("credentials", "issue"), "--role agency needs --agency CODE", 2),
    (("credentials", "issue", "--role", "operator", "--agency", G22), "acts for no agency", 2),
    (("credentials", "issue", "--agency", "000.00.00.H41"), "000.00.00.H41 is not registered", 1),
    (("credentials", "issue", "--agency", "nonsense"), "", 1),
    (("credentials", "revoke", "cred_000000000000"), "no credential 'cred_000000000000'", 1),
    (("gateway", "--host", "0.0.0.0"), "refusing plain HTTP on 0.0.0.0", 2),
    (("gateway", "--host", "::"), "refusing plain HTTP on ::", 2),
    (("gateway", "--tls-cert", "/nonexistent.pem"), "give both --tls-cert and --tls-key", 2),
    (("serve", "--gateway-host", "0.0.0.0"), "refusing plain HTTP on 0.0.0.0", 2),
])
def test_a_refusal_is_one_line(data: Path, args: tuple[str, ...], says: str, code: int) -> None:
    result = _axis(data, *args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2 and says in result.stderr and "Traceback" not in result.output, result.stderr


def test_the_gateway_speaks_https_with_a_certificate_from_axis_pki_tls(data: Path, processes: list[Process]) -> None:
    made = _axis(data, "pki", "tls", "localhost", "--also", "127.0.0.1")
    assert made.exit_code == 0, made.output
    cert, key = data / "gateway" / "localhost.tls.cert.pem", data / "gateway" / "localhost.tls.key.pem"
    assert (key.stat().st_mode & 0o777) == 0o600
    gateway = Process(data, "gateway", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
    processes.append(gateway)
    url = gateway.wait_for(r"listening on (https://127\.0\.0\.1:\d+)").group(1)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))) as client:
        assert client.get(f"{url}/healthz").json()["status"] == "ok"
        # By its name too. Not ready (503) until `axis serve` has made the intake queue; the store answers.
        ready = client.get(url.replace("127.0.0.1", "localhost") + "/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "unavailable",
                                                             "checks": {"store": "ok", "broker": "down"}}
        answer = client.get(f"{url}/v1/inbox")
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)
    assert gateway.stop() in (0, -signal.SIGTERM)


@pytest.mark.slow(seconds=25)
def test_axis_serve_runs_a_gateway_that_ends_with_it(data: Path, processes: list[Process]) -> None:
    serve = Process(data, "serve", "--workers", "1", "--gateway-port", "0")
    processes.append(serve)
    url = serve.wait_for(r"gateway (http://127\.0\.0\.1:\d+)").group(1)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway of axis serve never became ready"
        time.sleep(0.2)
    serve.stop(signal.SIGKILL)  # not even a chance to stop its child: the child notices on its own
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=2)
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, "the gateway outlived axis serve"
        time.sleep(0.2)

    quiet = Process(data, "serve", "--workers", "1", "--no-gateway")
    processes.append(quiet)
    quiet.wait_for(r"axis hub serving: .*no gateway")
    assert quiet.stop() == 0


def test_axis_serve_stops_when_its_gateway_dies_and_refuses_a_busy_port(data: Path, processes: list[Process]) -> None:
    serve = Process(data, "serve", "--workers", "1", "--gateway-port", "0")
    processes.append(serve)
    port = int(serve.wait_for(r"gateway http://127\.0\.0\.1:(\d+)").group(1))
    gateway = _gateway_child(serve.proc.pid, port)
    os.kill(gateway, signal.SIGKILL)
    serve.wait_for(r"the gateway process ended \(exit code -9\); stopping the hub")
    assert serve.proc.wait(30) == 1

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--workers", "1", "--gateway-port", str(taken)],
                                    env=axis_env(data))
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{taken}" in result.stderr, result.output
    assert "axis hub serving" not in result.output


def _gateway_child(parent: int, port: int) -> int:
    """The child of `parent` that serves `port`: the socket reaches the spawned child a moment after the
    parent prints its address (multiprocessing passes it over a pipe once the child asks), so wait for it."""
    deadline = time.monotonic() + 30
    while True:
        children = subprocess.run(["pgrep", "-P", str(parent), "-f", "spawn_main"], capture_output=True,
                                  text=True).stdout.split()
        found = [int(pid) for pid in children if _listens(int(pid), port)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no child of axis serve listens on port {port}"
        time.sleep(0.1)


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening socket on `port` (Linux /proc)."""
    inodes = set()
    lines = [line for table in ("/proc/net/tcp", "/proc/net/tcp6") for line in Path(table).read_text().splitlines()[1:]]
    for line in lines:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
            inodes.add(fields[9])
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return any(link == f"socket:[{inode}]" for link in links for inode in inodes)
