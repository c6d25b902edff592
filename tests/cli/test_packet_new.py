"""`axis packet new` builds a valid unsigned packet that `axis packet sign`, `verify` and `validate` accept;
a bad input is one line and exit 2 (issue 11, item 7). Through a running hub: tests/e2e/test_packet_new.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"


def axis(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packet-new")
    assert axis("pki", "init", root / "ca").exit_code == 0
    assert axis("pki", "issue", G22, "--pki", root / "ca", "--out", root, "--key-type", "ec").exit_code == 0
    return root


def test_a_new_packet_signs_verifies_and_validates(pki: Path, tmp_path: Path) -> None:
    (tmp_path / "công văn.pdf").write_bytes(b"%PDF-1.4 not much of a pdf")
    (tmp_path / "notes.bin").write_bytes(bytes(range(256)))
    made = axis("packet", "new", "--from", G22, "--to", H41, "--to", H14, "--to", H41, "--subject", "Về việc thử",
                "--attach", tmp_path / "công văn.pdf", "--attach", tmp_path / "notes.bin", "--priority", "3",
                "--number", "42", "--notation", "VPCP-TTĐT", "-o", tmp_path / "new.edxml")
    assert made.exit_code == 0, made.output
    assert "new.edxml" in made.stdout and "2 attachment(s)" in made.stdout
    signed = axis("packet", "sign", tmp_path / "new.edxml", "--key", pki / f"{G22}.key.pem", "--cert",
                  pki / f"{G22}.cert.pem", "-o", tmp_path / "signed.edxml")
    assert signed.exit_code == 0, signed.output
    verified = axis("packet", "verify", tmp_path / "signed.edxml", "--trust", pki / "ca" / "ca.pem", "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["signer"] == G22, verified.output
    for packet in ("new.edxml", "signed.edxml"):
        validated = axis("packet", "validate", tmp_path / packet)
        assert (validated.exit_code, validated.stdout.strip()) == (0, "valid document packet"), validated.output
    shown = json.loads(axis("packet", "show", tmp_path / "signed.edxml", "--json").stdout)
    assert shown["header"]["from"]["organ_id"] == G22
    assert [r["organ_id"] for r in shown["header"]["to"]] == [H41, H14]  # a repeated --to once
    assert shown["header"]["subject"] == "Về việc thử" and shown["header"]["other_info"]["priority"] == 3
    assert shown["header"]["document_id"].endswith(",42/VPCP-TTĐT")
    assert [(a["attachment_name"], a["content_type"], a["size"]) for a in shown["attachments"]] == [
        ("công văn.pdf", "application/pdf", 26), ("notes.bin", "application/octet-stream", 256)]


def test_two_new_packets_are_two_documents(tmp_path: Path) -> None:
    ids = set()
    for name in ("a", "b"):
        assert axis("packet", "new", "--from", G22, "--to", H41, "--subject", "x", "-o", tmp_path / name).exit_code == 0
        ids.add(json.loads(axis("packet", "show", tmp_path / name, "--json").stdout)["header"]["document_id"])
    assert len(ids) == 2


@pytest.mark.parametrize("args, says", [
    (["--from", "000.00.00.g22"], "--from '000.00.00.g22' is not an agency code"),
    (["--to", "000.00.00.Z99"], "--to '000.00.00.Z99' is not an agency code"),
    (["--to", G22], f"--to {G22} is the sender itself"),
    (["--attach", "missing.pdf"], "cannot attach missing.pdf: No such file or directory"),
    (["--attach", "."], "cannot attach .: Is a directory"),
    (["--priority", "5"], "--priority 5 is not one of 0 normal"),
    (["--priority", "-1"], "--priority -1 is not one of"),
    (["--priority", "high"], "Invalid value for '--priority'"),
    (["--subject", " "], "--subject is empty"),
    (["-o", "no/such/folder/p.edxml"], "cannot write no/such/folder/p.edxml"),
])
def test_a_bad_input_is_one_line(tmp_path: Path, args: list[str], says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    given = {"--from": G22, "--to": H41, "--subject": "x", "-o": "p.edxml"}
    extra = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in given:
            given[flag] = value
        else:
            extra += [flag, value]
    result = axis("packet", "new", *[x for pair in given.items() for x in pair], *extra)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.output
    assert not (tmp_path / "p.edxml").exists()


def test_a_missing_option_is_one_line() -> None:
    result = axis("packet", "new", "--from", G22, "--subject", "x", "-o", "p.edxml")
    assert result.exit_code == 2
    assert result.output.strip() == "error: Missing option '--to'. (see `axis packet new --help`)"


def test_packet_show_escapes_what_the_packet_says(tmp_path: Path) -> None:
    """A packet is hostile input: XML 1.0 allows the C1 controls (U+009B is a terminal's CSI), so `packet show`
    prints them escaped, never raw."""
    made = axis("packet", "new", "--from", G22, "--to", H41, "--subject", "bad\x9b31m\x85FAKE", "-o",
                tmp_path / "p.edxml")
    assert made.exit_code == 0, made.output
    shown = axis("packet", "show", tmp_path / "p.edxml")
    assert shown.exit_code == 0, shown.output
    assert "\x9b" not in shown.stdout and "\x85" not in shown.stdout, shown.stdout
    assert "bad\\x9b31m" in shown.stdout, shown.stdout
