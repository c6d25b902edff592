"""A real development PKI with the axis key in both kinds Axis signs with, and real signer processes."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from axis import wire
from axis.signer import SignerChild, SignerClient
from axis.trust import pki


@dataclass(frozen=True)
class AxisKey:
    kind: str            # "ec" | "rsa"
    key: Path
    cert: Path
    ca: Path             # the root it chains to (PEM)
    crl: Path


@pytest.fixture(scope="session")
def axis_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, AxisKey]:
    root = tmp_path_factory.mktemp("signer-pki")
    pki.init_ca(root / "ca")
    found = {}
    for kind in ("ec", "rsa"):
        key, cert = pki.issue(wire.HUB_IDENTITY, root / "ca", root / kind, kind)  # type: ignore[arg-type]
        found[kind] = AxisKey(kind, key, cert, root / "ca" / "ca.pem", root / "ca" / "crl.pem")
    return found


@pytest.fixture(scope="module")
def ec_signer(axis_keys: dict[str, AxisKey]) -> Iterator[SignerChild]:
    """A signer process with the EC axis key and two signing processes, shared by a module's tests that
    do not hurt it."""
    with SignerChild(axis_keys["ec"].key, axis_keys["ec"].cert, processes=2) as child:
        yield child


@pytest.fixture
def fresh_signer(axis_keys: dict[str, AxisKey]) -> Iterator[SignerChild]:
    """A signer process of the test's own, for tests that kill or stall it."""
    child = SignerChild(axis_keys["ec"].key, axis_keys["ec"].cert, processes=2)
    child.start()
    try:
        yield child
    finally:
        child.stop()


@pytest.fixture
def client(ec_signer: SignerChild) -> SignerClient:
    return SignerClient(ec_signer.socket, timeout=20)
