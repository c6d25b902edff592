"""Gateway credentials: issue, authenticate, list, revoke.

A credential is a bearer token, `axis_` + base64url(32 random bytes) (no padding: 48 characters in
all), shown once when it is issued. The store keeps only its SHA-256 (hex): a 256-bit random token
needs no slow hash, and a stolen database holds nothing a caller could present. Each credential has
an id, `cred_` + 12 hex characters, which is what logs, audit entries and `axis credentials list`
name; the token itself is never logged.

Roles: `agency` (acts for exactly one agency), `operator` and `auditor` (read everything, change
nothing; operators also read /metrics). Several credentials of one agency may be active at once,
so a rotation is: issue the new one, switch the system over, revoke the old one.

Caching: `Authenticator` remembers a successful lookup for `cache_seconds` (default 5 s, at most
5 s), so a busy caller costs no database read per request. A revocation therefore takes effect
within that window in a gateway process other than the one that revoked (the `axis credentials
revoke` command is another process): at most 5 s after the revocation is committed, every gateway
answers 401. A revocation made through the same `Authenticator` (`revoke`) takes effect at once.
Unknown and revoked tokens are never cached: each refusal reads the store.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from axis.gateway.service import Caller, Unauthorized
from axis.store import NotFound, Store
from axis.store.records import Credential

log = logging.getLogger("axis.gateway.credentials")

ROLES = ("agency", "operator", "auditor")
TOKEN_PREFIX = "axis_"
_TOKEN = re.compile(r"^axis_[A-Za-z0-9_-]{43}$")
MAX_CACHE_SECONDS = 5.0
_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Issued:
    """A new credential: `token` is shown once and never again."""

    credential: Credential
    token: str

    @property
    def id(self) -> str:
        return self.credential.id


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def new_credential_id() -> str:
    return "cred_" + secrets.token_hex(6)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(store: Store, role: str, agency: str | None = None, label: str | None = None) -> Issued:
    """Create a credential (audited in the same transaction); NotFound when the agency is not registered."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "agency" and agency is None:
        raise ValueError("an agency credential needs --agency CODE")
    if role != "agency":
        agency = None  # operators and auditors act for no agency
    token = new_token()
    with store.write() as tx:
        credential = tx.add_credential(new_credential_id(), role, agency, token_digest(token), label)
        tx.audit("operator", "credential-issued", credential.id,
                 {"role": role, "agency": agency, "label": label})
    log.info("credential issued: %s role %s agency %s", credential.id, role, agency or "-")
    return Issued(credential, token)


def revoke(store: Store, credential_id: str) -> bool:
    """Revoke a credential; False when it already was. NotFound when there is no such credential."""
    with store.write() as tx:
        changed = tx.revoke_credential(credential_id)
        if changed:
            found = tx.get_credential(credential_id)
            tx.audit("operator", "credential-revoked", credential_id,
                     {"role": found.role if found else None, "agency": found.agency_code if found else None,
                      "label": found.label if found else None})
    if changed:
        log.info("credential revoked: %s", credential_id)
    return changed


def list_credentials(store: Store, agency: str | None = None) -> list[Credential]:
    return store.list_credentials(agency)


def caller_of(credential: Credential) -> Caller:
    return Caller(credential_id=credential.id, role=credential.role, agency=credential.agency_code)


class Authenticator:
    """Bearer tokens to callers, with a short cache of successful lookups (see the module docstring).

    Thread-safe: the gateway calls `authenticate` from its thread pool (the store is synchronous).
    """

    def __init__(self, store: Store, *, cache_seconds: float = MAX_CACHE_SECONDS,
                 clock=time.monotonic) -> None:
        if not 0 <= cache_seconds <= MAX_CACHE_SECONDS:
            raise ValueError(f"cache_seconds must be between 0 and {MAX_CACHE_SECONDS:g}")
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Caller]] = OrderedDict()
        self._lock = threading.Lock()
        self._lookups: dict[str, threading.Lock] = {}

    def cached(self, token: str) -> Caller | None:
        """The caller of `token` if a lookup within the last `cache_seconds` found it active; no store read."""
        digest = token_digest(token)
        with self._lock:
            hit = self._cache.get(digest)
            if hit is None:
                return None
            if hit[0] <= self._clock():
                del self._cache[digest]
                return None
            return hit[1]

    def authenticate(self, token: str | None) -> Caller:
        """The caller `token` stands for; Unauthorized (logged with the credential id) for none, unknown, revoked."""
        if not token:
            raise Unauthorized("no credential: send Authorization: Bearer <credential>")
        caller = self.cached(token)
        if caller is not None:
            return caller
        if not _TOKEN.match(token):
            log.warning("credential refused: not an Axis credential (malformed token)")
            raise Unauthorized("unknown or revoked credential")
        digest = token_digest(token)
        # One lookup per token at a time: when a busy credential's cache entry expires, the requests in
        # flight (hundreds, under load) wait for the first one's read instead of each reading the store.
        with self._lock:
            lookup = self._lookups.setdefault(digest, threading.Lock())
        with lookup:
            caller = self.cached(token)
            if caller is not None:
                return caller
            try:
                return self._look_up(digest)
            finally:
                with self._lock:
                    self._lookups.pop(digest, None)

    def _look_up(self, digest: str) -> Caller:
        credential = self.store.credential_for_token(digest)
        if credential is None:
            log.warning("credential refused: unknown token (sha256 %s…)", digest[:12])
            raise Unauthorized("unknown or revoked credential")
        if credential.revoked_at is not None:
            log.warning("credential refused: %s is revoked (since %s)", credential.id,
                        credential.revoked_at.isoformat())
            refused = Unauthorized("unknown or revoked credential")
            refused.credential_id = credential.id  # type: ignore[attr-defined]  # for the access log, not the caller
            raise refused
        caller = caller_of(credential)
        if self.cache_seconds > 0:
            with self._lock:
                self._cache[digest] = (self._clock() + self.cache_seconds, caller)
                self._cache.move_to_end(digest)
                while len(self._cache) > _CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return caller

    def revoke(self, credential_id: str) -> bool:
        """Revoke through this authenticator: its own cache forgets the credential at once."""
        changed = revoke(self.store, credential_id)
        self.forget(credential_id)
        return changed

    def forget(self, credential_id: str) -> None:
        with self._lock:
            for digest in [d for d, (_, c) in self._cache.items() if c.credential_id == credential_id]:
                del self._cache[digest]


__all__ = ["ROLES", "Authenticator", "Issued", "NotFound", "caller_of", "issue", "list_credentials",
           "new_credential_id", "new_token", "revoke", "token_digest"]
