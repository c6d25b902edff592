"""Receipts: stored once per key, read back as a per-recipient timeline."""
from __future__ import annotations

import hashlib

from axis.store import NewReceipt, Store
from tests.store.store_helpers import R1, R2, accept


def test_receipts_are_unique_per_key(seeded: Store, clock) -> None:
    axis_id = accept(seeded, 1)  # stored an intake receipt (recipient NULL)
    with seeded.write() as tx:
        assert tx.add_receipt(axis_id, "intake", b"<second intake/>") is False  # NULL recipient still collides
        assert tx.add_receipt(axis_id, "delivery", b"<d/>", recipient=R1) is True
        assert tx.add_receipt(axis_id, "delivery", b"<d again/>", recipient=R1) is False
        assert tx.add_receipt(axis_id, "status", b"<01/>", recipient=R1, code="01") is True
        assert tx.add_receipt(axis_id, "status", b"<01 again/>", recipient=R1, code="01") is False
        assert tx.add_receipt(axis_id, "status", b"<03/>", recipient=R1, code="03") is True
        assert tx.add_receipt(axis_id, "status", b"<01/>", recipient=R2, code="01") is True
    assert seeded.get_receipt(axis_id, "intake").body == b"<receipt/>"  # type: ignore[union-attr]
    assert seeded.get_receipt(axis_id, "status", R1, "01").body == b"<01/>"  # type: ignore[union-attr]
    assert seeded.get_receipt(axis_id, "status", R1, "06") is None
    assert len(seeded.receipts(axis_id)) == 5


def test_which_documents_hold_a_receipt(seeded: Store) -> None:
    first, second = accept(seeded, 1), accept(seeded, 2)
    with seeded.write() as tx:
        tx.add_receipt(first, "error", b"<e/>", recipient=R1, code="500")
        tx.add_receipt(second, "error", b"<e/>", recipient=R2, code="500")
    assert seeded.receipted([first, second, "no-such"], "error", recipient=R1, code="500") == {first}
    assert seeded.receipted([first, second], "intake") == {first, second}  # recipient and code NULL
    assert seeded.receipted([], "intake") == set()


def test_bulk_receipts_count_only_new_ones(seeded: Store) -> None:
    axis_id = accept(seeded, 1)
    with seeded.write() as tx:
        n = tx.add_receipts([NewReceipt(axis_id, "delivery", b"<d/>", R1),
                             NewReceipt(axis_id, "delivery", b"<d/>", R2),
                             NewReceipt(axis_id, "delivery", b"<dup/>", R1),
                             NewReceipt(axis_id, "intake", b"<dup/>")])
    assert n == 2


def test_timeline_per_recipient_in_time_order(seeded: Store, clock) -> None:
    axis_id = accept(seeded, 1)
    for recipient, kind, code in [(R1, "delivery", None), (R2, "delivery", None), (R1, "status", "01"),
                                  (R1, "status", "03"), (R2, "status", "02"), (R1, "status", "06")]:
        clock.advance(1)
        with seeded.write() as tx:
            tx.add_receipt(axis_id, kind, f"<{recipient}{code}/>".encode(), recipient=recipient, code=code,
                           detail="reason given" if code == "02" else None)
    line = seeded.timeline(axis_id)
    assert set(line) == {None, R1, R2}
    assert [(r.kind, r.code) for r in line[R1]] == [("delivery", None), ("status", "01"), ("status", "03"),
                                                    ("status", "06")]
    assert [(r.kind, r.code, r.detail) for r in line[R2]] == [("delivery", None, None), ("status", "02",
                                                                                         "reason given")]
    assert [r.kind for r in line[None]] == ["intake"]
    times = [r.created_at for r in line[R1]]
    assert times == sorted(times)
    r = line[R2][1]
    assert r.digest == hashlib.sha256(r.body).hexdigest()
