"""The one settings object (`axis.settings`): precedence, bad values, and docs/configuration.md.

- a flag wins over its `AXIS_*` variable, which wins over the default;
- a bad value ends any command with one line naming the variable (or the flag), exit 2, no traceback;
- docs/configuration.md holds exactly the table the settings object describes;
- nothing else in axis/, adapters/ or cli/ reads the environment.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from axis import settings
from axis.settings import Settings, SettingsError, environment_variable, load, redact_url
from cli.main import app

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"


def configuration_table() -> str:
    """The table of docs/configuration.md, made from the fields of `Settings`."""
    rows = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict) and field.description, f"{name}: declare it with _setting()"
        flag = f"`{extra['flag']}`" if extra["flag"] else ""
        rows.append(f"| `{environment_variable(name)}` | {flag} | {extra['shown']} | {field.description} |")
    return "\n".join(rows)


def test_the_configuration_doc_lists_exactly_the_settings() -> None:
    table = configuration_table()
    assert table in DOC.read_text(), f"docs/configuration.md must hold this table (regenerate it):\n\n{table}\n"


def test_no_code_but_the_settings_object_reads_the_environment() -> None:
    readers = [f"{path.relative_to(REPO)}:{number}"
               for folder in ("axis", "adapters", "cli") for path in (REPO / folder).rglob("*.py")
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"os\.environ|getenv\(", line) and path != Path(settings.__file__)]
    assert readers == []


def test_a_flag_wins_over_the_variable_which_wins_over_the_default(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    assert load().broker == "embedded" and load().embedded_lease == 30.0 and load().retry_attempts == 6
    monkeypatch.setenv("AXIS_BROKER", "amqp://env-host/")
    monkeypatch.setenv("AXIS_DATA", str(tmp_path))
    monkeypatch.setenv("AXIS_RETRY_ATTEMPTS", "3")
    assert load().broker == "amqp://env-host/" and load().retry_attempts == 3
    assert load(broker="amqp://flag-host/").broker == "amqp://flag-host/"
    assert load().store_url == f"sqlite:///{tmp_path / 'axis.db'}"
    assert load().hub_key == tmp_path / "hub" / "AXIS.key.pem"
    assert load(key=tmp_path / "k.pem").hub_key == tmp_path / "k.pem"


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("AXIS_EMBEDDED_LEASE", "soon", "valid number"),
    ("AXIS_EMBEDDED_LEASE", "0", "positive"),
    ("AXIS_RETRY_ATTEMPTS", "many", "valid integer"),
    ("AXIS_RETRY_BASE", "0", ">= 0.001"),
    ("AXIS_RETRY_BASE", "inf", ">= 0.001"),
    ("AXIS_XMLDSIG", "fast", "'xmlsec' or 'signxml'"),
    ("AXIS_LOG", "LOUD", "DEBUG, INFO"),
    ("AXIS_WORKERS", "0", "at least 1"),
    ("AXIS_BROKER", "kafka://host", "use embedded"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=re.escape(f"{variable}={value!r}")):
        _load_with(variable, value)
    result = CliRunner().invoke(app, ["pki", "init", str(tmp_path / "pki")],
                                env={variable: value, "AXIS_DATA": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable}={value!r}") and says in lines[0], lines
    assert not (tmp_path / "pki").exists(), "a command does nothing with a bad setting"


def _load_with(variable: str, value: str) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, value)
        return load()


def test_a_bad_flag_is_named_as_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--workers=0: must be at least 1$"):
        load(workers=0)


def test_a_bad_url_value_is_shown_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_url("amqp://guest:s3cret@host:5672/v") == "amqp://guest:***@host:5672/v"
    assert redact_url("postgresql://axis:p%40ss@db/axis") == "postgresql://axis:***@db/axis"
    assert redact_url("postgresql://axis@db/axis") == "postgresql://axis@db/axis"
    assert redact_url("embedded") == "embedded"
    with pytest.raises(SettingsError, match=re.escape("--broker='amqpx://guest:***@host/'")):
        load(broker="amqpx://guest:s3cret@host/")
    shown = repr(load(broker="amqp://guest:s3cret@host/", db="postgresql://a:hunter2@db/x"))
    assert "s3cret" not in shown and "hunter2" not in shown
