"""Fault: RabbitMQ itself restarts in the middle of a run (`rabbitmqctl stop_app`, then `start_app`).

The hub, the sender and the recipients all lose their connections. Nothing
confirmed may be lost and nothing may reach an agency twice: the hub
reconnects and re-publishes from its outbox, the sender sends again what it
holds no receipt for (the hub answers repeats with their first receipt), and
the recipients' ledgers absorb redeliveries.

The broker node runs on this machine (as root here, so `rabbitmqctl` works
without sudo). Restarting it disturbs anything else using the broker at the
same moment, which is why this is one test. Measured here: `stop_app` ~6 s,
`start_app` ~3 s. The broker is started again at teardown whatever happened.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.bulk_run import BULK_RECIPIENTS, BULK_SENDERS, BulkRun
from tests.e2e.harness import Deployment, wait_until
from tests.transport.support import RabbitAdmin

MIDWAY = 100  # deliveries recorded as delivered when the broker goes down (of 1,334)
# A third of the bulk packets (667, from both senders), as the gateway's crash test: the run still has most of its
# deliveries ahead when the broker stops (~10 s down), and this test runs alone, after the rest, on the whole
# machine; the 2,000-document runs are the hub's crash and the outage tests.
SHARE = 3
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def broker_control() -> Iterator[Callable[[str], None]]:
    """`rabbitmqctl ACTION`, with the broker guaranteed up again after the test."""
    command = shutil.which("rabbitmqctl")
    if command is None:
        reason = "rabbitmqctl is not on PATH: the broker restart test needs the broker on this machine"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)

    def control(action: str) -> None:
        done = subprocess.run([command, action], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"rabbitmqctl {action}: {done.stdout}{done.stderr}"

    try:
        yield control
    finally:
        subprocess.run([command, "start_app"], capture_output=True, timeout=120)  # a no-op when it runs
        subprocess.run([command, "await_startup"], capture_output=True, timeout=120)
        wait_until(lambda: RabbitAdmin().call("GET", "/overview"), "the management API to answer again",
                   timeout=60, interval=0.5)


@pytest.mark.slow(seconds=40)
@pytest.mark.alone
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_restarting_rabbitmq_mid_run_loses_nothing_and_duplicates_nothing(
        rabbit_deployment: Deployment, broker_control: Callable[[str], None],
        bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    deployment = rabbit_deployment
    packets = dict(sorted(bulk_packets.items())[::SHARE])
    run = BulkRun(deployment, packets, BULK_SENDERS, BULK_RECIPIENTS, tmp_path / "run")
    deployment.serve()
    run.start()
    run.wait_until_delivered(MIDWAY)

    broker_control("stop_app")
    broker_control("start_app")
    broker_control("await_startup")

    run.finish_after_outage()
    assert all(hub.alive() for hub in deployment.hubs)  # the hub rode out the outage, no restart
