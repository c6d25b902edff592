"""Fixtures for the adapter tests: a real PKI, and a whole axis per test that agencies reach through an edge.

`axis` is parametrized over the roads and configurations agencies meet:
- `embedded-local`: SQLite store + embedded transport, agencies on `LocalEdge` (the operator's machine);
- `embedded-gateway`: the same, agencies on `GatewayEdge` through the real gateway app and real credentials;
- `rabbitmq+postgres-gateway`: a fresh RabbitMQ vhost and a fresh PostgreSQL database (both dropped after
  the test), agencies on `GatewayEdge`.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from axis.trust import Signer, Verifier, pki
from tests.adapters.support import G22, H14, H41, HUB, LEASE, Axis, DevPKI
from tests.store.conftest import fresh_rabbitmq_and_postgres, pg_template  # noqa: F401 - fixture reused

RABBIT = [pytest.mark.rabbitmq, pytest.mark.postgres]
ROADS = ["embedded-local", "embedded-gateway", pytest.param("rabbitmq+postgres-gateway", marks=RABBIT)]


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    base = tmp_path_factory.mktemp("adapters-pki")
    ca_dir, out = base / "ca", base / "agencies"
    pki.init_ca(ca_dir)
    key_paths, cert_paths, signers = {}, {}, {}
    for code in (HUB, G22, H41, H14):
        key_paths[code], cert_paths[code] = pki.issue(code, ca_dir, out)
        signers[code] = Signer.from_files(key_paths[code], cert_paths[code])
    pki.init_ca(base / "other-ca")
    other_key, other_cert = pki.issue(G22, base / "other-ca", base / "other")
    return DevPKI(ca_dir, Verifier.from_files(ca_dir / "ca.pem", ca_dir / "crl.pem"), signers, key_paths,
                  cert_paths, Signer.from_files(other_key, other_cert),
                  Verifier.from_files(base / "other-ca" / "ca.pem", base / "other-ca" / "crl.pem"))


@pytest.fixture
def deployment_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(configuration, store URL, transport URL) of a fresh, empty deployment for the road in `axis_road`."""
    road = request.getfixturevalue("axis_road")
    if road.startswith("embedded"):
        yield "embedded", f"sqlite:///{tmp_path / 'axis.db'}", f"embedded://{tmp_path / 'transport.db'}"
        return
    with fresh_rabbitmq_and_postgres(request, "axis-sdk") as (db, broker):
        yield "rabbitmq+postgres", db, broker


@pytest.fixture(params=ROADS)
def axis_road(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def axis(axis_road: str, deployment_urls: tuple[str, str, str], dev_pki: DevPKI) -> AsyncIterator[Axis]:
    _, store_url, transport_url = deployment_urls
    running = await Axis(dev_pki, store_url, transport_url, axis_road.rsplit("-", 1)[1]).start()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def cli_env(deployment_urls: tuple[str, str, str], dev_pki: DevPKI, tmp_path: Path) -> dict[str, str]:
    """The operator's settings on this machine, as the agency commands read them (no gateway)."""
    _, store_url, transport_url = deployment_urls
    return {"AXIS_DATA": str(tmp_path / "data"), "AXIS_BROKER": transport_url, "AXIS_DB": store_url,
            "AXIS_TRUST": str(dev_pki.directory / "ca.pem"), "AXIS_CRL": str(dev_pki.directory / "crl.pem"),
            "AXIS_KEY": str(dev_pki.key_paths[HUB]), "AXIS_CERT": str(dev_pki.cert_paths[HUB]),
            "AXIS_EMBEDDED_LEASE": str(LEASE), "COLUMNS": "250"}
