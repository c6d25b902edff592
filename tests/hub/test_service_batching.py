"""The service under load: submission rows written together, one reader for every caller waiting for an outcome.

Both must not change what a single caller sees (`test_hub.py`): these check the sharing itself.
"""
from __future__ import annotations

import asyncio
import time

from axis.gateway import NotFound
from axis.store import NewSubmission
from tests.hub.conftest import World

G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"


async def test_many_callers_submit_and_wait_at_once(world: World) -> None:
    """Forty submissions at once: each recorded and published, each caller answered with its own outcome."""
    bodies = [world.document(G22, [H41]) for _ in range(40)]

    async def send(body: bytes) -> tuple[str, str, str | None]:
        submission = await world.service.submit(world.caller(G22), body)
        outcome = await world.service.outcome(world.caller(G22), submission, wait=30)
        return submission, outcome.outcome, outcome.axis_id

    answers = await asyncio.gather(*(send(body) for body in bodies))
    assert [outcome for _, outcome, _ in answers] == ["accepted"] * 40
    assert len({axis_id for _, _, axis_id in answers}) == 40
    rows = world.store.submissions([submission for submission, _, _ in answers])
    assert {row.axis_id for row in rows.values()} == {axis_id for _, _, axis_id in answers}
    assert len(await world.inbox(H41, 40)) == 40


async def test_waiting_for_an_unknown_or_foreign_submission_is_refused_at_once(world: World) -> None:
    """A waiting caller learns "not found" at the first look, not after its wait: the answer takes no
    longer for another agency's submission than for an unknown one."""
    submission = await world.service.submit(world.caller(G22), world.document(G22, [H41]))
    for caller, wanted in ((H41, submission), (G22, "0123456789abcdef0123456789abcdef")):
        started = time.perf_counter()
        try:
            await world.service.outcome(world.caller(caller), wanted, wait=20)
        except NotFound as exc:
            assert exc.status == 404
        else:
            raise AssertionError(f"{caller} saw submission {wanted}")
        assert time.perf_counter() - started < 5


async def test_a_wait_that_runs_out_answers_queued(world: World) -> None:
    """A row nobody decides (published by nobody): the caller gets `queued` when its wait is over."""
    submission = "fedcba9876543210fedcba9876543210"
    with world.store.write() as tx:
        tx.add_submissions([NewSubmission(submission, G22, "test-credential", "0" * 64)])
    started = time.perf_counter()
    outcome = await world.service.outcome(world.caller(G22), submission, wait=0.5)
    assert outcome.outcome == "queued"
    assert 0.4 < time.perf_counter() - started < 5
    decided = await world.service.outcome(world.caller(G22), submission)
    assert decided.outcome == "queued"
