"""Parked deliveries: listed oldest first, replayed as a new attempt or purged, each audited with its change."""
from __future__ import annotations

import threading

from axis.store import Store
from axis.store.parked import DELIVERY_PURGED, DELIVERY_REPLAYED, parked, purge, replay
from tests.store.store_helpers import R1, R2, R3, SENDER, accept


def _park(store: Store, axis_id: str, recipient: str, reason: str = "signature does not verify") -> None:
    with store.write() as tx:
        assert tx.transition(axis_id, recipient, "parked", error=reason)


def _actions(store: Store, axis_id: str) -> list[tuple[str, str, dict]]:
    return [(e.actor, e.action, e.data) for e in store.audit_entries_about(axis_id)
            if e.action in (DELIVERY_REPLAYED, DELIVERY_PURGED)]


def test_parked_lists_oldest_first_with_the_document_and_pages(seeded: Store, clock) -> None:
    first, second = accept(seeded, 1), accept(seeded, 2)
    _park(seeded, second, R2, "second")
    clock.advance(1)
    _park(seeded, first, R1, "first")
    _park(seeded, first, R3, "third")
    rows = parked(seeded)
    assert [(p.axis_id, p.recipient_code, p.reason) for p in rows] == [
        (second, R2, "second"), (first, R1, "first"), (first, R3, "third")]
    assert {(p.sender_code, p.kind, p.attempts) for p in rows} == {(SENDER, "document", 0)}
    assert [p.recipient_code for p in parked(seeded, recipient=R1)] == [R1]
    assert [p.recipient_code for p in parked(seeded, axis_id=first)] == [R1, R3]
    page = parked(seeded, limit=2)
    last = page[-1]
    assert parked(seeded, after=(last.parked_at, last.axis_id, last.recipient_code)) == rows[2:]


def test_replay_is_a_new_attempt_and_purge_ends_it_each_audited(seeded: Store) -> None:
    axis_id = accept(seeded, 1)
    _park(seeded, axis_id, R1)
    with seeded.write() as tx:
        assert replay(tx, axis_id, R1, actor="operator")
        assert not replay(tx, axis_id, R1, actor="operator")   # queued now: nothing to replay
        assert not purge(tx, axis_id, R1, actor="operator")    # nor to purge
        assert not replay(tx, axis_id, R2, actor="operator")   # never parked
    [d] = [d for d in seeded.deliveries(axis_id) if d.recipient_code == R1]
    assert (d.state, d.attempts) == ("queued", 1)
    assert [i.axis_id for i in seeded.inbox(R1)] == [axis_id]   # back in the recipient's inbox

    _park(seeded, axis_id, R1, "still does not verify")
    with seeded.write() as tx:
        assert purge(tx, axis_id, R1, actor="operator")
        assert not replay(tx, axis_id, R1, actor="operator")   # failed is final
    [d] = [d for d in seeded.deliveries(axis_id) if d.recipient_code == R1]
    assert (d.state, d.attempts) == ("failed", 1)
    assert _actions(seeded, axis_id) == [
        ("operator", DELIVERY_REPLAYED, {"recipient": R1, "attempt": 1, "reason": "signature does not verify"}),
        ("operator", DELIVERY_PURGED, {"recipient": R1, "attempts": 1, "reason": "still does not verify"})]
    assert seeded.verify_audit().ok


def test_a_delivery_the_recipient_has_is_neither_replayed_nor_purged(seeded: Store) -> None:
    axis_id = accept(seeded, 1)
    _park(seeded, axis_id, R1)
    with seeded.write() as tx:
        assert tx.transition(axis_id, R1, "delivered")   # its receipt came after all
        assert not replay(tx, axis_id, R1, actor="operator")
        assert not purge(tx, axis_id, R1, actor="operator")
        assert not tx.transition(axis_id, R1, "parked")  # and a late failure report cannot take it back
    assert [d.state for d in seeded.deliveries(axis_id) if d.recipient_code == R1] == ["delivered"]
    assert _actions(seeded, axis_id) == []


def test_operators_replaying_at_once_make_one_attempt(seeded: Store) -> None:
    axis_id = accept(seeded, 1)
    _park(seeded, axis_id, R1)
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def operator() -> None:
        barrier.wait(10)
        with seeded.write() as tx:
            results.append(replay(tx, axis_id, R1, actor="operator"))

    threads = [threading.Thread(target=operator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False, False, False, True]
    [d] = [d for d in seeded.deliveries(axis_id) if d.recipient_code == R1]
    assert (d.state, d.attempts) == ("queued", 1)
    assert len(_actions(seeded, axis_id)) == 1
