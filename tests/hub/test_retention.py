"""The hub's retention task: a delivered body goes, one still waiting stays, and the gateway says why it is gone."""
from __future__ import annotations

import asyncio

import pytest

from axis.gateway.service import NotFound
from axis.store.retention import RetentionPolicy
from tests.hub.conftest import running_world

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
# Bodies go as soon as every recipient has them (the ages are the settings' business, tested in tests/audit).
AT_ONCE = RetentionPolicy(bodies_days=1e-9, submissions_days=0, inbox_days=0, every=0.1)


async def test_the_hub_removes_a_delivered_body_and_keeps_one_still_waiting(tmp_path, pki_dir) -> None:
    async with running_world(tmp_path, pki_dir, retention=AT_ONCE) as world:
        await world.submit(world.document(G22, [H41]), G22)
        await world.submit(world.document(G22, [H14]), G22)
        [served] = await world.inbox(H41, 1)
        delivered = served.axis_id
        await world.service.ack(world.caller(H41), delivered, None)
        for _ in range(100):
            removed = [e for e in world.store.audit_entries_about(delivered) if e.action == "retention-removed"]
            if removed:
                break
            await asyncio.sleep(0.05)
        assert removed and removed[0].actor == "hub"
        with pytest.raises(NotFound, match="removed by retention"):
            await world.service.fetch(world.caller(H41), delivered)
        [still] = await world.inbox(H14, 1)  # not yet fetched: its body is still there
        assert still.body
