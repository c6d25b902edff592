"""`axis packet new`: a valid unsigned edXML document packet from the command line, to sign with
`axis packet sign` and send with `axis send`, so a new operator can try the axis without Python."""
from __future__ import annotations

import mimetypes
import secrets
from pathlib import Path

import typer

from axis.edxml import Attachment, Organization, Priority, SignerInfo, load_packet, packet_to_bytes, parse_agency_code
from axis.edxml.compose import new_document, now_vietnam
from axis.refusals import Refusal
from cli.output import fail, print_json, stdout

USAGE = 2  # as typer's own usage errors
PRIORITIES = ", ".join(f"{p.value} {p.name.lower().replace('_', ' ')}" for p in Priority)


def _code(text: str, option: str) -> str:
    try:
        return parse_agency_code(text).text
    except Refusal as refusal:
        fail(f"{option} {text!r} is not an agency code: {refusal.detail}", USAGE)


def _attachment(n: int, path: Path) -> Attachment:
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot attach {path}: {exc.strerror}", USAGE)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(content_id=f"cid:{n}", attachment_name=path.name, content_type=content_type, data=data)


def new(
    sender: str = typer.Option(..., "--from", help="The sending agency's code."),
    recipients: list[str] = typer.Option(..., "--to", help="A recipient agency's code; repeatable."),
    subject: str = typer.Option(..., "--subject", help="What the document is about (Trích yếu)."),
    attach: list[Path] = typer.Option([], "--attach", help="A file to carry with it; repeatable."),
    priority: int = typer.Option(0, "--priority", help=f"0..4: {PRIORITIES}."),
    number: str | None = typer.Option(None, "--number", help="The document's number (Số); default: a new one "
                                                             "from the time, so each packet is a new document."),
    notation: str = typer.Option("AXIS", "--notation", help="Its notation (Ký hiệu), e.g. VPCP-TTĐT."),
    signed_by: str = typer.Option("Văn thư", "--signed-by", help="Who signed it (họ tên người ký)."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the unsigned packet."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Build an unsigned edXML document packet; then `axis packet sign` it and `axis send` it.

    Its DocumentId is SENDER,DATE,NUMBER/NOTATION: a number used twice by the same sender on the same
    day makes the same document, which Axis carries once.
    """
    frm = _code(sender, "--from")
    to = list(dict.fromkeys(_code(code, "--to") for code in recipients))
    if frm in to:
        fail(f"--to {frm} is the sender itself; a document goes to other agencies", USAGE)
    if priority not in {p.value for p in Priority}:
        fail(f"--priority {priority} is not one of {PRIORITIES}", USAGE)
    if not subject.strip():
        fail("--subject is empty; say what the document is about", USAGE)
    attachments = [_attachment(n, path) for n, path in enumerate(attach, 1)]
    now = now_vietnam()
    packet = new_document(
        Organization(frm), [Organization(code) for code in to],
        code_number=number or f"{now:%H%M%S}{secrets.randbelow(1000):03d}", code_notation=notation,
        subject=subject.strip(), signer=SignerInfo(full_name=signed_by), promulgation_date=now.date(),
        attachments=attachments, priority=priority, timestamp=now)
    data = packet_to_bytes(packet)
    try:
        load_packet(data)  # what Axis will check first: the packet says why it is not valid before anyone signs it
    except Refusal as refusal:
        fail(f"the packet would not be valid: {refusal.code.label}: {refusal.detail}", USAGE)
    try:
        out.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}", USAGE)
    if as_json:
        print_json({"out": str(out), "document_id": packet.document_id, "from": frm, "to": to,
                    "attachments": [a.attachment_name for a in attachments], "priority": priority})
        return
    stdout.print(f"wrote {out}: {packet.document_id}, from {frm} to {', '.join(to)}, {len(attachments)} "
                 f"attachment(s), priority {priority} (unsigned: `axis packet sign {out} --key … --cert … -o …`)",
                 markup=False)


__all__ = ["new"]
