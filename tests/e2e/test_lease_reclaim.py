"""A hub SIGKILLed while it holds submissions (embedded transport): their leases are reclaimed by the next hub
within the lease time + 5 s, with one warning line naming how many, on which queue, held by which process."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from axis import wire
from tests.e2e.harness import LEASE, Deployment, HubProcess, wait_until
from tests.e2e.packets import G22, H41, TestPKI

HELD = 3


@pytest.mark.slow(seconds=30)  # two `axis serve` starts
def test_the_leases_of_a_killed_hub_come_back_within_the_lease_and_are_logged(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment = embedded_deployment
    hub = deployment.serve()
    # Its helpers (worker, signer, gateway) stopped: the hub takes the submissions and holds them, renewing
    # their leases, with no worker to decide them.
    for pid in hub.leftovers():
        if pid != hub.process.pid:
            os.kill(pid, signal.SIGSTOP)
    packets = []
    for number in range(1, HELD + 1):
        packets.append(tmp_path / f"{number}.edxml")
        packets[-1].write_bytes(e2e_pki.document(G22, [H41], number))
    deployment.road = "local"  # queued on the broker by the operator's own road (the gateway is stopped)
    sent = deployment.cli("send", *map(str, packets), "--wait", "0", "--json")
    deployment.road = "gateway"
    assert sent.exit_code == 3, sent
    submissions = [r["submission"] for r in json.loads(sent.stdout)]

    def held() -> bool:
        async def stats(transport):  # type: ignore[no-untyped-def]
            return await transport.queue_stats([wire.INTAKE_QUEUE])
        [intake] = deployment.transport_call(stats)
        return intake.in_flight == HELD and intake.ready == 0
    wait_until(held, "the hub to hold every submission")
    dead_pid = hub.process.pid

    # A second hub (as a supervisor or a second machine would run) consumes the same queue: it gets nothing
    # while the first one's leases run; once that one is killed, they expire and it takes them.
    successor = HubProcess(deployment.options(["serve", "--workers", "1", "--no-gateway"]),
                           {**os.environ, **deployment.env()}, deployment.data / "logs")
    deployment.hubs.append(successor)
    wait_until(lambda: "axis hub serving" in successor.stderr(), "the second hub to serve")
    time.sleep(1.0)  # its consumer is polling
    assert "reclaimed" not in successor.stderr()
    hub.crash()
    killed = time.monotonic()
    wait_until(lambda: "reclaimed" in successor.stderr(), "the reclaimed leases' log line", timeout=LEASE + 30)
    took = time.monotonic() - killed
    assert took <= LEASE + 5, f"the leases came back {took:.1f} s after the kill (lease {LEASE:g} s)"
    print(f"leases of the killed hub reclaimed {took:.1f} s after the kill (lease {LEASE:g} s)")
    [line] = [line for line in successor.stderr().splitlines() if "reclaimed" in line]
    assert f"reclaimed {HELD} message(s) on {wire.INTAKE_QUEUE}" in line, line
    assert f"process {dead_pid}" in line, line

    def decided() -> bool:
        with deployment.store() as store:
            rows = store.submissions(submissions)
        return len(rows) == HELD and all(row.outcome == "accepted" for row in rows.values())
    wait_until(decided, "the reclaimed submissions to be accepted")
