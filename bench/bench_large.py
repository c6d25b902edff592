"""One large document through a real deployment: memory of every process, and time against the raw cost.

    python bench/bench_large.py                    # a 100 MiB attachment (a ~134 MiB packet), embedded defaults
    python bench/bench_large.py --mib 20 --road queued
    python bench/bench_large.py --config rabbitmq+postgres --road queued   # a fresh vhost and database

The road is the one agencies take: `axis send` (a process of its own) POSTs the signed packet to the
gateway of a running `axis serve` (embedded transport and SQLite in a temporary AXIS_DATA, as
tests/e2e/harness.py `Deployment` runs it), the gateway's intake worker checks and commits it, and the
recipient's `axis inbox pull` (a process of its own) fetches, verifies, stores and acknowledges it.
`--config embedded+postgres` or `rabbitmq+postgres` puts the store (and the broker) on the servers the
tests use, in a fresh database (and vhost) dropped afterwards.
`--road queued` sends with `?wait=0` semantics instead (`AXIS_INTAKE_AT=hub`: the hub decides it from
`axis.intake`).

For each process:
- `axis serve` and everything it started (the gateway, the intake workers, the signer): idle RSS is
  VmRSS once the deployment is up and a small document went the same road (so lazily loaded code is
  counted as idle); the peak is VmHWM after the large one, the kernel's high-water mark being reset
  (`/proc/PID/clear_refs` = 5) just before it is sent;
- `axis send` and `axis inbox pull`: the peak is ru_maxrss of the process (wait4); idle is the same command's
  ru_maxrss on the small document.

(peak - idle) / packet size is the figure issue 12 bounds by 2. Times are set against the raw cost of the
parts measured in the same run: sha256 of the packet file, a copy of it (read + write + fsync) and an lxml
parse of it (each command's time includes starting its interpreter, about a second).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cpu_usage import children, listening_inodes  # noqa: E402 - bench/ is on the path of a bench script
from hub_inputs import pg_database, vhost  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cli.main import app  # noqa: E402
from tests.e2e.harness import AXIS, Deployment  # noqa: E402
from tests.e2e.packets import AGENCIES, G22, H41, HUB, TestPKI, large_document  # noqa: E402

MIB = 1024 * 1024


def _pki(root: Path) -> TestPKI:
    def command(*args: str) -> None:
        result = CliRunner().invoke(app, list(args))
        if result.exit_code != 0:
            raise SystemExit(f"axis {' '.join(args)}: {result.output}")

    command("pki", "init", str(root / "ca"))
    for code in (HUB, *AGENCIES):
        command("pki", "issue", code, "--pki", str(root / "ca"), "--out", str(root / "keys"), "--key-type", "ec")
    return TestPKI(root)


def _status(pid: int) -> dict[str, int]:
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return found


def _processes(hub_pid: int, signer_pid: int | None, gateway_port: int) -> dict[int, str]:
    """pid -> its role, for `axis serve` and every process below it (every spawned child has the same
    command line, so the role is read from the tree: the signer names its pid in the hub's log, the
    gateway is the child holding the listening socket of the gateway's port)."""
    def tracker(pid: int) -> bool:
        try:
            return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    listening = listening_inodes(gateway_port)

    def serves(pid: int) -> bool:
        try:
            return any(os.readlink(fd) in listening for fd in Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return False

    roles = {hub_pid: "axis serve (hub)"}
    for child in children([hub_pid]):
        below = [pid for pid in children([child]) if not tracker(pid)]
        if tracker(child):
            continue
        if child == signer_pid:
            roles[child] = "signer"
            roles.update(dict.fromkeys(below, "signer process"))
        elif serves(child):
            roles[child] = "gateway"
            roles.update(dict.fromkeys(below, "gateway intake worker"))
        else:
            roles[child] = "hub intake worker"
    return roles


class _Child:
    """`axis ARGS` as a process, and its peak RSS.

    A process's ru_maxrss survives fork and exec (Linux keeps the larger of the old and the new image's), so a
    command started straight from this process would report this process's own peak: it is started by a
    small launcher (a fresh interpreter), which waits for it and writes its ru_maxrss to a file.
    """

    _LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, s, u = os.wait4(p.pid, 0); "
                 "open(sys.argv[1], 'w').write(str(u.ru_maxrss * 1024)); sys.exit(os.waitstatus_to_exitcode(s))")

    def __init__(self, deployment: Deployment, *args: str) -> None:
        self.full = deployment.options(args)
        self.report = deployment.data / f"maxrss-{time.monotonic_ns()}"
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-c", self._LAUNCHER, str(self.report), *AXIS, *self.full],
                                        env={**os.environ, **deployment.env()}, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(self) -> tuple[int, float, str]:
        out, err = self.process.communicate()
        seconds = time.monotonic() - self.started
        if self.process.returncode != 0:
            raise SystemExit(f"axis {' '.join(self.full)} -> {self.process.returncode}\n{out.decode()[-2000:]}\n"
                             f"{err.decode()[-3000:]}")
        return int(self.report.read_text()), seconds, out.decode()


def _command(deployment: Deployment, *args: str) -> tuple[int, float, str]:
    return _Child(deployment, *args).finish()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _raw_costs(packet: Path, scratch: Path) -> dict[str, float]:
    started = time.monotonic()
    _sha256_file(packet)
    sha = time.monotonic() - started
    started = time.monotonic()
    with open(packet, "rb") as source, open(scratch, "wb") as target:
        shutil.copyfileobj(source, target, MIB)
        target.flush()
        os.fsync(target.fileno())
    copy = time.monotonic() - started
    scratch.unlink()
    from lxml import etree
    started = time.monotonic()
    with open(packet, "rb") as file:
        etree.parse(file, etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True))
    parse = time.monotonic() - started
    return {"sha256": sha, "copy": copy, "parse": parse}


def run(mib: int, road: str, keep: bool, config: str = "embedded") -> dict:
    root = Path(tempfile.mkdtemp(prefix="axis-bench-large-"))
    cleanup: list[Callable[[], None]] = []
    try:
        pki = _pki(root / "pki")
        (root / "data").mkdir()
        broker = db = None
        if "postgres" in config:
            db, drop = pg_database()
            cleanup.append(drop)
        if config.startswith("rabbitmq"):
            broker, delete = vhost()
            cleanup.append(delete)
        deployment = Deployment(config, root / "data", pki, broker=broker, db=db)
        os.environ["AXIS_MAX_PACKET_BYTES"] = str(max(200 * MIB, (mib * 4 // 3 + 8) * MIB))
        if road == "queued":
            os.environ["AXIS_INTAKE_AT"] = "hub"
        deployment.register(G22, H41)
        small, big = root / "small.edxml", root / "big.edxml"
        large_document(pki, G22, [H41], 1, small, attachment_bytes=4096)
        started = time.monotonic()
        signed_digest = large_document(pki, G22, [H41], 2, big, attachment_bytes=mib * MIB)
        build = time.monotonic() - started
        size = big.stat().st_size
        hub = deployment.serve()
        try:
            send_idle, _, _ = _command(deployment, "send", str(small), "--json")
            pull_idle, _, _ = _command(deployment, "inbox", "pull", H41, *deployment.agency_files(H41),
                                       "--out", str(root / "inbox"), "--wait", "1", "--max", "1")
            time.sleep(1.0)
            signer = re.search(r"signer \S+ \(pid (\d+)\)", hub.stderr())
            processes = _processes(hub.process.pid, int(signer.group(1)) if signer else None,
                                   deployment.gateway_port)
            idle = {pid: _status(pid).get("VmRSS", 0) for pid in processes}
            for pid in processes:
                try:
                    Path(f"/proc/{pid}/clear_refs").write_text("5")
                except OSError:
                    pass
            raw = _raw_costs(big, root / "copy.bin")
            send_peak, send_seconds, sent = _command(deployment, "send", str(big), "--json")
            [answer] = json.loads(sent)
            if answer.get("outcome") != "accepted":
                raise SystemExit(f"the large document was not accepted: {answer}")
            pull_peak, pull_seconds, _ = _command(deployment, "inbox", "pull", H41, *deployment.agency_files(H41),
                                                  "--out", str(root / "inbox"), "--wait", "1", "--max", "1")
            stored = root / "inbox" / f"{answer['axis_id']}.edxml"
            same = _sha256_file(stored) == signed_digest
            peaks = {pid: _status(pid).get("VmHWM", 0) for pid in processes}
        finally:
            hub.stop()
            deployment.close()
        rows = [("axis send", send_idle, send_peak), ("axis inbox pull", pull_idle, pull_peak)]
        rows += [(f"{name} ({pid})", idle[pid], peaks[pid]) for pid, name in sorted(processes.items())
                 if peaks.get(pid)]
        return {"mib": mib, "road": road, "config": config, "packet_bytes": size, "byte_identical": same,
                "build_seconds": build,
                "send_seconds": send_seconds, "pull_seconds": pull_seconds, "raw": raw,
                "rows": [{"process": name, "idle": i, "peak": p, "ratio": (p - i) / size} for name, i, p in rows]}
    finally:
        for step in cleanup:
            step()
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=100, help="the attachment's size in MiB (default 100)")
    parser.add_argument("--road", choices=("gateway", "queued"), default="gateway")
    parser.add_argument("--config", choices=("embedded", "embedded+postgres", "rabbitmq+postgres"),
                        default="embedded", help="where the store and the broker are (default: the embedded ones)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, files)")
    args = parser.parse_args()
    result = run(args.mib, args.road, args.keep, args.config)
    size = result["packet_bytes"]
    print(f"packet: {size / MIB:.1f} MiB ({args.mib} MiB attachment), road {args.road}, {args.config}, "
          f"byte-identical: {result['byte_identical']}")
    raw = result["raw"]
    parts = raw["sha256"] + raw["copy"] + raw["parse"]
    print(f"raw parts: sha256 {raw['sha256']:.2f} s, copy+fsync {raw['copy']:.2f} s, lxml parse {raw['parse']:.2f} s "
          f"(sum {parts:.2f} s)")
    print(f"axis send (until the outcome) {result['send_seconds']:.2f} s = {result['send_seconds'] / parts:.1f}x the "
          f"sum; axis inbox pull {result['pull_seconds']:.2f} s = {result['pull_seconds'] / parts:.1f}x")
    print(f"{'process':32} {'idle MiB':>9} {'peak MiB':>9} {'(peak-idle)/size':>17}")
    for row in result["rows"]:
        print(f"{row['process']:32} {row['idle'] / MIB:9.1f} {row['peak'] / MIB:9.1f} {row['ratio']:17.2f}")
    if not result["byte_identical"]:
        raise SystemExit("the stored packet differs from the one sent")


if __name__ == "__main__":
    main()
