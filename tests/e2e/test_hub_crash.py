"""Fault: the hub process dies (SIGKILL) in the middle of a run, and is started again.

Nothing accepted may be lost and nothing may reach an agency twice: the broker
delivers unacknowledged work again, the outbox re-publishes what was committed
but not confirmed, and the duplicate checks turn every second pass into the
first outcome.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.bulk_run import BULK_RECIPIENTS, BULK_SENDERS, BulkRun
from tests.e2e.harness import Deployment, HubProcess, wait_until
from tests.e2e.packets import G22, H41, TestPKI

MIDWAY = 100  # deliveries recorded as delivered when the hub is killed (of 4,000); intake is still busy then


@pytest.mark.slow(seconds=100)  # 2,000 documents: ~85 s embedded, ~115 s on RabbitMQ+PostgreSQL (CI)
def test_sigkill_of_the_hub_mid_run_loses_nothing_and_duplicates_nothing(
        deployment: Deployment, bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    run = BulkRun(deployment, bulk_packets, BULK_SENDERS, BULK_RECIPIENTS, tmp_path / "run")
    hub = deployment.serve()
    run.start()

    states = run.wait_until_delivered(MIDWAY)
    hub.crash()
    assert hub.process.returncode == -signal.SIGKILL
    assert states["delivered"] < len(bulk_packets) * len(BULK_RECIPIENTS)

    deployment.serve()
    sent = run.finish_sending()
    assert sent.exit_code == 0, sent
    run.drain()
    run.check_exactly_once()


def _hub_that_has_worked(deployment: Deployment, pki: TestPKI, tmp_path: Path) -> HubProcess:
    """A running hub that has carried one document, so its worker process has certainly done work."""
    hub = deployment.serve()
    packet = tmp_path / "p.edxml"
    packet.write_bytes(pki.document(G22, [H41], 1))
    assert deployment.cli("send", str(packet)).exit_code == 0
    assert len(hub.leftovers()) > 1  # the hub and its helpers (worker process, resource tracker)
    return hub


def test_sigterm_stops_the_hub_and_its_verification_worker(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    hub = _hub_that_has_worked(embedded_deployment, e2e_pki, tmp_path)
    hub.process.send_signal(signal.SIGTERM)
    assert hub.process.wait(20) == 0
    wait_until(lambda: not hub.leftovers(), "the verification worker to exit", timeout=10)


def test_a_killed_hub_leaves_no_verification_worker_behind(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    """Regression: the worker outlived a SIGKILLed hub as an orphan that also ignored SIGTERM."""
    hub = _hub_that_has_worked(embedded_deployment, e2e_pki, tmp_path)
    hub.process.send_signal(signal.SIGKILL)
    hub.process.wait(10)
    try:
        wait_until(lambda: not hub.leftovers(), "the orphaned verification worker to exit", timeout=10)
    finally:
        hub.kill()
