"""Outbox relay (claim, lease, publish, release) and the consumer inbox."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from axis.hub.relay import Relay
from axis.store import NewOutboxMessage, Store
from axis.store.schema import outbox
from tests.store.store_helpers import R1, R2, R3, accept, body_of


def test_enqueue_is_idempotent_and_claim_carries_the_bytes(seeded: Store) -> None:
    axis_id = accept(seeded, 1)  # three rows referencing the document body
    with seeded.write() as tx:
        assert tx.enqueue("agency.sender", "receipt:1", payload=b"<intake receipt/>",
                          headers={"kind": "intake", "n": 1}) is True
        assert tx.enqueue("agency.sender", "receipt:1", payload=b"<other/>") is False
        assert tx.enqueue(f"agency.{R1}", f"{axis_id}:{R1}", body_ref=axis_id) is False
        with pytest.raises(ValueError, match="exactly one"):
            tx.enqueue("q", "both", body_ref=axis_id, payload=b"x")
        with pytest.raises(ValueError, match="exactly one"):
            tx.enqueue("q", "neither")
    items = seeded.claim_outbox(10, lease_seconds=30)
    assert len(items) == 4
    by_id = {i.message_id: i for i in items}
    assert by_id[f"{axis_id}:{R2}"].body == body_of(1) and by_id[f"{axis_id}:{R2}"].queue == f"agency.{R2}"
    assert by_id["receipt:1"].body == b"<intake receipt/>"
    assert by_id["receipt:1"].headers == {"kind": "intake", "n": 1}
    assert all(i.attempts == 1 for i in items)


def test_urgent_rows_are_claimed_first(seeded: Store) -> None:
    with seeded.write() as tx:
        tx.enqueue_many([NewOutboxMessage("q", f"normal-{n}", 0, payload=b"n") for n in range(5)])
        tx.enqueue_many([NewOutboxMessage("q", "urgent", 3, payload=b"u")])
    first = seeded.claim_outbox(2, lease_seconds=30)
    assert [i.message_id for i in first] == ["urgent", "normal-0"]


def test_lease_expiry_mark_and_release(seeded: Store, clock) -> None:
    accept(seeded, 1)
    claimed = seeded.claim_outbox(10, lease_seconds=30)
    assert len(claimed) == 3
    assert seeded.claim_outbox(10, lease_seconds=30) == []  # leased
    clock.advance(31)  # the relay died: the lease runs out
    again = seeded.claim_outbox(10, lease_seconds=30)
    assert sorted(i.id for i in again) == sorted(i.id for i in claimed)
    assert all(i.attempts == 2 for i in again)
    ids = [i.id for i in again]
    assert seeded.mark_published(ids[:2]) == 2
    assert seeded.mark_published(ids[:2]) == 0
    assert seeded.release(ids[2:]) == 1
    [back] = seeded.claim_outbox(10, lease_seconds=30)
    assert back.id == ids[2]
    assert seeded.release([back.id], retry_after=60) == 1
    assert seeded.claim_outbox(10, lease_seconds=30) == []
    clock.advance(61)
    assert [i.id for i in seeded.claim_outbox(10, lease_seconds=30)] == [ids[2]]
    seeded.mark_published([ids[2]])
    clock.advance(3600)
    assert seeded.claim_outbox(10, lease_seconds=30) == []  # published rows never come back
    with seeded.write() as tx:
        assert tx.purge_outbox(published_before=clock() - timedelta(seconds=60)) == 3


def test_the_relay_purges_published_rows_once_they_are_old(seeded: Store, clock) -> None:
    """Rows published more than `retention` ago go; unpublished rows (however old) and recent ones stay."""
    with seeded.write() as tx:
        tx.enqueue_many([NewOutboxMessage("q", f"old-{n}", payload=b"p") for n in range(5)])
    old = seeded.claim_outbox(3, lease_seconds=30)
    seeded.mark_published([item.id for item in old])  # old-0..2 published at t=0
    clock.advance(600)
    with seeded.write() as tx:
        tx.enqueue_many([NewOutboxMessage("q", f"recent-{n}", payload=b"p") for n in range(2)])
    stuck = seeded.claim_outbox(1, lease_seconds=7200)  # old-3: claimed by a relay, never confirmed
    recent = seeded.claim_outbox(2, lease_seconds=30)
    assert [i.message_id for i in stuck + recent] == ["old-3", "old-4", "recent-0"]
    seeded.mark_published([item.id for item in recent])  # old-4, recent-0 published at t=600; recent-1 never claimed
    relay = Relay(seeded, None, retention=3600)  # type: ignore[arg-type]  # purging never touches the broker
    assert relay.purge() == 0
    clock.advance(3000)  # old-0..2 published 3,600 s ago: not yet more than the retention
    assert relay.purge() == 0
    clock.advance(1)
    assert relay.purge() == 3
    clock.advance(7200)  # every row is old now, but only the published ones go
    assert relay.purge() == 2
    with seeded.engine.connect() as conn:
        left = conn.execute(sa.select(outbox.c.message_id, outbox.c.published_at).order_by(outbox.c.id)).all()
    assert left == [("old-3", None), ("recent-1", None)]


def test_purge_works_in_bounded_slices(seeded: Store, clock) -> None:
    with seeded.write() as tx:
        tx.enqueue_many([NewOutboxMessage("q", f"m{n}", payload=b"p") for n in range(5)])
    seeded.mark_published([item.id for item in seeded.claim_outbox(5, lease_seconds=30)])
    clock.advance(1)
    with seeded.write() as tx:
        assert [tx.purge_outbox(clock(), limit=2) for _ in range(4)] == [2, 2, 1, 0]


def test_concurrent_relays_never_claim_the_same_row(seeded: Store) -> None:
    with seeded.write() as tx:
        tx.enqueue_many([NewOutboxMessage("q", f"m{n}", n % 3, payload=b"p") for n in range(300)])
    claimed: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def relay(i: int) -> None:
        barrier.wait(10)
        while batch := seeded.claim_outbox(7, lease_seconds=300):
            claimed[i].extend(item.id for item in batch)

    threads = [threading.Thread(target=relay, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [row for part in claimed for row in part]
    assert len(everything) == 300 == len(set(everything))


def test_inbox_dedup(seeded: Store) -> None:
    with seeded.write() as tx:
        assert tx.mark_seen("adapter.H01", f"{R1}:doc-1") is True
        assert tx.mark_seen("adapter.H01", f"{R1}:doc-1") is False
        assert tx.mark_seen("adapter.H02", f"{R1}:doc-1") is True
    with seeded.write() as tx:
        assert tx.mark_seen("adapter.H01", f"{R1}:doc-1") is False
    with pytest.raises(RuntimeError):
        with seeded.write() as tx:
            assert tx.mark_seen("adapter.H03", f"{R3}:doc-2") is True
            raise RuntimeError("effect failed: the message will be redelivered")
    with seeded.write() as tx:
        assert tx.mark_seen("adapter.H03", f"{R3}:doc-2") is True  # the rolled-back mark did not stick
