"""A week of traffic, written through the store's own unit of work with a clock the scenario sets.

Every time below is Vietnam time (UTC+7); the calendar (`CALENDAR`) makes Thursday 12 March 2026 a
holiday, so Wednesday 11 March is its eve and Friday 13 March the next working day. Working hours are
the defaults, 08:00-17:00, Monday to Friday. G22 sends nine documents; H41 and H14 receive them:

| doc | priority | arrives (ICT)  | to  | delivery receipt | statuses                       |
|-----|----------|----------------|-----|------------------|--------------------------------|
| D1  | 0        | Wed 11 16:30   | H41 | Wed 11 16:40     | 01 Fri 13 08:15                |
| D2  | 3 urgent | Wed 11 16:00   | H41 | Wed 11 16:05     | none                           |
| D3  | 0        | Wed 11 17:30   | H41 | Fri 13 08:00     | 03 Fri 13 16:00                |
| D4  | 0        | Mon 9 10:00    | H14 | Mon 9 10:20      | 02 (refused) Mon 9 11:00       |
| D5  | 0        | Fri 13 09:00   | H41 | Mon 16 10:20     | 01 Mon 16 10:30                |
| D6  | 0        | Tue 10 09:00   | H41 | Tue 10 09:30     | 01 Tue 10 10:00, 03 Tue 10:30  |
|     |          |                | H14 | Tue 10 12:00     | 03 Wed 11 09:00                |
| D7  | 4 timed  | Mon 9 09:00    | H14 | Mon 9 09:10      | none; DueDate 2026/03/13       |
| D8  | 4 timed  | Fri 13 16:00   | H14 | none             | none; no DueDate               |
| D9  | 0        | Mon 16 11:00   | H41 | none             | none                           |

Two submissions are refused: G22's on Tue 10 10:00 (AX301) and H41's on Wed 11 10:00 (AX416).
Each status is written as intake writes it: a status packet (kind 'status', its own delivery to G22,
never answered: the reports must leave status packets out), the receipt on the answered document's
timeline, the state change and the audit entry.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from axis.store import Decision, NewDocument, NewSubmission, Store, state_for_status
from axis.store.schema import CODE_LEN

ICT = timezone(timedelta(hours=7))
G22, H41, H14 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
assert max(map(len, (G22, H41, H14))) <= CODE_LEN

CALENDAR = """\
# the scenario's own calendar: one holiday, on Thursday 12 March
2026-03-12
"""


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in March 2026, Vietnam time."""
    return datetime(2026, 3, day, hour, minute, tzinfo=ICT)


def body(number: int, due_date: str | None = None) -> bytes:
    """The stored bytes of a document: enough of an edXML packet for its header to be read."""
    due = f"<edXML:DueDate>{due_date}</edXML:DueDate>" if due_date else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML:edXML xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
            f"<edXML:edXMLEnvelope><edXML:edXMLHeader><edXML:MessageHeader><edXML:Subject>D{number}</edXML:Subject>"
            f"{due}<edXML:DocumentId>{document_id(number)}</edXML:DocumentId></edXML:MessageHeader>"
            "</edXML:edXMLHeader></edXML:edXMLEnvelope></edXML:edXML>").encode()


def document_id(number: int) -> str:
    return f"{G22},2026/03/09,{number}/VPCP-TTĐT"


def axis_id(number: int) -> str:
    return f"ax-d{number}"


class Clock:
    def __init__(self) -> None:
        self.now = at(1, 0)

    def __call__(self) -> datetime:
        return self.now


class Scenario:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock

    def agencies(self) -> None:
        self.clock.now = at(1, 9)
        with self.store.write() as tx:
            for code in (G22, H41, H14):
                tx.add_agency(code, f"Agency {code}")
                tx.audit("operator", "agency-added", code, {"name": f"Agency {code}"})

    def document(self, number: int, arrives: datetime, recipients: list[str], priority: int = 0,
                 due_date: str | None = None) -> None:
        self.clock.now = arrives
        with self.store.write() as tx:
            tx.insert_document(NewDocument(axis_id(number), G22, document_id(number), priority=priority),
                               body(number, due_date))
            tx.insert_deliveries(axis_id(number), recipients)
            tx.add_receipt(axis_id(number), "intake", b"<receipt/>", code="accepted")
            tx.audit("hub", "accepted", axis_id(number), {"sender": G22, "document_id": document_id(number),
                                                          "recipients": recipients, "kind": "document",
                                                          "priority": priority})

    def delivered(self, number: int, recipient: str, when: datetime) -> None:
        self.clock.now = when
        with self.store.write() as tx:
            tx.add_receipt(axis_id(number), "delivery", b"<delivery-receipt/>", recipient=recipient,
                           code="delivered")
            tx.transition(axis_id(number), recipient, "delivered")
            tx.audit("gateway", "delivered", axis_id(number), {"recipient": recipient, "state": "delivered"})

    def status(self, number: int, recipient: str, code: str, when: datetime) -> None:
        self.clock.now = when
        status_id = f"ax-s{number}-{recipient[-3:]}-{code}"
        key = f"{document_id(number)}#{code}#{when:%Y/%m/%d %H:%M:%S}"
        with self.store.write() as tx:
            tx.insert_document(NewDocument(status_id, recipient, key, kind="status", response_for=axis_id(number)),
                               f"<status code='{code}'/>".encode())
            tx.insert_deliveries(status_id, [G22])
            tx.add_receipt(status_id, "intake", b"<receipt/>", code="accepted")
            tx.add_receipt(axis_id(number), "status", b"<status/>", recipient=recipient, code=code,
                           detail=f"status packet {status_id}")
            state = state_for_status(code)
            assert state is not None
            tx.transition(axis_id(number), recipient, state)
            tx.audit("hub", "accepted", status_id, {"sender": recipient, "kind": "status", "status": code,
                                                    "answers": axis_id(number), "recipients": [G22]})

    def refused(self, submission: str, agency: str, code: int, when: datetime) -> None:
        self.clock.now = when
        with self.store.write() as tx:
            tx.add_submissions([NewSubmission(submission, agency, f"cred-{agency[-3:]}", "0" * 64)])
            tx.decide_submissions([Decision(submission, agency, "refused", None, code, "refused in the scenario",
                                            b"<receipt/>")])
            tx.audit("hub", "refused", submission, {"code": code, "sender": agency, "submitted_by": agency})

    def build(self) -> None:
        self.agencies()
        # In order of time, as the hub would have written them.
        self.document(7, at(9, 9), [H14], priority=4, due_date="2026/03/13")
        self.delivered(7, H14, at(9, 9, 10))
        self.document(4, at(9, 10), [H14])
        self.delivered(4, H14, at(9, 10, 20))
        self.status(4, H14, "02", at(9, 11))
        self.document(6, at(10, 9), [H41, H14])
        self.delivered(6, H41, at(10, 9, 30))
        self.status(6, H41, "01", at(10, 10))
        self.refused("sub-ax301", G22, 301, at(10, 10))
        self.status(6, H41, "03", at(10, 10, 30))
        self.delivered(6, H14, at(10, 12))
        self.status(6, H14, "03", at(11, 9))
        self.refused("sub-ax416", H41, 416, at(11, 10))
        self.document(2, at(11, 16), [H41], priority=3)
        self.delivered(2, H41, at(11, 16, 5))
        self.document(1, at(11, 16, 30), [H41])
        self.delivered(1, H41, at(11, 16, 40))
        self.document(3, at(11, 17, 30), [H41])
        self.delivered(3, H41, at(13, 8))
        self.status(1, H41, "01", at(13, 8, 15))
        self.document(5, at(13, 9), [H41])
        self.status(3, H41, "03", at(13, 16))
        self.document(8, at(13, 16), [H14], priority=4)
        self.delivered(5, H41, at(16, 10, 20))
        self.status(5, H41, "01", at(16, 10, 30))
        self.document(9, at(16, 11), [H41])
