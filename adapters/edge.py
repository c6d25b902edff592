"""The agency's edge: the one narrow road from an agency's software to Axis.

An agency never touches the broker or the database. Everything it does goes
through an `Edge`, nine operations on plain values (bytes, strings, numbers,
small frozen records), the SDK's names for the gateway's routes
(docs/adapter-guide.md):

| operation | HTTP (`GatewayEdge`) | what it does |
|---|---|---|
| `submit(packet, wait)` | `POST /v1/packets` | hand over one signed packet; its `Answer` (maybe still `queued`) |
| `outcome(submission, wait)` | `GET /v1/submissions/{id}` | the `Answer` of an earlier submission |
| `inbox(kind, after, limit, wait)` | `GET /v1/inbox` | what waits for this agency, urgent first, then oldest |
| `fetch(axis_id)` | `GET /v1/inbox/{id}` | the exact signed bytes and their `ax-*` headers (seal, digest) |
| `fetch_many([axis_id])` | `POST /v1/inbox/fetch` | `fetch` for up to 100 (4 MiB of bodies), an answer each |
| `ack_many([(axis_id, receipt)])` | `POST /v1/inbox/ack` | stored: up to 100 signed delivery receipts, an answer each |
| `ack(axis_id, receipt)` | `POST /v1/inbox/ack` | `ack_many` of one |
| `fail(axis_id, reason)` | `POST /v1/inbox/{id}/fail` | cannot take it: an error receipt goes to the sender |
| `sent(since, after, limit)` | `GET /v1/sent` | this agency's documents, each recipient's state |
| `receipts(axis_id)` | `GET /v1/documents/{id}/receipts` | a document's timeline (signed receipts) |
| `agencies()` | `GET /v1/agencies` | the directory |

Two implementations: `GatewayEdge` speaks HTTP to `axis gateway` (httpx, a
bearer credential, TLS verified against the system's or a given CA bundle);
`LocalEdge` calls `axis.gateway.AgencyService` in-process with a `Caller`
for the agency, for the axis operator's own machine (no gateway URL). The
service authorizes both the same way, so both behave the same.

What callers may rely on
------------------------
- Every method either returns what the table says or raises an `EdgeError`
  carrying the stable `code` (`GW404`, `AX412`, ...), the HTTP `status` and
  the server's `request_id`: `EdgeNotFound` (unknown, or not this agency's:
  the two are indistinguishable), `EdgeUnauthorized` (no, unknown or revoked
  credential; or a role that may not do this), `EdgeRefused` (the packet was
  refused before it was queued: too large, or not the caller's), or
  `EdgeUnavailable` (the gateway, broker or store is down, or the rate
  limit was hit).
- `EdgeUnavailable` is a `TransportError`: `GatewayEdge` retries it (and any
  connection error) under the one retry policy (`axis.retry`) before it is
  raised; by then the call may or may not have taken effect. Repeating any
  call is safe: a repeated `submit` is answered `duplicate` with the first
  intake receipt, a repeated `ack` records nothing new.
- `submit` returns once the packet is durably queued for the hub (or
  decided). An `Answer` whose `outcome` is `queued` means no hub has decided
  yet; ask `outcome()` later, nothing is lost.
- `fetch` returns headers under the wire names of `axis.wire` (`ax-seal`,
  `ax-seal-to`, `ax-seal-cert`, `ax-digest`, `ax-axis-id`, `ax-sender`,
  `ax-kind`), whichever implementation served them. Nothing an edge returns
  is verified: the caller (`AgencyClient`) checks digest, seal and signature.
- Edges hold no agency state; one edge may serve many concurrent calls.
  `aclose()` releases connections (a `LocalEdge` does not own its service).
"""
from __future__ import annotations

import abc
import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

from axis import wire
from axis.private import FILE_MODE
from axis.retry import retrying
from axis.transport import TransportError

__all__ = ["Answer", "Edge", "EdgeError", "EdgeNotFound", "EdgeRefused", "EdgeUnauthorized", "EdgeUnavailable",
           "GatewayEdge", "LocalEdge", "Waiting", "read_credential"]

# HTTP header (as served by GET /v1/inbox/{axis_id}) -> the wire name `fetch` returns it under.
HTTP_TO_WIRE = {"axis-id": wire.H_AXIS_ID, "axis-digest": wire.H_DIGEST, "axis-sender": wire.H_SENDER,
                "axis-kind": wire.H_KIND, "axis-seal": wire.H_SEAL, "axis-seal-to": wire.H_SEAL_TO,
                "axis-seal-cert": wire.H_SEAL_CERT}
MAX_WAIT = 30.0  # seconds one request asks the gateway to wait (it holds a request at most 60 s)


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Answer:
    """Where a submission stands. `receipt` is the hub's signed intake receipt (unverified) once decided."""

    submission: str
    outcome: str                  # queued | accepted | duplicate | refused
    axis_id: str | None = None
    code: str | None = None       # a refusal's code, e.g. "AX301"
    message: str | None = None
    receipt: bytes | None = None

    @property
    def decided(self) -> bool:
        return self.outcome != "queued"


@dataclass(frozen=True)
class Waiting:
    """One item of the inbox listing: a delivery waiting for this agency."""

    axis_id: str
    kind: str                     # document | status
    sender: str
    document_id: str | None
    priority: int
    size: int
    digest: str
    received_at: str              # ISO 8601


class EdgeError(Exception):
    """Axis answered with an error (or could not be reached): `code` is stable, `message` is for people."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


class EdgeNotFound(EdgeError):
    """404: no such axis id or submission for this agency (another agency's looks exactly the same)."""


class EdgeUnauthorized(EdgeError):
    """401/403: no, unknown or revoked credential, or a role that may not do this."""


class EdgeRefused(EdgeError):
    """413/422 and other 4xx: refused before anything was queued (too large, an invalid parameter, ...)."""


class EdgeUnavailable(EdgeError, TransportError):
    """503/429 or a connection failure: passing; retried by the retry policy before it reaches the caller."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(status, code, message, request_id)
        self.retry_after = retry_after


def error_for(status: int, code: str, message: str, request_id: str | None = None,
              retry_after: float | None = None) -> EdgeError:
    """The `EdgeError` subclass for an HTTP status."""
    if status in (429, 503) or status == 0:
        return EdgeUnavailable(status, code, message, request_id, retry_after)
    if status == 404:
        return EdgeNotFound(status, code, message, request_id)
    if status in (401, 403):
        return EdgeUnauthorized(status, code, message, request_id)
    if 400 <= status < 500:
        return EdgeRefused(status, code, message, request_id)
    return EdgeError(status, code, message, request_id)


def _b64(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return base64.b64decode(value)


def _wire_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A served delivery's HTTP headers (or a batch item's `headers`) under their wire names (`axis.wire`)."""
    return {HTTP_TO_WIRE[name.lower()]: value for name, value in headers.items() if name.lower() in HTTP_TO_WIRE}


def _item_error(error: Mapping[str, Any]) -> EdgeError:
    """A batch item's `error` ({"status", "code", "message"}) as the `EdgeError` its request alone would raise."""
    return error_for(int(error["status"]), str(error["code"]), str(error["message"]))


def _service_error(exc: Any) -> EdgeError:
    """An `axis.gateway.GatewayError` (the service in process) as the `EdgeError` the gateway's answer gives."""
    return error_for(exc.status, exc.code, exc.message, None, getattr(exc, "retry_after", None))


def _text64(value: bytes | None) -> str | None:
    return base64.b64encode(value).decode("ascii") if value is not None else None


def _answer(data: Mapping[str, Any]) -> Answer:
    code = data.get("code")
    if isinstance(code, int):
        code = f"AX{code}"
    return Answer(str(data["submission"]), str(data["outcome"]), data.get("axis_id"), code,
                  data.get("message"), _b64(data.get("receipt")))


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _waiting(item: Any) -> Waiting:
    """A listing item from JSON (a dict) or from the service (a record with attributes)."""
    get = item.get if isinstance(item, Mapping) else (lambda name, default=None: getattr(item, name, default))
    sender = get("sender") or get("sender_code")
    return Waiting(str(get("axis_id")), str(get("kind")), str(sender), get("document_id"), int(get("priority") or 0),
                   int(get("size") or 0), str(get("digest")), _iso(get("received_at")))


def _receipt_items(items: list[Any]) -> list[dict[str, Any]]:
    return [{**item, "body": _b64(item.get("body"))} for item in items]


def _untrusted_certificate(exc: BaseException) -> str | None:
    """The verification error if `exc` was caused by a TLS certificate that does not verify, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


def read_credential(path: Path) -> str:
    """The credential in `path` (its first line, stripped); ValueError if the file holds none."""
    text = Path(path).read_text(encoding="utf-8").strip()
    token = text.splitlines()[0].strip() if text else ""
    if not token:
        raise ValueError(f"{path} holds no credential (write the one `axis credentials issue` printed)")
    return token


# ---------------------------------------------------------------- the interface


class Edge(abc.ABC):
    """See the module docstring for what callers may rely on."""

    async def __aenter__(self) -> Edge:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None = None, exc: BaseException | None = None,
                        traceback: TracebackType | None = None) -> None:
        await self.aclose()

    async def aclose(self) -> None:  # noqa: B027 - nothing to release by default
        """Release network resources."""

    @abc.abstractmethod
    async def submit(self, packet: bytes | Path, *, wait: float = 0.0, submission: str | None = None) -> Answer:
        """Queue one signed packet of the caller's agency for the hub; wait up to `wait` s for its outcome.

        `packet`: its bytes, or the file that holds them (over HTTP sent from the file as it is read).
        `submission`: the id the caller chose (`axis.wire.new_submission_id()`); repeating the call with
        the same id and bytes is the same submission (no `duplicate`)."""

    @abc.abstractmethod
    async def outcome(self, submission: str, *, wait: float = 0.0) -> Answer:
        """The outcome of a submission, waiting up to `wait` s while it is still queued."""

    @abc.abstractmethod
    async def inbox(self, *, kind: str | None = None, after: str | None = None, limit: int = 100,
                    wait: float = 0.0) -> tuple[list[Waiting], str | None]:
        """What waits for the caller after cursor `after`, and the cursor of the next page (None at the end).

        With `wait`, an empty listing waits up to that long for a first item."""

    @abc.abstractmethod
    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        """The exact bytes of a waiting delivery and its headers (wire names, `axis.wire`)."""

    async def fetch_to(self, axis_id: str, target: Path) -> tuple[dict[str, str], str]:
        """`fetch`, the bytes written to the file `target` (created or emptied) instead of returned: its
        headers and the SHA-256 of what was written. Over HTTP the body goes to the file as it arrives (a
        large packet is never whole in memory)."""
        body, headers = await self.fetch(axis_id)
        return headers, write_delivery(target, body)

    @abc.abstractmethod
    async def fetch_many(self, axis_ids: Sequence[str]) -> list[tuple[bytes, dict[str, str]] | EdgeError]:
        """`fetch` for up to `axis.wire.MAX_FETCH_BATCH` deliveries in one call, answered in order, each on its
        own: (bytes, headers), or the `EdgeError` `fetch` would raise for that item (`EdgeNotFound`), or
        `EdgeRefused` 413 for a body that did not fit in the answer's `axis.wire.MAX_FETCH_BATCH_BYTES` (fetch
        it alone). A failure of the whole call raises, as `fetch` does."""

    async def ack(self, axis_id: str, receipt: bytes | None) -> dict[str, Any]:
        """Record that the caller stored it: `receipt` is its signed delivery receipt (None: Axis signs one
        for the credential). Returns {"axis_id", "state", "receipt": the recorded receipt's bytes}; raises
        the item's `EdgeError` (`ack_many` of one)."""
        [answer] = await self.ack_many([(axis_id, receipt)])
        if isinstance(answer, EdgeError):
            raise answer
        return answer

    @abc.abstractmethod
    async def ack_many(self, items: Sequence[tuple[str, bytes | None]]) -> list[dict[str, Any] | EdgeError]:
        """`ack` for up to `axis.wire.MAX_ACK_BATCH` (axis id, receipt) pairs in one call, answered in order,
        each on its own: the dict `ack` returns, or the `EdgeError` it would raise for that item (`EdgeNotFound`,
        `EdgeRefused`), which changed nothing for it. A failure of the whole call (unreachable, unauthorized)
        raises, as `ack` does."""

    @abc.abstractmethod
    async def fail(self, axis_id: str, reason: str) -> dict[str, Any]:
        """Record that the caller cannot take it (the sender gets an error receipt). {"axis_id", "state"}."""

    @abc.abstractmethod
    async def sent(self, *, since: str | None = None, after: str | None = None,
                   limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """The caller's documents, oldest first: {"axis_id", "kind", "document_id", "received_at",
        "recipients": {code: state}}; and the next page's cursor."""

    @abc.abstractmethod
    async def receipts(self, axis_id: str) -> list[dict[str, Any]]:
        """The timeline of a document: {"kind", "recipient", "code", "detail", "created_at", "digest",
        "body": the signed bytes}."""

    @abc.abstractmethod
    async def agencies(self) -> list[dict[str, Any]]:
        """The directory: {"code", "name", "parent", "state"}."""


async def _file_pieces(path: Path, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    with open(path, "rb") as file:
        while piece := await asyncio.to_thread(file.read, size):
            yield piece


def write_delivery(target: Path, body: bytes) -> str:
    """`body` written to the file `target` (created readable by this user only, or emptied); its SHA-256."""
    with _private_file(target) as file:
        file.write(body)
    return hashlib.sha256(body).hexdigest()


def _private_file(path: Path) -> BinaryIO:
    """`path` opened for writing from its start, created readable by this user only (a delivery)."""
    return open(path, "wb", opener=lambda name, flags: os.open(name, flags, FILE_MODE))


# ---------------------------------------------------------------- HTTP


class GatewayEdge(Edge):
    """The edge over HTTP(S): `axis gateway` at `base_url`, authenticated by a bearer credential.

    `ca_file`: a PEM bundle the gateway's certificate must chain to (default: the
    system's roots). `client`: an `httpx.AsyncClient` to use instead of one of
    its own (tests, custom transports); the edge closes only its own.
    """

    def __init__(self, base_url: str, credential: str, *, ca_file: Path | None = None, timeout: float = 30.0,
                 max_connections: int = 32, client: httpx.AsyncClient | None = None) -> None:
        if not credential or any(c.isspace() for c in credential):
            raise ValueError("the credential must be one token without spaces (as `axis credentials issue` "
                             "printed it)")
        base = base_url.rstrip("/").removesuffix("/v1")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"the gateway URL {base_url!r} must start with http:// or https://")
        self.base_url = base
        self.timeout = timeout
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except OSError as exc:  # ssl.SSLError is one: a file that is not PEM certificates
                raise ValueError(f"cannot use {ca_file} as the gateway's TLS roots: "
                                 f"{exc.strerror or getattr(exc, 'reason', None) or exc}") from None
        self._own = client is None
        self._client = client or httpx.AsyncClient(
            base_url=base, verify=verify, timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))
        self._auth = {"Authorization": f"Bearer {credential}"}

    @classmethod
    def from_files(cls, base_url: str, credential_file: Path, *, ca_file: Path | None = None,
                   **options: Any) -> GatewayEdge:
        return cls(base_url, read_credential(credential_file), ca_file=ca_file, **options)

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    async def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                    content: bytes | Path | None = None, body: Any = None, content_type: str | None = None,
                    wait: float = 0.0, accept: tuple[int, ...] = (200,),
                    headers: Mapping[str, str] | None = None) -> httpx.Response:
        """One request under the retry policy; any status outside `accept` raises its `EdgeError`.

        A `wait` parameter is capped at `MAX_WAIT` (the gateway holds a request no longer): callers
        that want to wait longer ask again."""
        headers = {**self._auth, **(headers or {})}
        if params is not None and params.get("wait") is not None:
            wait = min(float(params["wait"]), MAX_WAIT)
            params = {**params, "wait": wait}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        timeout = httpx.Timeout(self.timeout + wait, connect=self.timeout)

        async def once() -> httpx.Response:
            try:
                # A file is sent as it is read, from its start at each try.
                sent = _file_pieces(content) if isinstance(content, Path) else content
                response = await self._client.request(method, f"/v1{path}", params=query, content=sent,
                                                      headers=headers, timeout=timeout)
            except httpx.TransportError as exc:  # refused, reset, timed out: the way to the gateway failed
                raise self._unreachable(method, path, exc) from exc
            if response.status_code in accept:
                return response
            raise self._error(response)

        return await retrying(f"{method} /v1{path}")(once)()

    def _unreachable(self, method: str, path: str, exc: httpx.TransportError) -> EdgeError:
        if _untrusted_certificate(exc):  # waiting does not make a certificate trusted
            return EdgeError(0, "GW000", f"{self.base_url}: the gateway's TLS certificate does not verify "
                                         f"({_untrusted_certificate(exc)}); give the root it chains to "
                                         "(--gateway-ca / AXIS_GATEWAY_CA, ca_file=)")
        return EdgeUnavailable(0, "GW000", f"{method} {self.base_url}/v1{path}: {type(exc).__name__}: "
                                           f"{exc or 'no answer'}")

    @staticmethod
    def _error(response: httpx.Response) -> EdgeError:
        request_id = response.headers.get("x-request-id")
        code, message = f"GW{response.status_code}", response.reason_phrase or "error"
        try:
            error = response.json()["error"]
            code, message = str(error.get("code") or code), str(error.get("message") or message)
            request_id = error.get("request_id") or request_id
        except (ValueError, KeyError, TypeError, AttributeError):
            text = response.text.strip()
            if text:
                message = text[:300]
        retry_after = None
        try:
            retry_after = float(response.headers["retry-after"])
        except (KeyError, ValueError):
            pass
        return error_for(response.status_code, code, message, request_id, retry_after)

    async def submit(self, packet: bytes | Path, *, wait: float = 0.0, submission: str | None = None) -> Answer:
        headers = {"Axis-Submission": submission} if submission else {}
        if isinstance(packet, Path):
            headers["Content-Length"] = str(packet.stat().st_size)
        response = await self._call("POST", "/packets", params={"wait": wait},
                                    content=packet if isinstance(packet, Path) else bytes(packet),
                                    content_type="application/xml", wait=wait, accept=(200, 202), headers=headers)
        return _answer(response.json())

    async def outcome(self, submission: str, *, wait: float = 0.0) -> Answer:
        response = await self._call("GET", f"/submissions/{submission}", params={"wait": wait}, wait=wait)
        return _answer(response.json())

    async def inbox(self, *, kind: str | None = None, after: str | None = None, limit: int = 100,
                    wait: float = 0.0) -> tuple[list[Waiting], str | None]:
        response = await self._call("GET", "/inbox", params={"kind": kind, "after": after, "limit": limit,
                                                              "wait": wait}, wait=wait)
        data = response.json()
        return [_waiting(item) for item in data["items"]], data.get("next")

    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        response = await self._call("GET", f"/inbox/{axis_id}")
        return response.content, _wire_headers(response.headers)

    async def fetch_many(self, axis_ids: Sequence[str]) -> list[tuple[bytes, dict[str, str]] | EdgeError]:
        answers = await self._batch("/inbox/fetch", {"axis_ids": list(axis_ids)}, len(axis_ids))
        return [_item_error(a["error"]) if a.get("error")
                else (base64.b64decode(a["body"]), _wire_headers(a["headers"])) for a in answers]

    async def _batch(self, path: str, body: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """The items of a batch route's answer: one per item asked, in order (else EdgeError)."""
        response = await self._call("POST", path, body=body)
        answers = list(response.json()["items"])
        if len(answers) != count:
            raise EdgeError(response.status_code, "GW500", f"POST /v1{path}: {count} items asked, {len(answers)} "
                                                           "answered")
        return answers

    async def fetch_to(self, axis_id: str, target: Path) -> tuple[dict[str, str], str]:
        path = f"/v1/inbox/{axis_id}"

        async def once() -> tuple[dict[str, str], str]:
            try:
                async with self._client.stream("GET", path, headers=self._auth) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise self._error(response)
                    headers = _wire_headers(response.headers)
                    digest = hashlib.sha256()
                    with _private_file(target) as file:  # emptied at each try
                        async for chunk in response.aiter_bytes():
                            digest.update(chunk)
                            file.write(chunk)
                    return headers, digest.hexdigest()
            except httpx.TransportError as exc:
                raise self._unreachable("GET", path.removeprefix("/v1"), exc) from exc

        return await retrying(f"GET {path}")(once)()

    async def ack_many(self, items: Sequence[tuple[str, bytes | None]]) -> list[dict[str, Any] | EdgeError]:
        body = {"items": [{"axis_id": axis_id, "receipt": _text64(receipt)} for axis_id, receipt in items]}
        answers = await self._batch("/inbox/ack", body, len(items))
        return [_item_error(a["error"]) if a.get("error") else {**a, "receipt": _b64(a.get("receipt"))}
                for a in answers]

    async def fail(self, axis_id: str, reason: str) -> dict[str, Any]:
        response = await self._call("POST", f"/inbox/{axis_id}/fail", body={"reason": reason})
        return dict(response.json())

    async def sent(self, *, since: str | None = None, after: str | None = None,
                   limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        response = await self._call("GET", "/sent", params={"since": since, "after": after, "limit": limit})
        data = response.json()
        return list(data["items"]), data.get("next")

    async def receipts(self, axis_id: str) -> list[dict[str, Any]]:
        response = await self._call("GET", f"/documents/{axis_id}/receipts")
        return _receipt_items(list(response.json()["receipts"]))

    async def agencies(self) -> list[dict[str, Any]]:
        response = await self._call("GET", "/agencies")
        return list(response.json()["agencies"])


# ---------------------------------------------------------------- in-process


class LocalEdge(Edge):
    """The edge in-process: `axis.gateway.AgencyService` called directly for one agency.

    For the axis operator's own machine, where the CLI holds the store and the
    broker itself (no gateway URL). `service` belongs to the caller.
    """

    def __init__(self, service: Any, agency: str, *, credential_id: str = "local") -> None:
        from axis.gateway import Caller  # the server side is imported only by whoever runs it

        self.service = service
        self.caller = Caller(credential_id=credential_id, role="agency", agency=agency)

    async def _do(self, call: Any) -> Any:
        from axis.gateway import GatewayError

        try:
            return await call
        except GatewayError as exc:
            raise _service_error(exc) from exc

    @staticmethod
    def _answer(outcome: Any) -> Answer:
        return Answer(outcome.submission, outcome.outcome, outcome.axis_id, outcome.code, outcome.message,
                      outcome.receipt)

    async def submit(self, packet: bytes | Path, *, wait: float = 0.0, submission: str | None = None) -> Answer:
        # The bytes, never the Path: the service removes a file it is given (it takes it for its own spool).
        data = await asyncio.to_thread(packet.read_bytes) if isinstance(packet, Path) else bytes(packet)
        return self._answer(await self._do(self.service.send(self.caller, data, submission=submission, wait=wait)))

    async def outcome(self, submission: str, *, wait: float = 0.0) -> Answer:
        return self._answer(await self._do(self.service.outcome(self.caller, submission, wait=wait)))

    async def inbox(self, *, kind: str | None = None, after: str | None = None, limit: int = 100,
                    wait: float = 0.0) -> tuple[list[Waiting], str | None]:
        items, cursor = await self._do(self.service.inbox(self.caller, kind=kind, after=after, limit=limit,
                                                          wait=wait))
        return [_waiting(item) for item in items], cursor

    async def fetch(self, axis_id: str) -> tuple[bytes, dict[str, str]]:
        served = await self._do(self.service.fetch(self.caller, axis_id))
        body = served.body if isinstance(served.body, bytes) else b"".join(await asyncio.to_thread(list, served.body))
        return body, dict(served.headers)

    async def fetch_many(self, axis_ids: Sequence[str]) -> list[tuple[bytes, dict[str, str]] | EdgeError]:
        from axis.gateway import GatewayError

        answers = await self._do(self.service.fetch_many(self.caller, list(axis_ids)))
        return [_service_error(a) if isinstance(a, GatewayError) else (a.body, dict(a.headers)) for a in answers]

    async def ack_many(self, items: Sequence[tuple[str, bytes | None]]) -> list[dict[str, Any] | EdgeError]:
        from axis.gateway import GatewayError

        answers = await self._do(self.service.ack_many(self.caller, list(items)))
        return [_service_error(a) if isinstance(a, GatewayError) else {**a, "receipt": _b64(a.get("receipt"))}
                for a in answers]

    async def fail(self, axis_id: str, reason: str) -> dict[str, Any]:
        return dict(await self._do(self.service.fail(self.caller, axis_id, reason)))

    async def sent(self, *, since: str | None = None, after: str | None = None,
                   limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        items, cursor = await self._do(self.service.sent(self.caller, since=since, after=after, limit=limit))
        return [{**item, "received_at": _iso(item.get("received_at"))} for item in items], cursor

    async def receipts(self, axis_id: str) -> list[dict[str, Any]]:
        items = await self._do(self.service.receipts(self.caller, axis_id))
        return _receipt_items([{**item, "created_at": _iso(item.get("created_at"))} for item in items])

    async def agencies(self) -> list[dict[str, Any]]:
        return list(await self._do(self.service.agencies(self.caller)))
