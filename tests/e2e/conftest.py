"""Fixtures for the end-to-end tests: a PKI made by `axis pki`, and one fresh deployment per test.

- `e2e_pki` (session): `axis pki init` and `axis pki issue` (EC keys), run once
  through the real typer app in-process; every deployment copies the CA, CRL
  and hub key into its AXIS_DATA, where `axis serve` looks for them.
- `deployment`: parametrized over the two configurations the hub ships with:
  `embedded` (SQLite + embedded transport in a tmp AXIS_DATA) and
  `rabbitmq+postgres` (a fresh vhost through the management API and a fresh
  database copied from the store tests' migrated template; both dropped after
  the test). `embedded_deployment` and `rabbit_deployment` are one of each.
  G22, H41, H14 and G17 are registered with `axis agency add`; the hub is NOT
  started (tests call `deployment.serve()`), and every process is ended at
  teardown.
- `bulk_packets` (session): the 2,000 signed documents of the fault runs
  (`bulk_run`), signed once.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.e2e.bulk_run import BULK, BULK_RECIPIENTS, BULK_SENDERS
from tests.e2e.harness import Deployment
from tests.e2e.packets import AGENCIES, HUB, TestPKI
from tests.store.conftest import fresh_rabbitmq_and_postgres, pg_template  # noqa: F401 - fixture reused

RABBIT = [pytest.mark.rabbitmq, pytest.mark.postgres]
CONFIGURATIONS = ["embedded", pytest.param("rabbitmq+postgres", marks=RABBIT)]


def _pki_command(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"axis {' '.join(args)}: {result.output}"


@pytest.fixture(scope="session")
def e2e_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    root = tmp_path_factory.mktemp("e2e-pki")
    _pki_command("pki", "init", str(root / "ca"))
    for code in (HUB, *AGENCIES):
        _pki_command("pki", "issue", code, "--pki", str(root / "ca"), "--out", str(root / "keys"), "--key-type", "ec")
    _pki_command("pki", "init", str(root / "other-ca"))  # a root nobody in the deployment trusts
    return TestPKI(root)


def _make(kind: str, request: pytest.FixtureRequest, tmp_path: Path, pki: TestPKI) -> Iterator[Deployment]:
    if kind == "embedded":
        deployment = Deployment(kind, tmp_path / "axis-data", pki)
        try:
            deployment.register(*AGENCIES)
            yield deployment
        finally:
            deployment.close()
        return
    with fresh_rabbitmq_and_postgres(request, "axis-e2e") as (db, broker):
        deployment = Deployment(kind, tmp_path / "axis-data", pki, broker=broker, db=db)
        try:
            deployment.register(*AGENCIES)
            yield deployment
        finally:
            deployment.close()


@pytest.fixture(params=CONFIGURATIONS)
def deployment(request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI) -> Iterator[Deployment]:
    yield from _make(request.param, request, tmp_path, e2e_pki)


@pytest.fixture
def embedded_deployment(request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI) -> Iterator[Deployment]:
    yield from _make("embedded", request, tmp_path, e2e_pki)


@pytest.fixture
def rabbit_deployment(request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI) -> Iterator[Deployment]:
    yield from _make("rabbitmq+postgres", request, tmp_path, e2e_pki)


@pytest.fixture(scope="session")
def bulk_packets(e2e_pki: TestPKI) -> dict[str, bytes]:
    """2,000 signed documents (file name -> bytes), half from G22 and half from G17, each to H41 and H14.

    Signed once per session (EC keys: ~1.5 ms each) and written into each test's outbox.
    """
    per_sender = BULK // len(BULK_SENDERS)
    return {f"{sender.rsplit('.', 1)[1]}-{number:04d}.edxml":
            e2e_pki.document(sender, list(BULK_RECIPIENTS), number)
            for sender in BULK_SENDERS for number in range(1, per_sender + 1)}
