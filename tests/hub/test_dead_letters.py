"""Dead letters are consumed as a queue: however many there are, each is recorded once (an audit
entry and a warning) and stays parked for operators. Runs the real hub on both shipped configurations.

Only `axis.intake` is consumed by Axis now (deliveries wait in the store), so the letters are
submissions nobody can be told about: bytes with no sender, which the hub refuses (AX414) and
dead-letters; the dead-letter feed brings each back to the hub, which records it.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from axis import wire
from axis.transport import OutgoingMessage
from tests.hub.conftest import running_world

LETTERS = 1001


@pytest.mark.slow(seconds=20)
async def test_1001_dead_letters_are_each_recorded_once_and_stay_parked(
        tmp_path: Path, pki_dir: Path, urls: tuple[str | None, str | None]) -> None:
    store_url, transport_url = urls
    async with running_world(tmp_path, pki_dir, store_url=store_url, transport_url=transport_url) as world:
        ids = [wire.new_submission_id() for _ in range(LETTERS)]
        await world.transport.publish_many([
            OutgoingMessage(wire.INTAKE_QUEUE, b"<edXML>letter %d" % i, s, 0, {wire.H_SUBMISSION: s})
            for i, s in enumerate(ids)])
        recorded: list = []
        for _ in range(1800):
            recorded = [e for e in world.store.audit_entries() if e.action == "dead-letter"]
            if len(recorded) >= LETTERS:
                break
            await asyncio.sleep(0.1)
        assert sorted(e.subject for e in recorded) == sorted(ids)
        assert {e.data["queue"] for e in recorded} == {wire.INTAKE_QUEUE}
        assert all(e.data["reason"].startswith("AX414") for e in recorded)
        parked = await world.transport.dead_letters(wire.INTAKE_QUEUE, limit=10 * LETTERS)
        assert sorted(letter.message_id for letter in parked) == sorted(ids)
        await asyncio.sleep(0.5)  # the feed does not bring them again
        assert len([e for e in world.store.audit_entries() if e.action == "dead-letter"]) == LETTERS
        assert world.store.verify_audit().ok
