"""Fault: the gateway process dies (SIGKILL) in the middle of a run, and is started again.

Here the hub (`axis serve --no-gateway`) and the gateway (`axis gateway`) are two processes, as on
a deployment with gateways in front of hubs. Every sender and recipient talks only to the gateway.
The gateway is killed while submissions are still arriving and recipients are pulling and acking,
then started again on the same port. Nothing accepted may be lost and nothing may reach an
agency's application twice: a submission whose answer was lost is sent again under the id its
sender chose (the same submission, `adapters.journal`); a delivery whose ack was lost is listed
again and re-acked from the inbox ledger, never stored twice.
"""
from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.bulk_run import BULK_RECIPIENTS, BULK_SENDERS, BulkRun
from tests.e2e.harness import Deployment, HubProcess, Running, wait_until

MIDWAY = 20   # deliveries recorded as delivered when the gateway is killed (of 1,334)
SHARE = 3     # a third of the bulk packets (667, from both senders): the hub's crash test runs all 2,000


def _gateway(deployment: Deployment) -> Running:
    """`axis gateway` on the deployment's gateway port, once it answers /healthz."""
    gateway = deployment.spawn("gateway", "--port", str(deployment.gateway_port))

    def healthy() -> bool:
        if not gateway.alive():
            raise AssertionError(f"axis gateway exited:\n{gateway.stderr()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{deployment.gateway_url}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False
    wait_until(healthy, "axis gateway to answer /healthz")
    return gateway


@pytest.mark.slow(seconds=50)
def test_sigkill_of_the_gateway_mid_run_loses_nothing_and_duplicates_nothing(
        deployment: Deployment, bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    if deployment.road != "gateway":
        pytest.fail("the gateway is not installed: this test needs axis gateway")
    gateway = _gateway(deployment)
    hub = HubProcess(deployment.options(["serve", "--workers", "1", "--no-gateway"]),
                     {**os.environ, **deployment.env()}, deployment.data / "logs")
    deployment.hubs.append(hub)
    hub.wait_serving(deployment)
    packets = dict(sorted(bulk_packets.items())[::SHARE])
    run = BulkRun(deployment, packets, BULK_SENDERS, BULK_RECIPIENTS, tmp_path / "run")
    run.start()

    states = run.wait_until_delivered(MIDWAY)
    gateway.kill()
    assert gateway.process.returncode == -signal.SIGKILL
    assert states["delivered"] < len(packets) * len(BULK_RECIPIENTS)

    _gateway(deployment)
    sent = run.finish_sending()
    assert sent.exit_code == 0, sent
    run.drain()
    run.check_exactly_once()
    assert hub.alive(), "the hub never noticed the gateway die"
