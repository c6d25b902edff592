"""`axis pki …`: a real development PKI (root CA, agency certificates, CRL).

For development, tests and demos. Keys are written unencrypted; like every file
Axis creates, keys, certificates and CRLs are 0600 and new folders 0700
(docs/configuration.md). A production axis trusts the roots of a real CA instead
(`axis packet verify --trust`). The certificate profile and the agency-code
binding: docs/trust.md.
"""
from __future__ import annotations

import enum
from pathlib import Path

import typer

from axis.refusals import Refusal
from axis.trust import pki
from cli.output import fail, refuse, stdout

app = typer.Typer(help="Development PKI: a root CA, agency signing certificates and the CRL.",
                  no_args_is_help=True)


class KeyTypeChoice(str, enum.Enum):
    ec = "ec"
    rsa = "rsa"


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Directory for ca.pem, ca.key.pem and crl.pem."),
    key_type: KeyTypeChoice = typer.Option(KeyTypeChoice.ec, "--key-type", help="CA key: EC P-256 or RSA-3072."),
) -> None:
    """Create a root CA and an empty signed CRL in DIRECTORY."""
    try:
        cert_path = pki.init_ca(directory, key_type=key_type.value)
    except (pki.PKIError, OSError) as exc:
        fail(str(exc))
    ca = pki.load_ca(directory)
    stdout.print(f"root CA {ca.certificate.subject.rfc4514_string()} → {cert_path}")
    stdout.print(f"key → {directory / pki.CA_KEY_FILE} (mode 0600), CRL → {directory / pki.CRL_FILE}")


@app.command()
def issue(
    code: str = typer.Argument(..., help="The agency code, e.g. 000.00.00.G22."),
    pki_dir: Path = typer.Option(..., "--pki", help="The PKI directory made by `axis pki init`."),
    out: Path = typer.Option(..., "--out", help="Where to write CODE.key.pem and CODE.cert.pem."),
    key_type: KeyTypeChoice = typer.Option(KeyTypeChoice.ec, "--key-type", help="EC P-256 or RSA-3072."),
) -> None:
    """Issue a signing key and certificate for an agency."""
    try:
        key_path, cert_path = pki.issue(code, pki_dir, out, key_type.value)
    except Refusal as refusal:
        refuse(refusal)
    except (pki.PKIError, OSError) as exc:
        fail(str(exc))
    stdout.print(f"certificate → {cert_path}")
    stdout.print(f"key → {key_path} (mode 0600)")


@app.command()
def revoke(
    cert: Path = typer.Argument(..., help="The certificate to revoke (PEM)."),
    pki_dir: Path = typer.Option(..., "--pki", help="The PKI directory of the CA that issued it."),
) -> None:
    """Revoke a certificate: add its serial to a freshly signed CRL."""
    try:
        serial = pki.revoke(cert, pki_dir)
    except (pki.PKIError, OSError) as exc:
        fail(str(exc))
    stdout.print(f"revoked serial {serial:x}; CRL → {pki_dir / pki.CRL_FILE}")


@app.command()
def crl(
    pki_dir: Path = typer.Argument(..., help="The PKI directory."),
) -> None:
    """Re-sign the CRL with the same entries (a CRL older than its nextUpdate makes verification fail)."""
    try:
        path = pki.refresh_crl(pki_dir)
    except (pki.PKIError, OSError) as exc:
        fail(str(exc))
    stdout.print(f"CRL refreshed → {path}")


@app.command()
def tls(
    hostname: str = typer.Argument(..., help="The gateway's host name (or IP address) as agencies will reach it."),
    also: list[str] = typer.Option([], "--also", help="Another name or IP address for the same certificate; "
                                                      "repeatable (e.g. --also localhost --also 127.0.0.1)."),
    pki_dir: Path | None = typer.Option(None, "--pki", help="The PKI directory (default <data>/pki)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write HOSTNAME.tls.key.pem and "
                                                        "HOSTNAME.tls.cert.pem (default <data>/gateway)."),
    key_type: KeyTypeChoice = typer.Option(KeyTypeChoice.ec, "--key-type", help="EC P-256 or RSA-3072."),
) -> None:
    """Issue a TLS server certificate and key for the gateway, from the development CA.

    Then: `axis gateway --host 0.0.0.0 --tls-cert OUT/HOSTNAME.tls.cert.pem --tls-key OUT/HOSTNAME.tls.key.pem`.
    Agencies trust the CA's ca.pem (curl --cacert). A production gateway uses a certificate from a real CA.
    """
    from cli.settings import current

    chosen = current()
    pki_dir = pki_dir or chosen.pki_dir
    out = out or chosen.data / "gateway"
    try:
        key_path, cert_path = pki.issue_tls([hostname, *also], pki_dir, out, key_type.value)
    except (pki.PKIError, ValueError, OSError) as exc:
        fail(str(exc))
    stdout.print(f"TLS certificate for {', '.join([hostname, *also])} → {cert_path}")
    stdout.print(f"key → {key_path} (mode 0600)")
