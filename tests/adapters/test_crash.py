"""Crash safety of `axis inbox pull`: SIGKILL mid-stream loses nothing and stores nothing twice."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from axis import wire
from tests.adapters.support import G22, H41, STEP, DevPKI, HubSide, Message, run_hub, signed_document

REPO = Path(__file__).resolve().parents[2]
AXIS = Path(sys.executable).with_name("axis")  # the installed console script (cli.main:main)
COUNT = 300


def start_pull(environment: dict[str, str], pki: DevPKI, out: Path, wait: float) -> subprocess.Popen:
    return subprocess.Popen(
        [str(AXIS), "inbox", "pull", H41, "--key", str(pki.key_paths[H41]),
         "--cert", str(pki.cert_paths[H41]), "--out", str(out), "--wait", str(wait)],
        cwd=REPO, env={**os.environ, **environment}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stored(out: Path) -> list[Path]:
    return list(out.glob("*.edxml")) if out.is_dir() else []


def test_killing_pull_mid_stream_neither_loses_nor_duplicates_a_document(
        transport_url: str, cli_env: dict[str, str], dev_pki: DevPKI, tmp_path: Path) -> None:
    packets = [signed_document(dev_pki, G22, [H41], 1000 + n) for n in range(COUNT)]
    axis_ids = run_hub(transport_url, dev_pki, lambda hub: hub.deliver_many(packets, H41))
    out = tmp_path / "inbox"

    first = start_pull(cli_env, dev_pki, out, wait=STEP)
    deadline = time.monotonic() + STEP
    while len(stored(out)) < COUNT // 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()
    at_kill = len(stored(out))
    assert first.returncode == -signal.SIGKILL and COUNT // 3 <= at_kill < COUNT, at_kill

    second = start_pull(cli_env, dev_pki, out, wait=2.0)
    _, errors = second.communicate(timeout=60)
    assert second.returncode == 0, errors.decode()

    files = {path.stem: path for path in stored(out)}
    assert sorted(files) == sorted(axis_ids)
    for axis_id, packet in zip(axis_ids, packets):
        assert files[axis_id].read_bytes() == packet
    assert list(out.glob(".*.tmp")) == []  # what a crashed attempt left was removed by its redelivery

    async def inspect(hub: HubSide) -> tuple[int, int, list[Message]]:
        depth = await hub.transport.depth(wire.inbox_queue(H41))
        dead = len(await hub.transport.dead_letters(wire.inbox_queue(H41)))
        count = await hub.transport.depth(wire.RECEIPTS_QUEUE)
        return depth, dead, await hub.take(wire.RECEIPTS_QUEUE, count)

    depth, dead, receipts = run_hub(transport_url, dev_pki, inspect)
    assert (depth, dead) == (0, 0)
    assert {m.message_id for m in receipts} == {wire.receipt_message_id("delivery", a, H41) for a in axis_ids}
