"""The wire contract between the hub and agency adapters: queue names and message headers.

Every component that talks through the transport uses these names, so a change
of contract is a change here. Bodies are opaque bytes: an edXML packet exactly
as its sender signed it, or an Axis receipt (`axis.receipt`).

| queue | who publishes | who consumes | body |
|---|---|---|---|
| `axis.intake` | agency adapters | hub | a signed edXML document or status packet |
| `axis.receipts` | agency adapters | hub | a delivery receipt signed by the recipient |
| `<code>` | hub | that agency's adapter | documents and status packets addressed to it, sealed (`axis.seal`) |
| `<code>.receipts` | hub | that agency's adapter | Axis receipts: intake, delivery, error |

Message ids (the de-duplication keys; transport is at-least-once):
- a submission: a random id chosen by the adapter (`new_submission_id()`);
- a delivery to an agency: `<axis_id>:<code>`;
- a receipt: `<kind>:<axis_id>:<code or submission>`.
"""
from __future__ import annotations

import os
import time
import uuid

INTAKE_QUEUE = "axis.intake"
RECEIPTS_QUEUE = "axis.receipts"
HUB_IDENTITY = "AXIS"  # the agency code in the hub's own certificate (a QĐ 20-form code)

# Header names. The transport reserves `x-` and `axis-`, so Axis's own headers start with `ax-`.
H_SUBMISSION = "ax-submission"      # the submission id an intake receipt answers
H_AGENCY = "ax-agency"              # the agency whose credential submitted it (informative: the hub reads the
                                    # submissions row the gateway wrote, never this header, to decide)
H_AXIS_ID = "ax-axis-id"            # the hub's id of an accepted packet
H_KIND = "ax-kind"                  # document | status | receipt
H_SENDER = "ax-sender"
H_RECIPIENT = "ax-recipient"
H_DOCUMENT_ID = "ax-document-id"
H_DIGEST = "ax-digest"              # sha256 hex of the body as the sender signed it
H_RECEIPT_KIND = "ax-receipt-kind"  # intake | delivery | error
H_SEAL = "ax-seal"                  # a delivery's seal: the hub's signature over (axis id, digest, recipients)
H_SEAL_TO = "ax-seal-to"            # the recipients the seal names, sorted, comma-separated
H_SEAL_CERT = "ax-seal-cert"        # the certificate that made the seal (base64 DER), code AXIS


def inbox_queue(code: str) -> str:
    """The queue an agency receives documents and status packets on."""
    return code


def receipts_queue(code: str) -> str:
    """The queue an agency receives Axis receipts on."""
    return f"{code}.receipts"


def delivery_message_id(axis_id: str, code: str) -> str:
    return f"{axis_id}:{code}"


def receipt_message_id(kind: str, axis_id: str, party: str) -> str:
    return f"{kind}:{axis_id}:{party}"


def new_submission_id() -> str:
    return uuid.uuid4().hex


def new_axis_id() -> str:
    """Time-ordered (UUIDv7 layout) so ids sort by arrival, which keeps indexes compact."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))
