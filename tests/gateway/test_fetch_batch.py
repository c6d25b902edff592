"""`POST /v1/inbox/fetch`: the bodies of up to 100 deliveries in one request (4 MiB at most), over real HTTP, on
both configurations. Each is exactly what `GET /v1/inbox/{axis_id}` serves, headers included; another
agency's delivery slipped into the list, an unknown one and one that does not fit are errors for that item only.
"""
from __future__ import annotations

import base64
import os

import pytest

from axis import wire
from tests.gateway.support import G17, G22, H14, H41, ServedGateway

SERVED = ("axis-id", "axis-digest", "axis-sender", "axis-kind", "axis-seal", "axis-seal-to", "axis-seal-cert")


def test_each_body_is_what_a_single_fetch_serves_and_another_agencys_is_not_found(gateway: ServedGateway) -> None:
    mine = [gateway.send(G22, [H41]), gateway.send(G17, [H41, H14])]
    elsewhere = gateway.send(G22, [H14])
    gateway.wait_inbox(H41, 2)
    asked = [mine[1]["axis_id"], elsewhere["axis_id"], "no-such-delivery", "01\x00", mine[0]["axis_id"]]
    with gateway.client(H41) as h41:
        answer = h41.post("/v1/inbox/fetch", json={"axis_ids": asked})
        assert answer.status_code == 200, answer.text
        got = answer.json()["items"]
        assert [g["axis_id"] for g in got] == asked                      # in the order asked
        for sent, item in ((mine[1], got[0]), (mine[0], got[4])):
            assert base64.b64decode(item["body"]) == sent["body"]         # byte-identical
            single = h41.get(f"/v1/inbox/{sent['axis_id']}")
            assert {k.lower(): v for k, v in item["headers"].items()} == {k: single.headers[k] for k in SERVED}
        assert [(g["error"]["status"], g["error"]["code"]) for g in got[1:4]] == [(404, "GW404")] * 3
        assert all(g["body"] is None and g["headers"] is None for g in got[1:4])
    with gateway.client(H14) as h14:  # nothing moved: fetching is not acknowledging
        assert {i["axis_id"] for i in h14.get("/v1/inbox").json()["items"]} == {mine[1]["axis_id"],
                                                                                 elsewhere["axis_id"]}


def test_a_body_that_does_not_fit_in_the_answer_is_left_to_a_fetch_of_its_own(gateway: ServedGateway) -> None:
    big = [gateway.send(G22, [H41], attachment=os.urandom(1_800_000)) for _ in range(2)]   # ~2.4 MB signed each
    small = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 3)
    asked = [big[0]["axis_id"], big[1]["axis_id"], small["axis_id"]]
    assert len(big[0]["body"]) + len(big[1]["body"]) > wire.MAX_FETCH_BATCH_BYTES
    with gateway.client(H41) as h41:
        got = h41.post("/v1/inbox/fetch", json={"axis_ids": asked}).json()["items"]
        assert base64.b64decode(got[0]["body"]) == big[0]["body"]
        assert (got[1]["error"]["status"], got[1]["error"]["code"]) == (413, "GW413") and got[1]["body"] is None
        assert base64.b64decode(got[2]["body"]) == small["body"]         # what still fits comes
        assert h41.get(f"/v1/inbox/{big[1]['axis_id']}").content == big[1]["body"]


@pytest.mark.parametrize("who", [None, "revoked", "auditor", "operator", G17])
def test_a_batch_answers_each_caller_as_a_fetch_of_each_would(gateway: ServedGateway, who: str | None) -> None:
    """No credential or a revoked one: 401. The auditor and the operator read every document (as they do one
    at a time); another agency (G17) gets 404 for H41's delivery."""
    sent = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 1)
    with gateway.client(who) as c:
        single = c.get(f"/v1/inbox/{sent['axis_id']}")
        answer = c.post("/v1/inbox/fetch", json={"axis_ids": [sent["axis_id"]]})
    if single.status_code == 401:
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "GW401", answer.text
        return
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["items"]
    if single.status_code == 200:
        assert who in ("auditor", "operator") and base64.b64decode(item["body"]) == single.content
    else:
        assert (who, single.status_code, item["error"]["status"]) == (G17, 404, 404) and item["body"] is None


@pytest.mark.parametrize("body, status, code", [
    ({"axis_ids": []}, 422, "GW422"),
    ({"axis_ids": ["x"] * (wire.MAX_FETCH_BATCH + 1)}, 422, "GW422"),
    ({"axis_ids": ["x" * 201]}, 422, "GW422"),
    ({"axis_ids": ["x" * 190] * 100, "padding": "y" * 70_000}, 413, "AX202"),
], ids=["empty", "101-ids", "long-id", "over-64-KiB"])
def test_a_list_that_is_empty_too_long_or_too_large_is_refused_whole(
        gateway: ServedGateway, body: dict, status: int, code: str) -> None:
    with gateway.client(H41) as h41:
        answer = h41.post("/v1/inbox/fetch", json=body)
    assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text[:300]
