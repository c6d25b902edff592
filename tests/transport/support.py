"""Helpers shared by the transport tests: the management-API client, the test policy, bounded waits."""
from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest
from yarl import URL

from axis.transport import Consumer, Delivery, RetryPolicy

AMQP_URL = os.environ.get("AXIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("AXIS_TEST_AMQP_MANAGEMENT_URL", "http://127.0.0.1:15672")

POLICY = RetryPolicy(base_delay=0.2, max_attempts=3)
LEASE = 1.0
STEP = 15.0  # upper bound for any single wait in these tests; never reached when things work


class RabbitAdmin:
    """The few management-API calls the tests need (stdlib HTTP, so no extra dependency)."""

    def __init__(self, base: str = MANAGEMENT_URL, amqp_url: str = AMQP_URL) -> None:
        parsed = URL(amqp_url)
        self.base = base.rstrip("/") + "/api"
        token = f"{parsed.user or 'guest'}:{parsed.password or 'guest'}".encode()
        self._auth = "Basic " + base64.b64encode(token).decode()
        self.user = parsed.user or "guest"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
        except urllib.error.URLError as exc:
            if isinstance(exc, urllib.error.HTTPError):
                raise
            pytest.fail(f"the RabbitMQ management API at {self.base} is unreachable ({exc.reason}); the transport "
                        "tests need it: run `rabbitmq-plugins enable rabbitmq_management`", pytrace=False)
        return json.loads(payload) if payload else None

    def create_vhost(self, vhost: str) -> None:
        self.call("PUT", f"/vhosts/{quote(vhost, safe='')}", {})
        self.grant(vhost)

    def revoke(self, vhost: str) -> None:
        """Take the user's rights on `vhost` away: reconnecting fails until `grant()`, a lasting outage."""
        self.call("DELETE", f"/permissions/{quote(vhost, safe='')}/{quote(self.user, safe='')}")

    def grant(self, vhost: str) -> None:
        self.call("PUT", f"/permissions/{quote(vhost, safe='')}/{quote(self.user, safe='')}",
                  {"configure": ".*", "write": ".*", "read": ".*"})

    def delete_vhost(self, vhost: str) -> None:
        self.call("DELETE", f"/vhosts/{quote(vhost, safe='')}")

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        return self.call("GET", f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")

    def bindings(self, vhost: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/bindings/{quote(vhost, safe='')}")

    def kill_connection(self, vhost: str, connection_name: str, wait: float = STEP) -> int:
        """Close every connection of `vhost` named `connection_name` (client_properties); returns how many.

        The management API lists a new connection only after its next stats
        sample, so wait until it shows up.
        """
        deadline = time.monotonic() + wait
        while True:
            found = [c["name"] for c in self.call("GET", f"/vhosts/{quote(vhost, safe='')}/connections")
                     if c.get("client_properties", {}).get("connection_name") == connection_name]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for name in found:
            self.call("DELETE", f"/connections/{quote(name, safe='')}")
        return len(found)


async def next_delivery(consumer: Consumer, timeout: float = STEP) -> Delivery:
    """The consumer's next delivery; fails the test if none comes within `timeout`."""
    [delivery] = await take(consumer, 1, timeout)
    return delivery


async def take(consumer: Consumer, count: int, timeout: float = STEP) -> list[Delivery]:
    """Exactly `count` deliveries (unsettled), or fail the test after `timeout` seconds.

    The one "receive until there are enough" loop the test helpers share.
    """
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        batch = [] if remaining <= 0 else await consumer.receive(count - len(got), remaining)
        if not batch:
            raise AssertionError(f"{len(got)} of {count} deliveries within {timeout:g} s"
                                 + (" (the consumer was closed)" if consumer.closed else ""))
        got.extend(batch)
    return got
