"""The watched-folder adapter: outbox → sent/failed, deliveries → inbox, receipts → state/receipts."""
from __future__ import annotations

from pathlib import Path

from adapters.client import receipt_outcome
from adapters.folder import FolderAdapter
from axis.transport import Transport
from tests.adapters.support import G22, H41, DevPKI, HubSide, IntakeResponder, signed_document


async def test_one_round_sends_the_outbox_receives_the_inbox_and_keeps_the_receipts(
        hub: HubSide, transport: Transport, transport_url: str, dev_pki: DevPKI, tmp_path: Path) -> None:
    adapter = FolderAdapter(G22, transport, tmp_path / "g22", signer=dev_pki.signers[G22], verifier=dev_pki.verifier)
    outbox = adapter.outbox
    good = {f"cv-{n}": signed_document(dev_pki, G22, [H41], 80 + n) for n in range(2)}
    for name, packet in good.items():
        (outbox / f"{name}.edxml").write_bytes(packet)
    (outbox / "broken.edxml").write_bytes(b"<edXML>")
    (outbox / "foreign.edxml").write_bytes(signed_document(dev_pki, H41, [G22], 90))
    (outbox / ".half-written.edxml.tmp").write_bytes(b"<ed")
    incoming = signed_document(dev_pki, H41, [G22], 91)
    axis_id = await hub.deliver(incoming, G22, sender=H41)

    with IntakeResponder(transport_url, dev_pki):
        round_ = await adapter.run_once(wait=0.3)
        submissions = [s.submission for s in round_.sent if s.submission]
        receipts = await adapter.client.wait_for_intake(submissions, timeout=15)

    assert sorted(p.name for p in outbox.iterdir()) == [".half-written.edxml.tmp"]
    sent = {s.original.stem: s for s in round_.sent}
    for name, packet in good.items():
        assert sent[name].path == adapter.sent / f"{name}.{sent[name].submission}.edxml"
        assert sent[name].path.read_bytes() == packet
        assert receipt_outcome(receipts[sent[name].submission], sent[name].submission) == "accepted"
    assert "AX200 MALFORMED" in (adapter.failed / "broken.reason.txt").read_text()
    assert "belongs to 000.00.00.G22" in (adapter.failed / "foreign.reason.txt").read_text()
    assert sorted(p.name for p in adapter.failed.glob("*.edxml")) == ["broken.edxml", "foreign.edxml"]
    assert [r.axis_id for r in round_.received] == [axis_id]
    assert (adapter.inbox / f"{axis_id}.edxml").read_bytes() == incoming
    stored = sorted(p.name for p in (tmp_path / "g22" / "state" / "receipts").iterdir())
    assert stored == sorted(f"intake_{s}.xml" for s in submissions)
    adapter.close()
