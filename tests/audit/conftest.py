"""Fixtures of the verifiable-log tests: the store fixtures (SQLite and PostgreSQL), a PKI with Axis's key,
and a checkpoint writer signing with that key."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from axis import wire
from axis.audit.checkpoints import CheckpointWriter
from axis.audit.logkeys import seal_store
from axis.signer.local import LocalSigner
from axis.store import Store
from axis.trust import keys, pki
from tests.store.conftest import backend, clock, migrated_url, pg_template, store  # noqa: F401
from tests.store.store_helpers import RECIPIENTS, SENDER


def key_signer(key_path: Path, cert_path: Path) -> LocalSigner:
    """The axis key in this process (the signer process's own code), for a writer under test."""
    return LocalSigner.from_files(key_path, cert_path)


@dataclass(frozen=True)
class Pki:
    root: Path
    trust: list[x509.Certificate]
    axis_key: Path
    axis_cert: Path
    rogue_key: Path          # an "AXIS" certificate from a CA nobody trusts
    rogue_cert: Path


@pytest.fixture(scope="session")
def audit_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("audit-pki")
    pki.init_ca(root / "ca")
    pki.issue(wire.HUB_IDENTITY, root / "ca", root / "keys")
    pki.init_ca(root / "rogue-ca", common_name="Mallory Root CA")
    pki.issue(wire.HUB_IDENTITY, root / "rogue-ca", root / "rogue")
    return Pki(root, keys.load_certificates(root / "ca" / "ca.pem"), root / "keys" / "AXIS.key.pem",
               root / "keys" / "AXIS.cert.pem", root / "rogue" / "AXIS.key.pem", root / "rogue" / "AXIS.cert.pem")


@pytest.fixture
def seeded(store: Store, audit_pki: Pki) -> Store:  # noqa: F811
    """A store sealed as Axis's processes seal theirs (a log key certified by the axis key), with one sender
    and three recipients registered."""
    seal_store(store, key_signer(audit_pki.axis_key, audit_pki.axis_cert), "hub")
    with store.write() as tx:
        tx.add_agency(SENDER, "Văn phòng Chính phủ")
        for code in RECIPIENTS:
            tx.add_agency(code, f"Agency {code}", parent=SENDER)
    return store


@pytest.fixture
def writer(seeded: Store, audit_pki: Pki, clock) -> CheckpointWriter:  # noqa: F811
    return CheckpointWriter(seeded, key_signer(audit_pki.axis_key, audit_pki.axis_cert),
                            every_entries=1000, every_seconds=10, clock=clock)
