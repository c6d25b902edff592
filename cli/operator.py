"""Operator commands: `axis serve`, `axis agency …`, `axis receipts`."""
from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Column

from axis.edxml import parse_agency_code
from axis.refusals import Refusal
from axis.transport import TransportError
from cli.output import REFUSED, fail, print_json, refuse, stderr, stdout, table
from cli.settings import current, db_url, open_broker, redact_url, seal_as_operator

DbOption = typer.Option(None, "--db", help="Database URL (env AXIS_DB; default sqlite:///axis-data/axis.db).")
BrokerOption = typer.Option(None, "--broker", help="Broker URL (env AXIS_BROKER): 'embedded' (default) or amqp://…")


def _open_store(url: str | None, *, create: bool = False, writes: bool = False):
    """The store; a database that does not exist is an error unless this command sets a hub up (`create`).
    A command that `writes` seals its entries (`seal_as_operator`)."""
    from axis.store import MissingDatabase, open_store
    try:
        store = open_store(db_url(url), create=create)
    except MissingDatabase as exc:
        fail(str(exc))
    if writes:
        seal_as_operator(store)
    return store


# ------------------------------------------------------------------ agency

agency_app = typer.Typer(help="Register, list, suspend and resume agencies.", no_args_is_help=True)


@agency_app.command("add")
def agency_add(
    code: str = typer.Argument(..., help="The agency code (QCVN 102:2016 or QĐ 20/2020)."),
    name: str = typer.Option(..., "--name", help="The agency's name."),
    cert: list[Path] = typer.Option([], "--cert", help="A signing certificate of the agency (PEM); repeatable."),
    parent: str | None = typer.Option(None, "--parent", help="The parent agency's code."),
    db: str | None = DbOption,
) -> None:
    """Register an agency with its certificates."""
    from axis.store import AlreadyExists, NotFound
    from axis.trust.identity import certificate_agency_code
    from axis.trust.keys import load_certificate

    try:
        code = parse_agency_code(code).text
        parent = parse_agency_code(parent).text if parent else None
        pems = []
        for path in cert:
            certificate = load_certificate(path)
            named = certificate_agency_code(certificate)
            if named != code:
                fail(f"{path} is issued to {named}, not {code}")
            pems.append(path.read_text())
    except Refusal as refusal:
        refuse(refusal)
    except OSError as exc:
        fail(f"cannot read certificate: {exc}")
    store = _open_store(db, create=True, writes=True)
    try:
        with store.write() as tx:
            tx.add_agency(code, name, parent)
            fingerprints = [tx.add_certificate(code, pem) for pem in pems]
            tx.audit("operator", "agency-added", code, {"name": name, "parent": parent,
                                                        "certificates": fingerprints})
    except AlreadyExists as exc:
        fail(f"{exc}; add a certificate with `axis cert add {code} CERT.pem`, resume it with `axis agency resume "
             f"{code}`, or use another code")
    except NotFound as exc:
        fail(str(exc))
    finally:
        store.close()
    if not pems:
        # Without a registered certificate every packet it signs is refused (AX404): say how to add one.
        stdout.print(f"registered {code} ({name}) with no certificate: it cannot send until one is registered. "
                     f"Next: axis cert add {code} CERT.pem, then axis credentials issue --agency {code}")
        return
    stdout.print(f"registered {code} ({name}) with {len(pems)} certificate(s); give its document system a "
                 f"credential: axis credentials issue --agency {code}")


@agency_app.command("list")
def agency_list(as_json: bool = typer.Option(False, "--json"), db: str | None = DbOption) -> None:
    """List registered agencies."""
    store = _open_store(db)
    try:
        agencies = store.list_agencies()
        certs = {a.code: len([c for c in store.certificates(a.code) if c.state == "active"]) for a in agencies}
    finally:
        store.close()
    if as_json:
        print_json([{"code": a.code, "name": a.name, "parent": a.parent_code, "state": a.state,
                     "certificates": certs[a.code]} for a in agencies])
        return
    grid = table(Column("code", no_wrap=True), Column("name", overflow="fold"), Column("parent", no_wrap=True),
                 Column("state", no_wrap=True), Column("certificates", no_wrap=True))
    for a in agencies:
        grid.add_row(a.code, a.name, a.parent_code or "", a.state, str(certs[a.code]))
    stdout.print(grid)


def _set_state(code: str, state: str, db: str | None) -> None:
    store = _open_store(db, writes=True)
    try:
        code = parse_agency_code(code).text
        with store.write() as tx:
            if tx.get_agency(code) is None:
                fail(f"{code} is not registered")
            changed = tx.set_agency_state(code, state)
            if changed:
                tx.audit("operator", f"agency-{'suspended' if state == 'suspended' else 'resumed'}", code, {})
    except Refusal as refusal:
        refuse(refusal)
    finally:
        store.close()
    stdout.print(f"{code} is {state}" if changed else f"{code} was already {state}")


@agency_app.command("suspend")
def agency_suspend(code: str, db: str | None = DbOption) -> None:
    """Suspend an agency: it can neither send nor receive until resumed."""
    _set_state(code, "suspended", db)


@agency_app.command("resume")
def agency_resume(code: str, db: str | None = DbOption) -> None:
    """Resume a suspended agency."""
    _set_state(code, "active", db)


# ------------------------------------------------------------ receipts / audit

def receipts(
    document_id: str = typer.Argument(..., help="The edXML DocumentId, or an axis id."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """The timeline of a document: per recipient, every receipt and the delivery state."""
    store = _open_store(db)
    try:
        documents = store.find_by_document_id(document_id)
        if not documents and (found := store.get_document(document_id)) is not None:
            documents = [found]
        documents = [d for d in documents if d.kind == "document"]
        report = []
        for doc in documents:
            states = {d.recipient_code: d for d in store.deliveries(doc.axis_id)}
            timeline = store.timeline(doc.axis_id)
            operator_events = [e for e in store.audit_entries_about(doc.axis_id) if e.action in _OPERATOR_EVENTS]
            report.append({
                "axis_id": doc.axis_id, "document_id": doc.document_id, "sender": doc.sender_code,
                "received_at": doc.received_at, "digest": doc.digest, "size": doc.size,
                "intake": [_receipt_row(r) for r in timeline.get(None, []) if r.kind == "intake"],
                "recipients": [{"recipient": code, "state": delivery.state, "attempts": delivery.attempts,
                                "last_error": delivery.last_error,
                                "receipts": [_receipt_row(r) for r in timeline.get(code, [])],
                                "operator": [{"action": e.action, "at": e.at, "attempt": e.data.get("attempt")}
                                             for e in operator_events if e.data.get("recipient") == code]}
                               for code, delivery in sorted(states.items())]})
    finally:
        store.close()
    if not report:
        fail(f"no document {document_id!r} is known to the axis")
    if as_json:
        print_json(report)
        return
    for doc in report:
        stdout.print(f"{doc['document_id']}\n  axis id {doc['axis_id']}\n  from {doc['sender']}, "
                     f"received {doc['received_at']:%Y-%m-%d %H:%M:%S} UTC, sha256 {doc['digest'][:16]}…")
        grid = table(*(Column(name, no_wrap=True) for name in ("recipient", "state", "receipt", "code", "at (UTC)")),
                     Column("detail", overflow="fold"))
        for rec in doc["recipients"]:
            # The operator's replays and purges between the receipts: why a delivery with an error receipt
            # is waiting again, or failed.
            events = [_operator_row(e) for e in rec["operator"]]
            rows = sorted(rec["receipts"] + events, key=lambda r: r["at"]) or [
                {"kind": "", "code": "", "at": None, "detail": ""}]
            for i, r in enumerate(rows):
                grid.add_row(rec["recipient"] if i == 0 else "", rec["state"] if i == 0 else "", r["kind"],
                             r["code"] or "", f"{r['at']:%H:%M:%S}" if r["at"] else "", r["detail"] or "")
        stdout.print(grid)


_OPERATOR_EVENTS = ("delivery-replayed", "delivery-purged")


def _operator_row(event: dict) -> dict:
    attempt = f", attempt {event['attempt']}" if event["attempt"] else ""
    return {"kind": event["action"].removeprefix("delivery-"), "code": "", "at": event["at"],
            "detail": f"by the operator{attempt}"}


def _receipt_row(receipt) -> dict:
    return {"kind": receipt.kind, "code": receipt.code, "at": receipt.created_at, "detail": receipt.detail,
            "digest": receipt.digest}


# ------------------------------------------------------------------- serve

def serve(
    workers: int | None = typer.Option(None, "--workers", help="Worker processes for intake and verification "
                                                                  "(env AXIS_WORKERS; default: one per core)."),
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
    trust: Path | None = typer.Option(None, "--trust", help="Trusted roots (env AXIS_TRUST; default "
                                                             "axis-data/pki/ca.pem)."),
    crl: Path | None = typer.Option(None, "--crl", help="CRL (env AXIS_CRL; default axis-data/pki/crl.pem)."),
    key: Path | None = typer.Option(None, "--key", help="The axis key, for the signer this command starts (env "
                                                         "AXIS_KEY; default axis-data/hub/AXIS.key.pem)."),
    cert: Path | None = typer.Option(None, "--cert", help="The axis certificate (env AXIS_CERT)."),
    signer: Path | None = typer.Option(None, "--signer", help="The socket of a running `axis signer serve` to sign "
                                                              "through (env AXIS_SIGNER); default: start one."),
    lenient_codes: bool = typer.Option(False, "--lenient-codes", help="Accept shortened QCVN 102 codes."),
    allow_sha1: list[str] = typer.Option([], "--allow-sha1", help="Agency allowed to sign with SHA-1."),
    with_gateway: bool = typer.Option(True, "--gateway/--no-gateway", help="Start the agency gateway too "
                                                                           "(default), or leave it out."),
    gateway_host: str | None = typer.Option(None, "--gateway-host", help="The gateway's address (env "
                                                                         "AXIS_GATEWAY_HOST; default 127.0.0.1)."),
    gateway_port: int | None = typer.Option(None, "--gateway-port", help="The gateway's port (env "
                                                                         "AXIS_GATEWAY_PORT; default 8080; 0: any "
                                                                         "free one)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="The gateway's TLS certificate (env "
                                                                  "AXIS_GATEWAY_TLS_CERT); required off loopback."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Its key (env AXIS_GATEWAY_TLS_KEY)."),
    tsa: str | None = typer.Option(None, "--tsa", help="The RFC 3161 TSA that stamps the audit log's checkpoints "
                                                       "(env AXIS_TSA_URL; default none: kept unstamped)."),
    log_format: str | None = typer.Option(None, "--log-format", help="The log on stderr: text or json (one object "
                                                                    "per line) (env AXIS_LOG_FORMAT)."),
) -> None:
    """Run the hub (intake, verification, routing, receipts) and, unless --no-gateway, the agency gateway.

    The axis key stays in a signer process this command starts first (unless --signer names one), which
    the workers and the gateway ask for signatures; if it dies it is started again. The gateway runs in
    a child process of its own (its event loop is not the hub's) that ends with this command; if it
    dies, this command stops too, so a supervisor restarts the pair.

    The log has a line per intake decision and per delivery state change (at most AXIS_LOG_RATE a second
    per process, then a summary line a second), and a last line saying why the hub stopped.
    """
    from axis.hub import Hub
    from axis.signer import SignerClient
    from cli.signer import open_signer

    chosen = current(workers=workers, db=db, broker=broker, trust=trust, crl=crl, key=key, cert=cert, signer=signer,
                     log_format=log_format)
    settings = hub_settings(workers, trust, crl, lenient_codes, allow_sha1, tsa=tsa)
    gateway_sock = gateway_config = None
    if with_gateway:
        from axis.gateway.server import GatewayConfigError, bind
        from cli.gateway import gateway_config as make_gateway_config

        gateway_config, _ = make_gateway_config(host=gateway_host, port=gateway_port, tls_cert=tls_cert,
                                                tls_key=tls_key, db=db, broker=broker, trust=trust, crl=crl,
                                                key=key, cert=cert, signer=signer, workers=workers,
                                                lenient_codes=lenient_codes, allow_sha1=allow_sha1)
        try:
            gateway_sock = bind(gateway_config.host, gateway_config.port)  # a busy port stops us before the hub
        except GatewayConfigError as exc:
            fail(str(exc))
    from axis.trust import xmldsig
    try:
        engine = xmldsig.default().name  # the workers choose the same way; an impossible choice stops here
    except ValueError as exc:
        fail(f"AXIS_XMLDSIG: {exc}", 2)
    from axis.logs import log_to_stderr

    log_to_stderr(chosen.log, chosen.log_format, chosen.log_rate)
    announce = _announcer(chosen.log_format)
    # Before the workers: they get the signer's socket, never the key.
    try:
        signer_socket, signer_child = open_signer(chosen)
    except BaseException:  # the command ends here (one line): the gateway's port is let go first
        if gateway_sock is not None:
            gateway_sock.close()
        raise
    if gateway_config is not None:
        gateway_config = dataclasses.replace(gateway_config, settings=gateway_config.settings.model_copy(
            update={"signer": signer_socket, "log_format": chosen.log_format}))
    signer_line = (f"signer {signer_socket} (pid {signer_child.pid})" if signer_child is not None
                   else f"signer {signer_socket} (AXIS_SIGNER)")

    why = ["", "the hub ended"]  # the start line once said, and what the last line of the log says

    async def main() -> bool:
        """Run until signalled; True when the gateway or the signer died for good (so the hub was stopped)."""
        from sqlalchemy.exc import OperationalError
        try:
            store = _open_store(db, create=True)
        except OperationalError as exc:  # the server is down or refuses us: say so in one line
            fail(f"cannot open the database {redact_url(chosen.store_url)}: {str(exc.orig).splitlines()[0]}")
        try:
            transport = await open_broker(broker, name="axis-hub")
        except TransportError as exc:
            store.close()
            fail(str(exc))
        hub = Hub(settings, store, transport, signer=SignerClient(signer_socket))
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(hub.run())
        def stop(sig: signal.Signals) -> None:
            why[1] = f"{sig.name} received"
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        child = None
        watcher: asyncio.Task[bool] | None = None
        signer_watch = (asyncio.create_task(_watch_signer(signer_child, task)) if signer_child is not None
                        else None)
        try:
            started = asyncio.create_task(hub.started.wait())
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if task.done():
                await task  # the hub failed while starting: let its error end the command
            gateway_line = "no gateway"
            if gateway_config is not None and gateway_sock is not None:
                from axis.gateway.server import listening_url, start_child

                child = start_child(gateway_config, gateway_sock)
                gateway_line = f"gateway {listening_url(gateway_sock, gateway_config.tls)}"
                watcher = asyncio.create_task(_watch_gateway(child, task))
            # The queues exist: a client may send from now on.
            why[0] = "serving"
            announce(f"axis hub serving: db {redact_url(chosen.store_url)}, broker {redact_url(chosen.broker)}, "
                     f"{hub.pool.workers} worker process(es), XML-DSig engine {engine}, {signer_line}, "
                     f"{gateway_line}")
            await task
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            why[1] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            died = False
            for each, what in ((watcher, "its gateway process ended"),
                               (signer_watch, "its signer cannot be restarted")):
                if each is not None:
                    if each.done() and not each.cancelled() and each.result():
                        died, why[1] = True, what
                    each.cancel()
            if child is not None:
                from axis.gateway.server import stop_child
                await asyncio.to_thread(stop_child, child)
            await transport.close()
            store.close()
        return died

    try:
        gateway_died = asyncio.run(main())
    finally:
        if gateway_sock is not None:
            gateway_sock.close()
        if signer_child is not None:
            signer_child.stop()
        if why[0]:
            announce(f"axis hub stopped: {why[1]}")
    if gateway_died:
        raise typer.Exit(REFUSED)


def _announcer(form: str):
    """How `axis serve` says it started and stopped: a plain line, or a JSON line as the rest of its log."""
    if form == "json":
        import logging

        logger = logging.getLogger("axis.serve")
        # Said whatever AXIS_LOG is, as the text line is: handled directly, past the level check.
        return lambda message: logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message,
                                                               (), None))
    return lambda message: stderr.print(message, markup=False)


async def _watch_signer(child, hub_task: asyncio.Task) -> bool:
    """Restart the signer whenever it dies; stop the hub when it cannot be (True then)."""
    from axis.signer import SignerStartError

    try:
        await child.watch()
    except SignerStartError as exc:
        if hub_task.done():
            return False
        stderr.print(f"[bold red]error[/]: the signer cannot be restarted: {escape(str(exc))}; stopping the hub",
                     markup=True)
        hub_task.cancel()
        return True
    return False


async def _watch_gateway(process, hub_task: asyncio.Task) -> bool:
    """Stop the hub when its gateway dies (a supervisor then restarts the pair); True when it did."""
    while process.is_alive():
        await asyncio.sleep(0.5)
    if hub_task.done():
        return False
    stderr.print(f"[bold red]error[/]: the gateway process ended (exit code {process.exitcode}); stopping the hub",
                 markup=True)
    hub_task.cancel()
    return True


def check_trust(roots: Path, crl: Path | None) -> None:
    """Load the trusted roots and the CRL once here, so that a file that cannot be used stops the command in one
    line (KeyFileError) before it starts processes that would each fail on it."""
    from axis.trust import Verifier

    Verifier.from_files(roots, crl)


def hub_settings(workers, trust, crl, lenient_codes=False, allow_sha1=(), *, tsa=None):
    """What the hub's workers decide with, and how it checkpoints the audit log; it names no key (the hub
    and its workers sign through the signer)."""
    from axis.hub import HubSettings, TrustSettings
    from cli.retention import retention_policy
    chosen = current(workers=workers, trust=trust, crl=crl, tsa_url=tsa)
    if not chosen.trust_roots.exists():
        fail(f"trusted roots not found at {chosen.trust_roots}. Create them with `axis pki init {chosen.pki_dir}` "
             f"and `axis pki issue AXIS --pki {chosen.pki_dir} --out {chosen.hub_dir}`, or pass --trust.")
    check_trust(chosen.trust_roots, chosen.revocations)
    return HubSettings(trust=TrustSettings(trust_roots=chosen.trust_roots, crl=chosen.revocations,
                                           allow_sha1_for=frozenset(allow_sha1), lenient_codes=lenient_codes,
                                           max_packet_bytes=chosen.max_packet_bytes), workers=chosen.workers,
                       checkpoint_entries=chosen.checkpoint_entries, checkpoint_seconds=chosen.checkpoint_seconds,
                       tsa_url=chosen.tsa_url, retention=retention_policy(chosen))
