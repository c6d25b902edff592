"""Fault: the database or the broker goes away for 30 s in the middle of a 2,000-document run.

Issue 8: "a database or broker outage of up to 30 s parks nothing". The hub and its
gateway (which the senders and the recipients call) reach PostgreSQL (and RabbitMQ)
through a `TcpProxy` that the test cuts (every connection reset, every new one refused) and restores,
so no server other tests share is ever stopped. Submissions keep arriving
through the cut: the documents go out in waves of `axis send`, one before the
cuts, two during each cut, one after. Afterwards, with no operator action, every
document must be accepted and delivered exactly once and no dead-letter queue
may hold anything: a transient error is retried with backoff while its messages
are held (axis/retry.py), never counted as a failed delivery.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from axis import wire
from axis.transport import Transport
from tests.e2e.bulk_run import BULK_RECIPIENTS, BULK_SENDERS, SEND_WAIT, BulkRun
from tests.e2e.harness import Running
from tests.fault.conftest import ProxiedDeployment
from tests.fault.proxy import TcpProxy

CUT = 30.0      # seconds each outage lasts
MIDWAY = 100    # deliveries recorded as delivered before each cut starts (of 4,000)

pytestmark = pytest.mark.slow(seconds=155)  # each: 2,000 documents and a 30 s cut (or two)


@dataclass
class WaveRun(BulkRun):
    """A `BulkRun` whose documents are sent in waves, each by its own `axis send`."""

    waves: int = 4
    waiting: list[Running] = field(default_factory=list)

    def wave(self, number: int) -> dict[str, bytes]:
        names = sorted(self.packets)
        return {name: self.packets[name] for name in names[number::self.waves]}

    def start(self) -> None:
        self.stored_lines = {code: [] for code in self.recipients}
        self.send_wave(0)
        self.pulls = [self._pull(code) for code in self.recipients]

    def send_wave(self, number: int) -> None:
        folder = self.root / f"outbox-{number}"
        folder.mkdir(parents=True)
        wave = self.wave(number)
        for name, data in wave.items():
            (folder / name).write_bytes(data)
        self.waiting += self.send_folder(folder, list(wave))

    def finish_waves(self) -> None:
        """Every wave's `axis send` must end with all its packets accepted: no sending again."""
        for running in self.waiting:
            outcome = running.finish(SEND_WAIT + 60)
            assert outcome.exit_code == 0, outcome
            self.sends.append(outcome)
        self.waiting = []


def dead_letters(deployment: ProxiedDeployment) -> dict[str, int]:
    """How many letters the intake queue's dead-letter queue holds (the one queue Axis consumes)."""
    async def action(transport: Transport) -> dict[str, int]:
        count = len(await transport.dead_letters(wire.INTAKE_QUEUE))
        return {wire.INTAKE_QUEUE: count} if count else {}
    return deployment.transport_call(action)


def run_through_cuts(deployment: ProxiedDeployment, proxies: Sequence[TcpProxy], packets: dict[str, bytes],
                     root: Path, *, strict_pulls: bool) -> WaveRun:
    """The run of the module docstring: each proxy in turn is cut for `CUT` seconds, once `MIDWAY` more
    deliveries are done; two waves are sent during each cut."""
    run = WaveRun(deployment, packets, BULK_SENDERS, BULK_RECIPIENTS, root, waves=2 + 2 * len(proxies))
    hub = deployment.serve()
    run.start()
    delivered = 0
    for number, proxy in enumerate(proxies):
        delivered = run.wait_until_delivered(delivered + MIDWAY)["delivered"]
        with proxy.outage():
            cut_at = time.monotonic()
            run.send_wave(1 + 2 * number)
            time.sleep(CUT / 2)
            run.send_wave(2 + 2 * number)
            time.sleep(max(0.0, cut_at + CUT - time.monotonic()))
        assert proxy.refused, "nobody tried to connect during the cut: was it really in the middle of the run?"
    run.send_wave(run.waves - 1)
    run.finish_waves()
    # A pull that met the outage may exit 1 (an ack it could not get recorded is taken again by the next
    # pull, and the inbox ledger makes that a re-ack). What it stored counts.
    run.finish_pulls(strict=strict_pulls)
    run.drain()
    run.check_exactly_once()
    assert dead_letters(deployment) == {}
    assert hub.alive(), "the hub rode out the outage without a restart"
    log = hub.stderr()
    assert "trying again in" in log, "the hub never met the outage"
    assert "poison" not in log
    return run


@pytest.mark.postgres
def test_a_30_second_database_cut_mid_run_parks_nothing(
        proxied_deployment: Callable[[str], ProxiedDeployment], pg_proxy: TcpProxy,
        bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    """Embedded transport, PostgreSQL through the proxy."""
    run_through_cuts(proxied_deployment("embedded+postgres"), [pg_proxy], bulk_packets, tmp_path / "run",
                     strict_pulls=True)


@pytest.mark.slow(seconds=160)  # two cuts: the longest of the suite, so it starts first
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_a_30_second_database_cut_then_broker_cut_mid_run_park_nothing(
        proxied_deployment: Callable[[str], ProxiedDeployment], pg_proxy: TcpProxy, rabbit_proxy: TcpProxy,
        bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    """RabbitMQ and PostgreSQL, both through proxies: one run, the database cut first, then the broker."""
    run_through_cuts(proxied_deployment("rabbitmq+postgres"), [pg_proxy, rabbit_proxy], bulk_packets,
                     tmp_path / "run", strict_pulls=False)
