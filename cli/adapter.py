"""`axis adapter folder`: the watched-folder adapter (`adapters.folder`) as a command.

    axis adapter folder --agency CODE --root DIR --key KEY --cert CERT \\
        --gateway https://axis.example.gov.vn:8443 --credential-file /etc/axis/CODE.credential

Round after round until SIGINT or SIGTERM (or once, with `--once`): send
`DIR/outbox/*.edxml` (to `sent/`, or to `failed/` with `<name>.reason.txt`),
take what waits for the agency into `DIR/inbox/`, collect receipts into
`DIR/state/receipts/` (a packet the hub refused moves from `sent/` to
`failed/` with its refusal). One line per event on stdout:

    sent     NAME  SUBMISSION
    failed   NAME  REASON
    received PATH  document|status ... from SENDER
    rejected AXIS-ID  REASON (retry|fail)

Exit 0 when stopped by a signal or after `--once` with nothing failed; 1 when
`--once` met a refused packet or a delivery that failed verification.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import typer

from adapters.edge import EdgeError, EdgeUnauthorized
from adapters.folder import FolderAdapter, Round
from axis.refusals import Refusal
from axis.transport import TransportError
from cli import agency_side
from cli.output import REFUSED, fail, refuse, stderr, stdout

app = typer.Typer(help="Adapters for agency systems that exchange files rather than call the SDK.",
                  no_args_is_help=True)


def _report(result: Round) -> int:
    """Print one round's events; how many were failures."""
    failures = 0
    for item in result.sent:
        if item.submission is not None and item.reason is None:
            stdout.print(f"sent      {item.original.name}  {item.submission}", markup=False)
        else:
            failures += 1
            stdout.print(f"failed    {item.original.name}  {item.reason}", markup=False)
    for item in result.refused:
        failures += 1
        stdout.print(f"failed    {item.path.name}  {item.reason}", markup=False)
    for got in result.received:
        if got.duplicate:
            continue
        what = f"status {got.status_code} about" if got.kind == "status" else "document"
        stdout.print(f"received  {got.path}  {what} {got.document_id} from {got.sender}", markup=False)
    for rejection in result.rejected:
        failures += 1
        stdout.print(f"rejected  {rejection.axis_id}  {rejection.reason} ({rejection.action})", markup=False)
    sys.stdout.flush()
    return failures


@app.command("folder")
def folder(
    agency: str = typer.Option(..., "--agency", help="The agency's code, e.g. 000.00.00.H41."),
    root: Path = typer.Option(..., "--root", help="The folder holding outbox/, sent/, failed/, inbox/, state/."),
    key: Path = typer.Option(..., "--key", help="The agency's private key (PEM), to sign delivery receipts."),
    cert: Path = typer.Option(..., "--cert", help="The agency's certificate (PEM)."),
    gateway: str | None = typer.Option(None, "--gateway", help=agency_side.GATEWAY_HELP),
    credential: Path | None = typer.Option(None, "--credential-file", help=agency_side.CREDENTIAL_HELP),
    gateway_ca: Path | None = typer.Option(None, "--gateway-ca", help=agency_side.GATEWAY_CA_HELP),
    trust: Path | None = typer.Option(None, "--trust", help=agency_side.TRUST_HELP),
    crl: Path | None = typer.Option(None, "--crl", help=agency_side.CRL_HELP),
    broker: str | None = typer.Option(None, "--broker", help=agency_side.BROKER_HELP),
    db: str | None = typer.Option(None, "--db", help=agency_side.DB_HELP),
    wait: float = typer.Option(5.0, "--wait", help="Seconds each round waits for deliveries (long-poll)."),
    once: bool = typer.Option(False, "--once", help="One round, then exit."),
) -> None:
    """Serve an agency's folders: outbox/ to Axis, Axis to inbox/, receipts to state/receipts/."""
    road = agency_side.road_options(gateway, credential, gateway_ca, broker, db)
    signer, verifier = agency_side._signer(key, cert), agency_side._verifier(trust, crl)
    failures = 0

    async def run() -> None:
        nonlocal failures
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with agency_side.open_edges(road, verifier, f"folder-{agency}") as edge_for:
            try:
                adapter = FolderAdapter(agency, edge_for(agency), root, signer=signer, verifier=verifier)
            except ValueError as exc:
                fail(str(exc))
            stderr.print(f"axis adapter folder: {adapter.client.code} in {root} via "
                         f"{road.gateway or 'this machine (no gateway)'}", markup=False)
            try:
                while not stop.is_set():
                    try:
                        failures += _report(await adapter.run_once(wait=wait))
                    except EdgeUnauthorized as exc:  # waiting does not make a revoked credential valid
                        fail(agency_side._edge_failure(exc))
                    except (EdgeError, TransportError) as exc:
                        if once:
                            fail(agency_side._edge_failure(exc))
                        # Axis is unreachable beyond the retry policy's patience: keep the files, try again.
                        stderr.print(f"Axis unreachable ({agency_side._edge_failure(exc)}); trying again",
                                     markup=False)
                        await asyncio.sleep(min(wait, 5.0) or 1.0)
                    if once:
                        break
            finally:
                adapter.close()

    try:
        asyncio.run(run())
    except Refusal as refusal:  # an invalid code, or the certificate of another agency
        refuse(refusal)
    if once and failures:
        raise typer.Exit(REFUSED)


__all__ = ["app", "folder"]
