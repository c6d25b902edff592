"""The reads behind `axis traffic` and `axis queues` (axis/store/traffic.py), on SQLite and PostgreSQL."""
from __future__ import annotations

from axis.store import Decision, NewSubmission, Store
from tests.store.store_helpers import R1, R2, R3, SENDER, FakeClock, accept


def test_traffic_is_newest_first_with_every_delivery_and_pages_without_gaps(seeded: Store,
                                                                             clock: FakeClock) -> None:
    ids = []
    for n in range(5):
        ids.append(accept(seeded, n, (R1, R2) if n % 2 else (R3,)))
        clock.advance(1)
    with seeded.write() as tx:
        tx.transition(ids[3], R1, "delivered")
    page = seeded.traffic(limit=2)
    assert [d.axis_id for d, _ in page] == [ids[4], ids[3]]
    assert {x.recipient_code: x.state for x in page[1][1]} == {R1: "delivered", R2: "queued"}
    rest = seeded.traffic(before=(page[-1][0].received_at, page[-1][0].axis_id), limit=10)
    assert [d.axis_id for d, _ in rest] == [ids[2], ids[1], ids[0]]

    # One delivery must meet both filters: R2 is "queued" in ids[3], never "delivered".
    assert [d.axis_id for d, _ in seeded.traffic(recipient=R1, state="delivered")] == [ids[3]]
    assert seeded.traffic(recipient=R2, state="delivered") == []
    assert [d.axis_id for d, _ in seeded.traffic(recipient=R3)] == [ids[4], ids[2], ids[0]]
    assert [d.axis_id for d, _ in seeded.traffic(since=page[1][0].received_at)] == [ids[4], ids[3]]
    assert seeded.traffic(sender=R1) == []
    assert len(seeded.traffic(sender=SENDER)) == 5


def test_a_document_is_found_by_either_end_of_its_axis_id_and_only_by_hex(seeded: Store) -> None:
    from tests.store.store_helpers import body_of, new_doc
    axis_id = "01a24b67-8661-7ef9-b061-e7e711fdfa42"
    with seeded.write() as tx:
        tx.insert_document(new_doc(1, axis_id=axis_id), body_of(1))
    assert [d.axis_id for d in seeded.documents_by_fragment("01a24b67-86")] == [axis_id]
    assert [d.axis_id for d in seeded.documents_by_fragment("e7e711fdfa42")] == [axis_id]
    assert seeded.documents_by_fragment("7e711fdf") == []          # neither end
    assert seeded.documents_by_fragment("%") == []                  # no pattern gets into LIKE
    assert seeded.documents_by_fragment("") == []


def test_refused_submissions_newest_first_by_agency(seeded: Store, clock: FakeClock) -> None:
    for n, (agency, outcome) in enumerate([(SENDER, "refused"), (R1, "refused"), (SENDER, "accepted"),
                                           (SENDER, "refused")]):
        with seeded.write() as tx:
            tx.add_submissions([NewSubmission(f"s{n}", agency, None, "d" * 64)])
            tx.decide_submissions([Decision(f"s{n}", agency, outcome, None if outcome == "refused" else f"ax{n}",
                                            301 if outcome == "refused" else None,
                                            "bad signature" if outcome == "refused" else None, b"<r/>")])
        clock.advance(1)
    assert [s.id for s in seeded.refused()] == ["s3", "s1", "s0"]
    assert [(s.id, s.code, s.detail) for s in seeded.refused(agency=SENDER)] == [("s3", 301, "bad signature"),
                                                                                  ("s0", 301, "bad signature")]
    first = seeded.refused(limit=1)
    assert [s.id for s in seeded.refused(before=(first[0].created_at, first[0].id))] == ["s1", "s0"]


def test_waiting_counts_each_recipients_queued_deliveries_and_the_oldest(seeded: Store, clock: FakeClock) -> None:
    start = clock.now
    a = accept(seeded, 1, (R1, R2))
    clock.advance(60)
    accept(seeded, 2, (R1,))
    with seeded.write() as tx:
        tx.transition(a, R2, "delivered")
    assert seeded.waiting() == {R1: (2, start)}
