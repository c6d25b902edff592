"""A three-node RabbitMQ cluster on this machine (`.ci/cluster`: nodes axis-c1..3@localhost, AMQP on
127.0.0.1:5701..5703), for the tests of the production layout: quorum queues, failover between nodes.

`.ci/run` starts the cluster in the background before the suite, so its minute of joining overlaps the
other tests; `cluster` waits for it, or starts it itself (about 20 s here) when nothing started it. Each
test gets a vhost of its own on the cluster, deleted afterwards. Without RabbitMQ's programs the tests are
skipped, except under CI=true, where that is a failure.
"""
from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e.conftest import bulk_packets, e2e_pki  # noqa: F401 - fixtures reused
from tests.store.conftest import pg_template  # noqa: F401 - fixture reused

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / ".ci" / "cluster"
PORTS = (5701, 5702, 5703)


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def control(node: int, *args: str, timeout: float = 120) -> str:
    """`rabbitmqctl -n axis-cNODE@localhost ARGS` (through `.ci/cluster ctl`); its output, or the test fails."""
    done = subprocess.run([str(CLUSTER), "ctl", str(node), *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f".ci/cluster ctl {node} {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def cluster() -> None:
    """The three nodes up and joined (started here if they are not)."""
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() or shutil.which("bash") is None:
        reason = "RabbitMQ's programs are not installed here: the cluster tests start three nodes of it"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    # `start` waits for a start already under way (it holds a lock), and does nothing to nodes that run.
    done = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and all(_open(port) for port in PORTS), \
        f".ci/cluster start failed: {done.stdout}{done.stderr}"


@pytest.fixture
def cluster_url(cluster: None) -> Iterator[str]:
    """The broker URL of a fresh vhost on the cluster: every node listed, quorum queues, two intake shards."""
    vhost = f"axis-cluster-{secrets.token_hex(6)}"
    control(1, "add_vhost", vhost)
    control(1, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield (f"amqp://guest:guest@127.0.0.1:{PORTS[0]}/{vhost}"
               f"?hosts=127.0.0.1:{PORTS[1]},127.0.0.1:{PORTS[2]}&queues=quorum&shards=2")
    finally:
        for node in (1, 2, 3):  # whichever node is up
            if subprocess.run([str(CLUSTER), "ctl", str(node), "delete_vhost", vhost], capture_output=True,
                              timeout=120).returncode == 0:
                break


@pytest.fixture
def node_control(cluster: None) -> Iterator[Callable[[int, str], None]]:
    """`node_control(n, "stop")` stops node n like a crash (its Erlang VM killed), `"start"` starts it again;
    every node is running again after the test."""
    def act(node: int, action: str) -> None:
        if action == "stop":
            subprocess.run([str(CLUSTER), "kill", str(node)], check=True, timeout=30)
        else:
            done = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield act
    finally:
        subprocess.run([str(CLUSTER), "start"], capture_output=True, timeout=300)
