"""Who gets what, on both configurations: every operation refuses a caller with no credential, an
unknown one or a revoked one (401, WWW-Authenticate: Bearer), and answers a third agency exactly as it
answers an unknown axis id or submission (404, the same body but for the request id)."""
from __future__ import annotations

import time
import uuid

import httpx

from axis.gateway.credentials import Authenticator, issue, new_token, revoke
from tests.gateway.support import G17, G22, H14, H41, ServedGateway

XML = {"Content-Type": "application/xml"}


def _operations(axis_id: str, submission: str, body: bytes) -> list[tuple[str, str, dict]]:
    """Every /v1 operation, aimed at `axis_id` / `submission` where it takes one."""
    return [
        ("POST", "/v1/packets", {"content": body, "headers": XML}),
        ("GET", f"/v1/submissions/{submission}", {}),
        ("GET", "/v1/inbox", {}),
        ("GET", f"/v1/inbox/{axis_id}", {}),
        ("POST", f"/v1/inbox/{axis_id}/ack", {}),
        ("POST", f"/v1/inbox/{axis_id}/fail", {"json": {"reason": "no"}}),
        ("GET", "/v1/sent", {}),
        ("GET", f"/v1/documents/{axis_id}/receipts", {}),
        ("GET", "/v1/agencies", {}),
        ("GET", "/v1/audit/log", {}),
        ("GET", "/v1/audit/overdue", {}),
        ("GET", "/v1/audit/stats", {}),
    ]


def _error(answer: httpx.Response) -> dict:
    assert answer.headers.get("x-request-id"), answer.headers
    found = answer.json()["error"]
    assert found["request_id"] == answer.headers["x-request-id"]
    return found


def test_no_unknown_or_revoked_credential_is_refused_on_every_operation(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    operations = _operations(sent["axis_id"], sent["submission"], gateway.document(G22, [H41]))
    callers = {"none": {}, "unknown": {"Authorization": f"Bearer {new_token()}"},
               "malformed": {"Authorization": "Bearer hunter2"}, "basic": {"Authorization": "Basic Zm9vOmJhcg=="},
               "revoked": {"Authorization": f"Bearer {gateway.tokens['revoked']}"}}
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for who, headers in callers.items():
            for method, path, kwargs in operations:
                kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
                answer = client.request(method, path, **kwargs)
                assert answer.status_code == 401, (who, method, path, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer"), (who, path)
                assert _error(answer)["code"] == "GW401"
    # Nothing was submitted by any of them.
    with gateway.client(G22) as g22:
        assert [i["axis_id"] for i in g22.get("/v1/sent").json()["items"]] == [sent["axis_id"]]


def test_a_third_agency_gets_404_on_every_operation_exactly_like_an_unknown_id(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41, H14])
    axis_id, submission = sent["axis_id"], sent["submission"]
    gateway.wait_inbox(H41, 1)
    unknown_axis, unknown_submission = str(uuid.uuid4()), uuid.uuid4().hex
    with gateway.client(G17) as g17:
        for (method, path, kwargs), (_, unknown_path, _) in zip(
                _operations(axis_id, submission, b""), _operations(unknown_axis, unknown_submission, b""),
                strict=True):
            if axis_id not in path and submission not in path:
                continue
            theirs, nobodys = g17.request(method, path, **kwargs), g17.request(method, unknown_path, **kwargs)
            assert theirs.status_code == nobodys.status_code == 404, (path, theirs.text, nobodys.text)
            mine, other = _error(theirs), _error(nobodys)
            assert mine["code"] == other["code"] == "GW404"
            assert mine["message"].replace(axis_id, "X").replace(submission, "X") == \
                other["message"].replace(unknown_axis, "X").replace(unknown_submission, "X")
        # ...and the listings show nothing of it.
        assert g17.get("/v1/inbox").json()["items"] == []
        assert g17.get("/v1/sent").json()["items"] == []
    # The sender may follow its document but not take it as a recipient would.
    with gateway.client(G22) as g22:
        assert g22.get(f"/v1/documents/{axis_id}/receipts").status_code == 200
        assert g22.get(f"/v1/inbox/{axis_id}").status_code == 404
        assert g22.post(f"/v1/inbox/{axis_id}/ack").status_code == 404
    # A recipient may not read the other recipient's submission.
    with gateway.client(H41) as h41:
        assert h41.get(f"/v1/submissions/{submission}").status_code == 404
    # Nothing changed for the real recipients.
    assert [i["axis_id"] for i in gateway.wait_inbox(H14, 1)] == [axis_id]


def test_auditors_read_everything_and_change_nothing(gateway: ServedGateway) -> None:
    sent = gateway.send(G22, [H41])
    axis_id = sent["axis_id"]
    gateway.wait_inbox(H41, 1)
    with gateway.client("auditor") as auditor:
        assert auditor.get(f"/v1/inbox/{axis_id}").content == sent["body"]
        assert auditor.get(f"/v1/documents/{axis_id}/receipts").status_code == 200
        assert auditor.get(f"/v1/submissions/{sent['submission']}").json()["axis_id"] == axis_id
        assert auditor.get("/v1/agencies").status_code == 200
        for method, path, kwargs in _operations(axis_id, sent["submission"], sent["body"]):
            if method == "POST":
                answer = auditor.request(method, path, **kwargs)
                assert answer.status_code == 403 and _error(answer)["code"] == "GW403", (path, answer.text)
    assert [i["axis_id"] for i in gateway.wait_inbox(H41, 1)] == [axis_id]


def test_a_revoked_credential_is_refused_within_the_cache_window(embedded_gateway: ServedGateway) -> None:
    gw = embedded_gateway
    store = gw.world.store
    fresh = issue(store, "agency", H41, label="rotation")
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {fresh.token}"}) as client:
        assert client.get("/v1/inbox").status_code == 200          # now cached in the gateway
        revoke(store, fresh.id)                                   # as `axis credentials revoke` does, elsewhere
        deadline = time.monotonic() + 5.5
        while True:
            # When the request went, not when its answer came: on a loaded machine a request sent within the
            # window was once answered (200, rightly) 1.8 s after it.
            sent = time.monotonic()
            if client.get("/v1/inbox").status_code != 200:
                break
            assert sent < deadline, "a revoked credential still worked after 5 s"
            time.sleep(0.1)
        assert client.get("/v1/inbox").status_code == 401
    # Several credentials of one agency may be active at once (a rotation): H41's first still works.
    with gw.client(H41) as h41:
        assert h41.get("/v1/inbox").status_code == 200


def test_the_authenticator_caches_for_at_most_its_window_and_forgets_on_its_own_revoke(
        embedded_gateway: ServedGateway) -> None:
    store = embedded_gateway.world.store
    now = [1000.0]
    authenticator = Authenticator(store, cache_seconds=5, clock=lambda: now[0])
    issued = issue(store, "agency", H41)
    caller = authenticator.authenticate(issued.token)
    assert (caller.credential_id, caller.role, caller.agency) == (issued.id, "agency", H41)
    assert authenticator.cached(issued.token) == caller
    revoke(store, issued.id)
    now[0] += 4.9
    assert authenticator.authenticate(issued.token) == caller     # within the window: the cache answers
    now[0] += 0.2
    try:
        authenticator.authenticate(issued.token)
        raise AssertionError("a revoked credential authenticated after the window")
    except Exception as exc:  # noqa: BLE001 - the type is checked just below
        assert type(exc).__name__ == "Unauthorized"
    other = issue(store, "agency", H14)
    authenticator.authenticate(other.token)
    authenticator.revoke(other.id)                                 # through the same authenticator: at once
    assert authenticator.cached(other.token) is None
