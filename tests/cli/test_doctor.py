"""`axis doctor`: each broken part is named by its own failing check, with exit code 1; a healthy axis passes.

A quiet axis (a store, an embedded transport with its intake queue, the axis's certificate and a CRL, a
calendar covering this year and next, no hub running) fails exactly one check, `hub`. Each test breaks one
more thing and requires that check, and only it, to fail besides. The healthy axis is a real `axis serve`
(hub and gateway), on the embedded defaults and on RabbitMQ + PostgreSQL.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from axis import wire
from axis.health import CHECKS
from axis.store import open_store
from axis.store.migrate import downgrade
from axis.transport import open_transport
from axis.trust import keys, pki
from cli.main import app
from tests.e2e.conftest import RABBIT, e2e_pki  # noqa: F401 - fixtures reused
from tests.e2e.harness import AXIS, REPO, Deployment
from tests.e2e.packets import HUB, TestPKI
from tests.gateway.support import Process
from tests.store.conftest import fresh_rabbitmq_and_postgres, pg_template  # noqa: F401 - fixture reused

AGENCY = "000.00.00.G22"
OTHER = "000.00.00.H41"


def closed_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (bound and let go: nothing else takes it this soon)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def calendar_file(path: Path, *years: int) -> Path:
    path.write_text("".join(f"{year}-01-01\n" for year in years))
    return path


def this_year() -> int:
    return dt.datetime.now(dt.UTC).year


class Report:
    """How one `axis doctor --json` ended."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stderr = exit_code, stderr
        report = json.loads(stdout)
        self.checks: dict[str, dict[str, Any]] = {check["name"]: check for check in report["checks"]}
        assert list(self.checks) == list(CHECKS), "every check, in order"
        assert report["ok"] is (exit_code == 0)
        for check in self.checks.values():
            assert check["detail"], check
            if check["verdict"] in ("warn", "fail"):
                assert check["action"], f"what to do: {check}"
            if check["verdict"] == "ok":
                assert not check["action"], check

    def verdicts(self) -> dict[str, str]:
        return {name: check["verdict"] for name, check in self.checks.items()}

    def failed(self) -> list[str]:
        return [name for name, verdict in self.verdicts().items() if verdict == "fail"]

    def __repr__(self) -> str:
        return f"exit {self.exit_code}\n{json.dumps(self.checks, indent=1)}\n{self.stderr}"


def doctor(env: dict[str, str], *args: str) -> Report:
    result = CliRunner().invoke(app, ["doctor", "--json", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    report = Report(result.exit_code, result.stdout, result.stderr)
    if report.failed():
        assert result.exit_code == 1, report
        assert result.stderr.strip() == f"error: {len(report.failed())} check(s) failed: {', '.join(report.failed())}"
    else:
        assert result.exit_code == 0, report
    return report


@pytest.fixture
def quiet(tmp_path: Path) -> dict[str, str]:
    """The environment of an axis with everything in place but its hub (see the module docstring)."""
    data = tmp_path / "axis-data"
    pki.init_ca(data / "pki")
    pki.issue(HUB, data / "pki", data / "hub")
    open_store(f"sqlite:///{data / 'axis.db'}", create=True).close()

    async def declare() -> None:
        transport = await open_transport(f"embedded://{data / 'transport.db'}")
        await transport.declare_queue(wire.INTAKE_QUEUE)
        await transport.close()

    asyncio.run(declare())
    calendar = calendar_file(tmp_path / "holidays.txt", this_year(), this_year() + 1)
    return {"AXIS_DATA": str(data), "AXIS_DEADLINE_CALENDAR": str(calendar), "NO_COLOR": "1"}


def test_a_quiet_axis_fails_only_for_its_missing_hub(quiet: dict[str, str]) -> None:
    report = doctor(quiet, "--gateway", "none")
    assert report.failed() == ["hub"]
    assert "no hub consumes axis.intake" in report.checks["hub"]["detail"]
    assert "axis serve" in report.checks["hub"]["action"]
    assert report.verdicts() == {"broker": "ok", "database": "ok", "disk": "ok", "certificates": "ok", "crl": "ok",
                                 "clock": "n/a", "calendar": "ok", "hub": "fail", "gateway": "n/a", "tsa": "n/a"}
    assert "SQLite" in report.checks["clock"]["detail"]


def test_a_stopped_broker(quiet: dict[str, str]) -> None:
    port = closed_port()
    report = doctor(quiet, "--gateway", "none", "--broker", f"amqp://guest:guest@127.0.0.1:{port}/")
    assert report.failed() == ["broker"]
    assert f"127.0.0.1:{port}" in report.checks["broker"]["detail"]
    assert report.checks["hub"]["verdict"] == "n/a"


def test_a_stopped_database(quiet: dict[str, str]) -> None:
    port = closed_port()
    report = doctor(quiet, "--gateway", "none", "--db", f"postgresql://postgres@127.0.0.1:{port}/axis")
    assert report.failed() == ["database", "hub"]
    assert f"127.0.0.1:{port}" in report.checks["database"]["detail"]
    assert report.checks["clock"]["verdict"] == report.checks["tsa"]["verdict"] == "n/a"


def test_a_database_behind_the_newest_schema(quiet: dict[str, str]) -> None:
    store = open_store(f"sqlite:///{Path(quiet['AXIS_DATA']) / 'axis.db'}")
    downgrade(store.engine, "0005")
    store.close()
    report = doctor(quiet, "--gateway", "none")
    assert report.failed() == ["database", "hub"]
    assert "has schema 0005" in report.checks["database"]["detail"]


def test_an_agency_certificate_ending_in_ten_days(quiet: dict[str, str], tmp_path: Path) -> None:
    data = Path(quiet["AXIS_DATA"])
    _, short = pki.issue(AGENCY, data / "pki", tmp_path / "short", valid_days=10)
    _, long = pki.issue(OTHER, data / "pki", tmp_path / "long")
    for code, cert in ((AGENCY, short), (OTHER, long)):
        added = CliRunner().invoke(app, ["agency", "add", code, "--name", code, "--cert", str(cert)], env=quiet)
        assert added.exit_code == 0, added.output
    report = doctor(quiet, "--gateway", "none")
    assert report.failed() == ["certificates", "hub"]
    detail = report.checks["certificates"]["detail"]
    assert "within 14 days" in detail and AGENCY in detail and "(10 days)" in detail and OTHER not in detail
    # Only a warning when the margin is shorter than what is left ...
    assert doctor(quiet, "--gateway", "none", "--expiring-days", "5").verdicts()["certificates"] == "warn"
    # ... and nothing to say once the agency has a newer certificate beside it (a rotation under way).
    _, renewed = pki.issue(AGENCY, data / "pki", tmp_path / "renewed")
    with open_store(f"sqlite:///{data / 'axis.db'}") as store, store.write() as tx:
        tx.add_certificate(AGENCY, renewed.read_text())
    assert doctor(quiet, "--gateway", "none").failed() == ["hub"]


def test_the_axis_certificate_ending_in_ten_days(quiet: dict[str, str], tmp_path: Path) -> None:
    _, cert = pki.issue(HUB, Path(quiet["AXIS_DATA"]) / "pki", tmp_path / "short", valid_days=10)
    report = doctor({**quiet, "AXIS_CERT": str(cert)}, "--gateway", "none")
    assert report.failed() == ["certificates", "hub"]
    assert "the axis ends" in report.checks["certificates"]["detail"]
    assert "AXIS_CERT" in report.checks["certificates"]["action"]


def test_a_stale_crl(quiet: dict[str, str], tmp_path: Path) -> None:
    ca = pki.load_ca(Path(quiet["AXIS_DATA"]) / "pki")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    stale = keys.write_public_file(tmp_path / "stale-crl.pem", keys.crl_pem(pki.build_crl(
        ca.certificate, ca.key, last_update=past - dt.timedelta(days=7), next_update=past, number=2)))
    report = doctor({**quiet, "AXIS_CRL": str(stale)}, "--gateway", "none")
    assert report.failed() == ["crl", "hub"]
    assert "has passed" in report.checks["crl"]["detail"] and "axis pki crl" in report.checks["crl"]["action"]


def test_a_calendar_that_ends_last_year(quiet: dict[str, str], tmp_path: Path) -> None:
    last_year = calendar_file(tmp_path / "old-holidays.txt", this_year() - 2, this_year() - 1)
    report = doctor(quiet, "--gateway", "none", "--calendar", str(last_year))
    assert report.failed() == ["calendar", "hub"]
    assert f"ends with {this_year() - 1}" in report.checks["calendar"]["detail"]


def test_a_full_disk(quiet: dict[str, str]) -> None:
    report = doctor({**quiet, "AXIS_DOCTOR_MIN_FREE_MB": str(10 ** 9)}, "--gateway", "none")  # a petabyte
    assert report.failed() == ["disk", "hub"]
    assert "less than" in report.checks["disk"]["detail"]


def test_checkpoints_waiting_for_their_timestamps(quiet: dict[str, str]) -> None:
    from axis.audit.checkpoints import CheckpointWriter
    from axis.signer import LocalSigner

    data = Path(quiet["AXIS_DATA"])
    with open_store(f"sqlite:///{data / 'axis.db'}") as store:
        writer = CheckpointWriter(store, LocalSigner.from_files(data / "hub" / f"{HUB}.key.pem",
                                                                data / "hub" / f"{HUB}.cert.pem"))
        for number in range(3):  # three checkpoints, none stamped: the TSA never answered
            with store.write() as tx:
                tx.audit("operator", "test-entry", str(number), {})
            assert writer.write() is not None
    tsa = {**quiet, "AXIS_TSA_URL": f"http://127.0.0.1:{closed_port()}/", "AXIS_DOCTOR_TSA_WARN": "1"}
    assert doctor(quiet, "--gateway", "none").verdicts()["tsa"] == "n/a"  # no TSA: kept unstamped on purpose
    warned = doctor({**tsa, "AXIS_DOCTOR_TSA_FAIL": "5"}, "--gateway", "none")
    assert warned.failed() == ["hub"] and warned.verdicts()["tsa"] == "warn"
    assert warned.checks["tsa"]["detail"].startswith("3 checkpoint(s) wait")
    assert doctor({**tsa, "AXIS_DOCTOR_TSA_FAIL": "2"}, "--gateway", "none").failed() == ["hub", "tsa"]


def test_a_gateway_that_answers_but_is_not_ready(quiet: dict[str, str], tmp_path: Path) -> None:
    # A real `axis gateway` on a broker where no hub ever declared axis.intake: its /readyz says 503.
    gateway = Process(Path(quiet["AXIS_DATA"]), "gateway", "--port", "0", "--broker",
                      f"embedded://{tmp_path / 'no-hub-yet.db'}", env={"AXIS_INTAKE_AT": "hub"})  # no workers
    try:
        url = gateway.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        report = doctor(quiet, "--gateway", url)
    finally:
        gateway.stop()
    assert report.failed() == ["hub", "gateway"]
    assert report.checks["gateway"]["detail"] == f"{url} answers but is not ready: broker down"


def test_an_impostor_at_the_gateway_address_is_not_a_gateway_and_learns_no_credential(
        quiet: dict[str, str], tmp_path: Path) -> None:
    heard: list[dict[str, str]] = []

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            heard.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    credential = tmp_path / "credential"
    credential.write_text("axis_" + "s" * 43 + "\n")
    try:
        report = doctor({**quiet, "AXIS_CREDENTIAL": str(credential)},
                        "--gateway", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert report.failed() == ["hub", "gateway"]
    assert "not an Axis gateway?" in report.checks["gateway"]["detail"]
    assert heard and all("authorization" not in {k.lower() for k in headers} for headers in heard)


def test_passwords_never_show(quiet: dict[str, str]) -> None:
    port = closed_port()
    result = CliRunner().invoke(app, ["doctor", "--gateway", "none",
                                      "--broker", f"amqp://guest:s3cret-broker@127.0.0.1:{port}/",
                                      "--db", f"postgresql://postgres:s3cret-db@127.0.0.1:{port}/axis"], env=quiet)
    assert result.exit_code == 1
    assert "s3cret" not in result.stdout + result.stderr and "***" in result.stdout


def test_the_table_reads_at_80_columns(quiet: dict[str, str]) -> None:
    """A real process (the console's width is read when it starts), one verdict line per check."""
    port = closed_port()
    env = {**os.environ, **quiet, "COLUMNS": "80"}
    done = subprocess.run([*AXIS, "doctor", "--broker", f"amqp://guest:guest@127.0.0.1:{port}/", "--gateway",
                           f"http://127.0.0.1:{port}"], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    verdict_lines = [line.split()[:2] for line in lines if line and not line[0].isspace()]
    assert [name for _, name in verdict_lines] == list(CHECKS)
    assert dict((name, verdict) for verdict, name in verdict_lines)["broker"] == "FAIL"
    assert done.stderr.strip() == "error: 2 check(s) failed: broker, gateway"


# ------------------------------------------------------------------ a real axis


# RabbitMQ+PostgreSQL here; the operator guide's test runs `axis doctor` on a healthy embedded axis.
@pytest.mark.parametrize("kind", [pytest.param("rabbitmq+postgres", marks=RABBIT)])
def test_a_healthy_axis_passes_and_each_thing_that_breaks_is_named(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI) -> None:  # noqa: F811
    if kind == "embedded":
        run(Deployment(kind, tmp_path / "axis-data", e2e_pki), tmp_path)
        return
    with fresh_rabbitmq_and_postgres(request, "axis-doctor") as (db, broker):
        run(Deployment(kind, tmp_path / "axis-data", e2e_pki, broker=broker, db=db), tmp_path)


def run(deployment: Deployment, tmp_path: Path) -> None:
    calendar = calendar_file(tmp_path / "holidays.txt", this_year(), this_year() + 1)
    env = {**deployment.env(), "AXIS_DEADLINE_CALENDAR": str(calendar)}
    where = ["--gateway", deployment.gateway_url]
    where += ["--db", deployment.db] if deployment.db else []
    where += ["--broker", deployment.broker] if deployment.broker else []
    try:
        deployment.register(AGENCY)
        hub = deployment.serve()
        healthy = doctor(env, *where)
        assert healthy.failed() == [] and set(healthy.verdicts().values()) <= {"ok", "n/a"}, healthy
        assert healthy.verdicts()["clock"] == ("n/a" if deployment.db is None else "ok")
        assert healthy.checks["hub"]["detail"].startswith("1 consumer(s)")
        assert "is ready" in healthy.checks["gateway"]["detail"]

        _, short = pki.issue(OTHER, deployment.pki.ca, tmp_path / "short", valid_days=10)
        added = deployment.cli("agency", "add", OTHER, "--name", "UBND Tỉnh Nghệ An", "--cert", str(short))
        assert added.exit_code == 0, added
        assert doctor(env, *where).failed() == ["certificates"]

        hub.stop()
        stopped = doctor(env, *where)
        assert stopped.failed() == ["certificates", "hub", "gateway"], stopped
    finally:
        deployment.close()
