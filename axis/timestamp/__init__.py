"""RFC 3161 time-stamping: Axis's own development TSA, and the client that asks a TSA and checks its tokens.

- `authority`: `TimeStampAuthority(key, cert).respond(request_der) -> response_der`, `load_authority`;
- `server`: the TSA over HTTP (`axis tsa serve`, RFC 3161 §3.4);
- `client`: `request_timestamp(url, data, timeout=...)` and `verify_timestamp(tsr, data, roots)`.

Axis's own TSA proves nothing against Axis's operator, who holds its key: production configures an
independent TSA (`AXIS_TSA_URL`, `AXIS_TSA_TRUST`). See docs/timestamps.md.
"""
from axis.timestamp.authority import MAX_REQUEST_BYTES, POLICY_OID, TimeStampAuthority, TSAConfigError, load_authority
from axis.timestamp.client import (
    TimestampError,
    TimestampInvalid,
    TimestampUnavailable,
    request_timestamp,
    verify_timestamp,
)

__all__ = [
    "MAX_REQUEST_BYTES", "POLICY_OID", "TSAConfigError", "TimeStampAuthority", "TimestampError", "TimestampInvalid",
    "TimestampUnavailable", "load_authority", "request_timestamp", "verify_timestamp",
]
