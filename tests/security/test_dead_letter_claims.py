"""A dead letter is a claim, never a proof: nothing that claims a delivery failed moves one the recipient has.

Against a running `axis serve` (the claims through the broker and the gateway do not depend on the store
behind them; tests/cli/test_dlq_list.py runs the operator's side on both configurations):

- a forged message written straight onto `axis.intake` under the delivered document's axis id is
  dead-lettered by the hub (nobody submitted it, nobody can be told); the operator's `axis dlq replay --all`
  republishes it as a new attempt and `axis dlq purge` drops it, and neither moves the delivery;
- the recipient's own credential reporting the delivered document failed is refused (409), the sender's
  is not let near it (404), and the gateway has no replay for anyone: replay is an operator's command.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from adapters.edge import EdgeNotFound, EdgeRefused, read_credential
from axis import wire
from tests.e2e.harness import Deployment, wait_until
from tests.e2e.packets import G22, H41, TestPKI
from tests.e2e.test_delivery import pull, send
from tests.security.support import as_agency, dead_letters, publish, states, waiting


def test_no_dead_letter_claim_moves_a_delivered_document_back(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path) -> None:
    deployment = embedded_deployment
    packet = e2e_pki.document(G22, [H41], 1)
    (tmp_path / "letter.edxml").write_bytes(packet)
    deployment.serve()
    [sent] = send(deployment, tmp_path / "letter.edxml")
    axis_id = sent["axis_id"]
    pull(deployment, H41, tmp_path / H41)
    assert states(deployment, axis_id) == {H41: "delivered"}

    # Written straight onto the broker: the hub cannot tell anyone about it, so it dead-letters it.
    publish(deployment, wire.INTAKE_QUEUE, b"<junk/>", "forged-1",
            {wire.H_SUBMISSION: "forged-1", wire.H_AXIS_ID: axis_id, wire.H_SENDER: G22})
    wait_until(lambda: [x for x in dead_letters(deployment, wire.INTAKE_QUEUE) if x.message_id == "forged-1"],
               "the forged message to be dead-lettered")
    listed = json.loads(deployment.cli("dlq", "list", "--json").stdout)
    assert [(r["queue"], r["id"], r["axis_id"]) for r in listed] == [("axis.intake", "forged-1", axis_id)]

    # Not by an agency: its credential cannot report the delivered document failed, nor replay anything.
    with pytest.raises(EdgeRefused) as refused:
        as_agency(deployment, H41, lambda edge: edge.fail(axis_id, "a late claim"))
    assert refused.value.status == 409
    with pytest.raises(EdgeNotFound):
        as_agency(deployment, G22, lambda edge: edge.fail(axis_id, "the sender's claim"))
    token = read_credential(deployment.credential_file(H41))
    for path in ("/v1/dlq/replay", f"/v1/inbox/{axis_id}/replay", f"/v1/dlq/{axis_id}/replay"):
        answer = httpx.post(deployment.gateway_url + path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code in (404, 405), (path, answer.status_code)

    # The operator replays it (a new attempt at intake: dead-lettered again), then purges it.
    replayed = deployment.cli("dlq", "replay", "--all", "--json")
    assert json.loads(replayed.stdout) == {"replayed": [{"queue": "axis.intake", "id": "forged-1"}]}, replayed
    wait_until(lambda: len(_refusals(deployment, "forged-1")) == 2 and dead_letters(deployment, wire.INTAKE_QUEUE),
               "the replayed message to be refused and dead-lettered again")
    purged = deployment.cli("dlq", "purge", "forged-1", "--yes", "--json")
    assert json.loads(purged.stdout) == {"purged": [{"queue": "axis.intake", "id": "forged-1"}]}, purged
    assert dead_letters(deployment, wire.INTAKE_QUEUE) == []

    # Still delivered, once: nothing waits for H41, its timeline has one delivery receipt and no error.
    assert states(deployment, axis_id) == {H41: "delivered"} and waiting(deployment, H41) == []
    [story] = json.loads(deployment.cli("receipts", axis_id, "--json").stdout)
    [h41] = story["recipients"]
    assert ([r["kind"] for r in h41["receipts"]], h41["operator"]) == (["delivery"], [])
    with deployment.store() as store:
        actions = [entry.action for entry in store.audit_entries()]
    assert actions.count("dead-letter-replayed") == 1 and actions.count("dead-letter-purged") == 1
    assert "delivery-replayed" not in actions and "delivery-purged" not in actions


def _refusals(deployment: Deployment, submission: str) -> list[dict]:
    """The hub's decisions on `submission` (each handling of it at intake writes one)."""
    with deployment.store() as store:
        return [e.data for e in store.audit_entries_about(submission) if e.action == "refused"]
