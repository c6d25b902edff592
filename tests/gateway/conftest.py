"""Fixtures for the gateway tests: a real hub behind a real HTTP gateway, on both configurations.

- `gateway`: one `ServedGateway` per test (tests/gateway/support.py), parametrized over the embedded
  defaults (SQLite + the embedded transport) and RabbitMQ + PostgreSQL (a fresh vhost and database,
  dropped afterwards; skipped, or failed under CI=true, when the services are down).
- `module_gateway`: the same, shared by a module's tests (schemathesis runs many operations on one).
"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.support import Process, ServedGateway, served_gateway
from tests.hub.conftest import pki_dir  # noqa: F401 - fixture reused
from tests.store.conftest import pg_template  # noqa: F401 - fixture reused

RABBIT = [pytest.mark.rabbitmq, pytest.mark.postgres]
CONFIGURATIONS = ["embedded", pytest.param("rabbitmq+postgres", marks=RABBIT)]


def _template(request: pytest.FixtureRequest, kind: str) -> str | None:
    return request.getfixturevalue("pg_template") if kind != "embedded" else None


@pytest.fixture(params=CONFIGURATIONS)
def gateway(request: pytest.FixtureRequest, tmp_path: Path, pki_dir: Path) -> Iterator[ServedGateway]:  # noqa: F811
    with served_gateway(request.param, tmp_path, pki_dir, _template(request, request.param)) as served:
        yield served


@pytest.fixture
def embedded_gateway(tmp_path: Path, pki_dir: Path) -> Iterator[ServedGateway]:  # noqa: F811
    with served_gateway("embedded", tmp_path, pki_dir) as served:
        yield served


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def module_gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   pki_dir: Path) -> Iterator[ServedGateway]:  # noqa: F811
    root = tmp_path_factory.mktemp("gateway")
    with served_gateway(request.param, root, pki_dir, _template(request, request.param)) as served:
        yield served


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """`axis` processes a test starts; any still running at the end is killed with its whole session."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(10)
