"""The log of `axis serve` (axis/logs.py): JSON lines, and traffic lines held back above the rate and counted."""
from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging, time
from axis.logs import log_to_stderr, traffic
log_to_stderr("INFO", "{form}", {rate})
for i in range(100):
    traffic("accepted" if i % 4 else "refused", "decision %d", i, n=i)
logging.getLogger("axis.hub").warning("a plain line with a \\"quote\\" and ắ")
traffic("refused", "refused: %s", "bad\\x1b[2J\\nFAKE line\\x9b", detail="bad\\x1b[2J\\nFAKE line\\x9b")
time.sleep(1.3)  # the summary of the last second comes after it, though no line follows
"""


def run(form: str, rate: float) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(form=form, rate=rate)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_above_the_rate_lines_are_counted_in_one_summary_a_second_as_json() -> None:
    lines = [json.loads(line) for line in run("json", 10)]
    traffic = [line for line in lines if line["logger"] == "axis.traffic"]
    shown = [line for line in traffic if line["event"] != "summary"]
    summaries = [line for line in traffic if line["event"] == "summary"]
    assert 10 <= len(shown) <= 20  # the loop may straddle the turn of a second
    held = {event: sum(s["held"].get(event, 0) for s in summaries) for event in ("accepted", "refused")}
    assert sum(1 for line in shown if line["event"] == "accepted") + held["accepted"] == 75
    assert sum(1 for line in shown if line["event"] == "refused") + held["refused"] == 25 + 1  # and the hostile one
    assert all("not shown (above AXIS_LOG_RATE=10 a second)" in s["message"] for s in summaries)
    assert shown[0]["n"] == 0 and shown[0]["message"] == "decision 0" and shown[0]["level"] == "INFO"
    [plain] = [line for line in lines if line["logger"] == "axis.hub"]
    assert plain["message"] == 'a plain line with a "quote" and ắ' and plain["level"] == "WARNING"


def test_the_text_form_is_time_logger_message() -> None:
    lines = run("text", 1000)
    assert sum("axis.traffic decision" in line for line in lines) == 100
    assert not any("summary" in line or "not shown" in line for line in lines)
    # What a packet says cannot forge a line or drive a terminal.
    [hostile] = [line for line in lines if "refused: " in line]
    assert hostile.endswith("refused: bad\\x1b[2J\\x0aFAKE line\\x9b")
    assert not any(line.startswith("FAKE") for line in lines)


def test_a_json_line_escapes_every_control_character() -> None:
    raw = run("json", 1000)
    [hostile] = [line for line in raw if '"refused: ' in line]
    assert "\x1b" not in hostile and "\x9b" not in hostile and "\n" not in hostile
    assert json.loads(hostile)["detail"] == "bad\x1b[2J\nFAKE line\x9b"
