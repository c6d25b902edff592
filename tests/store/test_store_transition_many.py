"""transition_many: the relay's bulk compare-and-set follows the same state machine as transition."""
from __future__ import annotations

from axis.store import DeliveryState, NewDocument


def test_transition_many_moves_only_what_the_state_machine_allows(store) -> None:
    with store.write() as tx:
        tx.add_agency("000.00.00.G22", "sender")
        for code in ("000.00.00.H41", "000.00.00.H14", "000.00.00.G17"):
            tx.add_agency(code, code)
        tx.insert_document(NewDocument(axis_id="a1", sender_code="000.00.00.G22", document_id="d1"), b"<x/>")
        tx.insert_deliveries("a1", ["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"])
        tx.transition("a1", "000.00.00.H14", DeliveryState.DONE)
        tx.transition("a1", "000.00.00.G17", DeliveryState.REFUSED)
    with store.write() as tx:
        moved = tx.transition_many([("a1", "000.00.00.H41"), ("a1", "000.00.00.H14"), ("a1", "000.00.00.G17"),
                                    ("nope", "000.00.00.H41")], DeliveryState.PUBLISHED)
    assert moved == 1
    states = {d.recipient_code: d.state for d in store.deliveries("a1")}
    assert states == {"000.00.00.H41": "published", "000.00.00.H14": "done", "000.00.00.G17": "refused"}


def test_find_documents_answers_many_keys_in_one_call(store) -> None:
    with store.write() as tx:
        tx.add_agency("000.00.00.G22", "sender")
        for i in range(5):
            tx.insert_document(NewDocument(axis_id=f"a{i}", sender_code="000.00.00.G22", document_id=f"d{i}"), b"<x/>")
    keys = [("000.00.00.G22", f"d{i}", "document") for i in range(8)] + [("000.00.00.G22", "d1", "status")]
    found = store.find_documents(keys)
    assert sorted(found) == [("000.00.00.G22", f"d{i}", "document") for i in range(5)]
    assert found[("000.00.00.G22", "d3", "document")].axis_id == "a3"
