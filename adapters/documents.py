"""Naming the document a status packet answers: `ResponseFor` from a DocumentId.

A QCVN 102 DocumentId is `<issuer OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>`
(§3.2, 1.14), which is everything `ResponseFor` needs. Ids in another form
are looked up among documents the agency has received (its inbox folders).

Callers may rely on: `response_for_from_document_id` returns a `ResponseFor`
with `organ_id` and `document_id` set, or raises `PacketError` (INVALID_FIELD
when the id is not in the standard form and no stored document has it).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path

from axis.edxml import DocumentPacket, ResponseFor, load_packet
from axis.refusals import PacketError, RefusalCode

_DOCUMENT_ID = re.compile(r"(?P<issuer>[^,\s]+),(?P<date>\d{4}/\d{2}/\d{2}),(?P<number>[^/,]+)/(?P<notation>.+)")


def parse_document_id(document_id: str) -> ResponseFor | None:
    """`ResponseFor` from a DocumentId in the standard form, or None when it is in another form."""
    match = _DOCUMENT_ID.fullmatch(document_id.strip())
    if match is None:
        return None
    try:
        date = dt.datetime.strptime(match["date"], "%Y/%m/%d").date()
    except ValueError:
        return None
    # The issuer is taken as written: the hub checks agency codes, and padding a
    # shortened code here would make the status name another OrganId than the document.
    return ResponseFor(organ_id=match["issuer"].strip(), code=f"{match['number']}/{match['notation']}",
                       promulgation_date=date, document_id=document_id.strip())


def response_for_document(document: DocumentPacket) -> ResponseFor:
    """`ResponseFor` naming a document packet (as `axis.edxml.compose.new_status` builds it)."""
    header = document.header
    return ResponseFor(organ_id=header.from_.organ_id,
                       code=f"{header.code.code_number}/{header.code.code_notation}",
                       promulgation_date=header.promulgation_info.promulgation_date,
                       document_id=header.document_id)


def find_stored_document(document_id: str, candidates: Iterable[Path]) -> DocumentPacket | None:
    """The first stored document packet among `candidates` (files or folders of *.edxml) with this id.

    The files are the agency's own stored copies, verified when they were received.
    """
    for candidate in candidates:
        files = sorted(candidate.glob("*.edxml")) if candidate.is_dir() else [candidate]
        for path in files:
            try:
                packet = load_packet(path.read_bytes(), schema=False)
            except (OSError, PacketError):
                continue
            if isinstance(packet, DocumentPacket) and packet.document_id == document_id:
                return packet
    return None


def response_for_from_document_id(document_id: str, inbox: Path | Iterable[Path] | None = None) -> ResponseFor:
    """`ResponseFor` for the document `document_id` names (OrganId = its issuer).

    An id not in the form `<issuer>,<yyyy/MM/dd>,<number>/<notation>` is looked
    up among the stored documents in `inbox` (a folder, or several).
    """
    parsed = parse_document_id(document_id)
    if parsed is not None:
        return parsed
    folders = [inbox] if isinstance(inbox, Path) else list(inbox or ())
    found = find_stored_document(document_id, folders)
    if found is not None:
        return response_for_document(found)
    where = ", ".join(str(f) for f in folders) or "no inbox folder given"
    raise PacketError(RefusalCode.INVALID_FIELD,
                      f"DocumentId {document_id!r} is not <issuer>,<yyyy/MM/dd>,<number>/<notation> and no "
                      f"stored document has it ({where}); give the id in that form or the folder holding the "
                      "received document (--inbox)")
