"""A guide's commands, as the shell script a reader would type.

Every ```console block of a guide is run, in order, in one bash session: each
`$ ` line is a command (a line ending in a backslash goes on), every other line
is sample output and is not compared (ids, times and fingerprints differ from
run to run). A command whose line ends in `# exits N` must exit with N; every
other command must succeed, or the run stops there and names it.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

_BLOCK = re.compile(r"^```console[ \t]*\n(.*?)^```", re.M | re.S)
_EXITS = re.compile(r"\s+#\s*exits\s+(\d+)\s*$")


def commands(markdown: str) -> list[str]:
    """The `$ ` commands of every console block, in order, continuation lines joined."""
    found: list[str] = []
    for block in _BLOCK.findall(markdown):
        pending: str | None = None
        for line in block.splitlines():
            if pending is not None:
                pending += "\n" + line
                if not line.endswith("\\"):
                    found.append(pending)
                    pending = None
            elif line.startswith("$ "):
                command = line[2:]
                if command.endswith("\\"):
                    pending = command
                else:
                    found.append(command)
        if pending is not None:
            raise ValueError(f"a console block ends inside a continued command: {pending!r}")
    return found


def script(markdown: str) -> str:
    """A bash script that runs the guide's commands and stops at the first one that does not do as written."""
    lines = ["set -uo pipefail", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    for i, command in enumerate(commands(markdown), 1):
        expected = 0
        if (m := _EXITS.search(command)) is not None:
            expected, command = int(m.group(1)), command[:m.start()]
        shown = shlex.quote(command.replace("\n", " "))
        lines += [f"echo {shlex.quote(f'### {i}:')} {shown}",
                  command,
                  f"rc=$?; if [ $rc -ne {expected} ]; then echo \"### command {i} exited $rc, not {expected}:\" "
                  f"{shown} >&2; exit 100; fi"]
    return "\n".join(lines) + "\n"


def guide(name: str) -> str:
    return (Path(__file__).resolve().parents[2] / "docs" / name).read_text(encoding="utf-8")
