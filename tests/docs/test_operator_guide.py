"""docs/operator-guide.md is true: its commands run, in order, on a fresh machine's defaults.

The guide is run as written (tests/docs/guide.py), in an empty folder, with the
`axis` of this checkout first on PATH, no AXIS_* variable inherited, and the
gateway's port 8080 replaced by a free one (tests run side by side).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.docs.guide import commands, guide, script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_guide_parses() -> None:
    found = commands(guide("operator-guide.md"))
    assert len(found) > 20 and any(c.startswith("axis serve") for c in found)


@pytest.mark.slow(seconds=120)
def test_every_command_of_the_operator_guide_runs(tmp_path: Path) -> None:
    text = guide("operator-guide.md").replace("8080", str(_free_port()))
    (tmp_path / "guide.sh").write_text(script(text), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXIS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"
    # `axis doctor` fails once the holiday calendar no longer covers the year (the shipped one covers the years
    # whose days were announced): an operator keeps their own, as the guide says; this one covers now.
    year = datetime.now(UTC).year
    calendar = tmp_path / "holidays.txt"
    calendar.write_text(f"{year}-01-01\n{year + 1}-01-01\n", encoding="utf-8")
    env["AXIS_DEADLINE_CALENDAR"] = str(calendar)
    try:
        done = subprocess.run(["bash", "guide.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=900)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the guide did not finish in 900 s; its output so far:\n{exc.stdout}\n{exc.stderr}")
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-4000:]}"
    # The story the guide tells, not only its exit codes: the withdrawn certificate is refused, the delivery the
    # recipient could not take is parked, then replayed or purged, the log verifies before and after the restore.
    out = done.stdout
    assert "refused  AX404 CERT_NOT_REGISTERED" in out, out[-6000:]
    assert "replayed 1 dead letter(s)" in out and "purged 1 dead letter(s)" in out, out[-6000:]
    assert out.count("audit log verified:") == 2, out[-6000:]
    assert "axis hub stopped" in (tmp_path / "serve.log").read_text(encoding="utf-8")
