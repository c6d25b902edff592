"""GET /v1/audit/log, /v1/audit/overdue and /v1/audit/stats on both configurations: an auditor's credential
reads them (paged where they are lists), agencies' and operators' credentials get 403, a parameter that
cannot be used is a 422 naming it. The figures themselves are worked out in tests/auditor/test_reports.py;
here they are the traffic the test makes through the gateway."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from tests.gateway.support import G22, H14, H41, ServedGateway

ROUTES = ("/v1/audit/log", "/v1/audit/overdue", "/v1/audit/stats")


def _pages(client: httpx.Client, path: str, **params: object) -> list[list[dict]]:
    pages, after = [], None
    while True:
        answer = client.get(path, params={**params, **({"after": after} if after else {})})
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        after = answer.json()["next"]
        if after is None:
            return pages


def test_an_auditor_reads_the_log_the_overdue_report_and_the_statistics(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41, H14])
    axis_id = sent["axis_id"]
    gateway.wait_inbox(H41, 1)
    with gateway.client(H41) as h41:
        assert h41.post(f"/v1/inbox/{axis_id}/ack").json()["state"] == "delivered"
    with gateway.client("auditor") as auditor:
        # The log: H14 is named by its credential's issue and by the acceptance (a recipient); the delivery
        # receipt is H41's only.
        about_h14 = [e for e in auditor.get("/v1/audit/log", params={"agency": H14}).json()["items"]
                     if e["action"] != "recorded"]  # the test's own registry writes, bound by the store
        assert [(e["action"], e["subject"]) for e in about_h14] == [("credential-issued", gateway.ids[H14]),
                                                                    ("accepted", axis_id)]
        assert about_h14[1]["data"]["recipients"] == [H41, H14] and len(about_h14[1]["hash"]) == 64
        delivered = auditor.get("/v1/audit/log", params={"agency": H41, "kind": "delivered"}).json()["items"]
        assert [(e["actor"], e["subject"], e["data"]["recipient"]) for e in delivered] == [("gateway", axis_id, H41)]
        everything = auditor.get("/v1/audit/log", params={"limit": 1000}).json()["items"]
        one_by_one = _pages(auditor, "/v1/audit/log", limit=1)
        assert [page for page in one_by_one if page] == [[entry] for entry in everything] and len(everything) >= 2

        # Overdue, long after: neither recipient confirmed (H41's delivery receipt is not a confirmation).
        report = auditor.get("/v1/audit/overdue", params={"as_of": "2030-01-01"}).json()
        assert report["as_of"] == "2030-01-02T00:00:00+07:00" and report["time_zone"] == "Asia/Ho_Chi_Minh"
        assert report["calendar"] == {"source": "vietnam-holidays.txt", "years": [2026]}
        assert any("2030" in warning for warning in report["warnings"])
        assert [(i["axis_id"], i["recipient"], i["answer"], i["current_state"]) for i in report["items"]] == [
            (axis_id, H14, "none", "queued"), (axis_id, H41, "none", "delivered")]
        assert all(i["late_seconds"] > 0 for i in report["items"])
        paged = _pages(auditor, "/v1/audit/overdue", as_of="2030-01-01", limit=1)
        assert [page for page in paged if page] == [[item] for item in report["items"]]
        before = auditor.get("/v1/audit/overdue", params={"as_of": "2020-01-01T00:00Z"}).json()
        assert before["items"] == [] and before["next"] is None

        # Statistics: G22 sent one, H41 and H14 each received it, H41 delivered it.
        stats = auditor.get("/v1/audit/stats").json()
        rows = {row["key"]: row for row in stats["rows"]}
        assert (rows[G22]["sent"], rows[H41]["received"], rows[H41]["delivered"], rows[H14]["received"],
                rows[H14]["delivered"]) == (1, 1, 1, 1, 0)
        assert rows[H41]["to_delivery"]["count"] == 1 and rows[H41]["to_delivery"]["median_seconds"] >= 0
        today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date().isoformat()
        by_day = auditor.get("/v1/audit/stats", params={"by": "day", "since": today}).json()
        assert [(r["key"], r["sent"], r["received"], r["delivered"]) for r in by_day["rows"]] == [(today, 1, 2, 1)]


def test_agencies_and_operators_may_not_ask(gateway: ServedGateway) -> None:
    for who in (G22, H41, "operator"):
        with gateway.client(who) as client:
            for path in ROUTES:
                answer = client.get(path)
                assert answer.status_code == 403, (who, path, answer.text)
                error = answer.json()["error"]
                assert error["code"] == "GW403" and "auditor" in error["message"], (who, path, error)


def test_a_parameter_that_cannot_be_used_is_a_422_naming_it(gateway: ServedGateway) -> None:
    with gateway.client("auditor") as auditor:
        for path, params, says in [
                ("/v1/audit/log", {"since": "yesterday"}, "query.since: 'yesterday' is not a date"),
                ("/v1/audit/log", {"agency": "not a code!"}, "query.agency:"),
                ("/v1/audit/log", {"after": "garbage"}, "is not one this gateway gave out"),
                ("/v1/audit/log", {"kind": "accepted\x00"}, "query.kind"),  # PostgreSQL text takes no NUL
                ("/v1/audit/overdue", {"after": "MjAyNi0wMy0xMFQwOTowMDowMCswNzowMB9heAAfSDQx"},
                 "is not one this gateway gave out"),  # a cursor with a NUL inside
                ("/v1/audit/overdue", {"as_of": "9999-12-31"}, "query.as_of:"),
                ("/v1/audit/overdue", {"as_of": "16/03/2026"}, "query.as_of: '16/03/2026' is not a date"),
                ("/v1/audit/stats", {"by": "week"}, "query.by"),
                ("/v1/audit/stats", {"until": "2026-02-30"}, "query.until: '2026-02-30' is not a date")]:
            answer = auditor.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "GW422" and says in error["message"], (path, params, error)
