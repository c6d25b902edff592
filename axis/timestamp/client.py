"""Asking an RFC 3161 TSA for a token over HTTP, and checking a token later.

- `request_timestamp(url, data, timeout=...)` returns the TSA's whole DER **TimeStampResp** (the
  ".tsr" that `openssl ts -verify -in X.tsr` reads), for the SHA-256 imprint of `data`, with a fresh
  nonce and certReq true (so the token carries the TSA certificate). It checks that the answer is a
  granted response to *this* request (same nonce, same imprint); it does not check the signature,
  which needs the TSA's roots: that is `verify_timestamp`'s job, where the token is used.
- `verify_timestamp(tsr, data, roots)` returns the token's genTime (aware, UTC) once the token is
  shown to be a granted TimeStampResp for `data`, signed by a certificate with the critical
  extendedKeyUsage timeStamping that chains to one of `roots` (validity checked at genTime, as
  rfc3161-client and OpenSSL do). No revocation check is made.

Errors: `TimestampUnavailable` when no token could be had (network error, timeout, HTTP status other
than 200, rejection); `TimestampInvalid` when a token or an answer is not acceptable (wrong data,
untrusted signer, tampered, not an answer to our request). Both are `TimestampError`s; each message
is one line saying why.
"""
from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
# A TimeStampResp with a certificate is a few kilobytes; a TSA sending more is not one to read on.
MAX_RESPONSE_BYTES = 256 * 1024
_OPENSSL_DETAIL = re.compile(r'data: "(?:Verify error: ?)?([^"]+)"')


class TimestampError(Exception):
    """No usable timestamp; the message is one line saying why."""


class TimestampUnavailable(TimestampError):
    """The TSA could not be asked or gave no token (down, timeout, HTTP error, rejection): try again later."""


class TimestampInvalid(TimestampError):
    """A token (or a TSA's answer) does not prove what it should: wrong data, untrusted signer, tampered."""


def request_timestamp(url: str, data: bytes, *, timeout: float = 10.0) -> bytes:
    """The DER TimeStampResp a TSA at `url` grants for the SHA-256 imprint of `data` (ValueError if empty).

    `timeout` bounds connecting and each read; the whole exchange is abandoned once `timeout` seconds
    have passed and a read returns (so it ends within about twice `timeout`).
    """
    request = (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
               .nonce(nonce=True).cert_request(cert_request=True).build())
    body = _post(url, request.as_bytes(), timeout)
    response = _decode(body, TimestampInvalid, f"the TSA at {url} answered")
    if response.status != PKIStatus.GRANTED:
        reason = "; ".join(response.status_string) or "no reason given"
        raise TimestampUnavailable(f"the TSA at {url} refused the request ({_status_name(response.status)}: "
                                   f"{reason})")
    try:
        info = response.tst_info
    except ValueError as exc:  # rfc3161-client reads the token only now
        raise TimestampInvalid(f"the TSA at {url} granted without a readable token ({_one_line(exc)})") from None
    if info.nonce != request.nonce:
        raise TimestampInvalid(f"the TSA at {url} answered with another nonce: not an answer to this request")
    if (info.message_imprint.hash_algorithm != request.message_imprint.hash_algorithm
            or info.message_imprint.message != request.message_imprint.message):
        raise TimestampInvalid(f"the TSA at {url} stamped another imprint than the one asked for")
    return body


def verify_timestamp(tsr: bytes, data: bytes, roots: Sequence[x509.Certificate | bytes]) -> dt.datetime:
    """The genTime of the TimeStampResp `tsr` over `data`; TimestampInvalid (one line) if it does not verify.

    `roots`: the TSA roots to trust, as certificates or PEM bytes (a PEM may hold several). ValueError
    when there is none or a PEM cannot be read: that is the caller's configuration, not the token.
    """
    anchors = _roots(roots)
    response = _decode(tsr, TimestampInvalid, "the token")
    if response.status != PKIStatus.GRANTED:
        raise TimestampInvalid(f"the token's status is {_status_name(response.status)}, not granted")
    builder = VerifierBuilder()
    for anchor in anchors:
        builder = builder.add_root_certificate(anchor)
    try:
        builder.build().verify_message(response, data)
    # rfc3161-client raises ValueError where it cannot load a certificate the token carries.
    except (VerificationError, ValueError) as exc:
        raise TimestampInvalid(f"the token does not verify: {_reason(exc)}") from None
    gen_time = response.tst_info.gen_time
    return gen_time.replace(tzinfo=dt.UTC) if gen_time.tzinfo is None else gen_time.astimezone(dt.UTC)


def _post(url: str, query: bytes, timeout: float) -> bytes:
    import httpx  # here, not at the top: every hub and gateway process imports this module, few ask a TSA

    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, \
                client.stream("POST", url, content=query, headers={"Content-Type": QUERY_TYPE}) as answer:
            if answer.status_code != 200:
                raise TimestampUnavailable(f"the TSA at {url} answered HTTP {answer.status_code}")
            kind = answer.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != REPLY_TYPE:
                raise TimestampUnavailable(f"the TSA at {url} answered {kind or 'no content type'}, not "
                                           f"{REPLY_TYPE}: is AXIS_TSA_URL the TSA's address?")
            body = bytearray()
            for chunk in answer.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise TimestampInvalid(f"the TSA at {url} sent more than {MAX_RESPONSE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimestampUnavailable(f"the TSA at {url} took more than {timeout} s to answer")
            return bytes(body)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise TimestampUnavailable(f"cannot get a timestamp from {url}: {_one_line(exc) or type(exc).__name__}"
                                   ) from None


def _decode(body: bytes, error: type[TimestampError], what: str) -> TimeStampResponse:
    try:
        return decode_timestamp_response(body)
    except ValueError as exc:  # rfc3161-client's parser reports every malformed input so
        raise error(f"{what} is not a DER TimeStampResp ({_one_line(exc)})") from None


def _roots(roots: Sequence[x509.Certificate | bytes]) -> list[x509.Certificate]:
    anchors: list[x509.Certificate] = []
    for root in roots:
        anchors.extend(x509.load_pem_x509_certificates(root) if isinstance(root, bytes) else [root])
    if not anchors:
        raise ValueError("no TSA root to verify against; configure AXIS_TSA_TRUST (a PEM file of TSA roots)")
    unique = {anchor.fingerprint(hashes.SHA256()): anchor for anchor in anchors}  # VerifierBuilder refuses duplicates
    return list(unique.values())


def _status_name(status: int) -> str:
    try:
        return PKIStatus(status).name.lower()
    except ValueError:
        return f"status {status}"


def _reason(exc: BaseException) -> str:
    text = _one_line(exc)
    # rfc3161-client passes on OpenSSL's whole error stack; its detail is what a person can act on.
    detail = _OPENSSL_DETAIL.search(text)
    return f"certificate check failed: {detail.group(1)}" if detail else text


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
