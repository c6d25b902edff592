"""The one retry policy: which errors are transient, how long to wait between tries, when to give up.

A server that goes away for a while (PostgreSQL restarted, RabbitMQ failed
over, a network path cut) must cost time, never a message. So every call
that talks to the database or the broker, where a failure is likely to pass,
goes through `retrying(what)` (or `publish_all` for a batch of publishes)
and nowhere else writes a retry loop.

What callers may rely on:
- Transient (`is_transient`): a lost or refused database connection
  (SQLAlchemy `OperationalError` / `InterfaceError`, any `DBAPIError` whose
  connection was invalidated, psycopg's own `OperationalError` /
  `InterfaceError`), SQLite "database is locked / busy", a
  `TransportError` (the broker or the connection failed), and a
  `SignerUnavailable` (the axis's signer process did not answer: it is
  restarted by the command that owns it). Never transient:
  an `UnroutableError` (the queue does not exist, which waiting does not
  change), a `BrokerRefused` (wrong user, password or vhost), a `Refusal`
  (the input is wrong), any other exception (a bug).
- Backoff: exponential with full jitter, the first wait at most
  `FIRST_WAIT` seconds, doubling, never more than `MAX_WAIT`; so several hub
  processes coming back from one outage do not hit the server together. An
  error that says when to come back (`retry_after` seconds: an HTTP 429 or
  503's Retry-After) is waited at least that long, within `MAX_WAIT`.
- Patience: a call keeps trying for `PATIENCE` seconds, then the last error
  is raised as it was. An outage shorter than that is invisible to callers
  except for the log: a WARNING line naming `what` at the first retry and
  at every tenth, the others at DEBUG.
- The call is made again from the start: it must be safe to repeat (a
  database unit of work that rolled back, a publish consumers de-duplicate).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import tenacity

from axis.refusals import Refusal
from axis.settings import Settings, SettingsError
from axis.settings import load as load_settings
from axis.signer.interface import SignerUnavailable
from axis.transport.base import OutgoingMessage, Transport
from axis.transport.errors import BrokerRefused, TransportError, UnroutableError

log = logging.getLogger("axis.retry")

try:
    # Read once per process: a policy is built for every retried call, and the environment does not change.
    _settings = load_settings()
except SettingsError as exc:  # the `axis` command reports a bad value itself, in one line, before it starts
    log.warning("%s; the retry policy uses its defaults", exc)
    _settings = Settings.model_construct()
FIRST_WAIT = _settings.outage_first_wait  # seconds: the longest first wait (jitter picks between 0 and this)
MAX_WAIT = _settings.outage_max_wait      # seconds: no wait between two tries is longer
PATIENCE = _settings.outage_patience      # seconds: how long one call keeps trying before its error is raised

_F = TypeVar("_F", bound=Callable[..., Any])
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "database table is locked")


def is_transient(exc: BaseException) -> bool:
    """True when `exc` says a server or the way to it failed for a while, so the same call may succeed later."""
    if isinstance(exc, UnroutableError | BrokerRefused | Refusal):
        return False
    if isinstance(exc, TransportError | SignerUnavailable):
        return True
    # A store's errors can only come from a store already loaded: not importing SQLAlchemy (or psycopg) here
    # spares its import to every process without one (`axis send`, `axis inbox pull`: a quarter of their start).
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            # SQLite says OperationalError for a missing table too: only its lock errors pass with time.
            if exc.orig is not None and type(exc.orig).__module__.startswith("sqlite3"):
                return any(text in str(exc.orig).lower() for text in _SQLITE_TRANSIENT)
            return True
        return False
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        # One line: SQLAlchemy's message goes on with the statement and its parameters (document bytes).
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        # The first try and every tenth (about one a minute at MAX_WAIT) say so; the rest only at DEBUG.
        level = logging.WARNING if state.attempt_number % 10 == 1 else logging.DEBUG
        log.log(level, "%s failed (%s); trying again in %.1f s (try %d, giving up after %.0f s)",
                what, reason, wait, state.attempt_number, PATIENCE)
    return before_sleep


_BACKOFF = tenacity.wait_random_exponential(multiplier=FIRST_WAIT, max=MAX_WAIT)


def _wait(state: tenacity.RetryCallState) -> float:
    """The jittered backoff, but never shorter than the failed server asked (HTTP Retry-After, which
    the error carries as `retry_after` seconds), within MAX_WAIT: coming back sooner is refused again."""
    backoff = _BACKOFF(state)
    error = state.outcome.exception() if state.outcome is not None else None
    asked = getattr(error, "retry_after", None)
    if isinstance(asked, int | float) and asked > 0:
        return max(backoff, min(float(asked), MAX_WAIT))
    return backoff


def retrying(what: str, *, until: Callable[[], bool] | None = None) -> Callable[[_F], _F]:
    """Decorate (or wrap: `retrying(what)(fn)(args)`) a sync or async function with the policy.

    `what` names the work in the log. `until`, if given, is asked before each new
    try: once it returns True the last error is raised at once (the work is no
    longer ours to finish, e.g. the message it was for is gone).
    """
    stop: Any = tenacity.stop_after_delay(PATIENCE)
    if until is not None:
        stop = stop | (lambda _state: until())
    decorate = tenacity.retry(
        retry=tenacity.retry_if_exception(is_transient),
        wait=_wait,
        stop=stop,
        before_sleep=_log_retry(what),
        reraise=True,
    )
    return cast(Callable[[_F], _F], decorate)  # tenacity's wrapper keeps the signature; its type says less


async def publish_all(transport: Transport, messages: Sequence[OutgoingMessage],
                      what: str) -> list[UnroutableError | None]:
    """Publish `messages` until the broker confirmed each, retrying only the unconfirmed ones.

    Returns, in order, None for each confirmed message and the `UnroutableError`
    of each whose queue does not exist (never retried). Raises the last
    `TransportError` when some are still unconfirmed after `PATIENCE`; those may
    or may not be stored, and publishing them again is safe (consumers
    de-duplicate on the message id).
    """
    outcomes: list[UnroutableError | None] = [None] * len(messages)
    pending = list(range(len(messages)))

    @retrying(what)
    async def publish_pending() -> None:
        nonlocal pending
        results = await transport.publish_many([messages[i] for i in pending])
        failed, last = [], None
        for index, result in zip(pending, results, strict=True):
            if isinstance(result, UnroutableError):
                outcomes[index] = result
            elif result is not None:
                failed.append(index)
                last = result
        pending = failed
        if last is not None:
            raise TransportError(f"{len(failed)} of {len(messages)} publishes were not confirmed ({last})") from last

    if messages:
        await publish_pending()
    return outcomes


