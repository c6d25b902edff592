"""The delivery state machine: pure rules, and the same rules applied in SQL under races."""
from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axis.store import DeliveryState as S
from axis.store import NotFound, Store, can_transition, state_for_status
from axis.store.states import RANK, TERMINAL
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


def test_failed_only_before_the_recipient_has_it() -> None:
    assert can_transition(S.QUEUED, S.FAILED) and can_transition(S.PUBLISHED, S.FAILED)
    assert not any(can_transition(old, S.FAILED) for old in RANK if RANK[old] >= RANK[S.DELIVERED])
    # refusal (02) and recall (15) end any non-terminal delivery
    assert all(can_transition(old, S.REFUSED) and can_transition(old, S.RECALLED) for old in RANK)


def test_failed_yields_only_to_proof_that_the_recipient_has_it() -> None:
    # A dead letter is a claim; the recipient's verified receipt (or a status) shows it has the bytes.
    assert [new for new in ALL if can_transition(S.FAILED, new)] == [
        new for new in RANK if RANK[new] >= RANK[S.DELIVERED]]


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


def test_late_delivered_never_overwrites_refused_but_overwrites_failed(one_recipient: Store) -> None:
    refused, failed = _delivery(one_recipient, "r"), _delivery(one_recipient, "f")
    with one_recipient.write() as tx:
        assert tx.transition(refused, R1, "refused", error="02: wrong recipient")
        assert tx.transition(failed, R1, S.FAILED, error="retries exhausted")
    with one_recipient.write() as tx:
        assert not tx.transition(refused, R1, "delivered")
        assert not tx.transition(refused, R1, "done")
        assert tx.transition(failed, R1, "delivered")  # the recipient's receipt: it has the bytes
        assert not tx.transition(failed, R1, S.FAILED)
    [r], [f] = one_recipient.deliveries(refused), one_recipient.deliveries(failed)
    assert (r.state, r.last_error) == ("refused", "02: wrong recipient")
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
    """A delivery that fails for good keeps the dead letter's attempt count; a refused move records nothing."""
    failed, delivered = _delivery(one_recipient, 1), _delivery(one_recipient, 2)
    with one_recipient.write() as tx:
        assert tx.transition(failed, R1, "failed", "retries exhausted", attempts=5) is True
        assert tx.transition(delivered, R1, "delivered") is True
        assert tx.transition(delivered, R1, "failed", "late dead letter", attempts=7) is False
        with pytest.raises(ValueError, match="count"):
            tx.transition(delivered, R1, "done", attempts=-1)
    [f], [d] = one_recipient.deliveries(failed), one_recipient.deliveries(delivered)
    assert (f.state, f.attempts, f.last_error) == ("failed", 5, "retries exhausted")
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
    """Workers report refused, failed, recalled and delivered at once: one terminal wins, nothing regresses."""
    for round_ in range(5):
        axis_id = _delivery(one_recipient, f"race{round_}")
        targets = [S.REFUSED, S.FAILED, S.RECALLED, S.REFUSED, S.FAILED, S.RECALLED]
        barrier = threading.Barrier(len(targets))
        results: dict[int, bool] = {}

        def worker(i: int, target: S) -> None:
            barrier.wait(10)
            with one_recipient.write() as tx:
                results[i] = tx.transition(axis_id, R1, target)

        threads = [threading.Thread(target=worker, args=(i, t)) for i, t in enumerate(targets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sum(results.values()) == 1
        winner = targets[next(i for i, ok in results.items() if ok)]
        [d] = one_recipient.deliveries(axis_id)
        assert d.state == winner.value
