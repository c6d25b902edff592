"""Where the `axis` command finds things: `axis.settings` read for the command line.

Every setting, its variable, flag, default and meaning: docs/configuration.md
(the fields of `axis.settings.Settings`). A command-line option wins over its
environment variable, which wins over the default. A bad value ends the command
with a one-line error naming the variable or flag (`cli.output.fail`), never a
traceback.

Callers may rely on these functions only reading the environment and the file
system (no side effects), except `open_broker`, which opens a transport.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axis import settings as axis_settings
from axis.private import private_directory
from axis.settings import EMBEDDED, Settings, SettingsError, redact_url
from cli.output import fail, stderr

if TYPE_CHECKING:
    from axis.signer import AxisSigner
    from axis.store import Store
    from axis.transport import RetryPolicy, Transport

__all__ = ["EMBEDDED", "Settings", "agency_state_dir", "broker_url", "current", "data_dir", "db_url",
           "open_broker", "redact_url", "retry_policy", "seal_as_operator", "trust_paths"]


def current(**flags: Any) -> Settings:
    """The settings with these command-line values (None: not given); a bad value ends the command."""
    try:
        return axis_settings.load(**flags)
    except SettingsError as exc:
        fail(str(exc), 2)


def data_dir() -> Path:
    """The directory holding the embedded transport, the PKI, the database and agency state."""
    return current().data


def broker_url(explicit: str | None = None) -> str:
    """`embedded` (the SQLite transport in the data directory), `embedded:///path.db` or `amqp://…`."""
    return current(broker=explicit).broker


def db_url(explicit: str | None = None) -> str:
    """The hub's database URL: the option, `AXIS_DB`, or the SQLite file in the data directory."""
    return current(db=explicit).store_url


def trust_paths(trust: Path | None = None, crl: Path | None = None) -> tuple[Path, Path | None]:
    """The trusted-roots PEM bundle and the CRL file (None when no CRL is configured or present)."""
    chosen = current(trust=trust, crl=crl)
    return chosen.trust_roots, chosen.revocations


def agency_state_dir(code: str, explicit: Path | None = None) -> Path:
    """An agency adapter's durable state: its receipts folder and inbox ledger."""
    return explicit or current().agency_state(code)


def seal_as_operator(store: Store) -> None:
    """Seal what this command writes with a log key of its own (axis/audit/logkeys.py), certified by the
    signer at AXIS_SIGNER (or `<data>/signer/signer.sock`) if one answers there, else by the axis key file
    (AXIS_KEY, AXIS_CERT). With neither, the entries are written unsealed and `axis audit verify` will name
    them, which this says."""
    from axis.audit.logkeys import seal_store
    from axis.signer import LocalSigner, SignerClient, SignerError

    chosen = current()
    attempts: list[Callable[[], AxisSigner]] = []
    if chosen.signer is not None or chosen.signer_socket.exists():
        attempts.append(lambda: SignerClient(chosen.signer_socket))
    if chosen.hub_key.is_file() and chosen.hub_cert.is_file():
        attempts.append(lambda: LocalSigner.from_files(chosen.hub_key, chosen.hub_cert))
    problems = []
    for attempt in attempts:
        try:
            seal_store(store, attempt(), "operator")
            return
        except (SignerError, OSError, ValueError) as exc:
            problems.append(str(exc))
    why = "; ".join(problems) or f"no signer at {chosen.signer_socket} and no axis key at {chosen.hub_key}"
    stderr.print(f"warning: this command's audit entries are not sealed ({why}): `axis audit verify` will name "
                 "them. Run it where the signer or the axis key is (AXIS_SIGNER, AXIS_KEY).")


def retry_policy(chosen: Settings | None = None) -> RetryPolicy:
    """How a failed delivery is retried: `AXIS_RETRY_BASE` seconds, doubling, `AXIS_RETRY_ATTEMPTS` times."""
    from axis.transport import RetryPolicy  # every command reads its settings here; few open a broker

    chosen = chosen or current()
    return RetryPolicy(base_delay=chosen.retry_base, max_attempts=chosen.retry_attempts)


async def open_broker(url: str | None = None, *, name: str | None = None,
                      retry: RetryPolicy | None = None) -> Transport:
    """Open the transport `broker_url(url)` names; `embedded` creates the data directory if needed."""
    from axis.retry import retrying
    from axis.transport import open_transport

    chosen = current(broker=url)
    if chosen.broker == EMBEDDED:
        private_directory(chosen.embedded_transport.parent)
    # A broker that is down for a while (restarted, failed over) is waited for, by the one retry policy.
    return await retrying("connecting to the broker")(open_transport)(
        chosen.broker, name=name, retry=retry or retry_policy(chosen), lease=chosen.embedded_lease,
        default_embedded_path=chosen.embedded_transport)
