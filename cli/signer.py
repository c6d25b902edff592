"""`axis signer serve`: the axis key's keeper on its own; and how `axis serve` / `axis gateway` get a signer.

`open_signer(chosen)` is the one way a command that signs with the axis key gets its signer: the one
`AXIS_SIGNER` (`--signer`) names, checked to answer and to sign as `AXIS`, or else a signer process
started as the command's child (`axis.signer.SignerChild`), which the command stops when it ends and
restarts if it dies (`SignerChild.watch`). Everything else in the command gets the socket, never the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from axis import wire
from axis.settings import Settings
from cli.output import fail, stderr
from cli.settings import current

if TYPE_CHECKING:
    from axis.signer import SignerChild

app = typer.Typer(help="The axis key's keeper: the one process that holds the axis key and signs with it.",
                  no_args_is_help=True)


def _need_key(chosen: Settings) -> None:
    for what, path in (("axis key", chosen.hub_key), ("axis certificate", chosen.hub_cert)):
        if not path.exists():
            fail(f"{what} not found at {path}. Create them with `axis pki init {chosen.pki_dir}` and `axis pki issue "
                 f"AXIS --pki {chosen.pki_dir} --out {chosen.hub_dir}`, pass --key/--cert, or give --signer SOCKET "
                 f"(AXIS_SIGNER) of a running `axis signer serve`.")


def processes(chosen: Settings) -> int:
    return chosen.signer_processes or os.cpu_count() or 1


def open_signer(chosen: Settings) -> tuple[Path, SignerChild | None]:
    """(socket, the SignerChild this command started or None): see the module docstring. A signer that
    cannot be had ends the command in one line."""
    from cryptography import x509

    from axis.refusals import Refusal
    from axis.signer import SignerChild, SignerClient, SignerError
    from axis.trust import certificate_agency_code

    child = None
    if chosen.signer is None:
        _need_key(chosen)
        child = SignerChild(chosen.hub_key, chosen.hub_cert, processes=processes(chosen), log_level=chosen.log)
        try:
            child.start()
        except SignerError as exc:
            child.stop()
            fail(str(exc))
    socket = child.socket if child is not None else chosen.signer
    assert socket is not None
    try:
        certificate = x509.load_pem_x509_certificate(SignerClient(socket).certificates()[0])
        code = certificate_agency_code(certificate)
    except SignerError as exc:
        if child is not None:
            child.stop()
        fail(f"{exc} (AXIS_SIGNER / --signer)")
    except (Refusal, ValueError):
        code = "a certificate that names no agency"
    if code != wire.HUB_IDENTITY:
        if child is not None:
            child.stop()
        fail(f"the signer at {socket} signs as {code}, not as the axis ({wire.HUB_IDENTITY}): give it the axis's "
             "key and certificate")
    return socket, child


@app.command("serve")
def serve(
    socket: Path | None = typer.Option(None, "--socket", help="Listen on this Unix socket (env AXIS_SIGNER; default "
                                                              "axis-data/signer/signer.sock). Its folder must be "
                                                              "this user's only (created 0700)."),
    key: Path | None = typer.Option(None, "--key", help="The axis key (env AXIS_KEY; default "
                                                        "axis-data/hub/AXIS.key.pem)."),
    cert: Path | None = typer.Option(None, "--cert", help="The axis certificate, then its chain (env AXIS_CERT)."),
    signing_processes: int | None = typer.Option(None, "--processes", help="Signing processes (env "
                                                                            "AXIS_SIGNER_PROCESSES; default one "
                                                                            "per core)."),
) -> None:
    """Hold the axis key and sign for `axis serve` and `axis gateway` on this machine (AXIS_SIGNER=SOCKET).

    Only this user's processes may connect; the key never leaves this process and its signing processes.
    """
    from axis.logs import log_to_stderr
    from axis.signer import SignerStartError
    from axis.signer.service import SignerConfig, run

    chosen = current(signer=socket, key=key, cert=cert, signer_processes=signing_processes)
    _need_key(chosen)
    log_to_stderr(chosen.log)
    config = SignerConfig(key=chosen.hub_key, cert=chosen.hub_cert, socket=chosen.signer_socket,
                          processes=processes(chosen), log=chosen.log)

    def ready() -> None:
        stderr.print(f"axis signer listening on {config.socket} ({config.processes} signing process(es)); "
                     f"give AXIS_SIGNER={config.socket} to `axis serve` and `axis gateway` on this machine")
    try:
        run(config, ready=ready)
    except SignerStartError as exc:
        fail(str(exc))
