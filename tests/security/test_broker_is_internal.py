"""The broker is internal: after documents, statuses, acks and failures have gone through, it holds
no queue per agency and nothing an agency wrote or should read.

The attacks of issue 9, tried on the landed main before it, all went through per-agency queues:
reading `<code>` showed every packet addressed to that agency, publishing into another agency's
`<code>` or `<code>.dlq` planted deliveries, consuming `<code>.receipts` stole a sender's intake
receipts. Here the same traffic runs through the hub and the gateway's operations on both
configurations, and the broker is then asked what queues exist and what they hold: only the
intake queue (empty), its dead-letter queue and the dead-letter feed. So whoever holds the
broker's credentials finds no delivery, no receipt and no outcome there, and an agency, which
holds none, has no path to the broker at all: the gateway is the only edge (tests/gateway).
"""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from urllib.parse import quote

from yarl import URL

from axis import wire
from axis.edxml import Organization, packet_to_bytes
from axis.edxml.compose import new_status
from axis.edxml.model import ResponseFor
from tests.hub.conftest import pki_dir, running_world, urls  # noqa: F401 - fixtures reused
from tests.store.conftest import pg_template  # noqa: F401 - fixture reused
from tests.transport.support import RabbitAdmin

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
ALLOWED = {wire.INTAKE_QUEUE, f"{wire.INTAKE_QUEUE}.dlq", "axis.dead-letters", "axis.dead-letters.dlq"}


def _allowed(name: str) -> bool:
    # RabbitMQ's transport also keeps its retry delay queues (axis.retry.<ms>, docs/transports.md).
    return name in ALLOWED or name.startswith("axis.retry.")


def _queues(transport_url: str | None, tmp_path: Path) -> dict[str, int]:
    """Every queue the broker holds, with its message count."""
    if transport_url is None:
        with sqlite3.connect(tmp_path / "transport.db") as db:
            names = [name for (name,) in db.execute("SELECT name FROM axis_queue")]
            counts = dict(db.execute("SELECT queue, count(*) FROM axis_message GROUP BY queue").fetchall())
        return {name: counts.get(name, 0) for name in names}
    vhost = URL(transport_url).path.lstrip("/")
    listed = RabbitAdmin().call("GET", f"/queues/{quote(vhost, safe='')}")
    return {q["name"]: q.get("messages", 0) for q in listed}


async def test_after_a_full_exchange_the_broker_holds_no_agency_queue_and_no_delivery(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None]) -> None:  # noqa: F811
    store_url, transport_url = urls
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        body = world.document(G22, [H41, H14])
        sent = await world.service.submit(world.caller(G22), body)
        outcome = await world.service.outcome(world.caller(G22), sent, wait=20)
        assert outcome.outcome == "accepted" and outcome.axis_id is not None
        [delivery] = await world.inbox(H41, 1)
        assert delivery.body == body
        await world.service.ack(world.caller(H41), outcome.axis_id, None)
        await world.inbox(H14, 1)
        await world.service.fail(world.caller(H14), outcome.axis_id, "no room")
        document_id = world.store.get_document(outcome.axis_id).document_id
        status = world.signers[H41].sign(packet_to_bytes(new_status(
            Organization(H41), ResponseFor(organ_id=G22, document_id=document_id), "03")))
        answered = await world.service.outcome(world.caller(H41),
                                               await world.service.submit(world.caller(H41), status), wait=20)
        assert answered.outcome == "accepted"
        [reply] = await world.inbox(G22, 1)
        assert reply.body == status

        # The hub acknowledges a submission just after the commit its outcome is read from: give it that moment.
        deadline = asyncio.get_running_loop().time() + 10
        queues = _queues(transport_url, tmp_path)
        while queues.get(wire.INTAKE_QUEUE, 0) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            queues = _queues(transport_url, tmp_path)
        extra = {name for name in queues if not _allowed(name)}
        assert not extra, f"queues an agency or a broker account could read: {extra}"
        assert queues.get(wire.INTAKE_QUEUE, 0) == 0
        # No queue carries a packet, a receipt or an outcome: they are in the store, behind the gateway.
        assert all(count == 0 for count in queues.values()), queues
