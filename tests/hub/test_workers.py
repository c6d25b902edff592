"""The hub's worker processes: a worker that dies is replaced, and intake goes on.

A worker process can die under the hub (the kernel's OOM killer, a crash in a C library on a hostile
packet, an operator's `kill`). Python's process pool is then broken for good: every later call fails at
once. The hub must not stall with it: the batch that met the broken pool is delivered again, to a new pool.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.hub.conftest import running_world

G22, H41 = "000.00.00.G22", "000.00.00.H41"


async def test_a_killed_worker_is_replaced_and_intake_goes_on(tmp_path: Path, pki_dir: Path) -> None:
    async with running_world(tmp_path, pki_dir, workers=1, intake_at="hub") as world:
        [worker] = await world.hub.pool.start()
        first = await world.submit(world.document(G22, [H41]), G22)
        assert (await world.outcome(first))[0].outcome == "accepted"

        os.kill(worker, signal.SIGKILL)
        later = [await world.submit(world.document(G22, [H41]), G22) for _ in range(3)]
        outcomes = [(await world.outcome(s, timeout=60))[0].outcome for s in later]
        assert outcomes == ["accepted"] * 3, await world.situation()
        [replacement] = await world.hub.pool.start()
        assert replacement != worker
        await world.inbox(H41, 4)
