"""The agency-facing commands: `axis send`, `axis inbox pull`, `axis status send`.

They drive `adapters.client.AgencyClient`, so they behave exactly as an
agency system using the SDK would. Mount them with `mount(app)`:

    app.command("send")(agency_side.send)
    app.add_typer(agency_side.inbox_app, name="inbox")
    app.add_typer(agency_side.status_app, name="status")

Defaults (broker, trust roots, CRL, state folders) come from `cli.settings`.
Exit codes: 0 when everything was accepted or stored, 1 when anything was
refused, rejected or left without a receipt (`cli.output.REFUSED`).
"""
from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from adapters.client import AgencyClient, Received, Rejection, describe_refusal, receipt_outcome, summarize_packet
from axis.edxml import StatusCode
from axis.receipt import Receipt
from axis.refusals import PacketError, Refusal, RefusalCode
from axis.transport import Transport, TransportError, UnroutableError
from axis.trust import Signer, Verifier
from cli import settings
from cli.output import REFUSED, fail, refuse, stderr, stdout

BROKER_HELP = "amqp://… for RabbitMQ, or embedded (the SQLite transport in ./axis-data). Env: AXIS_BROKER."
TRUST_HELP = "Trusted root certificates (PEM) for verifying. Env: AXIS_TRUST; default ./axis-data/pki/ca.pem."
CRL_HELP = "Revocation list (PEM). Env: AXIS_CRL; default ./axis-data/pki/crl.pem if it exists."
STATE_HELP = "The agency's state folder (receipts, inbox ledger). Default ./axis-data/agencies/CODE/."
SEND_CHUNK = 500  # files read and published per batch, so a folder of any size fits in memory

inbox_app = typer.Typer(help="Receive the documents and status packets addressed to an agency.",
                        no_args_is_help=True)
status_app = typer.Typer(help="Send edXML status packets (01 arrived … 06 done, 13/15/16 recall).",
                         no_args_is_help=True)


def mount(app: typer.Typer) -> None:
    """Add `send`, `inbox pull` and `status send` to the main `axis` app."""
    app.command("send")(send)
    app.add_typer(inbox_app, name="inbox")
    app.add_typer(status_app, name="status")


# ---------------------------------------------------------------- shared pieces

def _verifier(trust: Path | None, crl: Path | None) -> Verifier:
    roots, revocations = settings.trust_paths(trust, crl)
    if not roots.is_file():
        fail(f"no trusted roots at {roots}: pass --trust CA.pem or set AXIS_TRUST "
             "(receipts and packets are verified against them)")
    try:
        return Verifier.from_files(roots, revocations)
    except (ValueError, OSError) as exc:
        fail(f"cannot load the trust roots {roots} / CRL {revocations}: {exc}")


def _signer(key: Path, cert: Path) -> Signer:
    try:
        return Signer.from_files(key, cert)
    except (ValueError, OSError) as exc:
        fail(f"cannot load the signing key {key} and certificate {cert}: {exc}")


async def _open(broker: str | None, what: str) -> Transport:
    try:
        return await settings.open_broker(broker, name=f"axis-{what}")
    except (TransportError, ValueError) as exc:
        fail(f"cannot open the broker {settings.broker_url(broker)!r}: {exc}")


def _run(coroutine) -> None:
    # typer commands are synchronous; the SDK is async.
    asyncio.run(coroutine)


def _refusal_text(receipt: Receipt) -> str:
    return describe_refusal(receipt) or ""


# ---------------------------------------------------------------- axis send

@dataclass
class _Sent:
    file: Path
    sender: str | None = None
    submission: str | None = None
    receipt: Receipt | None = None
    local_refusal: Refusal | None = None
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.local_refusal is not None:
            return "refused"
        if self.error is not None:
            return "not sent"
        if self.receipt is None:
            return "no receipt"
        return receipt_outcome(self.receipt, self.submission)

    @property
    def ok(self) -> bool:
        return self.outcome in ("accepted", "duplicate")

    @property
    def detail(self) -> str:
        if self.local_refusal is not None:
            return f"{self.local_refusal.code.label}: {self.local_refusal.detail} (not sent)"
        if self.error is not None:
            return self.error
        if self.receipt is None:
            return f"no intake receipt in time (submission {self.submission})"
        return _refusal_text(self.receipt)

    def as_dict(self) -> dict[str, object]:
        refusal = None
        if self.local_refusal is not None:
            refusal = self.local_refusal.as_dict()
        elif self.receipt is not None and self.receipt.refusal_code is not None:
            refusal = {"code": self.receipt.refusal_code, "name": self.receipt.refusal_name,
                       "detail": self.receipt.refusal_detail}
        return {"file": str(self.file), "sender": self.sender, "submission": self.submission,
                "axis_id": self.receipt.axis_id if self.receipt else None, "outcome": self.outcome,
                "refusal": refusal, "error": self.error}


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.edxml") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            fail(f"{path} is neither a file nor a folder")
    return files


def send(
    packets: list[Path] = typer.Argument(..., help="Signed packets: .edxml files, or folders of them."),
    broker: str | None = typer.Option(None, "--broker", help=BROKER_HELP),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
    wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for the intake receipts."),
    trust: Path | None = typer.Option(None, "--trust", help=TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=CRL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Send signed packets to Axis and print each one's intake receipt.

    The sender is each packet's From/OrganId. Exit 1 when any packet is refused
    or gets no intake receipt within --wait seconds.
    """
    files = _expand(packets)
    if not files:
        fail("no packets to send (folders are searched for *.edxml)")
    verifier = _verifier(trust, crl)
    results = [_Sent(f) for f in files]
    _run(_send(results, broker, state, wait, verifier))
    if as_json:
        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            axis_id = r.receipt.axis_id if r.receipt is not None and r.receipt.axis_id else "-"
            line = f"{r.file}  {axis_id}  {r.outcome}"
            stdout.print(f"{line}  {r.detail}" if r.detail else line, markup=False)
    failed = sum(not r.ok for r in results)
    if failed:
        stderr.print(f"{failed} of {len(results)} packets were not accepted", markup=False)
        raise typer.Exit(REFUSED)


async def _send(results: list[_Sent], broker: str | None, state: Path | None, wait: float,
                verifier: Verifier) -> None:
    transport = await _open(broker, "send")
    clients: dict[str, AgencyClient] = {}
    try:
        for start in range(0, len(results), SEND_CHUNK):
            chunk = results[start:start + SEND_CHUNK]
            loaded = await asyncio.to_thread(_load_chunk, chunk)
            by_sender: dict[str, list[tuple[_Sent, bytes, int]]] = {}
            for sent, data, priority in loaded:
                assert sent.sender is not None  # _load_chunk returns only the packets whose sender it read
                by_sender.setdefault(sent.sender, []).append((sent, data, priority))
            for code, items in by_sender.items():
                if code not in clients:
                    if state is not None and clients:
                        for sent, _, _ in items:
                            sent.error = (f"not sent: --state is the folder of {next(iter(clients))}, but this "
                                          f"packet comes from {code}; send it separately or drop --state")
                        continue
                    clients[code] = AgencyClient(code, transport, verifier=verifier,
                                                 state_dir=settings.agency_state_dir(code, state))
                try:
                    ids = await clients[code].submit_many([d for _, d, _ in items], priorities=[p for *_, p in items])
                except UnroutableError as exc:
                    fail(str(exc))
                except TransportError as exc:
                    for sent, _, _ in items:
                        sent.error = f"not confirmed by the broker: {exc}"
                    continue
                for (sent, _, _), submission in zip(items, ids, strict=True):
                    sent.submission = submission

        async def collect(code: str, client: AgencyClient) -> None:
            mine = [r for r in results if r.sender == code and r.submission is not None]
            receipts = await client.wait_for_intake([r.submission for r in mine if r.submission is not None], wait)
            for r in mine:
                r.receipt = receipts.get(r.submission) if r.submission is not None else None

        try:
            await asyncio.gather(*(collect(code, client) for code, client in clients.items()))
        except UnroutableError as exc:
            fail(f"{exc}: the hub creates an agency's receipts queue when the agency is registered")
    finally:
        for client in clients.values():
            client.close()
        await transport.close()


def _load_chunk(chunk: list[_Sent]) -> list[tuple[_Sent, bytes, int]]:
    loaded = []
    for sent in chunk:
        try:
            data = sent.file.read_bytes()
        except OSError as exc:
            sent.error = f"cannot read: {exc.strerror}"
            continue
        try:
            summary = summarize_packet(data)
        except Refusal as refusal:
            sent.local_refusal = refusal
            continue
        sent.sender = summary.sender
        loaded.append((sent, data, summary.priority))
    return loaded


# ---------------------------------------------------------------- axis inbox pull

@inbox_app.command("pull")
def pull(
    code: str = typer.Argument(..., help="The receiving agency's code, e.g. 000.00.00.H41."),
    key: Path = typer.Option(..., "--key", help="The agency's private key (PEM), to sign delivery receipts."),
    cert: Path = typer.Option(..., "--cert", help="The agency's certificate (PEM)."),
    out: Path = typer.Option(..., "--out", help="Folder that receives <axis-id>.edxml files."),
    wait: float = typer.Option(2.0, "--wait", help="Stop when nothing arrived for this many seconds."),
    max_messages: int | None = typer.Option(None, "--max", help="Stop after this many deliveries."),
    trust: Path | None = typer.Option(None, "--trust", help=TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=CRL_HELP),
    broker: str | None = typer.Option(None, "--broker", help=BROKER_HELP),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
) -> None:
    """Receive, verify, store and acknowledge an agency's deliveries; one line per stored packet.

    Each packet is stored byte for byte as OUT/<axis-id>.edxml before it is
    acknowledged, and only once however often it is delivered. Packets that fail
    verification are left to the broker's retries (and dead-letter queue); the
    command then exits 1.
    """
    signer, verifier = _signer(key, cert), _verifier(trust, crl)
    rejected: list[Rejection] = []

    def stored(item: Received) -> None:
        if item.duplicate:
            stderr.print(f"{item.axis_id}: already stored as {item.path}; delivery receipt sent again",
                         markup=False)
            return
        what = f"status {item.status_code} about" if item.kind == "status" else "document"
        stdout.print(f"{item.path}  {what} {item.document_id} from {item.sender}", markup=False)
        sys.stdout.flush()

    def refused(rejection: Rejection) -> None:
        rejected.append(rejection)
        stderr.print(f"{rejection.message_id}: {rejection.reason} ({rejection.action})", markup=False)

    async def run() -> None:
        transport = await _open(broker, f"inbox-{code}")
        try:
            try:
                client = AgencyClient(code, transport, signer=signer, verifier=verifier,
                                      state_dir=settings.agency_state_dir(code, state))
            except ValueError as exc:
                fail(str(exc))
            try:
                await client.pull(out, wait=wait, max_messages=max_messages, on_received=stored,
                                       on_rejected=refused)
            except UnroutableError:
                fail(f"the broker has no inbox queue {code!r}: the hub creates it when the agency is "
                     "registered on the axis (axis agency add)")
            finally:
                client.close()
        finally:
            await transport.close()

    try:
        _run(run())
    except Refusal as refusal:  # an invalid agency code
        refuse(refusal)
    if rejected:
        raise typer.Exit(REFUSED)


# ---------------------------------------------------------------- axis status send

@status_app.command("send")
def status_send(
    document_id: str = typer.Argument(..., help="The DocumentId the status is about "
                                                "(<issuer>,<yyyy/MM/dd>,<number>/<notation>)."),
    sender: str = typer.Option(..., "--from", help="The agency sending the status (its code)."),
    code: str = typer.Option(..., "--code", help="Status code: 01 arrived, 02 refused, 03 accepted, 04 assigned, "
                                                 "05 in progress, 06 done, 13 recall request, 15/16 agree/refuse."),
    description: str | None = typer.Option(None, "--description", help="Free text; required with 02 (the reason)."),
    key: Path = typer.Option(..., "--key", help="The sending agency's private key (PEM)."),
    cert: Path = typer.Option(..., "--cert", help="The sending agency's certificate (PEM)."),
    inbox: Path | None = typer.Option(None, "--inbox", help="Folder of received documents, to look the id up in."),
    wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for the intake receipt."),
    trust: Path | None = typer.Option(None, "--trust", help=TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=CRL_HELP),
    broker: str | None = typer.Option(None, "--broker", help=BROKER_HELP),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Build, sign and submit a status packet; wait for and print its intake receipt."""
    try:
        status = StatusCode(code.strip().zfill(2))
    except ValueError:
        refuse(PacketError(RefusalCode.INVALID_FIELD,
                           f"status code {code!r} is not one of {', '.join(c.value for c in StatusCode)}"),
               as_json=as_json)
    if status is StatusCode.REFUSED and not (description or "").strip():
        refuse(PacketError(RefusalCode.INVALID_FIELD, "status 02 (refused) needs the reason in --description"),
               as_json=as_json)
    signer, verifier = _signer(key, cert), _verifier(trust, crl)
    outcome: dict[str, object] = {}

    async def run() -> None:
        transport = await _open(broker, f"status-{sender}")
        try:
            client = AgencyClient(sender, transport, signer=signer, verifier=verifier,
                                  state_dir=settings.agency_state_dir(sender, state))
            try:
                submission = await client.send_status(document_id, status, description=description,
                                                      inbox=inbox)
                outcome["submission"] = submission
                outcome["receipt"] = (await client.wait_for_intake([submission], wait)).get(submission)
            finally:
                client.close()
        finally:
            await transport.close()

    try:
        _run(run())
    except Refusal as refusal:
        refuse(refusal, as_json=as_json)
    except ValueError as exc:
        fail(str(exc))
    except UnroutableError as exc:
        fail(str(exc))
    except TransportError as exc:
        fail(f"the status packet may not have been sent: {exc}")
    submission, receipt = outcome["submission"], outcome["receipt"]
    if receipt is None:
        fail(f"no intake receipt for submission {submission} within {wait:g} s; it may still come "
             f"(see {settings.agency_state_dir(sender, state) / 'receipts'})")
    assert isinstance(receipt, Receipt)
    result = receipt_outcome(receipt, str(submission))
    if as_json:
        print(json.dumps({"submission": submission, "axis_id": receipt.axis_id, "outcome": result,
                          "refusal": None if receipt.refusal_code is None else {
                              "code": receipt.refusal_code, "name": receipt.refusal_name,
                              "detail": receipt.refusal_detail}}, ensure_ascii=False))
    else:
        stdout.print(f"{submission}  {receipt.axis_id or '-'}  {result}", markup=False)
    if receipt.refusal_code is not None or result not in ("accepted", "duplicate"):
        if not as_json:
            stderr.print(_refusal_text(receipt) or f"intake outcome: {result}", markup=False)
        raise typer.Exit(REFUSED)


__all__ = ["inbox_app", "mount", "pull", "send", "status_app", "status_send"]
