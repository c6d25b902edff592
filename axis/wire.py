"""The internal wire contract: the intake queue, its headers, and the headers a delivery is served with.

Agencies never touch the broker (docs/security.md): the gateway, or the
operator's local client, publishes each submission to `axis.intake`, and the
hub consumes it. The body is opaque bytes, the edXML packet exactly as its
sender signed it. The message id is the submission id (`new_submission_id()`,
or one the caller chose), the de-duplication key of an at-least-once transport.

The `ax-` names are also the headers of a served delivery (`axis.gateway`,
`AgencyService.fetch`): the axis id, the digest, the sender, the kind, and the
hub's seal (`axis.seal`).
"""
from __future__ import annotations

import os
import time
import uuid

INTAKE_QUEUE = "axis.intake"
HUB_IDENTITY = "AXIS"  # the agency code in the hub's own certificate (a QĐ 20-form code)
MAX_ACK_BATCH = 100    # deliveries one acknowledgement request (`POST /v1/inbox/ack`) may name
MAX_FETCH_BATCH = 100  # deliveries one request for several (`POST /v1/inbox/fetch`) may name ...
MAX_FETCH_BATCH_BYTES = 4 * 1024 * 1024  # ... and the most body bytes its answer carries

# Header names. The transport reserves `x-` and `axis-`, so Axis's own headers start with `ax-`.
H_SUBMISSION = "ax-submission"      # the submission id (also the message id)
H_AGENCY = "ax-agency"              # the agency whose credential submitted it (informative: the hub reads the
                                    # submissions row the gateway wrote, never this header, to decide)
H_AXIS_ID = "ax-axis-id"            # the hub's id of an accepted packet
H_KIND = "ax-kind"                  # document | status
H_SENDER = "ax-sender"
H_DOCUMENT_ID = "ax-document-id"
H_DIGEST = "ax-digest"              # sha256 hex of the body as the sender signed it
H_BODY = "ax-body"                  # "store": the message carries no body; it waits in the store
                                    # (submission_bodies), too large for the broker (AXIS_INLINE_BODY_BYTES)
BODY_IN_STORE = "store"
H_SEAL = "ax-seal"                  # a delivery's seal: the hub's signature over (axis id, digest, recipients)
H_SEAL_TO = "ax-seal-to"            # the recipients the seal names, sorted, comma-separated
H_SEAL_CERT = "ax-seal-cert"        # the certificate that made the seal (base64 DER), code AXIS


def new_submission_id() -> str:
    return uuid.uuid4().hex


def new_axis_id() -> str:
    """Time-ordered (UUIDv7 layout) so ids sort by arrival, which keeps indexes compact."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))
