"""A row's digest is exactly its definition (axis/store/bindings.py): SHA-256 of the canonical JSON of
[table, plain_row]. The store computes it by writing the text out directly; any row, byte for byte."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from axis.store.audit import canonical_json
from axis.store.bindings import BINDINGS, plain_row, row_digest, uniform_digests

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(), st.binary(max_size=64),
    st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=7))])),
)


def _defined(table: str, row: dict) -> str:
    return hashlib.sha256(canonical_json([table, plain_row(table, row)]).encode("utf-8")).hexdigest()


@given(table=st.sampled_from(sorted(BINDINGS)),
       row=st.dictionaries(st.one_of(st.sampled_from(["id", "axis_id", "state", "body", "code"]), st.text()),
                           _VALUES, max_size=8))
def test_the_digest_is_its_definition_for_any_row(table: str, row: dict) -> None:
    assert row_digest(table, row) == _defined(table, row)


def test_a_delivery_row_as_the_store_writes_it() -> None:
    row = {"axis_id": "ax-1", "recipient_code": "000.00.00.H41", "state": "queued", "attempts": 0,
           "updated_at": datetime(2026, 12, 6, 10, 0, tzinfo=UTC), "last_error": None}
    assert row_digest("deliveries", row) == _defined("deliveries", row)
    assert row_digest("deliveries", {**row, "last_error": "Ngày \"hết\" hạn\n"}) == _defined(
        "deliveries", {**row, "last_error": "Ngày \"hết\" hạn\n"})
    assert row_digest("receipts", {"id": 7, "body": memoryview(b"<r/>")}) == _defined("receipts", {"id": 7,
                                                                                                  "body": b"<r/>"})


@given(recipients=st.lists(st.text(min_size=1), min_size=1, max_size=12),
       axis_ids=st.lists(st.text(), min_size=1, max_size=3), shared=_VALUES)
def test_uniform_digests_are_each_rows_digest(recipients: list[str], axis_ids: list[str], shared: object) -> None:
    rows = [{"axis_id": a, "recipient_code": r, "state": "queued", "attempts": 0, "last_error": shared,
             "updated_at": datetime(2026, 12, 6, tzinfo=UTC)} for a in axis_ids for r in recipients]
    assert uniform_digests("deliveries", rows, ("axis_id", "recipient_code")) == [
        row_digest("deliveries", row) for row in rows]
