"""Test-wide policy for real services.

Tests that need RabbitMQ or PostgreSQL carry the `rabbitmq` / `postgres`
marker. When the service cannot be reached they are skipped with a visible
reason, except under CI=true, where a missing service fails the run: a green CI
must mean the real broker and database were exercised.
"""
from __future__ import annotations

import compileall
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.tsa_support import tsa  # noqa: F401 - a running `axis tsa serve` for any test

AMQP_URL = os.environ.get("AXIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("AXIS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
# The national SDK's sample packets, copied into the repository (see their SOURCE.md).
SAMPLES = Path(__file__).resolve().parent / "vectors" / "vdxp-sdk"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


_SERVICES = {
    "rabbitmq": (AMQP_URL, 5672),
    "postgres": (PG_URL, 5432),
}


_status: dict[str, bool] = {}
# The 2,000-document runs (node id prefixes): the first worker runs them one after the other while the others
# take the rest (`pytest_xdist_make_scheduler`). Each keeps more than one core busy (the hub, its worker
# process, the gateway, two senders, two pulls); two side by side overloaded two cores until gateway requests timed
# out (30 s) and were retried, and pulls missed their 180 s bound: slower than one after the other.
# Every cluster test goes there too: test_node_loss kills node 1, which another cluster test running beside it
# on another worker was once refused by (test_forged_lanes writes onto a lane through node 1).
BULK_LANE = ("tests/fault/test_outages.py::", "tests/e2e/test_hub_crash.py::test_sigkill_of_the_hub_mid_run",
             "tests/cluster/")


def pytest_configure(config: pytest.Config) -> None:
    """Where Python may not write bytecode (PYTHONDONTWRITEBYTECODE, as on CI), compile the project's modules
    once, before the workers start: the suite starts about 750 Python processes (`axis` commands and the
    children of `axis serve`), and each compiled every module of ours it imported from source again. Python
    still reads the compiled files it is not allowed to write."""
    if sys.flags.dont_write_bytecode and not hasattr(config, "workerinput"):
        root = Path(__file__).resolve().parents[1]
        for folder in ("axis", "adapters", "cli"):
            compileall.compile_dir(root / folder, quiet=1)


def service_up(name: str) -> bool:
    if name not in _status:
        url, port = _SERVICES[name]
        _status[name] = _reachable(url, port)
    return _status[name]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("xmlsec1") is not None and shutil.which("xmlsec1") is None:
        reason = "the xmlsec1 command is not installed (Debian: apt-get install xmlsec1)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}: the interop tests must run in CI", pytrace=False)
        pytest.skip(reason)
    for name in _SERVICES:
        if item.get_closest_marker(name) is not None and not service_up(name):
            reason = f"{name} is not reachable at {_SERVICES[name][0]}"
            if IN_CI:
                pytest.fail(f"CI=true and {reason}: a missing service is a failure in CI", pytrace=False)
            pytest.skip(reason + " (start it, or run .ci/run)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests first, longest first (`@pytest.mark.slow(seconds=N)`: about how long it runs here), so
    that none of them starts near the end and leaves one worker running alone. The other tests keep their
    collection order (the sort is stable)."""
    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("seconds", 1.0))
    items.sort(key=lambda item: -seconds(item))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's `load` scheduling, except that the `BULK_LANE` tests all go to the first worker at the
    start, to run there one after the other; everything else is dealt out two at a time (`--maxschedchunk 2`)
    as workers free up, so the other workers start at once and none is left with a long queue at the end.
    (xdist_group/`--dist loadgroup` would say this, but xdist 3.8 marks groups by rewriting `item._nodeid`,
    which pytest 9 no longer reads: every test ends up in a group of its own.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScheduling

    class BulkLaneScheduling(LoadScheduling):
        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed and len(self.nodes) > 1 \
                    and self._check_nodes_have_same_collection():
                collection = list(next(iter(self.node2collection.values())))
                lane = [index for index, nodeid in enumerate(collection) if nodeid.startswith(BULK_LANE)]
                if self.maxschedchunk is None:
                    self.maxschedchunk = 2
                if lane:
                    self.collection = collection
                    self.pending[:] = [index for index in range(len(collection)) if index not in set(lane)]
                    first, *others = self.nodes
                    self.node2pending[first].extend(lane)
                    first.send_runtest_some(lane)
                    # The others start on the longest of the rest. Nothing queues behind the lane yet: the first
                    # worker is topped up from `pending` as its lane runs out (LoadScheduling.check_schedule).
                    for node in others:
                        self.check_schedule(node)
                    return
            super().schedule()

    return BulkLaneScheduling(config, log)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the SDK sample packets are missing: expected {SAMPLES}")
    return SAMPLES
