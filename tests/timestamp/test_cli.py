"""`axis tsa init` (typer's CliRunner on cli/tsa.py) and the two TSA settings."""
from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from axis.settings import SettingsError, load
from axis.timestamp import load_authority
from axis.trust import keys
from cli.tsa import app

runner = CliRunner()


@pytest.mark.parametrize(("key_type", "key_class"), [("ec", ec.EllipticCurvePublicKey), ("rsa", rsa.RSAPublicKey)])
def test_init_writes_a_root_and_a_tsa_certificate_with_the_critical_eku(key_type: str, key_class: type,
                                                                         tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "tsa"), "--key-type", key_type])
    assert result.exit_code == 0, result.output
    root_path, cert_path, key_path = (tmp_path / "tsa" / name for name in ("tsa-root.pem", "tsa.pem", "tsa.key"))
    for path in (root_path, cert_path, key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in (tmp_path / "tsa").iterdir()) == ["tsa-root.pem", "tsa.key", "tsa.pem"]
    root, cert = keys.load_certificate(root_path), keys.load_certificate(cert_path)
    cert.verify_directly_issued_by(root)
    assert isinstance(cert.public_key(), key_class)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert load_authority(key_path, cert_path)  # what `axis tsa serve` accepts


def test_init_never_replaces_a_tsa(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    before = (tmp_path / "tsa.key").read_bytes()
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "already exists; refusing to replace a TSA" in result.output
    assert (tmp_path / "tsa.key").read_bytes() == before


def test_the_tsa_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load().tsa_url is None and load().tsa_trust is None
    monkeypatch.setenv("AXIS_TSA_URL", "https://tsa.example.org/")
    monkeypatch.setenv("AXIS_TSA_TRUST", str(tmp_path / "roots.pem"))
    assert load().tsa_url == "https://tsa.example.org/"
    assert load().tsa_trust == tmp_path / "roots.pem"
    monkeypatch.setenv("AXIS_TSA_URL", "tsa.example.org:3161")
    with pytest.raises(SettingsError, match=re.escape("AXIS_TSA_URL='tsa.example.org:3161': use the TSA's http:// or https://")):
        load()
