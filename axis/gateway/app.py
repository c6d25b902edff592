"""The agency gateway over HTTP: `create_app(service, authenticator)` makes the FastAPI application.

Every route of docs/adapter-guide.md ("The gateway"), and the auditor's GET /v1/audit/* of
docs/auditor-guide.md, maps onto one `AgencyService` call; who may see what is decided there, so the
HTTP layer only authenticates, limits, streams and translates:

- **Authentication**: `Authorization: Bearer <credential>` (`axis.gateway.credentials`). None, unknown
  or revoked: 401 with `WWW-Authenticate: Bearer`. The credential never appears in a log line; its id
  does, in the access log line of every request and in the refusal's own line.
- **Rate limit**: a token bucket per credential (`rate` requests per second, `burst` at once); beyond
  it 429 with `Retry-After` (whole seconds). Health checks and the OpenAPI document are not limited.
- **Uploads** (`POST /v1/packets`, the body of an ack) are read chunk by chunk into a spooled temporary
  file (memory up to 1 MiB, then disk) and refused with 413 the moment they pass the limit (or at
  once, when Content-Length already says so); an agency cannot make the gateway hold 2 GB in memory.
- **Errors** are JSON, `{"error": {"code", "message", "request_id"}}`, with a stable code: `GW401`,
  `GW403`, `GW404`, `GW413`, `GW422`, `GW429`, `GW500`, `GW503`, or a refusal code (`AX412`). Every
  response carries `X-Request-Id` (the caller's own, when it sends a sane one; else a fresh one).
- **One access-log line per request** (logger `axis.gateway.access`): request id, credential id,
  agency, method, route template, status, milliseconds; for a submission, its id and outcome.
- **/metrics** (Prometheus text) answers loopback clients and operator credentials only: requests by
  route and status, latency histograms by route, intake outcomes by code, and, read from the store at
  each scrape, deliveries by state and the size of each agency's inbox. Behind a reverse proxy on the
  same machine every client is loopback: expose /metrics there only to whom may read it.
- **/healthz** answers while the process runs; **/readyz** 200 only when the store and the broker
  answer within 3 s (503 naming what is down). A store, broker or signer that stays unavailable beyond
  the retry policy's patience is a 503 (`GW503`) with Retry-After.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import io
import ipaddress
import logging
import math
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from axis import wire
from axis.gateway.credentials import Authenticator
from axis.gateway.service import (
    SUBMISSION_ID,
    AgencyService,
    Caller,
    Forbidden,
    GatewayError,
    Invalid,
    RateLimited,
    Served,
    TooLarge,
    Unauthorized,
)

disable_created_metrics()  # no *_created series: they double a scrape and say nothing operators use
log = logging.getLogger("axis.gateway")
access_log = logging.getLogger("axis.gateway.access")

DEFAULT_MAX_PACKET = 200 * 1024 * 1024
MAX_RECEIPT_BYTES = 1024 * 1024      # a delivery receipt is a few KB
MAX_ACK_BATCH_BYTES = 4 * 1024 * 1024  # a batch of acknowledgements: MAX_ACK_BATCH receipts of a few KB in base64
MAX_JSON_BYTES = 64 * 1024           # any other JSON body (a failure's reason)
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"  # padded, nothing else
SPOOL_IN_MEMORY = 1024 * 1024        # an upload stays in memory up to this size, then goes to disk
MAX_WAIT = 60.0                      # the longest ?wait= (seconds) a request may hold a connection
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The Axis-Submission header: the service's submission id in either case (it takes it in lower case),
# spelled out for the OpenAPI document, whose patterns take no flags.
SUBMISSION_HEADER = re.compile("^(" + SUBMISSION_ID.pattern.replace("0-9a-f", "0-9a-fA-F") + ")$")
# An audit log action (accepted, delivery-failed, ...): the OpenAPI document says so, and nothing else is taken.
ActionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]+$", min_length=1, max_length=255)]
_SERVED_HEADERS = {wire.H_AXIS_ID: "Axis-Id", wire.H_DIGEST: "Axis-Digest", wire.H_SENDER: "Axis-Sender",
                   wire.H_KIND: "Axis-Kind", wire.H_SEAL: "Axis-Seal", wire.H_SEAL_TO: "Axis-Seal-To",
                   wire.H_SEAL_CERT: "Axis-Seal-Cert"}


# ------------------------------------------------------------------ response models

class ErrorDetail(BaseModel):
    code: str = Field(description="A stable code: GW401, GW404, …, or a refusal code such as AX412.")
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class SubmissionOutcome(BaseModel):
    submission: str
    outcome: Literal["queued", "accepted", "duplicate", "refused"]
    axis_id: str | None = None
    code: str | None = Field(None, description="The refusal code (AXnnn) of a refused packet.")
    message: str | None = None
    receipt: str | None = Field(None, description="The signed intake receipt (base64).")


class Queued(BaseModel):
    submission: str
    outcome: Literal["queued"] = "queued"


class InboxEntry(BaseModel):
    axis_id: str
    kind: str
    sender: str
    document_id: str
    priority: int
    size: int
    digest: str
    received_at: datetime


class InboxPage(BaseModel):
    items: list[InboxEntry]
    next: str | None = Field(None, description="Pass as ?after= for the next page; null when none.")


class AckAnswer(BaseModel):
    axis_id: str
    state: str
    receipt: str = Field(description="The recorded delivery receipt (base64).")


class AckItem(BaseModel):
    axis_id: str = Field(min_length=1, max_length=200)
    receipt: str | None = Field(None, max_length=MAX_RECEIPT_BYTES * 4 // 3 + 4, pattern=BASE64,
                                description="The caller's signed delivery receipt (base64); none: Axis signs one "
                                            "for the credential, as for an acknowledgement without a body.")


class AckBatch(BaseModel):
    items: list[AckItem] = Field(min_length=1, max_length=wire.MAX_ACK_BATCH)


class ItemError(BaseModel):
    status: int = Field(description="What the request for this one alone would have answered (404, 413, 422).")
    code: str = Field(description="GW404, GW413, or the refusal of a receipt (AX412, AX413).")
    message: str


class AckItemAnswer(BaseModel):
    axis_id: str
    state: str | None = Field(None, description="The delivery's state once recorded; absent with `error`.")
    receipt: str | None = Field(None, description="The recorded delivery receipt (base64); absent with `error`.")
    error: ItemError | None = Field(None, description="Why this one was not recorded (nothing changed for it).")


class AckBatchAnswer(BaseModel):
    items: list[AckItemAnswer] = Field(description="One answer per item, in the order asked.")


class FetchBatch(BaseModel):
    axis_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=wire.MAX_FETCH_BATCH)


class FetchItemAnswer(BaseModel):
    axis_id: str
    body: str | None = Field(None, description="The exact signed bytes (base64); absent with `error`.")
    headers: dict[str, str] | None = Field(None, description="What `GET /v1/inbox/{axis_id}` sends as headers: "
                                                             "Axis-Id, Axis-Digest, Axis-Sender, Axis-Kind and the "
                                                             "seal (Axis-Seal, Axis-Seal-To, Axis-Seal-Cert).")
    error: ItemError | None = Field(None, description="Why this one is not here: 404, or 413 (fetch it alone).")


class FetchBatchAnswer(BaseModel):
    items: list[FetchItemAnswer] = Field(description="One answer per axis id, in the order asked.")


class FailRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class FailAnswer(BaseModel):
    axis_id: str
    state: str


class SentEntry(BaseModel):
    axis_id: str
    kind: str
    document_id: str
    received_at: datetime
    priority: int | None = None
    digest: str | None = None
    recipients: dict[str, str] = Field(description="Each recipient's delivery state.")


class SentPage(BaseModel):
    items: list[SentEntry]
    next: str | None = None


class ReceiptEntry(BaseModel):
    kind: str
    recipient: str | None = None
    code: str | None = None
    detail: str | None = None
    created_at: datetime
    digest: str
    body: str = Field(description="The signed receipt (base64).")


class Timeline(BaseModel):
    axis_id: str
    receipts: list[ReceiptEntry]


class AgencyEntry(BaseModel):
    code: str
    name: str
    parent: str | None = None
    state: str


class Directory(BaseModel):
    agencies: list[AgencyEntry]


class AuditEntryOut(BaseModel):
    seq: int
    at: str = Field(description="UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ: the form that is hashed.")
    actor: str
    action: str
    subject: str | None = None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditLogPage(BaseModel):
    items: list[AuditEntryOut]
    next: str | None = Field(None, description="Pass as ?after= for the next page; null when none.")


class OverdueItem(BaseModel):
    axis_id: str
    document_id: str
    sender: str
    recipient: str
    priority: int
    arrived_at: datetime
    due_at: datetime
    rule: str = Field(description="The rule that set the deadline, in words.")
    answer: Literal["confirmed", "refused", "recalled", "none"]
    answer_code: str | None = Field(None, description="The status code of the answer (01, 02, 03, ...).")
    answered_at: datetime | None = None
    late_seconds: int = Field(description="After the deadline, on the clock: until the answer, or until as_of.")
    late_working_seconds: int = Field(description="The same, in working time.")
    current_state: str = Field(description="The delivery's state when the report ran.")


class CalendarInfo(BaseModel):
    source: str | None = None
    years: list[int]


class OverduePage(BaseModel):
    as_of: datetime
    time_zone: str
    calendar: CalendarInfo
    warnings: list[str] = Field(description="E.g. a year the holiday calendar does not cover.")
    items: list[OverdueItem]
    next: str | None = Field(None, description="Pass as ?after= for the next page; null when none.")


class DurationFigures(BaseModel):
    count: int
    median_seconds: float | None = None
    p95_seconds: float | None = None


class RefusedCounts(BaseModel):
    total: int
    by_code: dict[str, int]


class TrafficRowOut(BaseModel):
    key: str = Field(description="An agency code, or a day (YYYY-MM-DD).")
    sent: int
    received: int
    delivered: int
    refused: RefusedCounts
    to_delivery: DurationFigures
    to_acceptance: DurationFigures


class TrafficStats(BaseModel):
    by: Literal["agency", "day"]
    since: datetime | None = None
    until: datetime | None = None
    time_zone: str
    rows: list[TrafficRowOut]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {400: "Bad request", 401: "No, unknown or revoked credential", 403: "Not allowed for this role",
                 404: "Unknown, or not the caller's", 409: "Conflicts with what was done before", 413: "Too large",
                 422: "Invalid request, or a refused delivery receipt",
                 429: "Rate limit: retry after Retry-After seconds", 503: "The store or the broker is unavailable"}
    return {s: {"model": ErrorBody, "description": described[s]} for s in statuses}


_COMMON = (401, 422, 429, 503)


# ------------------------------------------------------------------ rate limit

class RateLimiter:
    """A token bucket per key: `rate` per second, at most `burst` saved up. Thread-safe, O(1)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, max(1, burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go on, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget full buckets: they are the default anyway
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] + (now - v[1]) * self.rate < self.burst}
            return (1.0 - tokens) / self.rate


# ------------------------------------------------------------------ metrics

class _StoreCollector:
    """Deliveries by state and inbox sizes, counted in the store at each scrape."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Any:  # prometheus_client's collector protocol
        by_state = GaugeMetricFamily("axis_deliveries", "Deliveries by state (the store, at scrape time).",
                                     labels=["state"])
        inbox = GaugeMetricFamily("axis_inbox_size", "Deliveries waiting for each agency (queued or published).",
                                  labels=["agency"])
        try:
            for state, n in self.store.delivery_counts().items():
                by_state.add_metric([state], n)
            for agency, n in self.store.waiting_counts().items():
                inbox.add_metric([agency], n)
            entries, unsigned, waiting, age = self.store.checkpoint_lag(datetime.now(UTC))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: cannot count deliveries: %s", str(exc).splitlines()[0])
            return
        yield by_state
        yield inbox
        # How far the audit log's signing and timestamping are behind (docs/evidence.md): a TSA outage shows
        # here as a growing backlog while traffic goes on.
        yield GaugeMetricFamily("axis_audit_entries", "Entries in the audit log.", value=entries)
        yield GaugeMetricFamily("axis_audit_unsigned_entries", "Audit entries no signed checkpoint covers yet.",
                                value=unsigned)
        yield GaugeMetricFamily("axis_audit_checkpoints_awaiting_timestamp",
                                "Signed checkpoints still waiting for their RFC 3161 timestamp.", value=waiting)
        yield GaugeMetricFamily("axis_audit_oldest_awaiting_timestamp_seconds",
                                "Age of the oldest checkpoint waiting for a timestamp (0: none waits).", value=age)


class Metrics:
    def __init__(self, store: Any | None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("axis_gateway_requests", "Gateway requests by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("axis_gateway_request_seconds", "Gateway request latency by route.",
                                 ["route", "method"], registry=self.registry,
                                 buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.intake = Counter("axis_gateway_intake_outcomes", "Submission outcomes the gateway answered, by code.",
                              ["outcome", "code"], registry=self.registry)
        if store is not None:
            self.registry.register(_StoreCollector(store))


# ------------------------------------------------------------------ helpers

def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _item_error(error: GatewayError) -> dict[str, Any]:
    """An item of a batch answered as its request alone would have been refused (an `ItemError`)."""
    return {"status": error.status, "code": error.code, "message": error.message}


def _outcomes(what: str, answers: list[dict[str, Any]], done: str) -> str:
    """What the access log line says became of a batch: "acks AX413=1 delivered=99"."""
    counts = collections.Counter(a["error"]["code"] if a.get("error") else done for a in answers)
    return f"{what} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _served_headers(served: Served) -> dict[str, str]:
    """The HTTP headers a served delivery goes with (its axis id, digest, sender, kind and the hub's seal)."""
    headers = {_SERVED_HEADERS[k]: v for k, v in served.headers.items() if k in _SERVED_HEADERS}
    headers.setdefault("Axis-Id", served.axis_id)
    headers.setdefault("Axis-Digest", served.digest)
    return headers


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its JSON body itself (`_read_body`, so that its size is
    limited before it is read whole, and `_parsed`): `model`'s schema, its nested models written in place."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            return inline(defs[node["$ref"].rsplit("/", 1)[-1]]) if "$ref" in node else \
                {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


M = TypeVar("M", bound=BaseModel)


def _parsed(model: type[M], body: bytes) -> M:
    """`body` read as `model` (JSON); else the RequestValidationError FastAPI raises for a body it reads itself,
    so that one handler (`_invalid`, GW422) words every invalid request."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, dict):
            if name in item:
                return item[name]
        elif hasattr(item, name):
            return getattr(item, name)
    return None


def _code(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return f"AX{int(value):03d}"
    return str(value)


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _error_response(status: int, code: str, message: str, request_id: str,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "request_id": request_id}},
                        status_code=status, headers=headers)


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id") or "-")


def _outcome_json(outcome: Any) -> dict[str, Any]:
    return {"submission": outcome.submission, "outcome": outcome.outcome, "axis_id": outcome.axis_id,
            "code": _code(outcome.code), "message": outcome.message, "receipt": _b64(outcome.receipt)}


# ------------------------------------------------------------------ the application

def create_app(service: AgencyService, authenticator: Authenticator, *,
               max_packet_bytes: int = DEFAULT_MAX_PACKET, rate: float = 200.0, burst: int = 400,
               store: Any | None = None, transport: Any | None = None, title: str = "Axis gateway") -> FastAPI:
    """The gateway application over `service`; `store` and `transport` (default: the service's) feed /readyz
    and /metrics."""
    store = store if store is not None else getattr(service, "store", None)
    transport = transport if transport is not None else getattr(service, "transport", None)
    limiter = RateLimiter(rate, burst)
    metrics = Metrics(store)
    bearer = HTTPBearer(auto_error=False, description="A credential from `axis credentials issue`.")

    # FastAPI's OpenTelemetry hooks are off: the gateway exports its own Prometheus metrics, and checking
    # for a configured tracer cost every request ~10 µs.
    app = FastAPI(title=title, version="1", openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
                  description="The agency edge of Axis: submit signed edXML packets, take what waits for "
                              "you, acknowledge it, follow what you sent. Every route needs "
                              "`Authorization: Bearer <credential>`.")
    app.state.metrics = metrics
    app.state.limiter = limiter
    app.state.service = service
    app.state.authenticator = authenticator

    # ---- errors: one JSON shape, a request id on each
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="axis"'
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, math.ceil(getattr(exc, "retry_after", 1.0))))
        return _error_response(exc.status, exc.code, exc.message, _request_id(request), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(422, "GW422", f"{where}: {first.get('msg', 'invalid request')}", _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return _error_response(exc.status_code, f"GW{exc.status_code}", message, _request_id(request),
                               dict(exc.headers or {}))

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("request %s: the store is unavailable: %s", _request_id(request), str(exc).splitlines()[0])
        return _error_response(503, "GW503", "the store is unavailable; try again later", _request_id(request),
                               {"Retry-After": "5"})

    from axis.transport import TransportError

    @app.exception_handler(TransportError)
    async def _broker_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("request %s: the broker is unavailable: %s", _request_id(request), exc)
        return _error_response(503, "GW503", "the broker is unavailable; try again later", _request_id(request),
                               {"Retry-After": "5"})

    from axis.signer import SignerUnavailable

    @app.exception_handler(SignerUnavailable)
    async def _signer_down(request: Request, exc: Exception) -> JSONResponse:
        # Reached only once the retry policy's patience ran out: the signer is restarted within seconds.
        log.warning("request %s: the signer is unavailable: %s", _request_id(request), exc)
        return _error_response(503, "GW503", "the axis's signer is unavailable; try again later", _request_id(request),
                               {"Retry-After": "5"})

    # ---- authentication and the rate limit
    lookups: dict[str, asyncio.Future[Caller]] = {}

    async def looked_up(token: str) -> Caller:
        # One store read per token at a time on this loop: when a busy credential's cache entry expires,
        # the requests in flight wait for the first one's read instead of each taking a thread.
        pending = lookups.get(token)
        if pending is None:
            pending = lookups[token] = asyncio.ensure_future(run_in_threadpool(authenticator.authenticate, token))
            pending.add_done_callback(lambda _: lookups.pop(token, None))
        return await asyncio.shield(pending)

    async def caller_of(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
        return await authorized(request, credentials)

    async def authorized(request: Request, credentials: HTTPAuthorizationCredentials | None,
                         known_query: frozenset[str] | None = None) -> Caller:
        """The route's query names, the credential, the rate limit: the checks before every operation."""
        _only_known_query(request, known_query)
        token = credentials.credentials if credentials is not None else None
        if token is None:
            if request.headers.get("authorization"):
                log.warning("credential refused: the Authorization header is not 'Bearer <credential>'")
                raise Unauthorized("send Authorization: Bearer <credential>")
            raise Unauthorized("no credential: send Authorization: Bearer <credential>")
        caller = authenticator.cached(token)
        if caller is None:
            try:
                caller = await looked_up(token)
            except Unauthorized as refused:  # a revoked credential: its id goes in the access log line
                request.state.refused_credential = getattr(refused, "credential_id", None)
                raise
        request.state.caller = caller
        wait = limiter.take(caller.credential_id)
        if wait > 0:
            log.info("rate limit: credential %s must wait %.2f s", caller.credential_id, wait)
            raise RateLimited(f"more than {rate:g} requests per second; retry after {math.ceil(wait)} s",
                              retry_after=wait)
        return caller

    CallerDep = Depends(caller_of)

    async def _read_body(request: Request, limit: int, what: str) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"{what} is {int(declared)} bytes; the limit is {limit}")
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{what} is larger than the limit of {limit} bytes")
                if size > SPOOL_IN_MEMORY:
                    await run_in_threadpool(spool.write, chunk)
                else:
                    spool.write(chunk)
            spool.seek(0)
            return spool.read() if size <= SPOOL_IN_MEMORY else await run_in_threadpool(spool.read)

    async def _spool_packet(request: Request, limit: int) -> bytes | Path:
        """The uploaded packet: its bytes when small, else a private file holding them (written as they arrive,
        never whole in memory; `service.send` then owns it). The limit is enforced as the bytes arrive."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"the packet is {int(declared)} bytes; the limit is {limit}")
        size, head = 0, bytearray()
        file: io.BufferedWriter | None = None
        path: Path | None = None
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the packet is larger than the limit of {limit} bytes")
                if file is None and size <= SPOOL_IN_MEMORY:
                    head += chunk
                    continue
                if file is None:
                    descriptor, name = tempfile.mkstemp(prefix="axis-upload-", suffix=".edxml")  # mode 0600
                    file, path = open(descriptor, "wb"), Path(name)  # noqa: SIM115 - closed below, or on error
                    chunk, head = bytes(head) + chunk, bytearray()
                await run_in_threadpool(file.write, chunk)
            if file is None or path is None:
                return bytes(head)
            await run_in_threadpool(file.close)
            return path
        except BaseException:
            if file is not None and path is not None:
                file.close()
                path.unlink(missing_ok=True)
            raise

    xml_body = {"requestBody": {"required": True, "content": {
        "application/xml": {"schema": {"type": "string", "format": "binary"}}}}}
    optional_xml_body = {"requestBody": {"required": False, "content": {
        "application/xml": {"schema": {"type": "string", "format": "binary"}}}}}

    # ---- /v1
    # The busiest route takes the raw request: FastAPI's parameter and dependency solving cost more than
    # the rest of the HTTP layer together (docs/performance.md), so its checks are called here directly,
    # in the order the other routes make them, and its parameters are declared for the OpenAPI document.
    submit_query = frozenset({"wait"})
    submit_openapi = {**xml_body, "security": [{"HTTPBearer": []}], "parameters": [
        {"name": "wait", "in": "query", "required": False, "description": "Seconds to wait for the outcome.",
         "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 10.0}},
        {"name": "Axis-Submission", "in": "header", "required": False,
         "description": "Optional: the submission id the caller chose (32 hex digits or a UUID). Repeating a "
                        "request with the same id and bytes is the same submission.",
         "schema": {"type": "string", "pattern": SUBMISSION_HEADER.pattern}}]}

    @app.post("/v1/packets", response_model=SubmissionOutcome, tags=["send"],
              summary="Submit a signed document or status packet (sendEdoc)",
              responses={202: {"model": Queued, "description": "Not decided within ?wait=: poll the submission"},
                         **_errors(*_COMMON, 403, 409, 413)}, openapi_extra=submit_openapi)
    async def submit(request: Request) -> Response:
        caller = await authorized(request, await bearer(request), submit_query)
        wait = _number_query(request, "wait", 10.0, 0.0, MAX_WAIT)
        chosen = request.headers.get("axis-submission")
        if chosen is not None and not SUBMISSION_HEADER.fullmatch(chosen):
            raise Invalid(f"header.Axis-Submission: String should match pattern '{SUBMISSION_HEADER.pattern}'",
                          "GW422")
        if caller.role != "agency":  # before reading a byte of the upload; the service says the same
            raise Forbidden(f"a {caller.role} credential cannot submit packets")
        body = await _spool_packet(request, max_packet_bytes)
        outcome = await service.send(caller, body, submission=chosen.lower() if chosen else None, wait=wait)
        # The outcome ends the request's access-log line: one line per submission, not one more of its own.
        request.state.outcome = " ".join(filter(None, ("submission", outcome.submission, outcome.outcome,
                                                        _code(outcome.code))))
        if outcome.outcome == "queued":
            return JSONResponse({"submission": outcome.submission, "outcome": "queued"}, status_code=202)
        metrics.intake.labels(outcome.outcome, _code(outcome.code) or "").inc()
        return JSONResponse(_outcome_json(outcome))

    @app.get("/v1/submissions/{submission}", response_model=SubmissionOutcome, tags=["send"],
             summary="The outcome of a submission", responses=_errors(*_COMMON, 404))
    async def submission_outcome(submission: str, caller: Caller = CallerDep,
                                 wait: float = Query(0.0, ge=0, le=MAX_WAIT)) -> dict[str, Any]:
        outcome = await service.outcome(caller, submission, wait=wait)
        return _outcome_json(outcome)

    @app.get("/v1/inbox", response_model=InboxPage, tags=["receive"],
             summary="What waits for the caller, urgent first, then oldest (getReceivedEdocList)",
             responses=_errors(*_COMMON, 403))
    async def inbox(caller: Caller = CallerDep, kind: Literal["document", "status"] | None = None,
                    after: str | None = Query(None, min_length=1, max_length=200,
                                              description="The `next` of the previous page."),
                    limit: int = Query(100, ge=1, le=1000),
                    wait: float = Query(0.0, ge=0, le=MAX_WAIT, description="Long-poll: seconds to wait for "
                                                                            "something when nothing waits.")
                    ) -> dict[str, Any]:
        items, cursor = await service.inbox(caller, kind=kind, after=after, limit=limit, wait=wait)
        return {"items": [{"axis_id": _field(i, "axis_id"), "kind": _field(i, "kind"),
                           "sender": _field(i, "sender", "sender_code"), "document_id": _field(i, "document_id"),
                           "priority": _field(i, "priority"), "size": _field(i, "size"),
                           "digest": _field(i, "digest"), "received_at": _field(i, "received_at")} for i in items],
                "next": cursor}

    served_headers = {name: {"schema": {"type": "string"}} for name in _SERVED_HEADERS.values()}

    @app.get("/v1/inbox/{axis_id}", tags=["receive"], summary="The exact signed bytes (getEdoc)",
             response_class=Response,
             responses={200: {"content": {"application/xml": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "The packet exactly as its sender signed it, with the hub's seal "
                                             "in the Axis-Seal headers", "headers": served_headers},
                        **_errors(*_COMMON, 403, 404)})
    async def fetch(axis_id: str, caller: Caller = CallerDep) -> Response:
        return await delivery(caller, axis_id)

    async def delivery(caller: Caller, axis_id: str) -> Response:
        served = await service.fetch(caller, axis_id)
        headers = _served_headers(served)
        if isinstance(served.body, bytes):
            return Response(served.body, media_type="application/xml", headers=headers)
        # A large body: sent as the store reads it, a piece at a time (Starlette iterates it in a thread).
        headers["Content-Length"] = str(served.body.size)
        return StreamingResponse(iter(served.body), media_type="application/xml", headers=headers)

    @app.post("/v1/inbox/{axis_id}/ack", response_model=AckAnswer, tags=["receive"],
              summary="The caller has stored it (updateStatus done)", openapi_extra=optional_xml_body,
              responses=_errors(*_COMMON, 403, 404, 413))
    async def ack(axis_id: str, request: Request, caller: Caller = CallerDep) -> dict[str, Any]:
        return await acknowledged(request, caller, axis_id)

    async def acknowledged(request: Request, caller: Caller, axis_id: str) -> dict[str, Any]:
        body = await _read_body(request, MAX_RECEIPT_BYTES, "the delivery receipt")
        done = await service.ack(caller, axis_id, body or None)
        return {"axis_id": done["axis_id"], "state": done["state"], "receipt": _b64(done["receipt"])}

    @app.post("/v1/inbox/ack", response_model=AckBatchAnswer, tags=["receive"],
              summary="The caller has stored these (updateStatus done, for up to 100 at once)",
              description="Each item is answered on its own, in order, as `POST /v1/inbox/{axis_id}/ack` would "
                          "answer it: a delivery that is not the caller's (404) or a refused receipt (422) is "
                          "an `error` for that item and changes nothing for it or for the others.",
              responses=_errors(*_COMMON, 403, 413), openapi_extra=_json_body(AckBatch))
    async def ack_batch(request: Request, caller: Caller = CallerDep) -> dict[str, Any]:
        batch = _parsed(AckBatch, await _read_body(request, MAX_ACK_BATCH_BYTES, "the batch of acknowledgements"))
        # The BASE64 pattern was checked: every receipt decodes.
        items = [(item.axis_id, base64.b64decode(item.receipt) if item.receipt else None) for item in batch.items]
        answers: list[dict[str, Any]] = []
        for (axis_id, _), done in zip(items, await service.ack_many(caller, items), strict=True):
            if isinstance(done, GatewayError):
                answers.append({"axis_id": axis_id, "error": _item_error(done)})
            else:
                answers.append({"axis_id": done["axis_id"], "state": done["state"], "receipt": _b64(done["receipt"])})
        request.state.outcome = _outcomes("acks", answers, "delivered")
        return {"items": answers}

    @app.post("/v1/inbox/fetch", response_model=FetchBatchAnswer, tags=["receive"],
              summary="The exact signed bytes of up to 100 deliveries at once (getEdoc)",
              description="Each axis id is answered on its own, in order, as `GET /v1/inbox/{axis_id}` would "
                          "answer it, its headers in `headers`: one that is not the caller's is a 404 `error` for "
                          "that item. The bodies of one answer carry at most 4 MiB: a body that does not fit is a "
                          "413 `error` for that item (fetch it alone, streamed).",
              responses=_errors(*_COMMON, 403, 413), openapi_extra=_json_body(FetchBatch))
    async def fetch_batch(request: Request, caller: Caller = CallerDep) -> dict[str, Any]:
        batch = _parsed(FetchBatch, await _read_body(request, MAX_JSON_BYTES, "the list of axis ids"))
        answers: list[dict[str, Any]] = []
        for axis_id, served in zip(batch.axis_ids, await service.fetch_many(caller, batch.axis_ids), strict=True):
            if isinstance(served, GatewayError):
                answers.append({"axis_id": axis_id, "error": _item_error(served)})
            else:
                assert isinstance(served.body, bytes)  # fetch_many serves only whole bodies
                answers.append({"axis_id": axis_id, "body": _b64(served.body), "headers": _served_headers(served)})
        request.state.outcome = _outcomes("fetches", answers, "served")
        return {"items": answers}

    # A delivery fetched and acknowledged on its own (an adapter of its own, curl; the SDK takes a page at a
    # time) is called straight from the edge too (see below), with the checks its FastAPI route makes, in order.
    async def fetch_direct(request: Request) -> Response:
        caller = await authorized(request, await bearer(request), frozenset())
        return await delivery(caller, request.path_params["axis_id"])

    async def ack_direct(request: Request) -> Response:
        caller = await authorized(request, await bearer(request), frozenset())
        return JSONResponse(await acknowledged(request, caller, request.path_params["axis_id"]))

    @app.post("/v1/inbox/{axis_id}/fail", response_model=FailAnswer, tags=["receive"],
              summary="The caller could not take it (updateStatus fail)",
              responses=_errors(*_COMMON, 400, 403, 404, 409, 413), openapi_extra=_json_body(FailRequest))
    async def fail(axis_id: str, request: Request, caller: Caller = CallerDep) -> dict[str, Any]:
        reason = _parsed(FailRequest, await _read_body(request, MAX_JSON_BYTES, "the failure report"))
        done = await service.fail(caller, axis_id, reason.reason)
        return {"axis_id": done["axis_id"], "state": done["state"]}

    @app.get("/v1/sent", response_model=SentPage, tags=["send"],
             summary="The caller's packets with each recipient's state (getSentEdocList)",
             responses=_errors(*_COMMON, 403))
    async def sent(caller: Caller = CallerDep,
                   since: str | None = Query(None, min_length=1, max_length=64,
                                             description="Only packets received at or after this time (ISO 8601 "
                                                         "with a time zone)."),
                   after: str | None = Query(None, min_length=1, max_length=200), limit: int = Query(100, ge=1, le=1000)
                   ) -> dict[str, Any]:
        items, cursor = await service.sent(caller, since=since, after=after, limit=limit)
        return {"items": items, "next": cursor}

    @app.get("/v1/documents/{axis_id}/receipts", response_model=Timeline, tags=["send"],
             summary="A document's timeline: intake, delivery, error and status receipts",
             responses=_errors(*_COMMON, 404))
    async def receipts(axis_id: str, caller: Caller = CallerDep) -> dict[str, Any]:
        found = await service.receipts(caller, axis_id)
        return {"axis_id": axis_id, "receipts": [
            {"kind": _field(r, "kind"), "recipient": _field(r, "recipient", "recipient_code"),
             # A refusal number reads AXnnn; a status code ("01" … "16") and "delivered" stay as they are.
             "code": _code(_field(r, "code")) if _field(r, "kind") == "error" else _field(r, "code"),
             "detail": _field(r, "detail"),
             "created_at": _field(r, "created_at"), "digest": _field(r, "digest"),
             "body": _b64(_field(r, "body"))} for r in found]}

    @app.get("/v1/agencies", response_model=Directory, tags=["directory"], summary="The directory (getAgenciesList)",
             responses=_errors(*_COMMON))
    async def agencies(caller: Caller = CallerDep) -> dict[str, Any]:
        found = await service.agencies(caller)
        return {"agencies": [{"code": _field(a, "code"), "name": _field(a, "name"),
                              "parent": _field(a, "parent", "parent_code"), "state": _field(a, "state")}
                             for a in found]}

    # ---- the auditor's questions (auditor credentials only: docs/auditor-guide.md)
    day_or_instant = "A day (2026-03-01) or an instant (2026-03-01T08:00, with Z or +07:00 allowed; without, in " \
                     "the gateway's AXIS_DEADLINE_TIME_ZONE)."

    @app.get("/v1/audit/log", response_model=AuditLogPage, tags=["audit"],
             summary="The audit record, oldest first (axis audit log)", responses=_errors(*_COMMON, 403))
    async def audit_log(caller: Caller = CallerDep,
                        agency: str | None = Query(None, min_length=1, max_length=40,
                                                   description="Only entries whose subject is this agency code, "
                                                               "or whose data holds it as a value."),
                        since: str | None = Query(None, min_length=1, max_length=64,
                                                  description=f"{day_or_instant} Inclusive."),
                        until: str | None = Query(None, min_length=1, max_length=64,
                                                  description=f"{day_or_instant} Exclusive; a day: to its end."),
                        kind: list[ActionName] | None = Query(None, description="Only entries with this action "
                                                                                "(repeatable): accepted, refused, ..."),
                        after: str | None = Query(None, min_length=1, max_length=200),
                        limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        items, cursor = await service.audit_log(caller, agency=agency, since=since, until=until, kinds=kind,
                                                after=after, limit=limit)
        return {"items": items, "next": cursor}

    @app.get("/v1/audit/overdue", response_model=OverduePage, tags=["audit"],
             summary="Deliveries not confirmed within the legal deadline (axis overdue)",
             responses=_errors(*_COMMON, 403))
    async def audit_overdue(caller: Caller = CallerDep,
                            as_of: str | None = Query(None, min_length=1, max_length=64,
                                                      description=f"Judge as of this instant. {day_or_instant} "
                                                                  "A day means its end; default now."),
                            after: str | None = Query(None, min_length=1, max_length=200),
                            limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return await service.overdue(caller, as_of=as_of, after=after, limit=limit)

    @app.get("/v1/audit/stats", response_model=TrafficStats, tags=["audit"],
             summary="Traffic per agency or per day (axis stats)", responses=_errors(*_COMMON, 403))
    async def audit_stats(caller: Caller = CallerDep, by: Literal["agency", "day"] = "agency",
                          since: str | None = Query(None, min_length=1, max_length=64,
                                                    description=f"{day_or_instant} Inclusive."),
                          until: str | None = Query(None, min_length=1, max_length=64,
                                                    description=f"{day_or_instant} Exclusive; a day: to its end.")
                          ) -> dict[str, Any]:
        return await service.stats(caller, by=by, since=since, until=until)

    # ---- operations
    @app.get("/healthz", response_model=Health, tags=["operations"], summary="The process answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "checks": {}}

    @app.get("/readyz", response_model=Health, tags=["operations"], summary="The store and the broker answer",
             responses={503: {"model": Health, "description": "Something is down"}})
    async def readyz() -> Response:
        ready = getattr(service, "ready", None)
        if ready is not None:
            found = await ready()
        else:
            found = {"store": await _store_answers(store), "broker": await _broker_answers(transport)}
        checks = {part: "ok" if ok else "down" for part, ok in found.items()}
        ok = all(found.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response,
             summary="Prometheus metrics (loopback clients and operator credentials only)",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                        **_errors(401, 403, 429)})
    async def prometheus(request: Request) -> Response:
        # No security scheme in the OpenAPI document: a loopback client needs no credential.
        client = request.client.host if request.client else None
        if not _loopback(client):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) \
                if scheme.lower() == "bearer" and token.strip() else None
            caller = await authorized(request, given)
            if caller.role != "operator":
                log.warning("metrics refused: credential %s is not an operator's", caller.credential_id)
                raise Forbidden("metrics are for operator credentials (or loopback clients)")
        data = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    # POST /v1/packets, and a delivery's fetch and ack, are called straight from the edge middleware (see
    # `_Edge`): their route objects stay for the OpenAPI document and the access log's template.
    def route(method: str, path: str) -> Any:
        return next(r for r in app.routes if getattr(r, "path", None) == path and method in getattr(r, "methods", ()))
    direct = {("POST", "/v1/packets"): (route("POST", "/v1/packets"), submit),
              ("GET", "/v1/inbox/{axis_id}"): (route("GET", "/v1/inbox/{axis_id}"), fetch_direct),
              ("POST", "/v1/inbox/{axis_id}/ack"): (route("POST", "/v1/inbox/{axis_id}/ack"), ack_direct)}
    app.add_middleware(_Edge, metrics=metrics, direct=direct, handlers=app.exception_handlers)
    return app


async def _store_answers(store: Any) -> bool:
    if store is None:
        return True
    try:
        await asyncio.wait_for(run_in_threadpool(_ping_store, store), 3.0)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"; /readyz says which part
        return False


async def _broker_answers(transport: Any) -> bool:
    if transport is None:
        return True
    try:
        await asyncio.wait_for(transport.depth(wire.INTAKE_QUEUE), 3.0)
        return True
    except Exception:  # noqa: BLE001 - as above
        return False


def _query_names(dependant: Any) -> Iterator[str]:
    for param in dependant.query_params:
        yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def _only_known_query(request: Request, known: frozenset[str] | None = None) -> None:
    """Refuse a query parameter the route does not take (a typo such as ?limt=10 is not silently ignored).

    `known`: the route's parameters, for a route that reads its query itself; else its dependant's."""
    if known is None:
        route = request.scope.get("route")
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            return
        known = getattr(route, "_axis_query", None)
        if known is None:
            known = frozenset(_query_names(dependant))
            route._axis_query = known  # type: ignore[union-attr]
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise Invalid(f"unknown query parameter {unknown[0][:40]!r}; this operation takes "
                      f"{', '.join(sorted(known)) or 'none'}", "GW422")


def _number_query(request: Request, name: str, default: float, low: float, high: float) -> float:
    """A number from the query string within [low, high], else Invalid (GW422) saying so."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise Invalid(f"query.{name}: Input should be a valid number", "GW422") from None
    if not low <= value <= high:  # NaN fails both comparisons
        raise Invalid(f"query.{name}: Input should be a number from {low:g} to {high:g}", "GW422")
    return value


def _ping_store(store: Any) -> None:
    with store.engine.connect() as c:
        c.execute(sa.text("SELECT 1"))


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


Endpoint = Callable[[Request], Awaitable[Response]]


class _Edge:
    """Pure ASGI middleware: the request id, the access-log line, request metrics, and a JSON 500.

    `direct` routes (method and path template → route, endpoint) are called from here, their exceptions
    answered by the application's own `handlers`: FastAPI's routing, its inner middleware and its parameter
    solving cost the busiest route more than the rest of its request (docs/performance.md). Such an endpoint
    takes the `Request` alone and reads its own parameters (a template's are in `path_params`, matched by the
    route's own pattern).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: Metrics,
                 direct: Mapping[tuple[str, str], tuple[Any, Endpoint]] | None = None,
                 handlers: Mapping[Any, Callable[..., Any]] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.direct = {key: found for key, found in (direct or {}).items() if "{" not in key[1]}
        self.templated = [(key[0], found) for key, found in (direct or {}).items() if "{" in key[1]]
        self.handlers = handlers if handlers is not None else {}

    def _direct(self, scope: Scope) -> tuple[Any, Endpoint] | None:
        method, path = scope.get("method", ""), scope.get("path", "")
        found = self.direct.get((method, path))
        if found is not None:
            return found
        for wanted, (route, endpoint) in self.templated:
            match = route.path_regex.match(path) if method == wanted else None
            if match is not None:
                scope["path_params"] = match.groupdict()
                return route, endpoint
        return None

    async def _call_direct(self, route: Any, endpoint: Endpoint, scope: Scope, receive: Receive,
                           send: Send) -> None:
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = next((self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = [500]
        started_response = [False]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_response[0] = True
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        direct = self._direct(scope)
        try:
            if direct is not None:
                await self._call_direct(*direct, scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception:
            log.exception("request %s: unexpected error", request_id)
            if started_response[0]:
                raise
            status[0] = 500
            response = _error_response(500, "GW500", "internal error; the request id names it in the log",
                                       request_id)
            await response(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # The route's template, never the raw path (an axis id per label would grow without bound);
            # FastAPI's own /openapi.json and /docs carry no route in the scope, and have fixed paths.
            template = getattr(route, "path", None) or (scope.get("path", "") if status[0] < 400 else "(unmatched)")
            method = scope.get("method", "-")
            self.metrics.requests.labels(template, method, str(status[0])).inc()
            self.metrics.latency.labels(template, method).observe(elapsed)
            state = scope.get("state", {})
            caller = state.get("caller")
            credential = caller.credential_id if caller else state.get("refused_credential") or "-"
            access_log.info("%s %s %s %s %s %d %.1fms%s", request_id, credential,
                            (caller.agency or "-") if caller else "-", method, template, status[0], elapsed * 1000,
                            f" {state['outcome']}" if "outcome" in state else "")
