"""`axis demo`: the main job end to end on one machine, with no broker and no database server.

A PKI and three agencies are created; the hub runs in this process on the
embedded defaults (SQLite store, embedded transport); the sender's system and
the two recipients' systems use the agency SDK exactly as a real adapter would.
"""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import typer
from rich.table import Table

from adapters.client import AgencyClient
from axis import wire
from axis.edxml import Attachment, Organization, SignerInfo, StatusCode, packet_to_bytes
from axis.edxml.compose import new_document
from axis.edxml.sample_pdf import one_page_pdf
from axis.hub import Hub, HubSettings, TrustSettings
from axis.private import private_directory
from axis.store import open_store
from axis.transport import open_transport
from axis.trust import Signer, Verifier, pki
from cli.output import stdout

SENDER = Organization("000.00.00.G22", organ_name="Văn phòng Chính phủ", organ_add="Số 1 Hoàng Hoa Thám, Hà Nội")
RECIPIENTS = (Organization("000.00.00.H41", organ_name="UBND Tỉnh Nghệ An"),
              Organization("000.00.00.H14", organ_name="UBND Tỉnh Cao Bằng"))
BYSTANDER = Organization("000.00.00.G17", organ_name="Bộ Thông tin và Truyền thông")
AGENCIES = (SENDER, *RECIPIENTS, BYSTANDER)


def demo(workdir: Path | None = typer.Option(None, "--dir", help="Keep the demo's files here "
                                                                   "(default: a temporary folder).")) -> None:
    """Three agencies, one hub: a signed document with a PDF to two of them, delivered, answered, audited."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="axis-demo-") as tmp:
            ok = asyncio.run(_run(Path(tmp)))
        stdout.print("The demo's files were in a temporary folder, now removed; keep them with --dir DIR.")
    else:
        private_directory(workdir)
        ok = asyncio.run(_run(workdir))
        stdout.print(f"The demo's files are in {workdir}.")
    if not ok:
        raise typer.Exit(1)


def _step(text: str) -> None:
    stdout.print(f"\n[bold cyan]▸ {text}[/]")


async def _run(root: Path) -> bool:
    _step("A development PKI: a root CA, a CRL, the hub's certificate and one per agency carrying its code")
    ca, keys = root / "pki", root / "keys"
    pki.init_ca(ca)
    pki.issue(wire.HUB_IDENTITY, ca, keys)
    for org in AGENCIES:
        pki.issue(org.organ_id, ca, keys)
        stdout.print(f"  {org.organ_id}  {org.organ_name}")
    verifier = Verifier.from_files(ca / "ca.pem", ca / "crl.pem")

    def signer(code: str) -> Signer:
        return Signer.from_files(keys / f"{code}.key.pem", keys / f"{code}.cert.pem")

    _step("The hub on the embedded defaults: a SQLite store and the embedded transport, no server installed")
    store = open_store(f"sqlite:///{root / 'axis.db'}", create=True)
    transport = await open_transport(f"embedded:///{root / 'transport.db'}")
    with store.write() as tx:
        for org in AGENCIES:
            tx.add_agency(org.organ_id, org.organ_name or org.organ_id)
            tx.add_certificate(org.organ_id, (keys / f"{org.organ_id}.cert.pem").read_text())
            tx.audit("operator", "agency-added", org.organ_id, {"name": org.organ_name})
    hub = Hub(HubSettings(trust=TrustSettings(trust_roots=ca / "ca.pem", crl=ca / "crl.pem",
                                              hub_key=keys / f"{wire.HUB_IDENTITY}.key.pem",
                                              hub_cert=keys / f"{wire.HUB_IDENTITY}.cert.pem"),
                          workers=1), store, transport)
    await hub.start()
    stdout.print(f"  store {root / 'axis.db'}, transport {root / 'transport.db'}, 4 agencies registered")
    clients = {org.organ_id: AgencyClient(org.organ_id, transport, signer=signer(org.organ_id),
                                          verifier=verifier, state_dir=root / "agencies" / org.organ_id)
               for org in AGENCIES}
    try:
        return await _exchange(root, hub, store, clients, signer)
    finally:
        for client in clients.values():
            client.close()
        await hub.stop()
        await transport.close()
        store.close()


async def _exchange(root: Path, hub: Hub, store, clients: dict[str, AgencyClient], signer) -> bool:
    sender = clients[SENDER.organ_id]
    _step(f"{SENDER.organ_id} signs a document with a PDF attachment for two agencies and submits it")
    pdf = one_page_pdf()
    document = new_document(
        SENDER, RECIPIENTS, code_number="7816", code_notation="VPCP-TTĐT",
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer=SignerInfo(competence="KT. BỘ TRƯỞNG", position="Thứ trưởng", full_name="Nguyễn Văn A"),
        attachments=[Attachment(content_id="cid:1", attachment_name="cong-van-7816.pdf",
                                description="Công văn 7816", content_type="application/pdf", data=pdf)])
    signed = signer(SENDER.organ_id).sign(packet_to_bytes(document))
    submission = await sender.submit(signed)
    receipt = (await sender.wait_for_intake([submission], timeout=30))[submission]
    stdout.print(f"  intake receipt: {receipt.outcome}, axis id {receipt.axis_id} (signed by the hub)")
    stdout.print(f"  DocumentId {document.document_id}; {len(signed):,} signed bytes, PDF {len(pdf):,} bytes")

    _step("A forged copy (signed with another agency's key) is refused with a stable code")
    forged = signer(RECIPIENTS[0].organ_id).sign(packet_to_bytes(document))
    forged_submission = await sender.submit(forged)
    refusal = (await sender.wait_for_intake([forged_submission], timeout=30))[forged_submission]
    stdout.print(f"  intake receipt: {refusal.outcome} AX{refusal.refusal_code} {refusal.refusal_name}")

    _step("Each recipient's adapter pulls, verifies, stores the exact bytes, acknowledges and signs a "
          "delivery receipt")
    for org in RECIPIENTS:
        inbox = root / "agencies" / org.organ_id / "inbox"
        received = await clients[org.organ_id].pull(inbox, wait=1.0, max_messages=1)
        for item in received:
            identical = item.path.read_bytes() == signed
            stdout.print(f"  {org.organ_id} stored {item.path.name}: byte-identical to what was signed: {identical}")

    _step("Each recipient answers with signed status packets 01 (arrived), 03 (accepted), 06 (done)")
    for org in RECIPIENTS:
        client = clients[org.organ_id]
        for code in (StatusCode.ARRIVED, StatusCode.ACCEPTED, StatusCode.DONE):
            status_submission = await client.send_status(document.document_id, code)
            status_receipt = (await client.wait_for_intake([status_submission], timeout=30))[status_submission]
            stdout.print(f"  {org.organ_id} → {SENDER.organ_id}: status {code.value} {status_receipt.outcome}")
    statuses = await sender.pull(root / "agencies" / SENDER.organ_id / "inbox", wait=1.0, max_messages=6)
    stdout.print(f"  {SENDER.organ_id} received {len(statuses)} status packets")

    # Delivery receipts travel back through the hub asynchronously; give them a moment.
    for _ in range(100):
        if all(d.state == "done" for d in store.deliveries(receipt.axis_id)) and \
                all(any(r.kind == "delivery" for r in rs) for code, rs in store.timeline(receipt.axis_id).items()
                    if code):
            break
        await asyncio.sleep(0.1)
    await sender.collect_receipts(wait=0.5)

    _step(f"The timeline of {document.document_id} (as `axis receipts` shows it)")
    table = Table("recipient", "state", "receipt", "code", "at (UTC)")
    for code, delivery in sorted({d.recipient_code: d for d in store.deliveries(receipt.axis_id)}.items()):
        for i, r in enumerate(store.timeline(receipt.axis_id).get(code, [])):
            table.add_row(code if i == 0 else "", delivery.state if i == 0 else "", r.kind, r.code or "",
                          f"{r.created_at:%H:%M:%S.%f}"[:-3])
    stdout.print(table)
    kinds = sorted({r.kind for r in sender.list_receipts()})
    stdout.print(f"  {SENDER.organ_id} holds signed receipts of kinds: {', '.join(kinds)}")

    _step("The audit log: every step is a hash-chained entry; the database refuses UPDATE and DELETE")
    report = store.verify_audit()
    stdout.print(f"  {'intact' if report.ok else 'BROKEN'}: {report.entries} entries, head {report.head_hash[:16]}…")
    done = all(d.state == "done" for d in store.deliveries(receipt.axis_id))
    stdout.print(f"\n[bold]{'Done' if done and report.ok else 'Something went wrong'}.[/]")
    return done and report.ok and receipt.outcome == "accepted" and refusal.outcome == "refused"
