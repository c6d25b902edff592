"""Axis's settings: one object reads every `AXIS_*` environment variable (docs/configuration.md).

`load(**flags)` returns the settings: a flag the caller passes (not None) wins over
its environment variable, which wins over the default. A bad value raises
`SettingsError`, whose message is one line naming the variable (or the flag) and
the value; the `axis` command prints it and exits.

Both the library (the XML-DSig engine choice, the retry policy) and the `axis`
command read settings here, so that a setting has one name, one default and one
description. The environment is read afresh on every `load()`: nothing is cached.

`redact_url` is the one way a broker or database URL is shown to people (logs,
errors, `--json`): without its password.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from axis.auditor.calendar import parse_hours, parse_weekdays, parse_zone

ENV_PREFIX = "AXIS_"
EMBEDDED = "embedded"
_HIDDEN = "***"


class SettingsError(ValueError):
    """A setting's value is not usable; the message is one line naming the variable or flag."""


def _setting(default: Any, description: str, *, flag: str | None = None, shown: str | None = None) -> Any:
    # `flag` and `shown` feed docs/configuration.md (tests/cli/test_settings.py keeps it in step).
    extra: dict[str, Any] = {"flag": flag, "shown": shown if shown is not None else f"`{default}`"}
    return Field(default, description=description, json_schema_extra=extra)


class Settings(BaseSettings):
    """Every setting of Axis; the field `name` is read from the variable `AXIS_NAME`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      extra="ignore")

    data: Path = _setting(
        Path("axis-data"), "The folder holding the embedded transport, the SQLite store, the PKI, the hub's "
        "key and the agencies' state.", shown="`./axis-data`")
    db: str | None = _setting(
        None, "The hub's database: `sqlite:///path.db` or `postgresql://user:password@host/db`.",
        flag="--db", shown="`sqlite:///<data>/axis.db`")
    broker: str = _setting(
        EMBEDDED, "The broker: `embedded` (the SQLite transport file `<data>/transport.db`), "
        "`embedded:///path.db`, or `amqp://user:password@host/vhost` for RabbitMQ; for a cluster add "
        "`?hosts=host:port,host:port&queues=quorum&shards=N` (docs/transports.md).", flag="--broker")
    trust: Path | None = _setting(
        None, "Trusted root certificates (PEM) that agencies' and the hub's certificates chain to.",
        flag="--trust", shown="`<data>/pki/ca.pem`")
    crl: Path | None = _setting(
        None, "The certificate revocation list (PEM).", flag="--crl",
        shown="`<data>/pki/crl.pem` if that file exists, else none")
    key: Path | None = _setting(
        None, "The axis's signing key (PEM, the `AXIS` certificate's), read only by the signer process (the one "
        "`axis serve` or `axis gateway` starts, or `axis signer serve`), and by an operator command that records "
        "an entry when no signer answers (to certify its log key).", flag="--key",
        shown="`<data>/hub/AXIS.key.pem`")
    cert: Path | None = _setting(
        None, "The axis's certificate (PEM, then its chain), loaded by the signer process with the key.",
        flag="--cert", shown="`<data>/hub/AXIS.cert.pem`")
    signer: Path | None = _setting(
        None, "The Unix socket of a running signer (`axis signer serve`): `axis serve` and `axis gateway` sign "
        "through it instead of starting their own signer process, and `axis signer serve` listens there. Its "
        "folder must be its user's only (mode 0700).", flag="--signer",
        shown="none: `axis serve` and `axis gateway` each start one, on a socket in a new private temporary "
        "folder; `axis signer serve` listens on `<data>/signer/signer.sock`")
    signer_processes: int | None = _setting(
        None, "Signing processes of a signer; each holds the key and signs one request (a whole batch) at a "
        "time, so this many callers are served at once.", shown="one per core")
    gateway: str | None = _setting(
        None, "The agency gateway the agency commands (`axis send`, `axis inbox pull`, `axis status send`, "
        "`axis adapter folder`) use, e.g. `https://axis.example.gov.vn:8443`; unset: the operator's own "
        "store and broker on this machine.", flag="--gateway", shown="none")
    credential: Path | None = _setting(
        None, "A file holding the agency's gateway credential (never put the credential itself on the "
        "command line: it shows in `ps`).", flag="--credential-file", shown="none")
    gateway_ca: Path | None = _setting(
        None, "Root certificates (PEM) the gateway's TLS certificate must chain to.", flag="--gateway-ca",
        shown="the system's roots")
    workers: int | None = _setting(
        None, "Worker processes of `axis serve` for intake and signature verification.", flag="--workers",
        shown="one per core")
    intake_at: Literal["gateway", "hub"] = _setting(
        "gateway", "Where submissions are decided: `gateway` (where they arrive, in the gateway's own worker "
        "processes, with the hub's checks and transaction: no broker hop before the answer) or `hub` (queued "
        "on the broker for the hubs). Either way a submission the gateway cannot decide within the caller's "
        "`?wait=` is queued for the hubs.")
    log: str = _setting("INFO", "The log level of `axis serve`: DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = _setting(
        "text", "How `axis serve` and `axis gateway` write their log on stderr: `text` lines, or `json` (one JSON "
        "object per line: `at`, `level`, `logger`, `message`, and a traffic line's `event` and fields).",
        flag="--log-format")
    log_rate: float = _setting(
        50.0, "Traffic lines (an intake decision, a delivery's state change) each process of `axis serve` logs a "
        "second at most; above it, one summary line a second counts the lines held back, by event.")
    xmldsig: Literal["xmlsec", "signxml"] | None = _setting(
        None, "The XML-DSig engine: `xmlsec` or `signxml` (a forced engine that cannot load is an error).",
        shown="`xmlsec` when python-xmlsec loads, else `signxml`")
    embedded_lease: float = _setting(
        30.0, "Embedded transport: seconds before the deliveries of a consumer that stopped renewing "
        "them (it died) are delivered again.", shown="`30`")
    retry_base: float = _setting(
        10.0, "Seconds before a failed delivery's first retry; each further retry waits twice as long.",
        shown="`10`")
    retry_attempts: int = _setting(
        6, "Delivery attempts before a message goes to its dead-letter queue.")
    outage_first_wait: float = _setting(
        0.2, "A database or broker call that failed for a passing reason (`axis/retry.py`) is tried again "
        "after at most this many seconds (random), the wait doubling from try to try.")
    outage_max_wait: float = _setting(
        5.0, "No wait between two tries of such a call is longer than this many seconds.")
    outage_patience: float = _setting(
        120.0, "Seconds such a call keeps trying before its last error is raised (an outage this long "
        "costs time, never a message).")
    gateway_host: str = _setting(
        "127.0.0.1", "The address the agency gateway (`axis gateway`, and the one `axis serve` starts) listens "
        "on. Plain HTTP only on a loopback address; any other needs `--tls-cert` and `--tls-key`.",
        flag="--host")
    gateway_port: int = _setting(8080, "The gateway's TCP port.", flag="--port")
    gateway_tls_cert: Path | None = _setting(
        None, "The gateway's TLS server certificate (PEM; `axis pki tls HOSTNAME` issues one).",
        flag="--tls-cert", shown="none: plain HTTP, loopback only")
    gateway_tls_key: Path | None = _setting(
        None, "The key of the gateway's TLS certificate (PEM).", flag="--tls-key", shown="none")
    gateway_rate: float = _setting(
        200.0, "Requests per second each gateway credential may make on average (a token bucket); beyond it "
        "the gateway answers 429 with Retry-After.")
    gateway_burst: int = _setting(
        400, "Requests a gateway credential may make at once before `AXIS_GATEWAY_RATE` applies.")
    max_packet_bytes: int = _setting(
        200 * 1024 * 1024, "The largest packet the gateway takes, in bytes (enforced while the upload is "
        "read: 413 beyond it).", shown="`209715200` (200 MiB)")
    inline_body_bytes: int = _setting(
        8 * 1024 * 1024, "A submission queued for the hubs (`?wait=0`, or not decided in time) rides on the broker "
        "up to this many bytes; a larger one waits in the store (`submission_bodies`) and its message names it, "
        "so the broker never carries a large packet.", shown="`8388608` (8 MiB)")
    doctor_min_free_mb: int = _setting(
        1024, "`axis doctor` fails when a disk holding Axis's files (the data folder, the SQLite store, the "
        "embedded transport) has less free space than this many MiB, and warns below twice that.")
    doctor_cert_days: int = _setting(
        14, "`axis doctor` fails when the axis's certificate, or the last active certificate of an active "
        "agency, ends within this many days.", flag="--expiring-days")
    doctor_cert_warn_days: int = _setting(
        30, "`axis doctor` warns when such a certificate ends within this many days.")
    doctor_crl_warn_hours: float = _setting(
        24.0, "`axis doctor` warns when the CRL's nextUpdate is less than this many hours away (and fails once "
        "it has passed: signatures are then refused).", shown="`24`")
    doctor_max_clock_skew: float = _setting(
        5.0, "`axis doctor` fails when this machine's clock and the PostgreSQL server's differ by more than "
        "this many seconds, and warns above half of it.", shown="`5`")
    doctor_tsa_warn: int = _setting(
        10, "`axis doctor` warns when more checkpoints than this wait for a timestamp from the TSA.")
    doctor_tsa_fail: int = _setting(
        100, "`axis doctor` fails when more checkpoints than this wait for a timestamp from the TSA.")
    checkpoint_entries: int = _setting(
        1000, "`axis serve` signs a checkpoint of the audit log at least every this many entries.")
    checkpoint_seconds: float = _setting(
        10.0, "`axis serve` signs a checkpoint of the audit log at least every this many seconds while entries "
        "are written (docs/evidence.md).")
    tsa_url: str | None = _setting(
        None, "The RFC 3161 time-stamping authority that stamps the audit log's checkpoints, e.g. "
        "`https://tsa.example.org/` (docs/timestamps.md). Unset: no timestamps; checkpoints are kept "
        "unstamped. Production names an independent TSA: Axis's own (`axis tsa serve`) proves nothing against "
        "Axis's operator.", shown="none", flag="--tsa")
    tsa_trust: Path | None = _setting(
        None, "The root certificates (PEM) a TSA's certificate must chain to for its timestamps to verify "
        "(`tsa-root.pem` of `axis tsa init`).", shown="none")
    rename_grace_days: int = _setting(
        180, "Days during which documents addressed to an agency's old code are routed to its new one after "
        "`axis agency rename OLD NEW` (its `--for`); after them the old code is unknown to routing.",
        flag="--for")
    retain_bodies_days: int = _setting(
        90, "Days after it was received that the hub removes a document's body, once every recipient has it "
        "(delivered or beyond) or never will (refused, recalled, failed); 0 keeps bodies for ever. The log, the "
        "digest and every receipt stay (docs/retention.md).")
    retain_submissions_days: int = _setting(
        90, "Days after its decision that the hub removes a submission's row and its intake receipt (the agency "
        "can no longer look its outcome up); 0 keeps them for ever.")
    retain_inbox_days: int = _setting(
        30, "Days after it was seen that the hub forgets a de-duplication key (a redelivery comes within minutes); "
        "0 keeps them for ever.")
    retention_seconds: float = _setting(
        3600.0, "`axis serve` runs retention every this many seconds (and once at start).")
    deadline_time_zone: str = _setting(
        "Asia/Ho_Chi_Minh", "The time zone (IANA name) in which the overdue report reads working hours and days, "
        "and in which `axis stats --by day` counts days and the auditor's commands read a date without an offset.")
    deadline_working_hours: str = _setting(
        "08:00-17:00", "The working hours of every working day, for the overdue report's deadlines.")
    deadline_working_days: str = _setting(
        "Mon-Fri", "The weekdays that are working days (`Mon-Fri`, or a list such as `Mon,Tue,Wed,Thu,Fri,Sat`); "
        "the holiday calendar takes its holidays out and adds its swapped working days.")
    deadline_calendar: Path | None = _setting(
        None, "The holiday calendar of the overdue report: one ISO date per line (a holiday), `YYYY-MM-DD working` "
        "for a day off worked in exchange, `#` comments. The report warns when it names no day of a year it "
        "judges.", flag="--calendar",
        shown="the one Axis ships: Vietnam 2026 (`axis/auditor/vietnam-holidays.txt`)")
    deadline_urgent_hours: float = _setting(
        2.0, "Working hours within which the recipient of a Priority 3 (hỏa tốc) document must confirm it.",
        shown="`2`")

    @field_validator("gateway")
    @classmethod
    def _gateway_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("use http://host:port (loopback only) or https://host:port")
        return value

    @field_validator("tsa_url")
    @classmethod
    def _tsa_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("use the TSA's http:// or https:// URL (RFC 3161 over HTTP)")
        return value

    @field_validator("retain_bodies_days", "retain_submissions_days", "retain_inbox_days")
    @classmethod
    def _days(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be a number of days, 0 (keep for ever) or more")
        return value

    @field_validator("embedded_lease", "checkpoint_seconds", "retention_seconds")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number of seconds")
        return value

    @field_validator("retry_base", "outage_first_wait", "outage_max_wait", "outage_patience")
    @classmethod
    def _at_least_a_millisecond(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0.001):
            raise ValueError("must be a number of seconds >= 0.001")
        return value

    @field_validator("deadline_time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        parse_zone(value)
        return value

    @field_validator("deadline_working_hours")
    @classmethod
    def _working_hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("deadline_working_days")
    @classmethod
    def _working_days(cls, value: str) -> str:
        parse_weekdays(value)
        return value

    @field_validator("deadline_urgent_hours")
    @classmethod
    def _urgent_hours(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number of working hours")
        return value

    @field_validator("doctor_min_free_mb", "doctor_cert_days", "doctor_cert_warn_days", "doctor_tsa_warn",
                     "doctor_tsa_fail")
    @classmethod
    def _doctor_count(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("doctor_crl_warn_hours", "doctor_max_clock_skew")
    @classmethod
    def _doctor_margin(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number")
        return value

    @field_validator("gateway_rate", "log_rate")
    @classmethod
    def _positive_rate(cls, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise ValueError("must be a positive number per second")
        return value

    @field_validator("gateway_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a TCP port, 0 to 65535")
        return value

    @field_validator("retry_attempts", "workers", "gateway_burst", "max_packet_bytes", "inline_body_bytes",
                     "checkpoint_entries", "signer_processes", "rename_grace_days")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("broker")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if value != EMBEDDED and not value.startswith(("embedded:", "amqp://", "amqps://")):
            raise ValueError("use embedded, embedded:///path.db or amqp://user:password@host/vhost")
        return value

    @field_validator("log")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    # ------------------------------------------------------------ derived paths

    @property
    def store_url(self) -> str:
        return self.db or f"sqlite:///{self.data / 'axis.db'}"

    @property
    def embedded_transport(self) -> Path:
        """The transport file `embedded` means."""
        return self.data / "transport.db"

    @property
    def pki_dir(self) -> Path:
        return self.data / "pki"

    @property
    def hub_dir(self) -> Path:
        return self.data / "hub"

    @property
    def trust_roots(self) -> Path:
        return self.trust or self.pki_dir / "ca.pem"

    @property
    def revocations(self) -> Path | None:
        """The CRL: the configured one, else `<data>/pki/crl.pem` when it exists, else None."""
        if self.crl is not None:
            return self.crl
        default = self.pki_dir / "crl.pem"
        return default if default.is_file() else None

    @property
    def hub_key(self) -> Path:
        return self.key or self.hub_dir / "AXIS.key.pem"

    @property
    def hub_cert(self) -> Path:
        return self.cert or self.hub_dir / "AXIS.cert.pem"

    @property
    def signer_socket(self) -> Path:
        """Where `axis signer serve` listens: the configured socket, else `<data>/signer/signer.sock`."""
        return self.signer or self.data / "signer" / "signer.sock"

    def agency_state(self, code: str) -> Path:
        """An agency adapter's durable state: its receipts folder and inbox ledger."""
        return self.data / "agencies" / code

    def __repr_args__(self) -> Any:
        # A settings object may end up in a log line or a traceback: never with a password.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in ("db", "broker") and isinstance(value, str) else value


def environment_variable(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load(**flags: Any) -> Settings:
    """The settings: `flags` that are not None, then the `AXIS_*` environment, then the defaults."""
    given = {name: value for name, value in flags.items() if value is not None}
    unknown = set(given) - set(Settings.model_fields)
    if unknown:
        raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
    try:
        return Settings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        spec = Settings.model_fields.get(field)
        extra = spec.json_schema_extra if spec is not None else None
        flag = extra.get("flag") if isinstance(extra, dict) else None
        name = str(flag) if field in given and flag else environment_variable(field)
        value = error.get("input")
        shown = redact_url(value) if isinstance(value, str) else value
        message = str(error["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{name}={shown!r}: {message}") from None


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by `***`: how broker and database URLs are shown."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return url
    if parsed.password is None:
        return url
    return str(parsed.with_password(_HIDDEN))
