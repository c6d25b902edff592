"""`POST /v1/inbox/ack`: up to 100 acknowledgements in one request, over real HTTP, on both configurations.

Each item is answered on its own, as the one-delivery route would answer it, and a bad item changes nothing
for itself or for the others: the attacks are a batch that slips in another agency's delivery, a forged
receipt, a receipt signed by another agency or about another delivery, and batches that are too long,
too large or not base64.
"""
from __future__ import annotations

import base64
import hashlib
import logging

import pytest

from axis.receipt import Receipt, build_receipt, now_utc
from axis.trust import Signer, pki
from tests.fuzz.mutations import _self_signed
from tests.gateway.support import G17, G22, H14, H41, ServedGateway


def _receipt(gateway: ServedGateway, signer: str, recipient: str, axis_id: str, body: bytes) -> bytes:
    receipt = Receipt(kind="delivery", outcome="delivered", issuer=recipient, time=now_utc(), axis_id=axis_id,
                      sender=G22, recipient=recipient, document_id=None, digest=hashlib.sha256(body).hexdigest())
    return gateway.world.signers[signer].sign_receipt(build_receipt(receipt))


def _states(gateway: ServedGateway, axis_id: str) -> dict[str, str]:
    return {d.recipient_code: d.state for d in gateway.world.store.deliveries(axis_id)}


def test_each_item_is_answered_on_its_own_and_a_bad_one_changes_nothing(
        gateway: ServedGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="axis.gateway.access")
    own, vouched, forged, foreign, misdirected = (gateway.send(G22, [H41]) for _ in range(5))
    elsewhere = gateway.send(G22, [H14])          # not H41's: H41 must not be able to acknowledge it
    gateway.wait_inbox(H41, 5)
    gateway.wait_inbox(H14, 1)
    tampered = bytearray(_receipt(gateway, H41, H41, forged["axis_id"], forged["body"]))
    tampered[tampered.index(b"<axr:Time>") + 12] ^= 1   # a changed digit of the signed time
    items = [
        {"axis_id": own["axis_id"], "receipt": _b64(_receipt(gateway, H41, H41, own["axis_id"], own["body"]))},
        {"axis_id": vouched["axis_id"]},            # no receipt: Axis signs one for the credential
        {"axis_id": elsewhere["axis_id"]},
        {"axis_id": forged["axis_id"], "receipt": _b64(bytes(tampered))},
        {"axis_id": foreign["axis_id"],
         "receipt": _b64(_receipt(gateway, H14, H14, foreign["axis_id"], foreign["body"]))},   # H14's own
        {"axis_id": misdirected["axis_id"],          # H41's genuine receipt, but for another document
         "receipt": _b64(_receipt(gateway, H41, H41, own["axis_id"], own["body"]))},
        {"axis_id": "no-such-delivery"},
    ]
    with gateway.client(H41) as h41:
        answer = h41.post("/v1/inbox/ack", json={"items": items})
    assert answer.status_code == 200, answer.text
    got = answer.json()["items"]
    assert [g["axis_id"] for g in got] == [i["axis_id"] for i in items]   # in the order asked
    assert got[0]["state"] == "delivered" and got[0]["error"] is None
    assert base64.b64decode(got[0]["receipt"]) == base64.b64decode(items[0]["receipt"])
    vouched_receipt = gateway.world.verifier.verify_receipt(base64.b64decode(got[1]["receipt"]))
    assert got[1]["state"] == "delivered" and vouched_receipt.signer_code == "AXIS"
    assert [(g["error"]["status"], g["error"]["code"]) for g in got[2:]] == [
        (404, "GW404"), (422, "AX413"), (422, "AX412"), (422, "AX412"), (404, "GW404")]
    assert all(g["state"] is None and g["receipt"] is None for g in got[2:])
    assert f"{gateway.ids[H41]} {H41} POST /v1/inbox/ack 200" in caplog.text
    assert "acks AX412=2 AX413=1 GW404=2 delivered=2" in caplog.text   # the access log line counts the outcomes

    assert _states(gateway, own["axis_id"]) == _states(gateway, vouched["axis_id"]) == {H41: "delivered"}
    for refused in (forged, foreign, misdirected):
        assert _states(gateway, refused["axis_id"]) == {H41: "queued"}
    assert _states(gateway, elsewhere["axis_id"]) == {H14: "queued"}
    refusals = [e for e in gateway.world.store.audit_entries() if e.action == "receipt-refused"]
    assert sorted(e.subject for e in refusals) == sorted(
        [forged["axis_id"], foreign["axis_id"], misdirected["axis_id"]])


def test_a_receipt_signed_with_a_self_signed_certificate_of_the_agency_is_refused_and_changes_nothing(
        gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 1)
    key = pki.generate_key("ec")
    impostor = Signer(key, _self_signed(H41, key))   # H41's exact name, vouched for by no CA
    receipt = Receipt(kind="delivery", outcome="delivered", issuer=H41, time=now_utc(), axis_id=sent["axis_id"],
                      sender=G22, recipient=H41, document_id=None, digest=hashlib.sha256(sent["body"]).hexdigest())
    with gateway.client(H41) as h41:
        answer = h41.post("/v1/inbox/ack", json={"items": [
            {"axis_id": sent["axis_id"], "receipt": _b64(impostor.sign_receipt(build_receipt(receipt)))}]})
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["items"]
    assert (item["error"]["status"], item["error"]["code"]) == (422, "AX413") and item["state"] is None
    assert _states(gateway, sent["axis_id"]) == {H41: "queued"}
    assert [r.kind for r in gateway.world.store.timeline(sent["axis_id"]).get(H41, [])] == []


def test_an_item_repeated_or_acknowledged_before_is_answered_delivered_and_recorded_once(
        gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 1)
    receipt = _b64(_receipt(gateway, H41, H41, sent["axis_id"], sent["body"]))
    with gateway.client(H41) as h41:
        for _ in range(2):
            answer = h41.post("/v1/inbox/ack", json={"items": [{"axis_id": sent["axis_id"], "receipt": receipt}] * 2})
            assert [g["state"] for g in answer.json()["items"]] == ["delivered", "delivered"], answer.text
    timeline = gateway.world.store.timeline(sent["axis_id"])[H41]
    assert [r.kind for r in timeline].count("delivery") == 1


def test_an_axis_id_with_a_nul_is_unknown_not_a_server_error(gateway: ServedGateway) -> None:
    """PostgreSQL text takes no NUL: found by schemathesis as a 500 on the batch route."""
    with gateway.client(H41) as h41:
        answer = h41.post("/v1/inbox/ack", json={"items": [{"axis_id": "01\x00"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["items"][0]["error"]["status"] == 404
        assert h41.get("/v1/inbox/01%00").status_code == 404


@pytest.mark.parametrize("who, status", [(None, 401), ("revoked", 401), ("auditor", 403), ("operator", 403)])
def test_only_an_agency_credential_may_acknowledge(gateway: ServedGateway, who: str | None, status: int) -> None:
    sent = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 1)
    with gateway.client(who) as c:
        answer = c.post("/v1/inbox/ack", json={"items": [{"axis_id": sent["axis_id"]}]})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == f"GW{status}"
    assert _states(gateway, sent["axis_id"]) == {H41: "queued"}


@pytest.mark.parametrize("body, status", [
    ({"items": []}, 422),
    ({"items": [{"axis_id": "x"}] * 101}, 422),
    ({"items": [{"axis_id": "x", "receipt": "not base64!"}]}, 422),
    ({"items": [{"axis_id": "x", "receipt": "A" * (5 * 1024 * 1024)}]}, 413),   # over the batch's 4 MiB
], ids=["empty", "101-items", "not-base64", "5-MiB"])
def test_a_batch_that_is_empty_too_long_too_large_or_not_base64_is_refused_whole(
        gateway: ServedGateway, body: dict, status: int) -> None:
    sent = gateway.send(G17, [H41])
    gateway.wait_inbox(H41, 1)
    body = {"items": [{"axis_id": sent["axis_id"]}, *body["items"]]} if body["items"] else body
    with gateway.client(H41) as h41:
        answer = h41.post("/v1/inbox/ack", json=body)
    assert answer.status_code == status, answer.text[:300]
    assert answer.json()["error"]["code"] == {413: "AX202", 422: "GW422"}[status]
    assert _states(gateway, sent["axis_id"]) == {H41: "queued"}   # nothing of it was recorded


def test_a_huge_failure_reason_is_refused_before_it_is_read_whole(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    gateway.wait_inbox(H41, 1)
    with gateway.client(H41) as h41:
        answer = h41.post(f"/v1/inbox/{sent['axis_id']}/fail", json={"reason": "x" * (8 * 1024 * 1024)})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "AX202", answer.text[:300]
    assert _states(gateway, sent["axis_id"]) == {H41: "queued"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
