"""The agency-facing commands: `axis send`, `axis inbox pull`, `axis status send`.

They drive `adapters.client.AgencyClient`, so they behave exactly as an
agency system using the SDK would (`cli.main` puts `send`, `inbox_app` and
`status_app` on the `axis` app).

Two roads (`open_edges`):
- `--gateway URL` (or AXIS_GATEWAY) with `--credential-file FILE` (or
  AXIS_CREDENTIAL): HTTP to `axis gateway` with the agency's credential, the
  only road the adapter guide documents for agencies. `--gateway-ca` (or
  AXIS_GATEWAY_CA) names the roots the gateway's TLS certificate chains to.
- no gateway: the axis operator's own machine, through the same service the
  gateway runs (`axis.gateway.AgencyService`) on this machine's store and
  broker (`--db`, `--broker`), signing what Axis signs through the signer
  AXIS_SIGNER names, or else with the axis key loaded in this command's own
  process (`LocalSigner`: the operator's machine, where the key file is).

Defaults (gateway, trust roots, CRL, state folders) come from `cli.settings`.
Exit codes: 0 when everything was accepted or stored; 1 when anything was
refused, rejected or not sent (`cli.output.REFUSED`); 3 when nothing was
refused but some submission is still queued, with no outcome yet
(`cli.output.QUEUED`: is the hub running?).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from adapters.client import AgencyClient, Intake, Received, Rejection, summarize_packet
from adapters.edge import Edge, EdgeError, EdgeRefused, EdgeUnauthorized, GatewayEdge, LocalEdge, read_credential
from axis.edxml import StatusCode
from axis.refusals import PacketError, Refusal, RefusalCode
from axis.transport import TransportError
from axis.trust import Signer, Verifier
from cli import settings
from cli.output import QUEUED, REFUSED, fail, progress, refuse, stderr, stdout

BROKER_HELP = ("Without --gateway: amqp://… for RabbitMQ, or embedded (the SQLite transport in ./axis-data). "
               "Env: AXIS_BROKER.")
DB_HELP = "Without --gateway: the hub's database (sqlite:///… or postgresql://…). Env: AXIS_DB."
GATEWAY_HELP = ("The Axis gateway, e.g. https://axis.example.gov.vn:8443. Env: AXIS_GATEWAY. Without it, this "
                "machine's own store and broker are used (the axis operator's machine only).")
CREDENTIAL_HELP = "File holding the agency's gateway credential (never the credential itself). Env: AXIS_CREDENTIAL."
GATEWAY_CA_HELP = "Roots (PEM) for the gateway's TLS certificate. Env: AXIS_GATEWAY_CA; default the system's."
TRUST_HELP = "Trusted root certificates (PEM) for verifying. Env: AXIS_TRUST; default ./axis-data/pki/ca.pem."
CRL_HELP = "Revocation list (PEM). Env: AXIS_CRL; default ./axis-data/pki/crl.pem if it exists."
STATE_HELP = "The agency's state folder (receipts, inbox ledger, journal). Default ./axis-data/agencies/CODE/."
SEND_CHUNK = 500  # files read and submitted per batch, so a folder of any size fits in memory
READ_WHOLE = 1024 * 1024  # a packet over this many bytes is sent from its file, not read into memory
# How long each request of `axis send` lets Axis decide, so its answer carries the intake receipt: one request
# per packet, not a submission and then an outcome. After one undecided answer the rest are only handed over.
ANSWER_WAIT = 10.0

inbox_app = typer.Typer(help="Receive the documents and status packets addressed to an agency.",
                        no_args_is_help=True)
status_app = typer.Typer(help="Send edXML status packets (01 arrived … 06 done, 13/15/16 recall).",
                         no_args_is_help=True)


# ---------------------------------------------------------------- shared pieces

@dataclass(frozen=True)
class Road:
    """How the agency commands reach Axis: the options every one of them takes."""

    gateway: str | None = None
    credential: Path | None = None
    gateway_ca: Path | None = None
    broker: str | None = None
    db: str | None = None


def road_options(gateway: str | None, credential: Path | None, gateway_ca: Path | None, broker: str | None,
                 db: str | None) -> Road:
    chosen = settings.current(gateway=gateway, credential=credential, gateway_ca=gateway_ca)
    return Road(chosen.gateway, chosen.credential, chosen.gateway_ca, broker, db)


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


@contextlib.asynccontextmanager
async def open_edges(road: Road, verifier: Verifier, what: str) -> AsyncIterator[Callable[[str], Edge]]:
    """`edge_for(code)`: the edge to use for an agency, on the gateway or on this machine (see the docstring)."""
    if road.gateway is not None:
        if road.credential is None:
            fail("--gateway needs the agency's credential: --credential-file FILE or AXIS_CREDENTIAL "
                 "(`axis credentials issue --agency CODE` makes one)")
        try:
            token = read_credential(road.credential)
        except (OSError, ValueError) as exc:
            fail(f"cannot read the credential file {road.credential}: {exc}")
        try:
            gateway = GatewayEdge(road.gateway, token, ca_file=road.gateway_ca)
        except (ValueError, OSError) as exc:
            fail(f"--gateway {road.gateway}: {exc}")
        try:
            yield lambda code: gateway
        finally:
            await gateway.aclose()
        return
    async with local_service(road, verifier, what) as service:
        edges: dict[str, Edge] = {}
        yield lambda code: edges.setdefault(code, LocalEdge(service, code))


@contextlib.asynccontextmanager
async def local_service(road: Road, verifier: Verifier, what: str) -> AsyncIterator[Any]:
    """`AgencyService` on this machine's store and broker, signing through the axis's signer (AXIS_SIGNER), or
    with the axis key loaded here (operator's machine)."""
    from sqlalchemy.exc import OperationalError

    from axis.audit.logkeys import seal_store
    from axis.gateway import AgencyService
    from axis.signer import AxisSigner, LocalSigner, SignerClient, SignerError
    from axis.store import MissingDatabase, open_store

    chosen = settings.current(db=road.db)
    hint = "agencies reach Axis through its gateway: give --gateway URL and --credential-file FILE"
    hub_signer: AxisSigner
    try:
        hub_signer = (SignerClient(chosen.signer) if chosen.signer is not None
                      else LocalSigner.from_files(chosen.hub_key, chosen.hub_cert))
    except SignerError as exc:
        fail(f"without --gateway this command works on the axis's own machine and needs the axis key, or its "
             f"signer's socket in AXIS_SIGNER ({exc}); {hint}")
    try:
        store = open_store(chosen.store_url, migrate=False)
    except MissingDatabase as exc:
        fail(f"{exc}; {hint}")
    except OperationalError as exc:
        fail(f"cannot open the database {settings.redact_url(chosen.store_url)}: "
             f"{str(exc.orig).splitlines()[0]}; {hint}")
    try:
        try:
            transport = await settings.open_broker(road.broker, name=f"axis-{what}")
        except (TransportError, ValueError) as exc:
            fail(f"cannot open the broker {settings.redact_url(settings.broker_url(road.broker))!r}: {exc}")
        try:
            try:
                seal_store(store, hub_signer, "agency-local")  # it records deliveries and receipts: sealed
                service = AgencyService(store, transport, signer=hub_signer, verifier=verifier)
            except SignerError as exc:
                fail(f"{exc}; {hint}")
            yield service
        finally:
            await transport.close()
    finally:
        store.close()


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    # typer commands are synchronous; the SDK is async.
    asyncio.run(coroutine)


def _edge_failure(exc: Exception) -> str:
    if isinstance(exc, EdgeUnauthorized):
        return f"the gateway refused the credential ({exc}): check --credential-file"
    return str(exc)


# ---------------------------------------------------------------- axis send

@dataclass
class _Sent:
    file: Path
    sender: str | None = None
    submission: str | None = None
    intake: Intake | None = None
    local_refusal: Refusal | None = None
    refused: EdgeRefused | None = None
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.local_refusal is not None or self.refused is not None:
            return "refused"
        if self.error is not None:
            return "not sent"
        if self.intake is None:
            return "queued"
        return self.intake.outcome

    @property
    def ok(self) -> bool:
        return self.outcome in ("accepted", "duplicate")

    @property
    def axis_id(self) -> str | None:
        return self.intake.axis_id if self.intake is not None else None

    @property
    def detail(self) -> str:
        if self.local_refusal is not None:
            return f"{self.local_refusal.code.label}: {self.local_refusal.detail} (not sent)"
        if self.refused is not None:
            return f"{self.refused.code}: {self.refused.message} (refused by the gateway, not queued)"
        if self.error is not None:
            return self.error
        if self.intake is None or self.intake.outcome == "queued":
            return (f"no answer yet (submission {self.submission}): Axis holds it, but no hub decided it; "
                    "is the hub running? The outcome is collected later (it is in the agency's journal)")
        if self.intake.outcome == "unknown":
            return self.intake.problem or ""
        return self.intake.refusal or self.intake.problem or ""

    def refusal(self) -> dict[str, object] | None:
        if self.local_refusal is not None:
            return self.local_refusal.as_dict()
        if self.refused is not None:
            return _code_dict(self.refused.code, self.refused.message)
        intake = self.intake
        if intake is None or intake.outcome != "refused":
            return None
        if intake.receipt is not None and intake.receipt.refusal_code is not None:
            return {"code": intake.receipt.refusal_code, "name": intake.receipt.refusal_name,
                    "detail": intake.receipt.refusal_detail}
        return _code_dict(intake.code or "", intake.message or "")

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.file), "sender": self.sender, "submission": self.submission,
                "axis_id": self.axis_id, "outcome": self.outcome, "refusal": self.refusal(), "error": self.error}


def _code_dict(code: str, detail: str) -> dict[str, object]:
    number: object = code
    name = None
    if code.startswith("AX") and code[2:].isdigit():
        number = int(code[2:])
        try:
            name = RefusalCode.from_number(int(code[2:])).name
        except KeyError:
            name = None
    return {"code": number, "name": name, "detail": detail}


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
    gateway: str | None = typer.Option(None, "--gateway", help=GATEWAY_HELP),
    credential: Path | None = typer.Option(None, "--credential-file", help=CREDENTIAL_HELP),
    gateway_ca: Path | None = typer.Option(None, "--gateway-ca", help=GATEWAY_CA_HELP),
    broker: str | None = typer.Option(None, "--broker", help=BROKER_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
    wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for the hub's decisions on what was queued "
                                                     "(a hub started meanwhile still answers in time)."),
    trust: Path | None = typer.Option(None, "--trust", help=TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=CRL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Send signed packets to Axis and print each one's outcome: accepted, duplicate, refused, or queued.

    The sender is each packet's From/OrganId. Exit 1 when any packet is refused or
    was not sent; exit 3 when none was refused but some got no decision within
    --wait seconds (queued: Axis holds them; is the hub running?).
    """
    files = _expand(packets)
    if not files:
        fail(f"no packets to send: no *.edxml files in {', '.join(map(str, packets))}")
    road = road_options(gateway, credential, gateway_ca, broker, db)
    verifier = _verifier(trust, crl)
    results = [_Sent(f) for f in files]
    with progress(quiet=as_json) as bar:
        task = bar.add_task("sending", total=len(results))
        _run(_send(results, road, state, wait, verifier, lambda n: bar.advance(task, n)))
    if as_json:
        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            line = f"{r.file}  {r.axis_id or '-'}  {r.outcome}"
            stdout.print(f"{line}  {r.detail}" if r.detail else line, markup=False)
    failed = sum(not r.ok and r.outcome != "queued" for r in results)
    queued = sum(r.outcome == "queued" for r in results)
    if failed:  # refused, or not sent: never counted with the queued ones, which Axis holds
        refused = sum(r.outcome == "refused" for r in results)
        stderr.print(f"{failed} of {len(results)} packets were not accepted ({refused} refused, {failed - refused} "
                     "not sent)", markup=False)
    if queued:
        stderr.print(f"{queued} of {len(results)} packets are queued without an answer after {wait:g} s: Axis holds "
                     "them; is the hub (axis serve) running? `axis send` with more --wait, or the agency's next "
                     "command, collects the answer", markup=False)
    if failed:
        raise typer.Exit(REFUSED)
    if queued:
        raise typer.Exit(QUEUED)


async def _send(results: list[_Sent], road: Road, state: Path | None, wait: float, verifier: Verifier,
                sent_some: Callable[[int], None]) -> None:
    clients: dict[str, AgencyClient] = {}
    answer_wait = min(wait, ANSWER_WAIT)
    async with open_edges(road, verifier, "send") as edge_for:
        try:
            for start in range(0, len(results), SEND_CHUNK):
                chunk = results[start:start + SEND_CHUNK]
                loaded = await asyncio.to_thread(_load_chunk, chunk)
                sent_some(len(chunk) - len(loaded))  # refused here, before sending
                by_sender: dict[str, list[tuple[_Sent, bytes | Path]]] = {}
                for sent, data in loaded:
                    assert sent.sender is not None  # _load_chunk returns only the packets whose sender it read
                    by_sender.setdefault(sent.sender, []).append((sent, data))
                for code, items in by_sender.items():
                    if code not in clients:
                        if state is not None and clients:
                            for sent, _ in items:
                                sent.error = (f"not sent: --state is the folder of {next(iter(clients))}, but "
                                              f"this packet comes from {code}; send it separately or drop --state")
                            continue
                        clients[code] = AgencyClient(code, edge_for(code), verifier=verifier,
                                                     state_dir=settings.agency_state_dir(code, state))
                    done = await clients[code].submit_each([d for _, d in items], wait=answer_wait)
                    sent_some(len(items))
                    if any(d.submission is not None and d.intake is None for d in done):
                        answer_wait = 0.0  # Axis did not decide in time (is the hub running?): collect later
                    for (sent, _), submitted in zip(items, done, strict=True):
                        sent.submission, sent.intake = submitted.submission, submitted.intake
                        error = submitted.error
                        if isinstance(error, Refusal):
                            sent.local_refusal = error
                        elif isinstance(error, EdgeRefused):
                            sent.refused = error
                        elif isinstance(error, EdgeUnauthorized):
                            fail(_edge_failure(error))
                        elif error is not None:
                            sent.error = f"not sent: {_edge_failure(error)}"

            async def collect(code: str, client: AgencyClient) -> None:
                mine = [r for r in results if r.sender == code and r.submission is not None and r.intake is None]
                intakes = await client.intake([r.submission for r in mine if r.submission is not None], wait)
                for r in mine:
                    found = intakes.get(r.submission) if r.submission is not None else None
                    r.intake = found if found is not None and found.outcome != "queued" else None

            await asyncio.gather(*(collect(code, client) for code, client in clients.items()))
        except (EdgeError, TransportError) as exc:
            fail(_edge_failure(exc))
        finally:
            for client in clients.values():
                client.close()


def _load_chunk(chunk: list[_Sent]) -> list[tuple[_Sent, bytes | Path]]:
    loaded: list[tuple[_Sent, bytes | Path]] = []
    for sent in chunk:
        try:
            # A large packet is read from its file when it is summarised and again as it is uploaded, never
            # held whole; a small one is read once.
            data: bytes | Path = sent.file if sent.file.stat().st_size > READ_WHOLE else sent.file.read_bytes()
        except OSError as exc:
            sent.error = f"cannot read: {exc.strerror}"
            continue
        try:
            summary = summarize_packet(data)
        except Refusal as refusal:
            sent.local_refusal = refusal
            continue
        sent.sender = summary.sender
        loaded.append((sent, data))
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
    gateway: str | None = typer.Option(None, "--gateway", help=GATEWAY_HELP),
    credential: Path | None = typer.Option(None, "--credential-file", help=CREDENTIAL_HELP),
    gateway_ca: Path | None = typer.Option(None, "--gateway-ca", help=GATEWAY_CA_HELP),
    trust: Path | None = typer.Option(None, "--trust", help=TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=CRL_HELP),
    broker: str | None = typer.Option(None, "--broker", help=BROKER_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was stored and refused as JSON on stdout, at the "
                                                       "end."),
) -> None:
    """Receive, verify, store and acknowledge an agency's deliveries; one line per stored packet.

    Each packet is stored byte for byte as OUT/<axis-id>.edxml before it is
    acknowledged, and only once however often it is listed. A packet that fails
    verification is tried again, then reported failed to Axis (its sender gets an
    error receipt); the command then exits 1.
    """
    road = road_options(gateway, credential, gateway_ca, broker, db)
    signer, verifier = _signer(key, cert), _verifier(trust, crl)
    rejected: list[Rejection] = []
    received: list[Received] = []
    bar = progress(quiet=as_json)
    task = bar.add_task("received", total=max_messages)

    def stored(item: Received) -> None:
        bar.advance(task)
        if as_json:
            received.append(item)
            return
        if item.duplicate:
            stderr.print(f"{item.axis_id}: already stored as {item.path}; acknowledged again", markup=False)
            return
        what = f"status {item.status_code} about" if item.kind == "status" else "document"
        stdout.print(f"{item.path}  {what} {item.document_id} from {item.sender}", markup=False)
        sys.stdout.flush()

    def refused(rejection: Rejection) -> None:
        bar.advance(task)
        rejected.append(rejection)
        if not as_json:
            stderr.print(f"{rejection.axis_id}: {rejection.reason} ({rejection.action})", markup=False)

    async def run() -> None:
        async with open_edges(road, verifier, f"inbox-{code}") as edge_for:
            try:
                client = AgencyClient(code, edge_for(code), signer=signer, verifier=verifier,
                                      state_dir=settings.agency_state_dir(code, state))
            except ValueError as exc:
                fail(str(exc))
            try:
                await client.pull(out, wait=wait, max_messages=max_messages, on_received=stored,
                                  on_rejected=refused)
            except (EdgeError, TransportError) as exc:
                fail(_edge_failure(exc))
            finally:
                client.close()

    try:
        with bar:
            _run(run())
    except Refusal as refusal:  # an invalid agency code, or a certificate of another agency
        refuse(refusal, as_json=as_json)
    if as_json:
        print(json.dumps({"stored": [{"path": str(r.path), "axis_id": r.axis_id, "kind": r.kind, "sender": r.sender,
                                      "document_id": r.document_id, "status_code": r.status_code, "digest": r.digest,
                                      "duplicate": r.duplicate} for r in received],
                          "refused": [{"axis_id": r.axis_id, "reason": r.reason, "action": r.action}
                                      for r in rejected]}, ensure_ascii=False, indent=2))
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
    wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for the hub's decision."),
    gateway: str | None = typer.Option(None, "--gateway", help=GATEWAY_HELP),
    credential: Path | None = typer.Option(None, "--credential-file", help=CREDENTIAL_HELP),
    gateway_ca: Path | None = typer.Option(None, "--gateway-ca", help=GATEWAY_CA_HELP),
    trust: Path | None = typer.Option(None, "--trust", help=TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=CRL_HELP),
    broker: str | None = typer.Option(None, "--broker", help=BROKER_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    state: Path | None = typer.Option(None, "--state", help=STATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Build, sign and submit a status packet; wait for and print the hub's decision."""
    try:
        status = StatusCode(code.strip().zfill(2))
    except ValueError:
        refuse(PacketError(RefusalCode.INVALID_FIELD,
                           f"status code {code!r} is not one of {', '.join(c.value for c in StatusCode)}"),
               as_json=as_json)
    if status is StatusCode.REFUSED and not (description or "").strip():
        refuse(PacketError(RefusalCode.INVALID_FIELD, "status 02 (refused) needs the reason in --description"),
               as_json=as_json)
    road = road_options(gateway, credential, gateway_ca, broker, db)
    signer, verifier = _signer(key, cert), _verifier(trust, crl)
    result = _Sent(Path("-"), sender=sender)

    async def run() -> None:
        async with open_edges(road, verifier, f"status-{sender}") as edge_for:
            client = AgencyClient(sender, edge_for(sender), signer=signer, verifier=verifier,
                                  state_dir=settings.agency_state_dir(sender, state))
            try:
                result.submission = await client.send_status(document_id, status, description=description,
                                                             inbox=inbox)
                found = (await client.intake([result.submission], wait)).get(result.submission)
                result.intake = found if found is not None and found.outcome != "queued" else None
            except EdgeRefused as exc:
                result.refused = exc
            except (EdgeError, TransportError) as exc:
                fail(f"the status packet may not have been sent: {_edge_failure(exc)}")
            finally:
                client.close()

    try:
        _run(run())
    except Refusal as refusal:
        refuse(refusal, as_json=as_json)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps({"submission": result.submission, "axis_id": result.axis_id, "outcome": result.outcome,
                          "refusal": result.refusal()}, ensure_ascii=False))
    else:
        stdout.print(f"{result.submission or '-'}  {result.axis_id or '-'}  {result.outcome}", markup=False)
    if result.outcome == "queued":
        stderr.print(f"no decision within {wait:g} s: {result.detail}", markup=False)
        raise typer.Exit(QUEUED)
    if not result.ok:
        if not as_json:
            stderr.print(result.detail or f"intake outcome: {result.outcome}", markup=False)
        raise typer.Exit(REFUSED)


__all__ = ["Road", "inbox_app", "local_service", "open_edges", "pull", "road_options", "send",
           "status_app", "status_send"]
