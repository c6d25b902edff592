"""Fixtures for the adapter tests: a real PKI, and a fresh transport per test on every implementation.

- embedded: a new SQLite transport file in the test's tmp_path;
- rabbitmq: a new vhost through the management API (the transport tests'
  `RabbitAdmin`), deleted at teardown.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from axis.transport import RetryPolicy, Transport
from axis.trust import Signer, Verifier, pki
from tests.adapters.support import G22, H14, H41, HUB, LEASE, POLICY, DevPKI, HubSide, run_hub
# A fresh transport per test on every implementation: the transport tests' fixtures, with our retry policy.
from tests.transport.conftest import open_tr, rabbitmq_url, transport, transport_url  # noqa: F401


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
                  cert_paths, Signer.from_files(other_key, other_cert))


@pytest.fixture
def retry_policy() -> RetryPolicy:
    return POLICY


@pytest.fixture
async def hub(transport: Transport, dev_pki: DevPKI) -> HubSide:
    side = HubSide(transport, dev_pki)
    await side.declare(G22, H41, H14)
    return side


@pytest.fixture
def cli_env(transport_url: str, dev_pki: DevPKI, tmp_path: Path) -> dict[str, str]:
    """The shared defaults as an operator would set them, for commands; queues declared as the hub would."""
    run_hub(transport_url, dev_pki, lambda hub: hub.declare(G22, H41, H14))
    return {"AXIS_DATA": str(tmp_path / "data"), "AXIS_BROKER": transport_url,
            "AXIS_TRUST": str(dev_pki.directory / "ca.pem"), "AXIS_CRL": str(dev_pki.directory / "crl.pem"),
            "AXIS_EMBEDDED_LEASE": str(LEASE), "COLUMNS": "250"}
