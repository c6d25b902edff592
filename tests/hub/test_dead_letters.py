"""Dead letters are consumed as a queue: however many there are, each failed delivery is recorded and
its sender gets an error receipt (the sweep this replaced listed at most 1,000 per queue, so letter
1,001 was never recorded). Runs the real hub on both shipped configurations.

The 1,001 deliveries are put in the store and on the recipient's queue by the test (intake of 1,001
signed documents would only make the test slower); the recipient's consumer dead-letters each, as an
adapter does after its last retry; the hub takes it from there.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from axis import wire
from axis.refusals import RefusalCode
from axis.store import NewDocument
from axis.transport import OutgoingMessage
from tests.hub.conftest import running_world, sha256
from tests.store.conftest import _fresh_pg_database, _pg_url, pg_template  # noqa: F401 - fixture reused
from tests.transport.conftest import rabbitmq_url  # noqa: F401 - fixture reused
from tests.transport.support import take

G22, H41 = "000.00.00.G22", "000.00.00.H41"
LETTERS = 1001


@pytest.fixture(params=["embedded+sqlite", pytest.param("rabbitmq+postgres",
                                                        marks=[pytest.mark.rabbitmq, pytest.mark.postgres])])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str | None, str | None]]:
    """(store URL, transport URL); None, None: the embedded defaults."""
    if request.param == "embedded+sqlite":
        yield None, None
        return
    with _fresh_pg_database(request.getfixturevalue("pg_template")) as database:
        yield _pg_url(database), request.getfixturevalue("rabbitmq_url")


async def test_1001_dead_letters_are_all_recorded_each_with_its_senders_error_receipt(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None]) -> None:
    store_url, transport_url = urls
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        bodies = {wire.new_axis_id(): b"<edXML>letter %d</edXML>" % i for i in range(LETTERS)}
        with world.store.write() as tx:
            tx.insert_documents([(NewDocument(axis_id=axis_id, sender_code=G22, document_id=f"{i}/DL-VPCP"), body)
                                 for i, (axis_id, body) in enumerate(bodies.items())])
            tx.insert_deliveries_many({axis_id: [H41] for axis_id in bodies})
            assert tx.transition_many([(axis_id, H41) for axis_id in bodies], "published") == LETTERS
        outcomes = await world.transport.publish_many(
            OutgoingMessage(wire.inbox_queue(H41), body, wire.delivery_message_id(axis_id, H41), 0,
                            {wire.H_AXIS_ID: axis_id, wire.H_SENDER: G22, wire.H_DIGEST: sha256(body),
                             wire.H_RECIPIENT: H41})
            for axis_id, body in bodies.items())
        assert outcomes == [None] * LETTERS

        async with world.transport.consume(wire.inbox_queue(H41), prefetch=LETTERS) as deliveries:
            taken = await take(deliveries, LETTERS, timeout=60)
            await asyncio.gather(*(d.dead_letter("cannot store: disk full") for d in taken))

        receipts = await world.receipts(G22, LETTERS, timeout=180)
        assert {receipt.axis_id for _, receipt, _ in receipts} == set(bodies)
        for headers, receipt, signer in receipts:
            assert (signer, receipt.kind, receipt.outcome, receipt.recipient) == (wire.HUB_IDENTITY, "error",
                                                                                  "failed", H41)
            assert receipt.refusal_code == RefusalCode.DELIVERY_FAILED.number
            assert receipt.digest == sha256(bodies[receipt.axis_id]) and headers[wire.H_RECIPIENT] == H41
        states = {d.axis_id: d.state for d in world.store.list_deliveries(recipient=H41, limit=10 * LETTERS)}
        assert states == dict.fromkeys(bodies, "failed")
        failures = [e for e in world.store.audit_entries() if e.action == "delivery-failed"]
        assert len(failures) == LETTERS
        # Recorded, and still parked where operators see (and a later issue replays) them.
        assert len(await world.transport.dead_letters(wire.inbox_queue(H41), limit=10 * LETTERS)) == LETTERS
        assert world.store.verify_audit().ok



async def test_an_agency_whose_queues_are_missing_stops_no_other_agencys_dead_letters(
        tmp_path: Path, pki_dir: Path) -> None:
    # The sweep this replaced addressed every registered agency's dead-letter queue in turn, and the first
    # one missing (registered in the store, never declared on the broker) ended the pass for all the rest.
    async with running_world(tmp_path, pki_dir) as world:
        with world.store.write() as tx:
            tx.add_agency("000.00.00.A01", "Registered, but its queues were never declared")
        body = world.document(G22, [H41])
        await world.submit(body, G22)
        [(_, accepted, _)] = await world.receipts(G22, 1)
        async with world.transport.consume(wire.inbox_queue(H41), prefetch=1) as deliveries:
            [delivery] = await take(deliveries, 1)
            await delivery.dead_letter("cannot store: disk full")
        [(_, error, _)] = await world.receipts(G22, 1)
        assert (error.kind, error.axis_id, error.recipient) == ("error", accepted.axis_id, H41)
        assert [d.state for d in world.store.deliveries(accepted.axis_id)] == ["failed"]
