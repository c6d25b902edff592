"""A database that does not exist is an error for the commands that only read it, and none is created."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.store.conftest import PG_URL

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).with_name("axis")
AXIS = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from cli.main import main; main()"]


def axis(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXIS_")}
    return subprocess.run([*AXIS, *args], cwd=cwd, env={**env, "NO_COLOR": "1", "COLUMNS": "80"},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [("audit", "verify"), ("audit", "verify", "--json"), ("receipts", "X/1"),
                                     ("agency", "list"), ("agency", "suspend", "000.00.00.H01")])
def test_reading_a_missing_sqlite_database_fails_in_one_line_and_creates_nothing(tmp_path, command) -> None:
    work = tmp_path / "work"
    work.mkdir()
    missing = tmp_path / "nowhere" / "missing.db"
    done = axis(work, *command, "--db", f"sqlite:///{missing}")
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"error: the SQLite database {missing} does not exist"], done.stderr
    assert done.stdout == ""
    assert not missing.parent.exists() and list(work.iterdir()) == []


@pytest.mark.postgres
def test_a_missing_postgresql_database_fails_in_one_line(tmp_path) -> None:
    url = sa.make_url(PG_URL).set(database="axis_t_never_created").render_as_string(hide_password=False)
    done = axis(tmp_path, "audit", "verify", "--db", url)
    assert done.returncode != 0
    [line] = done.stderr.splitlines()
    assert line.startswith("error: the PostgreSQL database 'axis_t_never_created' does not exist"), line
    assert list(tmp_path.iterdir()) == []
