"""A new operator's everyday mistakes end in one line naming the file and what is wrong, exit code 2, and
never a traceback (issue 11): a missing key or certificate, a key that is not the certificate's, a file
that is not what it should be, in `packet sign`, `packet verify` and `agency add`. And `axis --version`."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app

G22 = "000.00.00.G22"


def axis(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mistakes")
    assert axis("pki", "init", root / "ca").exit_code == 0
    assert axis("pki", "issue", G22, "--pki", root / "ca", "--out", root / "keys").exit_code == 0
    (root / "packet.xml").write_bytes(b"<x/>")
    return root


def _one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], result.output


def test_a_missing_key_file(files: Path) -> None:
    _one_line_error(axis("packet", "sign", files / "packet.xml", "--key", files / "nokey.pem", "--cert",
                         files / "keys" / f"{G22}.cert.pem", "--out", files / "out.xml"),
                    "nokey.pem", "cannot read", "No such file")


def test_a_missing_certificate_file(files: Path) -> None:
    _one_line_error(axis("packet", "sign", files / "packet.xml", "--key", files / "keys" / f"{G22}.key.pem",
                         "--cert", files / "nocert.pem", "--out", files / "out.xml"), "nocert.pem", "cannot read")


def test_a_key_that_is_not_the_certificates(files: Path) -> None:
    _one_line_error(axis("packet", "sign", files / "packet.xml", "--key", files / "ca" / "ca.key.pem", "--cert",
                         files / "keys" / f"{G22}.cert.pem", "--out", files / "out.xml"),
                    "does not belong to the certificate", G22)
    assert not (files / "out.xml").exists()


def test_a_certificate_given_as_the_key(files: Path) -> None:
    _one_line_error(axis("packet", "sign", files / "packet.xml", "--key", files / "keys" / f"{G22}.cert.pem",
                         "--cert", files / "keys" / f"{G22}.cert.pem", "--out", files / "out.xml"),
                    f"{G22}.cert.pem", "not a readable PEM private key")


@pytest.mark.parametrize("trust", ["missing.pem", "ca/crl.pem"])
def test_packet_verify_with_trust_it_cannot_use(files: Path, trust: str) -> None:
    _one_line_error(axis("packet", "verify", files / "packet.xml", "--trust", files / trust), trust)


def test_agency_add_with_a_missing_certificate(files: Path, tmp_path: Path) -> None:
    result = axis("agency", "add", G22, "--name", "Văn phòng Chính phủ", "--cert", files / "missing.pem",
                  "--db", f"sqlite:///{tmp_path / 'axis.db'}", env={"AXIS_DATA": str(tmp_path)})
    _one_line_error(result, "missing.pem", "cannot read")


def test_version() -> None:
    from importlib.metadata import version

    result = axis("--version")
    assert result.exit_code == 0 and result.output.strip() == f"axis {version('axis-backbone')}", result.output
