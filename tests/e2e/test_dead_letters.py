"""Deliveries the recipients cannot take are parked, their sender learns it with signed error receipts,
and once the cause is fixed the operator's `axis dlq replay --all` has every one delivered exactly once.

The recipients trust another root than the axis does, so they cannot verify what they are given.
`axis inbox pull` tries a delivery that fails verification `max_attempts` times (1 s apart,
doubling) before it reports it; to keep this run short the recipients are the SDK (`AgencyClient`,
reporting at the first failure) on the same road their commands take (`Deployment.edge`); the hub,
the sender's `axis send`, and the operator's `axis dlq` and `axis receipts` are the real commands.
The retries before a report are tested in tests/adapters/test_client.py.
"""
from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

import pytest

from adapters.client import AgencyClient, Received, ReceivedReceipt, Rejection
from axis.refusals import RefusalCode
from axis.trust import Verifier
from tests.e2e.bulk_run import delivery_states
from tests.e2e.harness import Deployment
from tests.e2e.packets import G17, G22, H14, H41, HUB, TestPKI, sha256
from tests.e2e.test_statuses import timeline

DOCUMENTS = 500
RECIPIENTS = (H41, H14, G17)      # 500 documents x 3 recipients = 1,500 deliveries


@pytest.fixture(scope="module")
def dlq_packets(e2e_pki: TestPKI) -> dict[str, bytes]:
    return {f"G22-{n:04d}.edxml": e2e_pki.document(G22, list(RECIPIENTS), 5000 + n) for n in range(DOCUMENTS)}


def _pull_all(deployment: Deployment, e2e_pki: TestPKI, out: Path, *, roots: Verifier) -> dict[str, list]:
    """Every recipient pulls at once, verifying with `roots`, and reports what it cannot take at the first try."""
    async def one(code: str) -> tuple[list[Received], list[Rejection]]:
        rejected: list[Rejection] = []
        async with deployment.edge(code) as edge:
            client = AgencyClient(code, edge, signer=e2e_pki.signer(code), verifier=e2e_pki.verifier(),
                                  state_dir=deployment.data / "agencies" / code, max_attempts=1, concurrency=8)
            client.verifier = roots
            try:
                received = await client.pull(out / code, wait=1.0, on_rejected=rejected.append)
            finally:
                client.close()
        return received, rejected

    async def main() -> list[tuple[list[Received], list[Rejection]]]:
        return await asyncio.gather(*(one(code) for code in RECIPIENTS))

    return dict(zip(RECIPIENTS, asyncio.run(main()), strict=True))


def _collect(deployment: Deployment, e2e_pki: TestPKI) -> list[ReceivedReceipt]:
    async def main() -> list[ReceivedReceipt]:
        async with deployment.edge(G22) as edge:
            client = AgencyClient(G22, edge, verifier=e2e_pki.verifier(), state_dir=deployment.data / "agencies" / G22)
            try:
                return await client.collect_receipts()
            finally:
                client.close()
    return asyncio.run(main())


@pytest.mark.slow(seconds=90)
def test_1500_parked_deliveries_replayed_after_the_fix_are_delivered_exactly_once(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path, dlq_packets: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # On the embedded defaults only, for CI's time (~90 s; ~120 s more on RabbitMQ+PostgreSQL, whose dead-letter
    # commands, parking and replay are tested in tests/cli/test_dlq_list.py and tests/gateway/test_exchange.py).
    deployment = embedded_deployment
    monkeypatch.setenv("AXIS_GATEWAY_RATE", "100000")  # three agencies' pulls at full speed, not 200 requests/s
    monkeypatch.setenv("AXIS_GATEWAY_BURST", "100000")
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    for name, data in dlq_packets.items():
        (outbox / name).write_bytes(data)
    deployment.serve()
    sent = deployment.cli("send", str(outbox), "--json", "--wait", "120")
    assert sent.exit_code == 0, sent
    report = json.loads(sent.stdout)
    assert len(report) == DOCUMENTS and {r["outcome"] for r in report} == {"accepted"}
    packets = {r["axis_id"]: dlq_packets[Path(r["file"]).name] for r in report}
    pairs = {(axis_id, code) for axis_id in packets for code in RECIPIENTS}

    # 1. Every recipient trusts another CA: it cannot verify one signature and reports each delivery.
    wrong = Verifier.from_files(e2e_pki.other_ca / "ca.pem", e2e_pki.other_ca / "crl.pem")
    pulled = _pull_all(deployment, e2e_pki, tmp_path / "wrong", roots=wrong)
    for code, (received, rejected) in pulled.items():
        assert received == [] and len(rejected) == DOCUMENTS, code
        assert {r.action for r in rejected} == {"fail"} and all(RefusalCode.CERT_UNTRUSTED.label in r.reason
                                                               for r in rejected)
    assert delivery_states(deployment) == {"parked": len(pairs)}
    listed = deployment.cli("dlq", "list", "--json", "--limit", "5000")
    assert listed.exit_code == 0, listed
    rows = json.loads(listed.stdout)
    assert {(r["axis_id"], r["recipient"]) for r in rows} == pairs and len(rows) == len(pairs)
    assert {r["queue"] for r in rows} == {f"deliveries:{code}" for code in RECIPIENTS}

    # The sender holds an error receipt for each delivery, signed by the hub; `axis receipts` says parked.
    errors = _collect(deployment, e2e_pki)
    assert {(e.receipt.axis_id, e.receipt.recipient) for e in errors} == pairs and len(errors) == len(pairs)
    assert {(e.signer_code, e.receipt.kind, e.outcome, e.receipt.refusal_code) for e in errors} == {
        (HUB, "error", "failed", RefusalCode.DELIVERY_FAILED.number)}
    assert all(e.receipt.digest == sha256(packets[e.receipt.axis_id]) for e in errors)
    assert all(RefusalCode.CERT_UNTRUSTED.label in (e.receipt.refusal_detail or "") for e in errors)
    sample = sorted(packets)[:: DOCUMENTS // 10]
    for axis_id in sample:
        story = timeline(deployment, axis_id)
        assert [(r["state"], [x["kind"] for x in r["receipts"]]) for r in story["recipients"]] == [
            ("parked", ["error"])] * len(RECIPIENTS)

    # 2. The cause is fixed (the recipients trust the axis's CA), and the operator replays every one.
    replayed = deployment.cli("dlq", "replay", "--all", "--json")
    assert replayed.exit_code == 0, replayed
    assert {tuple(d["id"].split("/")) for d in json.loads(replayed.stdout)["replayed"]} == pairs
    pulled = _pull_all(deployment, e2e_pki, tmp_path / "right", roots=e2e_pki.verifier())

    # Every one delivered exactly once: each recipient stored each document once, byte for byte.
    for code, (received, rejected) in pulled.items():
        assert rejected == [] and sorted(r.axis_id for r in received) == sorted(packets), code
        files = {p.stem: p.read_bytes() for p in (tmp_path / "right" / code).glob("*.edxml")}
        assert files == packets, code
    with deployment.store() as store:
        deliveries = store.list_deliveries(limit=10 * len(pairs))
        assert sorted((d.axis_id, d.recipient_code, d.state, d.attempts) for d in deliveries) == sorted(
            (axis_id, code, "delivered", 1) for axis_id, code in pairs)
        kinds = collections.Counter((r.axis_id, r.recipient_code, r.kind) for axis_id in packets
                                    for r in store.receipts(axis_id) if r.recipient_code)
    assert kinds == collections.Counter({(a, c, k): 1 for a, c in pairs for k in ("error", "delivery")})
    assert deployment.cli("dlq", "list", "--json").stdout.strip() == "[]"

    # The sender now holds, after its error receipt, the recipient's own delivery receipt for each.
    deliveries_received = _collect(deployment, e2e_pki)
    assert {(d.receipt.axis_id, d.receipt.recipient) for d in deliveries_received} == pairs
    assert all(d.receipt.kind == "delivery" and d.signer_code == d.receipt.recipient for d in deliveries_received)
    assert _collect(deployment, e2e_pki) == []  # nothing tracked any more: every recipient answered

    # `axis receipts` tells one story: delivered, the error receipt, the operator's replay, the delivery receipt.
    for axis_id in sample:
        story = timeline(deployment, axis_id)
        for recipient in story["recipients"]:
            assert (recipient["state"], recipient["attempts"]) == ("delivered", 1)
            events = sorted([(r["at"], r["kind"]) for r in recipient["receipts"]]
                            + [(e["at"], e["action"]) for e in recipient["operator"]])
            assert [kind for _, kind in events] == ["error", "delivery-replayed", "delivery"], recipient
    audit = deployment.cli("audit", "verify", "--json")
    assert audit.exit_code == 0 and json.loads(audit.stdout)["ok"], audit
