"""The log of Axis's long-running processes (`axis serve`, `axis gateway`, the gateway child): one format.

`log_to_stderr(level)`: each line is the time, the logger's name and the message. A record does not look
up its thread, process or process name, which no line prints, since the gateway writes a line per request.
"""
from __future__ import annotations

import logging


def log_to_stderr(level: str | int) -> None:
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
