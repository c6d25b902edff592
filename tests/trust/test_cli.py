"""`axis pki` through typer's CliRunner, on the `app` of cli/pki.py."""
from __future__ import annotations

import stat

from typer.testing import CliRunner

from axis.trust import keys
from cli.pki import app

runner = CliRunner()


def test_init_issue_revoke_crl(tmp_path):
    ca_dir, out = tmp_path / "ca", tmp_path / "out"
    result = runner.invoke(app, ["init", str(ca_dir)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((ca_dir / "ca.key.pem").stat().st_mode) == 0o600

    result = runner.invoke(app, ["issue", "000.00.00.G22", "--pki", str(ca_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cert_path = out / "000.00.00.G22.cert.pem"
    assert cert_path.is_file() and (out / "000.00.00.G22.key.pem").is_file()

    result = runner.invoke(app, ["issue", "000.00.00.H41", "--pki", str(ca_dir), "--out", str(out),
                                 "--key-type", "rsa"])
    assert result.exit_code == 0, result.output
    assert keys.load_certificate(out / "000.00.00.H41.cert.pem").public_key().key_size == 3072

    result = runner.invoke(app, ["revoke", str(cert_path), "--pki", str(ca_dir)])
    assert result.exit_code == 0, result.output
    [crl] = keys.load_crls(ca_dir / "crl.pem")
    assert [entry.serial_number for entry in crl] == [keys.load_certificate(cert_path).serial_number]

    result = runner.invoke(app, ["crl", str(ca_dir)])
    assert result.exit_code == 0, result.output
    assert len(keys.load_crls(ca_dir / "crl.pem")[0]) == 1


def test_errors_go_to_stderr_with_a_non_zero_exit(tmp_path):
    ca_dir = tmp_path / "ca"
    assert runner.invoke(app, ["init", str(ca_dir)]).exit_code == 0

    again = runner.invoke(app, ["init", str(ca_dir)])
    assert again.exit_code != 0 and "already exists" in again.stderr and again.stdout == ""

    bad_code = runner.invoke(app, ["issue", "000.00.00.g22", "--pki", str(ca_dir), "--out", str(tmp_path / "o")])
    assert bad_code.exit_code != 0 and "AX206" in bad_code.stderr

    no_ca = runner.invoke(app, ["issue", "000.00.00.G22", "--pki", str(tmp_path / "none"), "--out",
                                str(tmp_path / "o")])
    assert no_ca.exit_code != 0 and "axis pki init" in no_ca.stderr

    missing = runner.invoke(app, ["revoke", str(tmp_path / "missing.pem"), "--pki", str(ca_dir)])
    assert missing.exit_code != 0 and "cannot read" in missing.stderr

    bad_type = runner.invoke(app, ["issue", "000.00.00.G22", "--pki", str(ca_dir), "--out", str(tmp_path / "o"),
                                   "--key-type", "dsa"])
    assert bad_type.exit_code == 2
