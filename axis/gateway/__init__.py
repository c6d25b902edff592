"""The agency edge: what agencies, operators and auditors may do, and the HTTP gateway that serves it.

`AgencyService` (service.py) holds the operations and their authorisation; the
HTTP app maps them to `/v1` routes. See docs/adapter-guide.md for the API.
"""
from axis.gateway.service import (
    AgencyService,
    Caller,
    Conflict,
    Forbidden,
    GatewayError,
    Invalid,
    NotFound,
    Outcome,
    RateLimited,
    Served,
    TooLarge,
    Unauthorized,
    Unavailable,
    open_service,
)

__all__ = [
    "AgencyService",
    "Caller",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "Invalid",
    "NotFound",
    "Outcome",
    "RateLimited",
    "Served",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "open_service",
]
