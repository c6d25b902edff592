"""The delivery state machine: pure rules, and the same rules applied in SQL under races."""
from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.store import DeliveryState as S
from axis.store import NotFound, Store, can_transition, state_for_status
from axis.store.states import RANK, TERMINAL, sources_for
from tests.store.store_helpers import R1, SENDER, body_of, new_doc

ALL = list(S)
_examples = itertools.count()


def test_terminal_states_never_change() -> None:
    for old in TERMINAL:
        assert not any(can_transition(old, new) for new in ALL)


def test_repeating_a_state_is_not_a_transition() -> None:
    assert not any(can_transition(s, s) for s in ALL)


def test_progress_only_moves_forward() -> None:
    for old in RANK:
        for new in RANK:
            assert can_transition(old, new) == (RANK[new] > RANK[old])


def test_parked_only_before_the_recipient_has_it() -> None:
    assert can_transition(S.QUEUED, S.PARKED) and can_transition(S.PUBLISHED, S.PARKED)
    assert not any(can_transition(old, S.PARKED) for old in RANK if RANK[old] >= RANK[S.DELIVERED])
    assert not any(can_transition(old, S.PARKED) for old in (*TERMINAL, S.FAILED))
    # refusal (02) and recall (15) end any delivery but a purged one
    assert all(can_transition(old, S.REFUSED) and can_transition(old, S.RECALLED) for old in (*RANK, S.PARKED))


def test_parked_leaves_for_a_replay_a_purge_or_proof_that_the_recipient_has_it() -> None:
    assert [new for new in ALL if can_transition(S.PARKED, new)] == [
        S.QUEUED, *(new for new in RANK if RANK[new] >= RANK[S.DELIVERED]), S.REFUSED, S.FAILED, S.RECALLED]


def test_only_a_purge_fails_a_delivery() -> None:
    assert sources_for(S.FAILED) == {S.PARKED}


def test_failed_yields_only_to_proof_that_the_recipient_has_it() -> None:
    # A failure report is a claim; the recipient's verified receipt (or a status) shows it has the bytes.
    assert [new for new in ALL if can_transition(S.FAILED, new)] == [
        new for new in RANK if RANK[new] >= RANK[S.DELIVERED]]


def test_nothing_but_a_replay_goes_back() -> None:
    """Every allowed move raises the rank, except moves out of parked/failed; of those, only the replay
    (parked -> queued) lands before `delivered`, i.e. where the recipient does not have the document yet."""
    moves = [(old, new) for old in ALL for new in ALL if can_transition(old, new)]
    assert all(RANK[new] > RANK[old] for old, new in moves if old in RANK and new in RANK)
    assert [(old, new) for old, new in moves if new in RANK and RANK[new] < RANK[S.DELIVERED]
            and not (old in RANK and RANK[new] > RANK[old])] == [(S.PARKED, S.QUEUED)]


def test_status_codes_map_to_states() -> None:
    assert [state_for_status(c) for c in ("01", "02", "03", "04", "05", "06", "15")] == [
        S.ARRIVED, S.REFUSED, S.ACCEPTED, S.ASSIGNED, S.PROCESSING, S.DONE, S.RECALLED]
    assert state_for_status("13") is None and state_for_status("16") is None
    with pytest.raises(ValueError, match="status code"):
        state_for_status("07")
    with pytest.raises(ValueError, match="unknown delivery state"):
        can_transition("queued", "lost")


def _delivery(store: Store, n: int | str) -> str:
    doc = new_doc(n)
    with store.write() as tx:
        tx.insert_document(doc, body_of(n))
        tx.insert_deliveries(doc.axis_id, [R1])
    return doc.axis_id


@pytest.fixture
def one_recipient(store: Store) -> Store:
    with store.write() as tx:
        tx.add_agency(SENDER, "sender")
        tx.add_agency(R1, "recipient")
    return store


def test_late_delivered_never_overwrites_refused_but_overwrites_parked_and_failed(one_recipient: Store) -> None:
    refused, parked, failed = (_delivery(one_recipient, n) for n in ("r", "p", "f"))
    with one_recipient.write() as tx:
        assert tx.transition(refused, R1, "refused", error="02: wrong recipient")
        assert tx.transition(parked, R1, S.PARKED, error="signature does not verify")
        assert tx.transition(failed, R1, S.PARKED) and tx.transition(failed, R1, S.FAILED)
    with one_recipient.write() as tx:
        assert not tx.transition(refused, R1, "delivered")
        assert not tx.transition(refused, R1, "done")
        # the recipient's receipt: it has the bytes, whatever it reported before
        assert tx.transition(parked, R1, "delivered") and tx.transition(failed, R1, "delivered")
        assert not tx.transition(parked, R1, S.PARKED) and not tx.transition(failed, R1, S.FAILED)
    [r], [p], [f] = (one_recipient.deliveries(axis_id) for axis_id in (refused, parked, failed))
    assert (r.state, r.last_error) == ("refused", "02: wrong recipient")
    assert (p.state, p.last_error) == ("delivered", "signature does not verify")
    assert f.state == "delivered"


def test_repeat_and_unknown_delivery(one_recipient: Store) -> None:
    axis_id = _delivery(one_recipient, 1)
    with one_recipient.write() as tx:
        assert tx.transition(axis_id, R1, "delivered") is True
        assert tx.transition(axis_id, R1, "delivered") is False
        assert tx.transition(axis_id, R1, "published") is False
        with pytest.raises(NotFound):
            tx.transition(axis_id, "000.00.00.X99", "delivered")
    [d] = one_recipient.deliveries(axis_id)
    assert (d.state, d.attempts, d.last_error) == ("delivered", 0, None)


def test_transition_records_the_attempt_count(one_recipient: Store) -> None:
    """A replay records its attempt count; a refused move records nothing."""
    replayed, delivered = _delivery(one_recipient, 1), _delivery(one_recipient, 2)
    with one_recipient.write() as tx:
        assert tx.transition(replayed, R1, "parked", "signature does not verify") is True
        assert tx.transition(replayed, R1, "queued", attempts=5) is True
        assert tx.transition(delivered, R1, "delivered") is True
        assert tx.transition(delivered, R1, "parked", "late report", attempts=7) is False
        with pytest.raises(ValueError, match="count"):
            tx.transition(delivered, R1, "done", attempts=-1)
    [r], [d] = one_recipient.deliveries(replayed), one_recipient.deliveries(delivered)
    assert (r.state, r.attempts, r.last_error) == ("queued", 5, "signature does not verify")
    assert (d.state, d.attempts, d.last_error) == ("delivered", 0, None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(ALL), min_size=1, max_size=12))
def test_store_follows_the_model_over_random_sequences(one_recipient: Store, steps: list[S]) -> None:
    """Each example is a fresh delivery; the store must agree with can_transition at every step."""
    axis_id = _delivery(one_recipient, f"h{next(_examples)}")
    model = S.QUEUED
    reached_terminal = None
    for new in steps:
        with one_recipient.write() as tx:
            changed = tx.transition(axis_id, R1, new)
        assert changed == can_transition(model, new)
        if changed:
            if model in RANK and new in RANK:
                assert RANK[new] > RANK[model]
            model = new
        if reached_terminal is not None:
            assert model == reached_terminal  # terminal never changes
        if model in TERMINAL:
            reached_terminal = model
        [d] = one_recipient.deliveries(axis_id)
        assert d.state == model.value


def test_racing_workers_exactly_one_wins(one_recipient: Store) -> None:
    """Workers report refused and recalled at once: one terminal wins, nothing regresses."""
    for round_ in range(5):
        axis_id = _delivery(one_recipient, f"race{round_}")
        targets = [S.REFUSED, S.RECALLED, S.REFUSED, S.RECALLED, S.REFUSED, S.RECALLED]
        barrier = threading.Barrier(len(targets))
        results: dict[int, bool] = {}

        def worker(i: int, target: S, barrier: threading.Barrier, results: dict[int, bool], axis_id: str) -> None:
            barrier.wait(10)
            with one_recipient.write() as tx:
                results[i] = tx.transition(axis_id, R1, target)

        threads = [threading.Thread(target=worker, args=(i, t, barrier, results, axis_id))
                   for i, t in enumerate(targets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sum(results.values()) == 1
        winner = targets[next(i for i, ok in results.items() if ok)]
        [d] = one_recipient.deliveries(axis_id)
        assert d.state == winner.value
