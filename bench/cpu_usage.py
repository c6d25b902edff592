"""CPU accounting the benchmarks share (Linux /proc; zeros elsewhere).

The figures are ratios of CPU to work, so every bench reads CPU the same way: user + system time
of given processes, and busy/total ticks of the whole machine.
"""
from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def children(pids: list[int]) -> list[int]:
    """The child processes of these processes (a gateway's intake workers), read from /proc."""
    found = []
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                found += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def rabbitmq_pids() -> list[int]:
    """The RabbitMQ server's Erlang VM (beam.smp running rabbit), if it runs on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"beam" in cmdline and b"rabbit" in cmdline:
                pids.append(int(entry.name))
    return pids


def listening_inodes(port: int) -> set[str]:
    """`socket:[inode]` of every TCP socket listening on `port` here (/proc/net/tcp, state 0A)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def listening_pid(port: int) -> int | None:
    """The process listening on this TCP port here (the broker's 5672), or None. Other brokers may run on
    the machine (a test's cluster); matching the port counts only the one the bench talks to."""
    inodes = listening_inodes(port)
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None
