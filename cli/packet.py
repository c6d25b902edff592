"""`axis packet …`: sign, verify, validate and show single edXML packets."""
from __future__ import annotations

import hashlib
from pathlib import Path

import typer
from rich.table import Table

from axis.edxml import DocumentPacket, Packet, StatusPacket, load_packet
from axis.logs import printable
from axis.refusals import Refusal
from cli.output import fail, print_json, refuse, stdout, to_jsonable

app = typer.Typer(help="Sign, verify, validate and inspect edXML packets.", no_args_is_help=True)

STATUS_MEANINGS = {
    "01": "arrived", "02": "refused", "03": "accepted (registered)", "04": "assigned", "05": "in progress",
    "06": "done", "13": "recall requested", "15": "recall/update agreed", "16": "recall/update refused",
}


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    if not data.strip():
        fail(f"{path} is empty: a packet is an edXML file (`axis packet new` makes one)")
    return data


@app.command()
def sign(
    packet: Path = typer.Argument(..., help="The unsigned (or re-signed) packet."),
    key: Path = typer.Option(..., "--key", help="The agency's private key (PEM)."),
    cert: Path = typer.Option(..., "--cert", help="The agency's certificate (PEM)."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the signed packet."),
) -> None:
    """Sign a packet with an enveloped XML signature (RSA-SHA256 or ECDSA-P256-SHA256)."""
    from axis.trust import Signer

    data = _read(packet)
    try:
        signer = Signer.from_files(key, cert)
        signed = signer.sign(data)
    except Refusal as refusal:
        refuse(refusal)
    out.write_bytes(signed)
    stdout.print(f"signed {packet} → {out}")


@app.command()
def verify(
    packet: Path = typer.Argument(..., help="The signed packet."),
    trust: Path = typer.Option(..., "--trust", help="Trusted root certificates (PEM bundle)."),
    crl: Path | None = typer.Option(None, "--crl", help="Certificate revocation list (PEM)."),
    allow_sha1: list[str] = typer.Option([], "--allow-sha1", help="Agency code allowed to sign with SHA-1."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Verify signature, chain, validity, revocation and that the signer is the sender.

    Exit 0 and print the signer's agency code when valid; exit 1 with the refusal code otherwise.
    """
    from axis.trust import Verifier

    data = _read(packet)
    try:
        verifier = Verifier.from_files(trust, crl, allow_sha1_for=frozenset(allow_sha1))
        result = verifier.verify(data)
    except Refusal as refusal:
        refuse(refusal, as_json=as_json)
    if as_json:
        print_json({"ok": True, "signer": result.signer_code, "fingerprint": result.fingerprint,
                    "subject": result.subject, "serial": str(result.serial),
                    "not_before": result.not_before, "not_after": result.not_after,
                    "signature_algorithm": result.signature_algorithm,
                    "digest_algorithm": result.digest_algorithm, "verified_at": result.verified_at})
    else:
        print(result.signer_code)


@app.command()
def validate(packet: Path = typer.Argument(..., help="The packet to check against the edXML schemas.")) -> None:
    """Check that a packet is well-formed, safe and schema-valid (no signature check)."""
    try:
        parsed = load_packet(_read(packet))
    except Refusal as refusal:
        refuse(refusal)
    stdout.print(f"valid {'status' if isinstance(parsed, StatusPacket) else 'document'} packet")


def summary(packet: Packet) -> dict:
    """The packet's fields as JSON-ready data; attachments by size and SHA-256, not content."""
    data = to_jsonable(packet)
    if isinstance(packet, DocumentPacket):
        data["attachments"] = [
            {"content_id": a.content_id, "attachment_name": a.attachment_name, "description": a.description,
             "content_type": a.content_type, "size": len(a.data), "sha256": hashlib.sha256(a.data).hexdigest()}
            for a in packet.attachments]
        return {"kind": "document", **data}
    return {"kind": "status", **data}


@app.command()
def show(
    packet: Path = typer.Argument(..., help="The packet to show."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
) -> None:
    """Show the parsed fields of a packet."""
    try:
        parsed = load_packet(_read(packet))
    except Refusal as refusal:
        refuse(refusal, as_json=as_json)
    if as_json:
        print_json(summary(parsed))
        return
    table = Table(show_header=False, box=None)
    if isinstance(parsed, StatusPacket):
        code = parsed.status_code.value
        rows = [("kind", "status packet"), ("from", parsed.sender),
                ("answers", f"{parsed.response_for.document_id} (from {parsed.response_for.organ_id})"),
                ("status", f"{code} {STATUS_MEANINGS.get(code, '')}"), ("description", parsed.description or ""),
                ("timestamp", str(parsed.timestamp or ""))]
        if parsed.staff_info:
            rows.append(("staff", parsed.staff_info.staff or ""))
    else:
        h = parsed.header
        rows = [("kind", "document packet"), ("from", parsed.sender), ("to", ", ".join(parsed.recipients)),
                ("document id", parsed.document_id), ("code", f"{h.code.code_number}/{h.code.code_notation}"),
                ("subject", h.subject), ("promulgated", f"{h.promulgation_info.place}, "
                                                        f"{h.promulgation_info.promulgation_date:%Y/%m/%d}"),
                ("priority", str(parsed.priority)), ("business", str(parsed.business_doc_type))]
        rows += [("trace", f"{t.organ_id} {t.timestamp:%Y/%m/%d %H:%M:%S}") for t in parsed.traces]
        rows += [("attachment", f"{a.attachment_name} ({a.content_type}, {len(a.data)} bytes)")
                 for a in parsed.attachments]
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, printable(value))  # what the packet says: its control characters escaped
    stdout.print(table)
