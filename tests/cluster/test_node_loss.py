"""The production layout on a real three-node RabbitMQ cluster: quorum queues, two hubs, two gateways.

One 2,000-document run (2 senders, 2 recipients, 4,000 deliveries) proves both things issue 12 asks of a cluster:

- **a node lost mid-run, then restarted**: node 1, the first in every process's broker URL (so every process is
  connected to it) and the leader of some of the lanes, is killed like a crash while deliveries are under way,
  and started again a few seconds later. Every document reaches every recipient's application exactly once,
  byte for byte, and nothing valid is refused (`BulkRun.check_exactly_once`).
- **two hubs and two gateways share the work**: two `axis serve` (each a hub, with a gateway child) on the same
  PostgreSQL database and cluster; G22 sends and H41 pulls through the first gateway, G17 and H14 through the
  second. The first decides nothing itself (`AXIS_INTAKE_AT=hub`: every submission crosses the cluster to
  whichever hub takes it), the second decides where the packet arrives (the default). Each document is
  accepted exactly once over both processes' logs, and both hubs took part.
"""
from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.bulk_run import BULK_RECIPIENTS, BULK_SENDERS, BulkRun
from tests.e2e.harness import Deployment, HubProcess, free_port
from tests.e2e.packets import AGENCIES, TestPKI
from tests.store.conftest import _fresh_pg_database, _pg_url

MIDWAY = 600  # deliveries recorded as delivered when node 1 is killed (of 4,000)
DOWN = 5.0    # seconds node 1 stays down
ACCEPTED = re.compile(r"accepted \S+ from \S+ to ")


@pytest.fixture
def two_serves(request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI,
               cluster_url: str) -> Iterator[tuple[Deployment, Deployment]]:
    with _fresh_pg_database(request.getfixturevalue("pg_template")) as database:
        log_all = {"AXIS_LOG_RATE": "1000000"}  # every decision logged: the test counts them
        first = Deployment("cluster", tmp_path / "axis-data", e2e_pki, broker=cluster_url, db=_pg_url(database),
                           extra_env={**log_all, "AXIS_INTAKE_AT": "hub"})
        second = dataclasses.replace(first, gateway_port=free_port(), hubs=[], commands=[], credentials={},
                                     extra_env=log_all)
        try:
            first.register(*AGENCIES)
            yield first, second
        finally:
            first.close()
            second.close()


def accepted(hub: HubProcess) -> int:
    return len(ACCEPTED.findall(hub.stderr()))


@pytest.mark.slow(seconds=90)
@pytest.mark.postgres
def test_a_node_killed_mid_run_loses_nothing_and_two_hubs_and_gateways_share_the_work(
        two_serves: tuple[Deployment, Deployment], node_control: Callable[[int, str], None],
        bulk_packets: dict[str, bytes], tmp_path: Path) -> None:
    first, second = two_serves
    first.serve()
    second.serve()
    run = BulkRun(first, bulk_packets, BULK_SENDERS, BULK_RECIPIENTS, tmp_path / "run", edges=(first, second))
    run.start()
    run.wait_until_delivered(MIDWAY)

    node_control(1, "stop")
    time.sleep(DOWN)
    node_control(1, "start")

    run.finish_after_outage()

    hubs = [*first.hubs, *second.hubs]
    assert all(hub.alive() for hub in hubs)  # both rode out the node's loss, no restart
    decided = [accepted(hub) for hub in hubs]
    assert sum(decided) == len(bulk_packets), decided  # each document accepted once, over both processes
    assert all(decided), decided
