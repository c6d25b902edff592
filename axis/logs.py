"""The log of Axis's long-running processes (`axis serve`, `axis gateway`, the gateway child): one format.

`log_to_stderr(level, form, rate)`: each line is the time, the logger's name and the message (`text`), or one
JSON object (`json`: `at`, `level`, `logger`, `message`, and the fields of a traffic line). A record does not
look up its thread, process or process name, which no line prints, since the gateway writes a line per request.

Traffic lines (`traffic(event, message, **fields)`: an intake decision, a delivery's state change) go to the
logger `axis.traffic`, at most `rate` a second per process; above it, the lines of that second that were
held back are counted by event and said in one summary line after it (`event` "summary", `held` the counts),
so that a log stays readable at thousands of documents a second and costs no more than a counter per line.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

TRAFFIC = logging.getLogger("axis.traffic")


class _Limit:
    """At most `rate` traffic lines per second (a window of one second); the rest counted, then summarised."""

    def __init__(self) -> None:
        self.rate: float | None = None   # None: every line (until `log_to_stderr` sets one)
        self._lock = threading.Lock()
        self._window = 0
        self._passed = 0
        self._held: Counter[str] = Counter()
        self._timer: threading.Timer | None = None

    def admit(self, event: str) -> bool:
        if self.rate is None:
            return True
        window = int(time.monotonic())
        summary = None
        with self._lock:
            if window != self._window:
                summary = self._take_held()
                self._window, self._passed = window, 0
            admitted = self._passed < self.rate
            if admitted:
                self._passed += 1
            else:
                self._held[event] += 1
                if self._timer is None:
                    self._schedule()
        if summary:
            _summarise(summary, self.rate)
        return admitted

    def flush(self) -> None:
        """Say what the last finished second held back (the timer, at the end of a window)."""
        with self._lock:
            self._timer = None
            summary = None
            if int(time.monotonic()) != self._window:
                summary = self._take_held()
            elif self._held:  # late: a new second began and held lines of its own; say them after it
                self._schedule()
        if summary:
            _summarise(summary, self.rate)

    def _schedule(self) -> None:
        """The summary of a burst's last second is said after it, even if no line follows (under the lock)."""
        self._timer = threading.Timer(max(0.01, self._window + 1.05 - time.monotonic()), self.flush)
        self._timer.daemon = True
        self._timer.start()

    def _take_held(self) -> Counter[str]:
        held, self._held = self._held, Counter()
        return held


_limit = _Limit()


def _summarise(held: Counter[str], rate: float | None) -> None:
    counts = ", ".join(f"{n} {event}" for event, n in held.most_common())
    TRAFFIC.info("%d more traffic lines in the last second not shown (above AXIS_LOG_RATE=%g a second): %s",
                 sum(held.values()), rate or 0, counts,
                 extra={"fields": {"event": "summary", "held": dict(held)}})


def traffic(event: str, message: str, *args: Any, **fields: Any) -> None:
    """One traffic line: `event` (accepted, duplicate, refused, queued, delivered, failed, ...) with `fields`
    for the JSON form; held back (and counted) above the rate. Text arguments come from packets and callers:
    their control characters are escaped (`printable`), so that no line can forge another or a terminal."""
    if TRAFFIC.isEnabledFor(logging.INFO) and _limit.admit(event):
        TRAFFIC.info(message, *(printable(a) if isinstance(a, str) else a for a in args),
                     extra={"fields": {"event": event, **fields}})


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


_JSON_CONTROL = {c: f"\\u{c:04x}" for c in (*range(0x7f, 0xa0), 0x2028, 0x2029)}


def printable(text: str) -> str:
    """`text` with its control characters (newlines, escape sequences) written as \\xNN."""
    return text.translate(_CONTROL)


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        # json.dumps escapes C0 controls; C1 ones and the Unicode line separators it leaves as they are.
        return json.dumps(line, ensure_ascii=False, default=str).translate(_JSON_CONTROL)


def log_to_stderr(level: str | int, form: str = "text", rate: float | None = None) -> None:
    """Send the log to stderr as `form` (text or json), with at most `rate` traffic lines a second (None: all)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(_Json() if form == "json" else logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    _limit.rate = rate
