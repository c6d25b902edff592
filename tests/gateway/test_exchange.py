"""Every /v1 operation over real HTTP, on both configurations: a document from G22 to H41 and H14,
fetched byte-identical with the hub's seal, acknowledged (with and without the agency's own receipt),
failed, and followed by its sender in /v1/sent and the timeline."""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from axis.hub import Hub
from axis.receipt import Receipt, build_receipt, now_utc, read_receipt
from axis.seal import SealChecker
from axis.store.parked import replay
from tests.gateway.support import G17, G22, H14, H41, ServedGateway

XML = {"Content-Type": "application/xml"}


def test_a_document_goes_through_every_operation(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41, H14])
    assert sent["axis_id"] and sent["code"] is None and len(sent["submission"]) == 32
    intake = gateway.world.verifier.verify_receipt(base64.b64decode(sent["receipt"]))
    assert intake.signer_code == "AXIS" and read_receipt(intake.signed_root).axis_id == sent["axis_id"]
    axis_id, body = sent["axis_id"], sent["body"]

    with gateway.client(G22) as g22:
        again = g22.get(f"/v1/submissions/{sent['submission']}")
        assert again.status_code == 200 and again.json()["axis_id"] == axis_id
        assert again.json()["receipt"] == sent["receipt"]

    for who in (H41, H14):
        items = gateway.wait_inbox(who, 1)
        assert [i["axis_id"] for i in items] == [axis_id]
        assert items[0]["sender"] == G22 and items[0]["digest"] == hashlib.sha256(body).hexdigest()
        assert items[0]["size"] == len(body) and items[0]["kind"] == "document"
        with gateway.client(who) as c:
            served = c.get(f"/v1/inbox/{axis_id}")
            assert served.status_code == 200 and served.content == body  # byte-identical
            assert served.headers["content-type"].startswith("application/xml")
            assert served.headers["axis-id"] == axis_id and served.headers["axis-sender"] == G22
            assert served.headers["axis-digest"] == hashlib.sha256(body).hexdigest()
            assert served.headers["axis-seal-to"] == ",".join(sorted([H41, H14]))
            SealChecker(gateway.world.verifier).check(
                {"ax-seal": served.headers["axis-seal"], "ax-seal-to": served.headers["axis-seal-to"],
                 "ax-seal-cert": served.headers["axis-seal-cert"]}, axis_id, who, hashlib.sha256(body).hexdigest())
        document_id = items[0]["document_id"]

    # H41 acknowledges with its own signed delivery receipt; H14 with an empty body (Axis signs one).
    own = Receipt(kind="delivery", outcome="delivered", issuer=H41, time=now_utc(), axis_id=axis_id, sender=G22,
                  recipient=H41, document_id=document_id, digest=hashlib.sha256(body).hexdigest())
    signed = gateway.world.signers[H41].sign_receipt(build_receipt(own))
    with gateway.client(H41) as h41:
        acked = h41.post(f"/v1/inbox/{axis_id}/ack", content=signed, headers=XML)
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "delivered" and base64.b64decode(acked.json()["receipt"]) == signed
        assert h41.get("/v1/inbox").json()["items"] == []
        repeat = h41.post(f"/v1/inbox/{axis_id}/ack", content=signed, headers=XML)
        assert repeat.status_code == 200 and repeat.json()["state"] == "delivered"
    with gateway.client(H14) as h14:
        acked = h14.post(f"/v1/inbox/{axis_id}/ack")
        assert acked.status_code == 200 and acked.json()["state"] == "delivered", acked.text
        made = gateway.world.verifier.verify_receipt(base64.b64decode(acked.json()["receipt"]))
        assert made.signer_code == "AXIS"

    with gateway.client(G22) as g22:
        listing = g22.get("/v1/sent").json()
        mine = [i for i in listing["items"] if i["axis_id"] == axis_id]
        assert mine and mine[0]["recipients"] == {H41: "delivered", H14: "delivered"}
        timeline = g22.get(f"/v1/documents/{axis_id}/receipts")
        assert timeline.status_code == 200
        kinds = sorted((r["kind"], r["recipient"]) for r in timeline.json()["receipts"])
        assert ("delivery", H41) in kinds and ("delivery", H14) in kinds and ("intake", None) in kinds
        directory = g22.get("/v1/agencies").json()["agencies"]
        assert {a["code"] for a in directory} >= {G22, H41, H14, G17}


def test_fail_parks_the_delivery_and_tells_the_sender(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    axis_id = sent["axis_id"]
    gateway.wait_inbox(H41, 1)
    with gateway.client(H41) as h41:
        failed = h41.post(f"/v1/inbox/{axis_id}/fail", json={"reason": "cannot store it: disk full"})
        assert failed.status_code == 200, failed.text
        assert failed.json() == {"axis_id": axis_id, "state": "parked"}
        again = h41.post(f"/v1/inbox/{axis_id}/fail", json={"reason": "still full"})
        assert again.json() == {"axis_id": axis_id, "state": "parked"}  # said once: one error receipt
        bad = h41.post(f"/v1/inbox/{axis_id}/fail", json={"reason": ""})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "GW422"
        assert h41.get("/v1/inbox").json()["items"] == []  # parked: out of the inbox until replayed
    with gateway.client("auditor") as auditor:
        timeline = auditor.get(f"/v1/documents/{axis_id}/receipts").json()["receipts"]
        errors = [r for r in timeline if r["kind"] == "error"]
        assert [(r["recipient"], r["code"]) for r in errors] == [(H41, "AX500")]
    with gateway.client(G22) as g22:
        mine = [i for i in g22.get("/v1/sent").json()["items"] if i["axis_id"] == axis_id]
        assert mine[0]["recipients"] == {H41: "parked"}

    # The operator replays it: back in H41's inbox; once acknowledged, no failure report moves it back.
    with gateway.world.store.write() as tx:
        assert replay(tx, axis_id, H41, actor="operator")
    assert [i["axis_id"] for i in gateway.wait_inbox(H41, 1)] == [axis_id]
    with gateway.client(H41) as h41:
        assert h41.get(f"/v1/inbox/{axis_id}").status_code == 200
        assert h41.post(f"/v1/inbox/{axis_id}/ack").json()["state"] == "delivered"
        late = h41.post(f"/v1/inbox/{axis_id}/fail", json={"reason": "a late claim"})
        assert late.status_code == 409 and late.json()["error"]["code"] == "GW409", late.text
    assert [d.state for d in gateway.world.store.deliveries(axis_id)] == ["delivered"]


def test_the_inbox_lists_urgent_first_and_pages_with_the_cursor(embedded_gateway: ServedGateway) -> None:
    gw = embedded_gateway
    normal = [gw.send(G22, [H41])["axis_id"] for _ in range(3)]
    urgent = gw.send(G17, [H41], priority=3)["axis_id"]
    gw.wait_inbox(H41, 4)
    with gw.client(H41) as h41:
        seen, after = [], None
        while True:
            page = h41.get("/v1/inbox", params={"limit": 2, **({"after": after} if after else {})}).json()
            seen += [i["axis_id"] for i in page["items"]]
            after = page["next"]
            if after is None:
                break
        assert seen == [urgent, *normal]
        statuses = h41.get("/v1/inbox", params={"kind": "status"}).json()
        assert statuses["items"] == [] and statuses["next"] is None


def test_a_packet_of_another_agency_is_refused_with_ax416_on_both_roads(embedded_gateway: ServedGateway) -> None:
    """H14's credential carrying G22's signed packet: refused by intake (AX416), decided at once or queued
    for the hub, with a signed intake receipt that says so; nothing reaches the packet's recipient."""
    body = embedded_gateway.document(G22, [H41])
    with embedded_gateway.client(H14) as h14:
        answer = h14.post("/v1/packets", content=body, headers=XML)
        assert answer.status_code == 200 and answer.headers["x-request-id"], answer.text
        decided = answer.json()
        assert (decided["outcome"], decided["code"], decided["axis_id"]) == ("refused", "AX416", None), decided
        receipt = read_receipt(base64.b64decode(decided["receipt"]))
        assert (receipt.outcome, receipt.refusal_code, receipt.submission) == ("refused", 416, decided["submission"])
        assert receipt.digest == hashlib.sha256(body).hexdigest()
        queued = h14.post("/v1/packets", params={"wait": 0}, content=body, headers=XML)
        assert queued.status_code == 202, queued.text
        later = h14.get(f"/v1/submissions/{queued.json()['submission']}", params={"wait": 20}).json()
        assert (later["outcome"], later["code"]) == ("refused", "AX416"), later
    with embedded_gateway.client(H41) as h41:
        assert h41.get("/v1/inbox").json()["items"] == []


def test_a_chosen_submission_id_makes_a_repeated_post_the_same_submission(embedded_gateway: ServedGateway) -> None:
    body = embedded_gateway.document(G22, [H41])
    chosen = "0123456789abcdef0123456789abcdef"
    with embedded_gateway.client(G22) as g22:
        first = g22.post("/v1/packets", content=body, headers={**XML, "Axis-Submission": chosen})
        second = g22.post("/v1/packets", content=body, headers={**XML, "Axis-Submission": chosen})
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert first.json()["submission"] == second.json()["submission"] == chosen
        assert first.json()["outcome"] == second.json()["outcome"] == "accepted"
        other = g22.post("/v1/packets", content=embedded_gateway.document(G22, [H41]),
                         headers={**XML, "Axis-Submission": chosen})
        assert other.status_code == 409
        bad = g22.post("/v1/packets", content=body, headers={**XML, "Axis-Submission": "not-an-id"})
        assert bad.status_code == 422


def test_without_a_hub_a_submission_is_queued_then_decided(gateway: ServedGateway) -> None:
    """The gateway decides where the packet arrives, so a stopped hub does not stop intake; what it cannot
    decide within ?wait= (here: not waiting at all, and a wait too short for any decision) it queues for
    the hubs, which decide it when they are back."""
    gw = gateway
    gw.run(gw.world.hub.stop())
    with gw.client(G22) as g22:
        decided_here = g22.post("/v1/packets", content=gw.document(G22, [H41]), headers=XML, params={"wait": 30})
        assert decided_here.status_code == 200 and decided_here.json()["outcome"] == "accepted", decided_here.text
        queued = [g22.post("/v1/packets", content=gw.document(G22, [H41]), headers=XML, params={"wait": wait})
                  for wait in (0, 0.001)]
        for answer in queued:
            assert answer.status_code == 202, answer.text
            assert answer.json() == {"submission": answer.json()["submission"], "outcome": "queued"}
        submission = queued[0].json()["submission"]
        assert g22.get(f"/v1/submissions/{submission}").json()["outcome"] == "queued"
        # As after a restart.
        restarted = Hub(gw.world.hub.settings, gw.world.store, gw.world.transport, signer=gw.world.hub.signer)
        gw.run(restarted.start())
        try:
            decided = [g22.get(f"/v1/submissions/{a.json()['submission']}", params={"wait": 30}).json()
                       for a in queued]
        finally:
            gw.run(restarted.stop())
        for one in decided:
            assert one["outcome"] == "accepted" and one["axis_id"], one
        decided = decided[0]
        assert decided["outcome"] == "accepted" and decided["axis_id"]


def test_a_submission_decided_where_it_arrives_is_recorded_with_its_caller(gateway: ServedGateway) -> None:
    """The gateway's own intake writes the submission row in the intake transaction: the caller's agency and
    credential, the digest of the bytes, the outcome. A repeat with the same id is the same submission."""
    body = gateway.document(G22, [H41])
    chosen = "0123456789abcdef" * 2
    with gateway.client(G22) as g22:
        first = g22.post("/v1/packets", content=body, headers={**XML, "Axis-Submission": chosen})
        assert first.status_code == 200 and first.json()["outcome"] == "accepted", first.text
        row = gateway.world.store.submissions([chosen])[chosen]
        assert (row.agency_code, row.outcome, row.axis_id) == (G22, "accepted", first.json()["axis_id"])
        assert row.credential_id and row.credential_id.startswith("cred_")
        assert row.digest == hashlib.sha256(body).hexdigest()
        repeat = g22.post("/v1/packets", content=body, headers={**XML, "Axis-Submission": chosen})
        assert repeat.status_code == 200 and repeat.json() == first.json()
        # Another agency's packet on G22's credential is refused, and that refusal is recorded the same way.
        foreign = g22.post("/v1/packets", content=gateway.document(H41, [G22]), headers=XML)
        assert foreign.status_code == 200 and foreign.json()["code"] == "AX416", foreign.text
        refused = gateway.world.store.submissions([foreign.json()["submission"]])[foreign.json()["submission"]]
        assert (refused.agency_code, refused.outcome) == (G22, "refused")


def test_hostile_xml_posted_to_the_gateway_is_a_recorded_refusal_and_delivers_nothing(
        embedded_gateway: ServedGateway) -> None:
    """The gateway does not parse a submission: intake does, in a worker process, with the safe parser.
    Each hostile vector (entity bombs, external entities, a DOCTYPE in another encoding, deep nesting) and
    plain garbage comes back as a refusal with its code and signed receipt; nothing is delivered, and the
    gateway and its workers go on answering."""
    hostile = Path(__file__).resolve().parents[1] / "vectors" / "hostile"
    bodies = {path.name: path.read_bytes() for path in sorted(hostile.glob("*.xml"))}
    bodies["garbage"] = b"\x00\xffnot xml at all"
    with embedded_gateway.client(H14) as h14:
        for name, body in bodies.items():
            answer = h14.post("/v1/packets", content=body, headers=XML)
            assert answer.status_code == 200, (name, answer.text)
            refused = answer.json()
            assert refused["outcome"] == "refused" and refused["code"].startswith("AX2"), (name, refused)
            assert read_receipt(base64.b64decode(refused["receipt"])).outcome == "refused", name
    embedded_gateway.send(G22, [H41])  # still answering, and the workers still decide
    with embedded_gateway.client(H41) as h41:
        assert len(h41.get("/v1/inbox").json()["items"]) == 1
