"""What a traffic line of `axis serve`'s log costs (axis/logs.py): written, and held back above AXIS_LOG_RATE.

At 1,000 decisions a second with the default rate (50), a process writes 50 lines and holds back 950; the
figures below give its log's CPU cost per second: 50 × written + 950 × held back.

    .venv/bin/python bench/bench_log.py                  # JSON lines (the dearer form)
    .venv/bin/python bench/bench_log.py --form text --lines 500000

The lines go to /dev/null (stderr is replaced), so the figures are the formatting's, not a terminal's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", choices=("text", "json"), default="json")
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()

    out = sys.stdout
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    from axis import logs

    logs.log_to_stderr("INFO", args.form, 50)

    def line(i: int) -> None:
        logs.traffic("accepted", "accepted %s from %s to %s (submission %s)", f"01a24b7b-db9b-7579-98fa-{i:012d}",
                     "000.00.00.G22", "000.00.00.H41, 000.00.00.H14", "9a8b98b8dc394af88bcb7ac3a4cf6bca",
                     submission="9a8b98b8dc394af88bcb7ac3a4cf6bca", axis_id=f"01a24b7b-db9b-7579-98fa-{i:012d}",
                     sender="000.00.00.G22", kind="document", recipients=["000.00.00.H41", "000.00.00.H14"])

    start = time.perf_counter()
    for i in range(args.lines):  # nearly all held back: 50 a second pass
        line(i)
    held = (time.perf_counter() - start) / args.lines
    logs._limit.rate = None  # every line written
    written_lines = max(1, args.lines // 10)
    start = time.perf_counter()
    for i in range(written_lines):
        line(i)
    written = (time.perf_counter() - start) / written_lines
    print(f"{args.form}: held back {held * 1e6:.2f} µs a line, written {written * 1e6:.1f} µs a line; "
          f"at 1,000 decisions/s and AXIS_LOG_RATE=50: {(50 * written + 950 * held) * 1e3:.2f} ms of CPU a second",
          file=out)


if __name__ == "__main__":
    main()
