"""Fault: the hub process dies (SIGKILL) in the middle of a run, and is started again.

Nothing accepted may be lost and nothing may reach an agency twice: the broker
delivers unacknowledged work again, the outbox re-publishes what was committed
but not confirmed, and the duplicate checks turn every second pass into the
first outcome.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from axis.trust.pki import init_tsa
from tests.e2e.bulk_run import BULK_RECIPIENTS, BULK_SENDERS, BulkRun
from tests.e2e.harness import STEP, Deployment, HubProcess, free_port, wait_until
from tests.e2e.packets import G22, H41, TestPKI
from tests.tsa_support import running_tsa

MIDWAY = 100  # deliveries recorded as delivered when the hub is killed (of 4,000); intake is still busy then
OUTAGE = 60.0  # seconds the TSA is down


@pytest.mark.slow(seconds=100)  # 2,000 documents: ~85 s embedded, ~115 s on RabbitMQ+PostgreSQL (CI)
def test_sigkill_of_the_hub_mid_run_loses_nothing_and_duplicates_nothing(
        deployment: Deployment, bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    """... and, in the same run, the TSA is down for a minute (issue 10): no document waits for it, the
    checkpoints signed meanwhile are stamped when it is back, and the whole record then verifies."""
    tsa_files, tsa_port = init_tsa(tmp_path / "tsa"), free_port()
    with running_tsa(tmp_path / "tsa", files=tsa_files, port=tsa_port) as tsa:
        deployment.tsa_url = tsa.url
        run = BulkRun(deployment, bulk_packets, BULK_SENDERS, BULK_RECIPIENTS, tmp_path / "run")
        hub = deployment.serve()
        run.start()
        wait_until(lambda: _stamped(deployment) > 0, "a first timestamped checkpoint", timeout=STEP)
    outage = time.monotonic()  # the TSA is stopped: traffic goes on

    states = run.wait_until_delivered(MIDWAY)
    hub.crash()
    assert hub.process.returncode == -signal.SIGKILL
    assert states["delivered"] < len(bulk_packets) * len(BULK_RECIPIENTS)

    hub = deployment.serve()
    sent = run.finish_sending()
    assert sent.exit_code == 0, sent
    run.drain()
    run.check_exactly_once()
    assert _unstamped(deployment) > 0, "checkpoints were signed while the TSA was down"
    assert "does not answer" in hub.stderr()

    time.sleep(max(0.0, outage + OUTAGE - time.monotonic()))
    with running_tsa(tmp_path / "tsa", files=tsa_files, port=tsa_port):
        wait_until(lambda: _unstamped(deployment) == 0, "the checkpoints signed during the outage to be stamped",
                   timeout=STEP)
        assert "answers again" in hub.stderr() or "stamped" in hub.stderr()
    audit = deployment.cli("audit", "verify", "--tsa-trust", str(tsa_files.root), "--json")
    report = json.loads(audit.stdout)
    assert audit.exit_code == 0 and report["ok"], audit
    assert report["checkpoints"] == report["timestamped"] > 1, report
    # Every entry of the run, the killed hub's included, lies in a unit its writer sealed.
    assert report["sealed_units"] > 0 and not any("no seal" in note for note in report["notes"]), report

    # An entry appended straight to the table, its hash computed as the store does, is named.
    forged = _append_forged_entry(deployment)
    audit = deployment.cli("audit", "verify", "--json")
    report = json.loads(audit.stdout)
    assert audit.exit_code != 0 and report["first_bad"] == f"entry {forged}", audit
    assert "no seal" in report["reason"], report


def _append_forged_entry(deployment: Deployment) -> int:
    import sqlalchemy as sa

    from axis.store import audit as chain

    with deployment.store() as store:
        seq, prev = store.audit_head()
        at = store.clock()
        body = chain.entry_body(seq + 1, at, "hub", "accepted", "ax-forged", {}, prev)
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO audit_log (seq, at, actor, action, subject, data, prev_hash, hash) "
                                 "VALUES (:seq, :at, 'hub', 'accepted', 'ax-forged', '{}', :prev, :hash)"),
                         {"seq": seq + 1, "at": at.replace(tzinfo=None) if store.dialect == "sqlite" else at,
                          "prev": prev, "hash": chain.entry_hash(prev, body)})
    return seq + 1


def _stamped(deployment: Deployment) -> int:
    with deployment.store() as store:
        return len(store.checkpoint_stamps())


def _unstamped(deployment: Deployment) -> int:
    with deployment.store() as store:
        return len(store.unstamped_checkpoints(limit=100_000))


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
