"""`axis agency import` and `axis agency show` (issue 11, item 6), on SQLite and PostgreSQL.

An import registers what is new, refuses each bad row with its line and reason and imports the rest,
children after parents whatever the file's order; running it again changes nothing, not even the
audit log. Every agency added has its own audit entry, bound to its registry row.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from axis.store import open_store
from cli.main import app
from tests.store.conftest import backend, migrated_url, pg_template  # noqa: F401 - fixtures reused

TOP, MID, LEAF = "000.00.00.G22", "000.00.01.G22", "000.01.01.G22"
OTHER = "000.00.00.H41"


def axis(tmp_path: Path, *args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "AXIS_DATA": str(tmp_path / "data")})


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry-pki")
    assert axis(root, "pki", "init", root / "ca").exit_code == 0
    for code in (TOP, MID, OTHER):
        assert axis(root, "pki", "issue", code, "--pki", root / "ca", "--out", root, "--key-type", "ec").exit_code == 0
    return root


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("warning:")]


def test_import_refuses_bad_rows_imports_the_rest_and_changes_nothing_the_second_time(
        tmp_path: Path, keys: Path, migrated_url: str) -> None:  # noqa: F811
    inline = (keys / f"{MID}.cert.pem").read_text()
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(
        "code,name,parent,certificate\n"
        f"{LEAF},Vụ Pháp chế,{MID},\n"                                      # 2: child before its parent
        f'{MID},"Văn phòng Bộ, Hà Nội",{TOP},"{inline}"\n'                   # 3..: inline PEM, several lines
        f"{TOP},Văn phòng Chính phủ,,{keys / f'{TOP}.cert.pem'}\n"
        "000.00.00.g23,lower case,,\n"
        f"000.00.02.G22,Wrong certificate,{TOP},{keys / f'{OTHER}.cert.pem'}\n"
        "000.00.03.G22,Orphan,000.00.99.G22,\n"
        f"000.01.03.G22,Child of the orphan,000.00.03.G22,\n"
        f"{MID},Another name,{TOP},\n"
        "000.00.05.G22,Garbage certificate,,-----BEGIN CERTIFICATE-----\n"
        "000.00.06.G22,Loop A,000.00.07.G22,\n"
        "000.00.07.G22,Loop B,000.00.06.G22,\n"
        "000.00.08.G22,,,\n"
        "000.00.09.G22,Too many,,,x\n", encoding="utf-8")
    first_data = len(inline.splitlines())
    line = 3 + first_data + 1  # the line after the inline certificate's row (TOP)
    first = axis(tmp_path, "agency", "import", catalogue, "--db", migrated_url)
    assert first.exit_code == 1, first.output
    assert first.stdout.strip() == "catalogue.csv: 3 added, 0 unchanged, 10 refused"
    expected = [
        (line + 1, "000.00.00.g23", "bad code: '000.00.00.g23' contains 'g'"),
        (line + 2, "000.00.02.G22", f"is issued to {OTHER}, not 000.00.02.G22"),
        (line + 3, "000.00.03.G22", "unknown parent 000.00.99.G22: neither registered nor in the catalogue"),
        (line + 4, "000.01.03.G22", "its parent 000.00.03.G22 was refused"),
        (line + 5, MID, f"{MID} is already on line 3 with another name, parent or certificate"),
        (line + 6, "000.00.05.G22", "the certificate is not a PEM X.509 certificate"),
        (line + 7, "000.00.06.G22", "loop"),
        (line + 8, "000.00.07.G22", "loop"),
        (line + 9, "000.00.08.G22", "the name must be 1..500 characters"),
        (line + 10, "000.00.09.G22", "5 fields where the header names 4"),
    ]
    refusals = _lines(first.stderr)
    assert len(refusals) == len(expected), first.stderr
    for got, (number, code, reason) in zip(refusals, expected, strict=True):
        assert got.startswith(f"catalogue.csv, line {number}: {code}: "), got
        assert reason in got, got

    with open_store(migrated_url) as store:
        agencies = {a.code: (a.name, a.parent_code) for a in store.list_agencies()}
        assert agencies == {TOP: ("Văn phòng Chính phủ", None), MID: ("Văn phòng Bộ, Hà Nội", TOP),
                            LEAF: ("Vụ Pháp chế", MID)}
        assert [len(store.certificates(code)) for code in (TOP, MID, LEAF)] == [1, 1, 0]
        added = [e for e in store.audit_entries() if e.action == "agency-added"]
        assert sorted(e.subject for e in added) == sorted(agencies)  # one entry per agency ...
        assert all(e.bound for e in added)                           # ... bound to its row
        assert {e.data["catalogue"] for e in added} == {"catalogue.csv"}
        head = store.audit_head()
        assert store.verify_audit().ok

    again = axis(tmp_path, "agency", "import", catalogue, "--db", migrated_url)
    assert again.exit_code == 1, again.output
    assert again.stdout.strip() == "catalogue.csv: 0 added, 3 unchanged, 10 refused"
    assert _lines(again.stderr) == refusals
    with open_store(migrated_url) as store:
        assert store.audit_head() == head  # nothing written, not even an entry saying so


def test_a_clean_catalogue_again_says_there_is_nothing_to_do_and_json(
        tmp_path: Path, migrated_url: str) -> None:  # noqa: F811
    catalogue = tmp_path / "national.json"
    catalogue.write_text(json.dumps([{"code": LEAF, "name": "Vụ Pháp chế", "parent": MID},
                                     {"code": MID, "name": "Văn phòng Bộ", "parent": TOP},
                                     {"code": TOP, "name": "Văn phòng Chính phủ", "parent": None},
                                     {"code": "000.00.02.G22", "name": "X", "parent": TOP, "head": "?"}]))
    first = axis(tmp_path, "agency", "import", catalogue, "--json", "--db", migrated_url)
    assert first.exit_code == 1, first.output
    assert json.loads(first.stdout) == {"added": 3, "certificates_added": 0, "unchanged": 0, "refused": [
        {"where": "item 4", "code": "000.00.02.G22", "reason": "unknown key(s) head"}]}
    catalogue.write_text(json.dumps(json.loads(catalogue.read_text())[:3]))
    again = axis(tmp_path, "agency", "import", catalogue, "--db", migrated_url)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == ("national.json: 0 added, 3 unchanged, 0 refused; nothing to do, the registry "
                                    "already holds the catalogue")


def test_the_registry_wins_over_the_catalogue_but_a_new_certificate_is_added(
        tmp_path: Path, keys: Path, migrated_url: str) -> None:  # noqa: F811
    assert axis(tmp_path, "agency", "add", TOP, "--name", "Văn phòng Chính phủ", "--db", migrated_url).exit_code == 0
    assert axis(tmp_path, "agency", "add", OTHER, "--name", "UBND Tỉnh Nghệ An", "--db", migrated_url).exit_code == 0
    catalogue = tmp_path / "c.csv"
    catalogue.write_text("code,name,parent,certificate\n"
                         f"{TOP},Văn phòng Chính phủ,,{TOP}.cert.pem\n"   # relative to the catalogue's folder
                         f"{OTHER},Renamed,,\n")
    (tmp_path / f"{TOP}.cert.pem").write_bytes((keys / f"{TOP}.cert.pem").read_bytes())
    result = axis(tmp_path, "agency", "import", catalogue, "--db", migrated_url)
    assert result.exit_code == 1, result.output
    assert result.stdout.strip() == "c.csv: 0 added, 0 unchanged, 1 refused, 1 certificate(s) added"
    [refused] = _lines(result.stderr)
    assert refused.startswith(f"c.csv, line 3: {OTHER}: registered as 'UBND Tỉnh Nghệ An' under no parent, "
                              "the catalogue says 'Renamed'"), refused
    with open_store(migrated_url) as store:
        assert [c.state for c in store.certificates(TOP)] == ["active"]
        assert store.get_agency(OTHER).name == "UBND Tỉnh Nghệ An"
        assert [e.action for e in store.audit_entries_about(TOP)][-1] == "certificate-added"
    catalogue.write_text(catalogue.read_text().splitlines()[0] + "\n" + catalogue.read_text().splitlines()[1] + "\n")
    again = axis(tmp_path, "agency", "import", catalogue, "--db", migrated_url)
    assert (again.exit_code, again.stdout.strip()) == (0, "c.csv: 0 added, 1 unchanged, 0 refused; nothing to do, "
                                                          "the registry already holds the catalogue"), again.output


@pytest.mark.parametrize("content, says", [
    ("", "is empty"),
    ("code;name;parent\n", "the first line must be the header code,name,parent"),
    ("\xff\xfe", "is not UTF-8"),
])
def test_a_catalogue_that_is_not_one_is_one_line(tmp_path: Path, content: str, says: str) -> None:
    catalogue = tmp_path / "c.csv"
    catalogue.write_bytes(content.encode("latin-1"))
    result = axis(tmp_path, "agency", "import", catalogue, "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert result.exit_code == 1 and says in result.stderr and len(_lines(result.stderr)) == 1, result.output


def test_agency_show(tmp_path: Path, keys: Path, migrated_url: str) -> None:  # noqa: F811
    catalogue = tmp_path / "c.csv"
    catalogue.write_text(f"code,name,parent,certificate\n{TOP},Văn phòng Chính phủ,,\n"
                         f"{MID},Văn phòng Bộ,{TOP},{keys / f'{MID}.cert.pem'}\n{LEAF},Vụ Pháp chế,{MID},\n")
    assert axis(tmp_path, "agency", "import", catalogue, "--db", migrated_url).exit_code == 0
    assert axis(tmp_path, "credentials", "issue", "--agency", MID, "--db", migrated_url).exit_code == 0
    shown = axis(tmp_path, "agency", "show", MID, "--json", "--db", migrated_url)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (data["code"], data["name"], data["parent"], data["children"], data["credentials"]) == (
        MID, "Văn phòng Bộ", {"code": TOP, "name": "Văn phòng Chính phủ"}, 1, 1)
    [cert] = data["certificates"]
    assert cert["state"] == "active" and len(cert["fingerprint"]) == 64
    assert (data["aliases"], data["sent"], data["received"]) == ([], {}, {})
    text = axis(tmp_path, "agency", "show", MID, "--db", migrated_url)
    assert text.exit_code == 0
    assert f"parent       {TOP} (Văn phòng Chính phủ)" in text.stdout and cert["fingerprint"][:16] in text.stdout
    missing = axis(tmp_path, "agency", "show", "000.00.00.H99", "--db", migrated_url)
    assert missing.exit_code == 1 and "000.00.00.H99 is not registered" in missing.stderr


def test_a_progress_bar_only_on_a_terminal_and_never_with_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import output

    catalogue = tmp_path / "c.csv"
    catalogue.write_text("code,name,parent\n" + "".join(f"000.00.{n:02d}.G22,Đơn vị {n},\n" for n in range(1, 40)))
    plain = axis(tmp_path, "agency", "import", catalogue, "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert plain.exit_code == 0 and "importing agencies" not in plain.stderr, plain.stderr
    monkeypatch.setattr(output.stderr, "_force_terminal", True)
    monkeypatch.setattr(output.stderr, "is_interactive", True)
    shown = axis(tmp_path, "agency", "import", catalogue, "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert shown.exit_code == 0 and "importing agencies" in shown.stderr and "39/39" in shown.stderr, shown.stderr
    quiet = axis(tmp_path, "agency", "import", catalogue, "--json", "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert quiet.exit_code == 0 and "importing agencies" not in quiet.stderr
    assert json.loads(quiet.stdout)["added"] == 39


def test_names_are_data_never_markup_nor_terminal_control(tmp_path: Path) -> None:
    """A catalogue is outside input: a name that is rich markup prints as written (it once ended `agency list`
    in a MarkupError), and one carrying an escape sequence is refused."""
    catalogue = tmp_path / "c.csv"
    catalogue.write_text("code,name,parent\n" f'{TOP},"[/] [bold]x[/bold] [link=http://evil]y",\n'
                         f'{MID},"clear\x1b[2Jscreen",\n', encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    result = axis(tmp_path, "agency", "import", catalogue, "--db", db)
    assert result.exit_code == 1 and "line 3: 000.00.01.G22: the name holds control characters" in result.stderr
    for args in (["agency", "list"], ["agency", "show", TOP]):
        shown = axis(tmp_path, *args, "--db", db)
        assert shown.exit_code == 0, shown.output
        assert "[/] [bold]x[/bold]" in shown.stdout and "[link=http://evil]y" in shown.stdout, shown.stdout
