"""Where the `axis` command finds things: the one place for defaults shared by hub and agency commands.

Each setting is a function: an explicit value (a command-line option) wins,
then the environment variable, then the default beside the data directory.

| setting | option | environment | default |
|---|---|---|---|
| data directory | | `AXIS_DATA` | `./axis-data` |
| broker | `--broker` | `AXIS_BROKER` | `embedded` = `<data>/transport.db` |
| trusted roots | `--trust` | `AXIS_TRUST` | `<data>/pki/ca.pem` |
| CRL | `--crl` | `AXIS_CRL` | `<data>/pki/crl.pem` if it exists |
| an agency's state | `--state` | | `<data>/agencies/<code>/` |
| embedded lease | | `AXIS_EMBEDDED_LEASE` | 30 s before a dead consumer's deliveries come back |
| delivery retries | | `AXIS_RETRY_BASE`, `AXIS_RETRY_ATTEMPTS` | 10 s doubling, 6 attempts, then the dead-letter queue |
| XML-DSig engine | | `AXIS_XMLDSIG` | `xmlsec` when python-xmlsec loads, else `signxml` (read by `axis.trust.xmldsig`) |

Callers may rely on these functions only reading the environment and the file
system (no side effects), except `open_broker`, which opens a transport.
"""
from __future__ import annotations

import os
from pathlib import Path

from axis.retry import retrying
from axis.transport import RetryPolicy, Transport, open_transport

DEFAULT_DATA_DIR = Path("axis-data")
EMBEDDED = "embedded"


def data_dir() -> Path:
    """The directory holding the embedded transport, the PKI, the database and agency state."""
    return Path(os.environ.get("AXIS_DATA") or DEFAULT_DATA_DIR)


def broker_url(explicit: str | None = None) -> str:
    """`embedded` (the SQLite transport in the data directory), `embedded:///path.db` or `amqp://…`."""
    return explicit or os.environ.get("AXIS_BROKER") or EMBEDDED


def embedded_transport_path() -> Path:
    """The transport file `embedded` means."""
    return data_dir() / "transport.db"


def trust_paths(trust: Path | None = None, crl: Path | None = None) -> tuple[Path, Path | None]:
    """The trusted-roots PEM bundle and the CRL file (None when no CRL is configured or present)."""
    roots = trust or _env_path("AXIS_TRUST") or data_dir() / "pki" / "ca.pem"
    revocations = crl or _env_path("AXIS_CRL")
    if revocations is None:
        default = data_dir() / "pki" / "crl.pem"
        revocations = default if default.is_file() else None
    return roots, revocations


def agency_state_dir(code: str, explicit: Path | None = None) -> Path:
    """An agency adapter's durable state: its receipts folder and inbox ledger."""
    return explicit or data_dir() / "agencies" / code


def embedded_lease() -> float:
    """Seconds an embedded-transport delivery stays with a consumer that stopped renewing it (it died)."""
    value = os.environ.get("AXIS_EMBEDDED_LEASE")
    if not value:
        return 30.0
    try:
        lease = float(value)
    except ValueError:
        raise ValueError(f"AXIS_EMBEDDED_LEASE={value!r} is not a number of seconds") from None
    if not lease > 0:
        raise ValueError(f"AXIS_EMBEDDED_LEASE={value!r} must be a positive number of seconds")
    return lease


def retry_policy() -> RetryPolicy:
    """How a failed delivery is retried: `AXIS_RETRY_BASE` seconds, doubling, `AXIS_RETRY_ATTEMPTS` times."""
    default = RetryPolicy()
    try:
        base = float(os.environ.get("AXIS_RETRY_BASE") or default.base_delay)
        attempts = int(os.environ.get("AXIS_RETRY_ATTEMPTS") or default.max_attempts)
        return RetryPolicy(base_delay=base, max_attempts=attempts)
    except ValueError as exc:
        raise ValueError(f"AXIS_RETRY_BASE / AXIS_RETRY_ATTEMPTS: {exc}") from None


async def open_broker(url: str | None = None, *, name: str | None = None,
                      retry: RetryPolicy | None = None) -> Transport:
    """Open the transport `broker_url(url)` names; `embedded` creates the data directory if needed."""
    resolved = broker_url(url)
    if resolved == EMBEDDED:
        embedded_transport_path().parent.mkdir(parents=True, exist_ok=True)
    # A broker that is down for a while (restarted, failed over) is waited for, by the one retry policy.
    return await retrying("connecting to the broker")(open_transport)(
        resolved, name=name, retry=retry or retry_policy(), lease=embedded_lease(),
        default_embedded_path=embedded_transport_path())


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
