"""A stored document packet's DueDate (MessageHeader/DueDate, `yyyy/MM/dd`), read from its first bytes.

The overdue report needs one header field of the few Priority 4 packets; their attachments may be
hundreds of megabytes, so the packet is read piece by piece and reading stops at the end of its
MessageHeader. The bytes are the ones intake accepted (schema-valid, signed), read with the same
guards as `axis.edxml.safe`: no DTD, no entity expansion, no network.

Callers may rely on `read_due_date` returning the date, or None when the header has no DueDate or the
bytes cannot be read as a document packet's header (the caller then applies the rule for a packet
without one); it never raises for bad input, and reads no further than the end of MessageHeader.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from lxml import etree

from axis.edxml.ns import q
from axis.edxml.packet import DATE_FORMAT

_DUE_DATE, _MESSAGE_HEADER = q("DueDate"), q("MessageHeader")
_DTD_MARKER = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def read_due_date(pieces: Iterable[bytes]) -> dt.date | None:
    """The DueDate of the document packet whose bytes come in `pieces` (consumed only as far as needed)."""
    parser = etree.XMLPullParser(events=("end",), resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_comments=True)
    try:
        for number, piece in enumerate(pieces):
            if number == 0 and _DTD_MARKER.search(piece):
                return None  # intake refuses a DOCTYPE; a stored one was not put there by intake
            parser.feed(piece)
            for _, element in parser.read_events():
                if element.tag == _DUE_DATE and element.getparent() is not None \
                        and element.getparent().tag == _MESSAGE_HEADER:
                    return _date(element.text)
                if element.tag == _MESSAGE_HEADER:
                    return None
    except etree.XMLSyntaxError:
        return None
    return None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime((text or "").strip(), DATE_FORMAT).date()
    except ValueError:
        return None
