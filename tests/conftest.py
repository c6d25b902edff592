"""Test-wide policy for real services.

Tests that need RabbitMQ or PostgreSQL carry the `rabbitmq` / `postgres`
marker. When the service cannot be reached they are skipped with a visible
reason, except under CI=true, where a missing service fails the run: a green CI
must mean the real broker and database were exercised.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

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
# The xdist group of the 2,000-document runs: one worker runs them in turn (see pytest_collection_modifyitems).
BULK_LANE = "bulk"


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
    collection order (the sort is stable).

    The 2,000-document runs (`BULK_LANE`) carry `xdist_group(BULK_LANE)`: under the README's
    `pytest -n 2 --dist loadgroup` they run one after the other on one worker while the other worker takes
    the rest (xdist puts the biggest group first). Each of them keeps more than one core busy (hub, worker
    process, gateway, two senders, two pulls); two side by side overload two cores until the gateway's
    answers time out and are retried, which costs more than it overlaps."""
    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("seconds", 1.0))
    items.sort(key=lambda item: -seconds(item))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the SDK sample packets are missing: expected {SAMPLES}")
    return SAMPLES
