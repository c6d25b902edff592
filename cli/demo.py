"""`axis demo`: the main job end to end on one machine, with no broker and no database server.

A PKI and four agencies are created; `axis serve` runs as a process of its own
on the embedded defaults (SQLite store, embedded transport) and starts the
agency gateway on a free loopback port; the demo, as the operator, issues each
agency a gateway credential; then the sender's system and the recipients'
systems use the agency SDK over HTTP exactly as a real adapter would
(`adapters.edge.GatewayEdge`): no agency touches the broker or the database.

Where the gateway is not installed (`axis.gateway.server` missing), the hub
runs in this process and the agencies use the in-process edge instead
(`adapters.edge.LocalEdge`), and the demo says so.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table

from adapters.client import AgencyClient
from adapters.edge import Edge, EdgeNotFound, GatewayEdge
from axis import wire
from axis.audit.logkeys import seal_store
from axis.edxml import Attachment, Organization, SignerInfo, StatusCode, packet_to_bytes
from axis.edxml.compose import new_document
from axis.edxml.sample_pdf import one_page_pdf
from axis.private import private_directory, private_file
from axis.signer import LocalSigner
from axis.store import Store, open_store
from axis.trust import Signer, Verifier, pki
from cli.output import stdout

SENDER = Organization("000.00.00.G22", organ_name="Văn phòng Chính phủ", organ_add="Số 1 Hoàng Hoa Thám, Hà Nội")
RECIPIENTS = (Organization("000.00.00.H41", organ_name="UBND Tỉnh Nghệ An"),
              Organization("000.00.00.H14", organ_name="UBND Tỉnh Cao Bằng"))
BYSTANDER = Organization("000.00.00.G17", organ_name="Bộ Thông tin và Truyền thông")
AGENCIES = (SENDER, *RECIPIENTS, BYSTANDER)
AXIS = [sys.executable, "-c", "from cli.main import main; main()"]
_SERVING = re.compile(r"axis hub serving.*gateway (https?://\S+)")
_TSA_LISTENING = re.compile(r"TSA listening on (https?://\S+)")
START_TIMEOUT = 60.0


def demo(workdir: Path | None = typer.Option(None, "--dir", help="Keep the demo's files here "
                                                                   "(default: a temporary folder).")) -> None:
    """Four agencies, one hub, its gateway: a signed document with a PDF to two of them, delivered, answered."""
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
    stdout.print(f"\n[bold cyan]▸ {text}[/]", markup=True)


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

    store = open_store(f"sqlite:///{root / 'axis.db'}", create=True)
    seal_store(store, LocalSigner.from_files(keys / f"{wire.HUB_IDENTITY}.key.pem",
                                             keys / f"{wire.HUB_IDENTITY}.cert.pem"), "operator")
    try:
        with store.write() as tx:
            for org in AGENCIES:
                tx.add_agency(org.organ_id, org.organ_name or org.organ_id)
                tx.add_certificate(org.organ_id, (keys / f"{org.organ_id}.cert.pem").read_text())
                tx.audit("operator", "agency-added", org.organ_id, {"name": org.organ_name})
        async with _tsa(root) as (tsa_url, tsa_root), _serve(root, store, verifier, tsa_url) as edge_for:
            clients = {org.organ_id: AgencyClient(org.organ_id, edge_for(org.organ_id), signer=signer(org.organ_id),
                                                  verifier=verifier, state_dir=root / "agencies" / org.organ_id)
                       for org in AGENCIES}
            try:
                exchanged = await _exchange(root, store, clients, signer)
            finally:
                for client in clients.values():
                    client.close()
        ok = _audit(store, ca / "ca.pem", tsa_root) and exchanged
        stdout.print(f"\n[bold]{'Done' if ok else 'Something went wrong'}.[/]", markup=True)
        return ok
    finally:
        store.close()


@contextlib.asynccontextmanager
async def _tsa(root: Path) -> AsyncIterator[tuple[str, Path]]:
    """Axis's own RFC 3161 TSA (`axis tsa serve`), which stamps the log's checkpoints: a development stand-in
    that proves nothing against Axis's operator (docs/timestamps.md)."""
    from axis.trust.pki import init_tsa

    files = init_tsa(root / "tsa")
    log = root / "tsa.log"
    with open(log, "wb") as err:
        process = subprocess.Popen([*AXIS, "tsa", "serve", "--key", str(files.key), "--cert", str(files.cert),
                                    "--port", "0"], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        yield await _wait_line(process, log, _TSA_LISTENING, "axis tsa serve"), files.root
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 20)


def _audit(store: Store, trust: Path, tsa_root: Path) -> bool:
    from axis.audit.verify import verify_store
    from axis.trust import load_certificates

    _step("The record: each step an entry binding the rows it wrote, sealed by the process that wrote it, "
          "under signed, timestamped checkpoints")
    report = verify_store(store, load_certificates(trust), tsa_roots=load_certificates(tsa_root))
    latest = store.latest_checkpoint()
    if report.ok:
        stdout.print(f"  verified: {report.entries} entries in {report.sealed} sealed units of work, {report.rows} "
                     "rows as the log recorded them, "
                     f"{report.checkpoints} signed checkpoint(s), {report.stamped} timestamped by the TSA")
    else:
        stdout.print(f"  BROKEN at {report.where}: {report.reason}")
    if latest is not None:
        stdout.print("  the latest checkpoint, as an auditor keeps it (`axis audit checkpoint --out FILE`):")
        for line in latest.note.splitlines():
            stdout.print(f"    {line}")
    return report.ok and report.checkpoints > 0 and report.stamped == report.checkpoints


def _serve_command(root: Path) -> list[str]:
    keys = root / "keys"
    return [*AXIS, "serve", "--workers", "1", "--db", f"sqlite:///{root / 'axis.db'}",
            "--broker", f"embedded:///{root / 'transport.db'}", "--trust", str(root / "pki" / "ca.pem"),
            "--crl", str(root / "pki" / "crl.pem"), "--key", str(keys / f"{wire.HUB_IDENTITY}.key.pem"),
            "--cert", str(keys / f"{wire.HUB_IDENTITY}.cert.pem"), "--gateway-port", "0"]


@contextlib.asynccontextmanager
async def _serve(root: Path, store: Store, verifier: Verifier, tsa_url: str) -> AsyncIterator[Callable[[str], Edge]]:
    """`axis serve` as a process (hub + gateway); credentials issued by the operator; GatewayEdge per agency."""
    from axis.gateway.credentials import issue

    _step("`axis serve` on the embedded defaults (a SQLite store, the embedded transport), with its gateway")
    log = root / "serve.log"
    with open(log, "wb") as err:
        process = subprocess.Popen([*_serve_command(root), "--tsa", tsa_url], stdout=subprocess.DEVNULL, stderr=err,
                                   start_new_session=True)
    edges: list[GatewayEdge] = []
    try:
        url = (await _wait_line(process, log, _SERVING, "axis serve")).rstrip(",")
        stdout.print(f"  hub and gateway running (pid {process.pid}); gateway {url}, log {log}")
        _step("The operator issues each agency a gateway credential (stored as a SHA-256; shown once)")
        tokens: dict[str, str] = {}
        for org in AGENCIES:
            issued = issue(store, "agency", org.organ_id, label="axis demo")
            path = root / "agencies" / org.organ_id / "credential"
            private_directory(path.parent)
            private_file(path)
            path.write_text(issued.token + "\n")
            tokens[org.organ_id] = issued.token
            stdout.print(f"  {org.organ_id}  {issued.id}  -> {path}")

        def edge_for(code: str) -> Edge:
            edge = GatewayEdge(url, tokens[code])
            edges.append(edge)
            return edge

        yield edge_for
    finally:
        for edge in edges:
            await edge.aclose()
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


async def _wait_line(process: subprocess.Popen[bytes], log: Path, line: re.Pattern[str], what: str) -> str:
    """The first group of `line` once `what` has logged it (its URL)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = line.search(text)
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{text[-2000:]}")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT:g} s; see {log}")


async def _exchange(root: Path, store: Store, clients: dict[str, AgencyClient], signer: Any) -> bool:
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
    submission = await sender.submit(signed, wait=30)
    intake = (await sender.intake([submission], timeout=30))[submission]
    axis_id = intake.axis_id or ""
    stdout.print(f"  intake: {intake.outcome}, axis id {axis_id or '-'} (the receipt is signed by the hub)")
    stdout.print(f"  DocumentId {document.document_id}; {len(signed):,} signed bytes, PDF {len(pdf):,} bytes")

    _step("A forged copy (signed with another agency's key) is refused with a stable code")
    forged = signer(RECIPIENTS[0].organ_id).sign(packet_to_bytes(document))
    forged_submission = await sender.submit(forged, wait=30)
    refusal = (await sender.intake([forged_submission], timeout=30))[forged_submission]
    stdout.print(f"  intake: {refusal.outcome} {refusal.refusal or ''}")

    _step(f"{BYSTANDER.organ_id} is not a recipient: for it, the document does not exist")
    try:
        await clients[BYSTANDER.organ_id].edge.fetch(axis_id)
        isolated = False
    except EdgeNotFound as exc:
        isolated = True
        stdout.print(f"  {BYSTANDER.organ_id} asks for {axis_id}: {exc.code} ({exc.message})")

    _step("Each recipient's adapter lists its inbox, verifies, stores the exact bytes, and acknowledges with "
          "its own signed delivery receipt")
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
            status_submission = await client.send_status(document.document_id, code, wait=30)
            status = (await client.intake([status_submission], timeout=30))[status_submission]
            stdout.print(f"  {org.organ_id} → {SENDER.organ_id}: status {code.value} {status.outcome}")
    statuses = await sender.pull(root / "agencies" / SENDER.organ_id / "inbox", wait=1.0, max_messages=6)
    stdout.print(f"  {SENDER.organ_id} received {len(statuses)} status packets")
    collected = await sender.collect_receipts()
    stdout.print(f"  {SENDER.organ_id} collected {len(collected)} recipients' signed delivery receipts")

    _step(f"What {SENDER.organ_id} sees of {document.document_id} through the gateway (GET /v1/sent, "
          "/v1/documents/…/receipts)")
    items, _ = await sender.edge.sent()
    states: dict[str, str] = next((item["recipients"] for item in items if item["axis_id"] == axis_id), {})
    table = Table(*(Column(name, no_wrap=True) for name in ("recipient", "state", "receipt", "code", "at (UTC)")))
    timeline = await sender.edge.receipts(axis_id)
    for recipient in sorted(states):
        rows = [r for r in timeline if r.get("recipient") == recipient]
        for i, r in enumerate(rows):
            table.add_row(recipient if i == 0 else "", states[recipient] if i == 0 else "", r["kind"],
                          r.get("code") or "", str(r["created_at"])[11:23])
    stdout.print(table)
    kinds = sorted({r.kind for r in sender.list_receipts()})
    stdout.print(f"  {SENDER.organ_id} holds signed receipts of kinds: {', '.join(kinds)}")

    done = bool(states) and all(state == "done" for state in states.values())
    return done and intake.outcome == "accepted" and refusal.outcome == "refused" and isolated
