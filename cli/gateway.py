"""`axis gateway`: the agencies' HTTP edge (FastAPI + uvicorn), on its own; `axis serve` starts one too.

Plain HTTP only on a loopback address (127.0.0.1, ::1, localhost); any other address needs
`--tls-cert` and `--tls-key`, or the command refuses to start. The gateway holds the store's and the
broker's credentials; the axis key stays in a signer process it starts first (or the running one
`--signer` names), which it and its intake workers ask for signatures (the receipts of intake, and
the delivery receipt of an ack that carries none); agencies hold only their bearer credential
(`axis credentials issue`).
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import typer

from cli.operator import BrokerOption, DbOption, check_trust, hub_settings
from cli.output import fail, stderr
from cli.settings import current, redact_url

HostOption = typer.Option(None, "--host", help="Listen on this address (env AXIS_GATEWAY_HOST; default 127.0.0.1). "
                                               "Not loopback: --tls-cert and --tls-key are required.")
PortOption = typer.Option(None, "--port", help="TCP port (env AXIS_GATEWAY_PORT; default 8080; 0: any free one).")
TlsCertOption = typer.Option(None, "--tls-cert", help="TLS server certificate, PEM, leaf first (env "
                                                      "AXIS_GATEWAY_TLS_CERT; `axis pki tls HOSTNAME` issues one).")
TlsKeyOption = typer.Option(None, "--tls-key", help="Its key, PEM (env AXIS_GATEWAY_TLS_KEY).")


def gateway_config(*, host: str | None, port: int | None, tls_cert: Path | None, tls_key: Path | None,
                   db: str | None, broker: str | None, trust: Path | None, crl: Path | None, key: Path | None,
                   cert: Path | None, signer: Path | None = None, workers: int | None = None,
                   lenient_codes: bool = False, allow_sha1: Sequence[str] = ()):
    """The gateway's configuration from flags and settings; a bad one ends the command in one line. Its
    settings name the signer's socket once the command has one (`cli.signer.open_signer`)."""
    from axis.gateway.server import GatewayConfig, check_listen

    chosen = current(gateway_host=host, gateway_port=port, gateway_tls_cert=tls_cert, gateway_tls_key=tls_key,
                     db=db, broker=broker, trust=trust, crl=crl, key=key, cert=cert, signer=signer, workers=workers)
    refusal = check_listen(chosen.gateway_host, chosen.gateway_tls_cert, chosen.gateway_tls_key)
    if refusal:
        fail(refusal, 2)
    if not chosen.trust_roots.exists():
        fail(f"trusted roots not found at {chosen.trust_roots}: the gateway verifies delivery receipts. Create "
             f"them with `axis pki init {chosen.pki_dir}` and `axis pki issue AXIS --pki {chosen.pki_dir} --out "
             f"{chosen.hub_dir}`, or pass --trust.")
    check_trust(chosen.trust_roots, chosen.revocations)
    # The gateway decides with exactly the hubs' policy (`axis serve` passes its own flags here).
    intake = (hub_settings(workers, trust, crl, lenient_codes, allow_sha1).trust
              if chosen.intake_at == "gateway" else None)
    return GatewayConfig(chosen, intake), chosen


def gateway(
    host: str | None = HostOption,
    port: int | None = PortOption,
    tls_cert: Path | None = TlsCertOption,
    tls_key: Path | None = TlsKeyOption,
    db: str | None = DbOption,
    broker: str | None = BrokerOption,
    trust: Path | None = typer.Option(None, "--trust", help="Trusted roots (env AXIS_TRUST)."),
    crl: Path | None = typer.Option(None, "--crl", help="CRL (env AXIS_CRL)."),
    key: Path | None = typer.Option(None, "--key", help="The axis key, for the signer this command starts (env "
                                                        "AXIS_KEY)."),
    cert: Path | None = typer.Option(None, "--cert", help="The axis certificate (env AXIS_CERT)."),
    signer: Path | None = typer.Option(None, "--signer", help="The socket of a running `axis signer serve` to sign "
                                                              "through (env AXIS_SIGNER); default: start one."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes deciding submissions (env "
                                                                  "AXIS_WORKERS; default: one per core)."),
    lenient_codes: bool = typer.Option(False, "--lenient-codes", help="Accept shortened QCVN 102 codes (as the "
                                                                      "hubs' `axis serve --lenient-codes`)."),
    allow_sha1: list[str] = typer.Option([], "--allow-sha1", help="Agency allowed to sign with SHA-1 (as the "
                                                                  "hubs' `axis serve --allow-sha1`)."),
) -> None:
    """Run the agency gateway (HTTP API, /docs, /metrics) in front of the store and the broker.

    It decides submissions where they arrive, in its own worker processes, unless AXIS_INTAKE_AT=hub. The
    axis key stays in a signer process it starts first (unless --signer names one), restarted if it dies.
    """
    from sqlalchemy.exc import OperationalError

    from axis.gateway.server import GatewayConfigError, bind, listening_url, run, serve_gateway
    from axis.signer import SignerError
    from axis.store import MissingDatabase
    from axis.transport import TransportError
    from cli.signer import open_signer

    config, chosen = gateway_config(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, db=db, broker=broker,
                                    trust=trust, crl=crl, key=key, cert=cert, signer=signer, workers=workers,
                                    lenient_codes=lenient_codes, allow_sha1=allow_sha1)
    from axis.logs import log_to_stderr

    log_to_stderr(chosen.log, chosen.log_format, chosen.log_rate)
    try:
        sock = bind(config.host, config.port)
    except GatewayConfigError as exc:
        fail(str(exc))
    try:
        signer_socket, signer_child = open_signer(chosen)
    except BaseException:  # the command ends here (one line): the port is let go first
        sock.close()
        raise
    config = dataclasses.replace(config, settings=config.settings.model_copy(update={"signer": signer_socket}))
    stderr.print(f"axis gateway: db {redact_url(chosen.store_url)}, broker {redact_url(chosen.broker)}, "
                 f"signer {signer_socket}, {'TLS' if config.tls else 'plain HTTP (loopback)'}, "
                 f"{listening_url(sock, config.tls)}/docs")

    async def main() -> None:
        """The gateway, and its signer restarted whenever it dies; SignerStartError when it cannot be."""
        serving = asyncio.create_task(serve_gateway(config, sock))
        if signer_child is None:
            await serving
            return
        watching = asyncio.create_task(signer_child.watch())
        await asyncio.wait({serving, watching}, return_when=asyncio.FIRST_COMPLETED)
        if watching.done():
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await watching  # its error ends the command
        watching.cancel()
        await serving
    try:
        run(main())
    except MissingDatabase as exc:
        fail(f"{exc} (start `axis serve` once, or `axis agency add`, to create it)")
    except OperationalError as exc:  # the database server is down or refuses us: one line
        fail(f"cannot open the database {redact_url(chosen.store_url)}: {str(exc.orig).splitlines()[0]}")
    except TransportError as exc:
        fail(f"cannot reach the broker {redact_url(chosen.broker)}: {exc}")
    except SignerError as exc:
        fail(f"the gateway stops: {exc}")
    except (OSError, ValueError) as exc:  # the trusted roots, the CRL
        fail(f"cannot start the gateway: {exc}")
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if signer_child is not None:
            signer_child.stop()
