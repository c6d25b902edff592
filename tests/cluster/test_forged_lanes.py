"""Messages written straight onto a lane of the cluster layout (an urgent lane, a shard) are as hostile as any
written onto `axis.intake`: the hub decides them by their signature, never by the lane or the headers they
came with, and dead-letters with AX414 what nobody can be told about (tests/security/test_forged_messages.py
shows the same on the single-broker layout)."""
from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from yarl import URL

from axis import wire
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import AGENCIES, H14, H41, H99, TestPKI, unsigned_document
from tests.security.support import dead_letters, waiting
from tests.store.conftest import _fresh_pg_database, _pg_url


@pytest.fixture
def cluster_deployment(request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI,
                       cluster_url: str) -> Iterator[Deployment]:
    with _fresh_pg_database(request.getfixturevalue("pg_template")) as database:
        deployment = Deployment("cluster", tmp_path / "axis-data", e2e_pki, broker=cluster_url, db=_pg_url(database))
        try:
            deployment.register(*AGENCIES)
            yield deployment
        finally:
            deployment.close()


def write_onto(url: str, lane: str, body: bytes, message_id: str, headers: dict[str, str]) -> None:
    """Publish straight to a physical lane through the default exchange, as whoever holds the broker's
    credentials could (no transport, no Axis headers of its own)."""
    async def go() -> None:
        connection = await aio_pika.connect(str(URL(url).with_query(None)))
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(body, message_id=message_id, headers=headers, priority=4), routing_key=lane)
    asyncio.run(go())


@pytest.mark.postgres
def test_messages_written_onto_an_urgent_lane_or_a_shard_are_decided_as_hostile(
        cluster_deployment: Deployment) -> None:
    deployment = cluster_deployment
    deployment.serve()
    forged = {f"{wire.INTAKE_QUEUE}.shard-1.urgent": (uuid.uuid4().hex, b"<junk/>"),
              f"{wire.INTAKE_QUEUE}.shard-1": (uuid.uuid4().hex, unsigned_document(H99, [H41], 3))}
    for lane, (submission, body) in forged.items():
        write_onto(deployment.transport_url, lane, body, submission,
                   {wire.H_SUBMISSION: submission, wire.H_AGENCY: H14, wire.H_KIND: "document",
                    wire.H_DIGEST: hashlib.sha256(body).hexdigest()})
    letters = wait_until(lambda: (found := dead_letters(deployment, wire.INTAKE_QUEUE)) and len(found) >= 2 and found,
                         "both forged messages to be dead-lettered on axis.intake") or []
    assert sorted(letter.message_id for letter in letters) == sorted(m for m, _ in forged.values())
    assert all(letter.reason.startswith("AX414 SENDER_UNKNOWN") for letter in letters), letters
    assert waiting(deployment, H41) == []
    with deployment.store() as store:
        assert store.list_deliveries() == []
