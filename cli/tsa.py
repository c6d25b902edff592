"""`axis tsa …`: Axis's own RFC 3161 time-stamping authority, for development, the demo and tests.

Its tokens prove nothing against Axis's operator, who holds its key: a production axis sets
AXIS_TSA_URL to an independent TSA (docs/timestamps.md).
"""
from __future__ import annotations

from pathlib import Path

import typer

from cli.output import fail, stdout
from cli.pki import KeyTypeChoice

app = typer.Typer(help="Axis's own RFC 3161 time-stamping authority (development and tests only).",
                  no_args_is_help=True)


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Directory for tsa-root.pem, tsa.pem and tsa.key."),
    key_type: KeyTypeChoice = typer.Option(KeyTypeChoice.ec, "--key-type", help="EC P-256 or RSA-3072."),
) -> None:
    """Create a TSA key and certificate (EKU timeStamping, critical) issued by a root of its own.

    Verifiers trust tsa-root.pem (AXIS_TSA_TRUST); the root's key is not kept.
    """
    from axis.trust import pki

    try:
        files = pki.init_tsa(directory, key_type.value)
    except (pki.PKIError, OSError) as exc:
        fail(str(exc))
    stdout.print(f"TSA root → {files.root} (what verifiers trust: AXIS_TSA_TRUST)")
    stdout.print(f"TSA certificate → {files.cert}, key → {files.key} (mode 0600)")
    stdout.print(f"then: axis tsa serve --key {files.key} --cert {files.cert}")


@app.command()
def serve(
    key: Path = typer.Option(..., "--key", help="The TSA's key (PEM), e.g. DIR/tsa.key from `axis tsa init`."),
    cert: Path = typer.Option(..., "--cert", help="The TSA's certificate (PEM), e.g. DIR/tsa.pem."),
    host: str = typer.Option("127.0.0.1", "--host", help="Listen on this address."),
    port: int = typer.Option(3161, "--port", min=0, max=65535, help="TCP port (0: any free one)."),
) -> None:
    """Answer RFC 3161 requests over HTTP (POST application/timestamp-query) until stopped."""
    from axis.logs import log_to_stderr
    from axis.timestamp import server
    from axis.timestamp.authority import TSAConfigError, load_authority
    from cli.settings import current

    try:
        authority = load_authority(key, cert)
    except TSAConfigError as exc:
        fail(str(exc))
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    log_to_stderr(current().log)
    try:
        server.serve(authority, sock)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
