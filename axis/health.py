"""An axis's health, checked from outside its processes: what `axis doctor` prints (docs/doctor.md).

`run_checks(settings)` looks at the broker, the database, the disks, the certificates, the CRL, the clocks,
the holiday calendar, the hub, the gateway and the TSA backlog of the axis those settings describe, and
returns one `Check` for each, always in that order (`CHECKS`). A verdict is `ok`; `warn` (works, needs
attention soon); `fail` (broken, or about to break within the configured margin); or `n/a` (does not apply
here, or could not be looked at because what it needs did not answer: the detail says which). Every `warn`
and `fail` says what to do in `action`.

Callers may rely on: no check changing what the store or the broker holds (opening a transport declares only
what is there already; an embedded transport that does not exist is not created: the broker check fails);
every network step bounded (`TIMEOUT` seconds); an unexpected error of one check becoming that check's
`fail`, never an exception out of `run_checks`; nothing secret in a detail (URLs without their passwords;
the gateway is asked only its unauthenticated /readyz).
"""
from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
import sqlalchemy as sa
from cryptography import x509

from axis import wire
from axis.auditor.calendar import SHIPPED_CALENDAR, CalendarError, load_calendar
from axis.settings import Settings, redact_url
from axis.store import MissingDatabase, Store, normalise_url, open_store
from axis.store.health import certificates_ending, server_clock
from axis.store.migrate import alembic_config, current_revision, head_revision
from axis.transport import Transport, TransportError, open_transport
from axis.transport.factory import embedded_path
from axis.trust.keys import KeyFileError, load_certificates, load_crls
from axis.trust.verifier import crl_order

Verdict = Literal["ok", "warn", "fail", "n/a"]
CHECKS = ("broker", "database", "disk", "certificates", "crl", "clock", "calendar", "hub", "gateway", "tsa")
TIMEOUT = 5.0    # seconds any one network step may take
_NAMED = 5       # certificates named in a detail; the rest are counted
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Check:
    name: str           # one of CHECKS
    verdict: Verdict
    detail: str         # what was found
    action: str = ""    # what to do, when the verdict is not ok


async def run_checks(settings: Settings, *, gateway: bool = True, now: datetime | None = None) -> list[Check]:
    """Every check of `CHECKS` on the axis `settings` describe. `gateway=False`: there is no gateway to check
    (its verdict is n/a). `now`: the time the certificates, the CRL, the calendar and the backlog are judged at."""
    now = now or datetime.now(UTC)
    transport, broker = await _broker(settings)
    store: Store | None = None
    try:
        store, database = await asyncio.to_thread(_database, settings)

        async def threaded(name: str, check: Callable[[], Check]) -> Check:
            return await asyncio.to_thread(_guarded, name, check)

        return [broker, database,
                await threaded("disk", lambda: _disk(settings)),
                await threaded("certificates", lambda: _certificates(settings, store, now)),
                await threaded("crl", lambda: _crl(settings, now)),
                await threaded("clock", lambda: _clock(settings, store)),
                await threaded("calendar", lambda: _calendar(settings, now)),
                await _guarded_async("hub", lambda: _hub(transport)),
                await _guarded_async("gateway", lambda: _gateway(settings, gateway)),
                await threaded("tsa", lambda: _tsa(settings, store, now))]
    finally:
        if store is not None:
            store.close()
        if transport is not None:
            await transport.close()


def failed(checks: list[Check]) -> list[str]:
    """The names of the checks that failed."""
    return [check.name for check in checks if check.verdict == "fail"]


# ------------------------------------------------------------------ guards

def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - one check's surprise must not hide the others' verdicts
        return _surprise(name, exc)


async def _guarded_async(name: str, check: Callable[[], Awaitable[Check]]) -> Check:
    try:
        return await check()
    except Exception as exc:  # noqa: BLE001 - as above
        return _surprise(name, exc)


def _surprise(name: str, exc: Exception) -> Check:
    return Check(name, "fail", f"could not be checked: {type(exc).__name__}: {_line(exc)}",
                 "look into the error above; the other checks may say what is wrong")


def _reason(exc: BaseException) -> str:
    """The transport's own error, without its advice (the check gives its own): the cause's message."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {2 * TIMEOUT:g} s"
    cause = exc.__cause__ or exc
    last = cause.args[-1] if cause.args else None
    return last if isinstance(last, str) and last else _line(cause)


def _line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------ broker and hub

async def _broker(settings: Settings) -> tuple[Transport | None, Check]:
    try:
        return await _open_broker(settings)
    except Exception as exc:  # noqa: BLE001 - as in _guarded
        return None, _surprise("broker", exc)


async def _open_broker(settings: Settings) -> tuple[Transport | None, Check]:
    url = settings.broker
    try:
        path = embedded_path(url, settings.embedded_transport)
    except ValueError as exc:
        return None, Check("broker", "fail", str(exc), "fix --broker / AXIS_BROKER")
    if path is not None and not path.is_file():
        return None, Check("broker", "fail", f"no embedded transport at {path}",
                           "start `axis serve` there (it creates it), or point --broker / AXIS_BROKER, or "
                           "AXIS_DATA, at the axis's broker")
    what = f"the embedded transport {path}" if path is not None else f"RabbitMQ at {redact_url(url)}"
    try:
        transport = await asyncio.wait_for(
            open_transport(url, lease=settings.embedded_lease, timeout=TIMEOUT, name="axis-doctor",
                           default_embedded_path=settings.embedded_transport), 2 * TIMEOUT)
    except (TransportError, OSError, TimeoutError) as exc:
        return None, Check("broker", "fail", f"{what} does not answer: {_reason(exc)}",
                           "start the broker, or fix --broker / AXIS_BROKER")
    return transport, Check("broker", "ok", f"{what} answers")


async def _hub(transport: Transport | None) -> Check:
    if transport is None:
        return Check("hub", "n/a", "not checked: the broker did not answer", "see the broker check")
    try:
        stats = await asyncio.wait_for(transport.queue_stats([wire.INTAKE_QUEUE]), TIMEOUT)
    except (TransportError, TimeoutError) as exc:
        return Check("hub", "fail", f"cannot count the consumers of {wire.INTAKE_QUEUE}: {_line(exc)}",
                     "see the broker check; retry")
    if not stats:
        return Check("hub", "fail", f"the queue {wire.INTAKE_QUEUE} does not exist: no hub ever started on this "
                     "broker", "start `axis serve`")
    count = stats[0].consumers
    if count is None:  # no transport says this today; a future one might not know
        return Check("hub", "n/a", f"this broker does not say who consumes {wire.INTAKE_QUEUE}",
                     "see that `axis serve` runs")
    if count == 0:
        return Check("hub", "fail", f"no hub consumes {wire.INTAKE_QUEUE}: submissions queued there wait "
                     "unanswered", "start `axis serve`, or read its log for why it stopped")
    return Check("hub", "ok", f"{count} consumer(s) of {wire.INTAKE_QUEUE}")


# ------------------------------------------------------------------ database, clock, backlog

def _database(settings: Settings) -> tuple[Store | None, Check]:
    try:
        return _open_database(settings)
    except Exception as exc:  # noqa: BLE001 - as in _guarded
        return None, _surprise("database", exc)


def _open_database(settings: Settings) -> tuple[Store | None, Check]:
    url = settings.store_url
    shown = redact_url(url)
    try:
        store = open_store(_bounded(url), migrate=False)
    except MissingDatabase as exc:
        return None, Check("database", "fail", str(exc), "fix --db / AXIS_DB (or AXIS_DATA); `axis serve` "
                           "creates a SQLite store on its first start, a PostgreSQL database is created by hand")
    except (ValueError, sa.exc.SQLAlchemyError) as exc:
        return None, Check("database", "fail", f"{shown} does not answer: {_line(exc)}",
                           "start the database server, or fix --db / AXIS_DB")
    try:
        revision = current_revision(store.engine)
    except sa.exc.SQLAlchemyError as exc:
        store.close()
        return None, Check("database", "fail", f"{shown} does not answer: {_line(exc)}",
                           "start the database server, or fix --db / AXIS_DB")
    head = head_revision()
    if revision == head:
        return store, Check("database", "ok", f"{shown} answers; schema at {head}, the newest")
    if revision is None:
        return store, Check("database", "fail", f"{shown} holds no Axis schema", "point --db / AXIS_DB at the "
                            "axis's database, or start `axis serve` on it (it creates the schema)")
    if _known(revision):
        return store, Check("database", "fail", f"{shown} has schema {revision}; this Axis needs {head}",
                            "start `axis serve` (it upgrades the schema), after a backup")
    return store, Check("database", "fail", f"{shown} has schema {revision}, which this Axis does not know "
                        "(a newer Axis wrote it)", "run the Axis version that wrote it, or upgrade this one")


def _bounded(url: str) -> str:
    """`url` with a connection timeout, so a server that does not answer fails the check within TIMEOUT."""
    parsed = sa.make_url(url) if "://" in url else None
    if parsed is None or parsed.get_backend_name() not in ("postgresql", "postgres") \
            or "connect_timeout" in parsed.query:
        return url
    return parsed.update_query_dict({"connect_timeout": str(int(TIMEOUT))}).render_as_string(hide_password=False)


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _clock(settings: Settings, store: Store | None) -> Check:
    if store is None:
        return Check("clock", "n/a", "not checked: the database did not answer", "see the database check")
    measured = server_clock(store)
    if measured is None:
        return Check("clock", "n/a", "SQLite: the store runs on this machine's clock, no other to compare")
    skew, error = measured
    least = max(0.0, abs(skew) - error)
    limit = settings.doctor_max_clock_skew
    side = "behind" if skew > 0 else "ahead of"
    detail = f"this machine is {abs(skew):.3f} s {side} the PostgreSQL server's clock (± {error:.3f} s)"
    action = ("synchronise both clocks (NTP: chrony, systemd-timesyncd): receipts and audit entries carry "
              "times from both")
    if least > limit:
        return Check("clock", "fail", f"{detail}; more than {limit:g} s", action)
    if least > limit / 2:
        return Check("clock", "warn", f"{detail}; more than {limit / 2:g} s", action)
    return Check("clock", "ok", detail)


def _tsa(settings: Settings, store: Store | None, now: datetime) -> Check:
    if store is None:
        return Check("tsa", "n/a", "not checked: the database did not answer", "see the database check")
    _, _, waiting, age = store.checkpoint_lag(now)
    if settings.tsa_url is None:
        return Check("tsa", "n/a", f"no TSA configured (AXIS_TSA_URL): checkpoints are kept unstamped "
                     f"({waiting} so far)")
    tsa = redact_url(settings.tsa_url)
    detail = f"{waiting} checkpoint(s) wait for a timestamp from {tsa}" + (
        f", the oldest for {_duration(age)}" if waiting else "")
    action = ("check that the TSA answers from the hub's machine and read the hub's log; the hub stamps the "
              "waiting checkpoints once it does")
    if waiting > settings.doctor_tsa_fail:
        return Check("tsa", "fail", f"{detail}; more than {settings.doctor_tsa_fail}", action)
    if waiting > settings.doctor_tsa_warn:
        return Check("tsa", "warn", f"{detail}; more than {settings.doctor_tsa_warn}", action)
    return Check("tsa", "ok", detail)


# ------------------------------------------------------------------ files: disk, certificates, CRL, calendar

def _disk(settings: Settings) -> Check:
    places: dict[str, Path] = {"data folder": settings.data}
    store = normalise_url(settings.store_url)
    if store.get_backend_name() == "sqlite" and store.database:
        places["SQLite store"] = Path(store.database).parent
    transport = embedded_path(settings.broker, settings.embedded_transport)
    if transport is not None:
        places["embedded transport"] = transport.parent
    disks: dict[int, tuple[int, list[str], Path]] = {}  # device -> (free bytes, what lives there, a folder on it)
    for what, folder in places.items():
        existing = _existing(folder.absolute())
        device = existing.stat().st_dev
        free = shutil.disk_usage(existing).free
        names = disks.get(device, (free, [], existing))[1]
        disks[device] = (free, [*names, what], existing)
    minimum = settings.doctor_min_free_mb * _MIB
    worst = min(free for free, _, _ in disks.values())
    detail = "; ".join(f"{_size(free)} free for the {', '.join(names)} ({folder})"
                       for free, names, folder in sorted(disks.values()))
    action = "free space on that disk, or move the data to a larger one (PostgreSQL's own disk: check it there)"
    if worst < minimum:
        return Check("disk", "fail", f"{detail}; less than {_size(minimum)}", action)
    if worst < 2 * minimum:
        return Check("disk", "warn", f"{detail}; less than {_size(2 * minimum)}", action)
    return Check("disk", "ok", detail)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _certificates(settings: Settings, store: Store | None, now: datetime) -> Check:
    fail_days, warn_days = settings.doctor_cert_days, max(settings.doctor_cert_days, settings.doctor_cert_warn_days)
    fail_at, warn_at = now + timedelta(days=fail_days), now + timedelta(days=warn_days)
    ending: list[tuple[str, datetime]] = []
    notes: list[str] = []
    problem = ""
    path = settings.hub_cert
    if path.is_file():
        try:
            ends = load_certificates(path)[0].not_valid_after_utc
        except KeyFileError as exc:
            problem = str(exc)
        else:
            if ends <= warn_at:
                ending.append(("the axis", ends))
            else:
                notes.append(f"the axis's lasts until {ends:%Y-%m-%d}")
    else:
        notes.append(f"the axis's not checked (no {path}: set AXIS_CERT where the signer runs)")
    agencies = 0
    if store is None:
        notes.append("the agencies' not checked: the database did not answer")
    else:
        agencies, rows = certificates_ending(store, warn_at, limit=_NAMED)
        ending += rows
    ending.sort(key=lambda item: item[1])
    named = [f"{who} {'ended' if ends <= now else 'ends'} {ends:%Y-%m-%d}"
             + ("" if ends <= now else f" ({_days(ends - now)})") for who, ends in ending[:_NAMED]]
    count = len([who for who, _ in ending if who == "the axis"]) + agencies
    more = count - len(named)
    found = "; ".join(named) + (f"; {more} more" if more > 0 else "")
    action = ("renew each with its CA before it ends: the axis's (AXIS_CERT and AXIS_KEY, then restart `axis "
              "serve`), an agency's (then register its new certificate)")
    if problem:
        return Check("certificates", "fail", problem, "restore the axis's certificate, or fix AXIS_CERT")
    if any(ends <= fail_at for _, ends in ending):
        return Check("certificates", "fail", f"within {fail_days} days: {found}", action)
    if ending:
        return Check("certificates", "warn", f"within {warn_days} days: {found}", action)
    if not path.is_file() and store is None:
        return Check("certificates", "n/a", "; ".join(notes), "see the database check; set AXIS_CERT")
    if store is not None:
        notes.append(f"every active agency has one lasting beyond {warn_days} days")
    return Check("certificates", "ok", "; ".join(notes))


def _crl(settings: Settings, now: datetime) -> Check:
    path = settings.revocations
    if path is None:
        return Check("crl", "warn", f"no CRL configured (AXIS_CRL) and none at {settings.pki_dir / 'crl.pem'}: "
                     "revoked certificates are not refused", "give the CA's CRL with --crl or AXIS_CRL")
    try:
        crls = load_crls(path)
    except KeyFileError as exc:
        return Check("crl", "fail", str(exc), "restore the CRL file, or fix --crl / AXIS_CRL")
    latest: dict[x509.Name, x509.CertificateRevocationList] = {}
    for crl in crls:  # as the verifier does: per CA, the CRL with the highest number
        if crl.issuer not in latest or crl_order(crl) > crl_order(latest[crl.issuer]):
            latest[crl.issuer] = crl
    action = (f"publish a fresh CRL from its CA (the development PKI: `axis pki crl PKI_DIR`) at {path}; the "
              "hub reads the new file within seconds")
    verdict: Verdict = "ok"
    said = []
    for issuer, crl in latest.items():
        names = issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        who = str(names[0].value) if names else issuer.rfc4514_string()
        ends = crl.next_update_utc
        if ends is None:
            verdict = "fail"
            said.append(f"{who}'s CRL has no nextUpdate")
        elif ends <= now:
            verdict = "fail"
            said.append(f"the nextUpdate of {who}'s CRL, {ends:%Y-%m-%d %H:%M} UTC, has passed: every signature "
                        "it covers is refused")
        elif ends - now < timedelta(hours=settings.doctor_crl_warn_hours):
            verdict = "warn" if verdict == "ok" else verdict
            said.append(f"{who}'s CRL is fresh for {_duration((ends - now).total_seconds())} more")
        else:
            said.append(f"{who}'s CRL is fresh until {ends:%Y-%m-%d %H:%M} UTC")
    return Check("crl", verdict, f"{path}: " + "; ".join(said), "" if verdict == "ok" else action)


def _calendar(settings: Settings, now: datetime) -> Check:
    path = settings.deadline_calendar or SHIPPED_CALENDAR
    own = ("add the holidays and swapped working days to your calendar file" if settings.deadline_calendar
           else "copy the shipped calendar, add the holidays and swapped working days, and point "
                "AXIS_DEADLINE_CALENDAR at the copy")
    try:
        calendar = load_calendar(path, zone=settings.deadline_time_zone, hours=settings.deadline_working_hours,
                                 weekdays=settings.deadline_working_days)
    except CalendarError as exc:
        return Check("calendar", "fail", str(exc), "fix the file or AXIS_DEADLINE_CALENDAR")
    today = now.astimezone(calendar.zone).date()
    if not calendar.years:
        return Check("calendar", "fail", f"{path} names no day", own)
    last = max(calendar.years)
    if not calendar.covers(today.year):
        why = f"ends with {last}" if last < today.year else f"names no day of {today.year}"
        return Check("calendar", "fail", f"{path} {why}: the overdue report counts this year's holidays as "
                     "working days", f"{own} ({today.year})")
    if not calendar.covers(today.year + 1) and date(today.year, 12, 31) - today < timedelta(days=30):
        return Check("calendar", "warn", f"{path} ends with {today.year}", f"{own} ({today.year + 1}) before "
                     "1 January")
    return Check("calendar", "ok", f"{path} covers {today.year}" + (f" to {last}" if last > today.year else ""))


# ------------------------------------------------------------------ gateway

def gateway_url(settings: Settings) -> str:
    """Where the gateway answers: AXIS_GATEWAY, else the address `axis serve` gives its own."""
    if settings.gateway is not None:
        return settings.gateway.rstrip("/")
    host = settings.gateway_host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.gateway_tls_cert else 'http'}://{shown}:{settings.gateway_port}"


async def _gateway(settings: Settings, wanted: bool) -> Check:
    if not wanted:
        return Check("gateway", "n/a", "not checked (--gateway none)")
    base = gateway_url(settings)
    verify: ssl.SSLContext | bool = True
    if settings.gateway_ca is not None:
        verify = ssl.create_default_context(cafile=str(settings.gateway_ca))
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, verify=verify) as client:
            answer = await client.get(f"{base}/readyz")
    except httpx.HTTPError as exc:
        return Check("gateway", "fail", f"no gateway answers at {base}: {_line(exc) or type(exc).__name__}",
                     "start `axis serve` (or `axis gateway`), or name the gateway with --gateway URL "
                     "(--gateway none where there is none)")
    if answer.status_code == 200 and _says_ok(answer):
        return Check("gateway", "ok", f"{base} is ready: its store and broker answer")
    if answer.status_code == 503:
        try:
            down = [part for part, state in answer.json().get("checks", {}).items() if state != "ok"]
        except (ValueError, AttributeError):
            down = []
        return Check("gateway", "fail", f"{base} answers but is not ready: {', '.join(down) or 'unavailable'} "
                     "down", "see the broker and database checks, and the gateway's log")
    return Check("gateway", "fail", f"{base}/readyz answered HTTP {answer.status_code} without an Axis gateway's "
                 "readiness: not an Axis gateway?", "name the gateway with --gateway URL")


def _says_ok(answer: httpx.Response) -> bool:
    try:
        return bool(answer.json().get("status") == "ok")
    except (ValueError, AttributeError):
        return False


# ------------------------------------------------------------------ wording

def _size(count: float) -> str:
    return f"{count / 1024 ** 3:.1f} GiB" if count >= 1024 ** 3 else f"{count / _MIB:.0f} MiB"


def _days(left: timedelta) -> str:
    days = left.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{left.total_seconds() / 3600:.0f} hours"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
