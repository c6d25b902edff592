"""The `axis` command: one entry point for operators, agencies and auditors."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import version
from pathlib import Path
from typing import Any

import typer

# typer's own click (it vendors one): its usage errors
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from axis.private import restrict_umask
from cli import settings
from cli.output import fail, stdout

# ------------------------------------------------------------------ the commands, each loaded when it is called

# Each command's module is imported only when that command runs (or when help lists it): the modules between them
# pull in the store, the hub, the gateway and the agency SDK, about a second of start-up that `axis --version`,
# `axis pki issue` or a spawned child of `axis serve` has no use for. `_COMMANDS` is the whole command tree, in
# the order `axis --help` lists it; each entry puts its command on the app it is given.
Register = Callable[[typer.Typer, str], None]


def _group(module: str, attribute: str = "app") -> Register:
    return lambda app, name: app.add_typer(getattr(import_module(module), attribute), name=name)


def _command(module: str, attribute: str) -> Register:
    return lambda app, name: app.command(name)(getattr(import_module(module), attribute))


def _packet(app: typer.Typer, name: str) -> None:
    from cli import compose, packet

    packet.app.command("new")(compose.new)
    app.add_typer(packet.app, name=name)


def _agency(app: typer.Typer, name: str) -> None:
    from cli import certs, operator, registry

    operator.agency_app.command("import")(registry.agency_import)
    operator.agency_app.command("show")(registry.agency_show)
    operator.agency_app.command("rename")(certs.agency_rename)
    app.add_typer(operator.agency_app, name=name)


def _audit(app: typer.Typer, name: str) -> None:
    from cli import audit, auditor  # noqa: F401 - auditor puts `audit log` on audit_app as it is imported

    app.add_typer(audit.audit_app, name=name)


def _demo(app: typer.Typer, name: str) -> None:
    app.command(name)(demo)


_COMMANDS: dict[str, Register] = {
    "serve": _command("cli.operator", "serve"),
    "gateway": _command("cli.gateway", "gateway"),
    "doctor": _command("cli.doctor", "doctor"),
    "demo": _demo,
    "pki": _group("cli.pki"),
    "packet": _packet,
    "agency": _agency,
    "send": _command("cli.agency_side", "send"),
    "inbox": _group("cli.agency_side", "inbox_app"),
    "status": _group("cli.agency_side", "status_app"),
    "adapter": _group("cli.adapter"),
    "receipts": _command("cli.operator", "receipts"),
    "audit": _audit,
    "overdue": _command("cli.auditor", "overdue"),
    "stats": _command("cli.auditor", "stats"),
    "dlq": _group("cli.dlq"),
    "credentials": _group("cli.credentials"),
    "tsa": _group("cli.tsa"),
    "evidence": _group("cli.evidence"),
    "signer": _group("cli.signer"),
    "cert": _group("cli.certs", "cert_app"),
    "key": _group("cli.certs", "key_app"),
    "traffic": _group("cli.traffic"),
    "queues": _command("cli.traffic", "queues"),
    "retention": _group("cli.retention"),
    "backup": _command("cli.backup", "backup"),
}
_loaded: dict[str, Any] = {}  # name -> its click command, built once per process (registering twice would repeat)
_loading = threading.Lock()    # tests run commands from several threads


def _load(name: str) -> Any:
    with _loading:
        if name not in _loaded:
            scratch = typer.Typer(add_completion=False)
            scratch.callback()(lambda: None)  # a callback makes it a group, whatever it holds
            _COMMANDS[name](scratch, name)
            _loaded[name] = typer.main.get_command(scratch).commands[name]  # type: ignore[attr-defined]
        return _loaded[name]


class _Axis(TyperGroup):
    """Every command's everyday mistakes (a missing, unreadable or wrong key, certificate or CRL file) end in
    one line that names the file and what is wrong, never a traceback: every command loads such files
    through `axis.trust.keys`, which raises KeyFileError for them, so one place turns it into the message.
    So do a file or folder the command cannot read or write (an OSError naming it) and a usage error."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        return _load(name) if name in _COMMANDS else None

    def invoke(self, ctx: Any) -> Any:  # click's Context, which typer vendors under a private name
        try:
            return super().invoke(ctx)
        except ValueError as exc:
            # A KeyFileError can only come from axis.trust.keys, loaded by then: not imported here for the check.
            keys = sys.modules.get("axis.trust.keys")
            if keys is None or not isinstance(exc, keys.KeyFileError):
                raise
            fail(str(exc), 2)
        except OSError as exc:
            if not exc.filename:
                raise
            # A file or folder the operator named cannot be read or written (a folder where a file should be, a
            # file in the way of a folder, no permission): name it, once.
            fail(f"{exc.filename}: {exc.strerror or exc}", 2)
        except NoArgsIsHelpError:
            raise  # `axis packet` alone: the help is what was asked for
        except UsageError as exc:  # a missing option or a bad value: one line, not a boxed usage screen
            where = exc.ctx.command_path if exc.ctx is not None else "axis"
            fail(f"{exc.format_message()} (see `{where} --help`)", exc.exit_code)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"axis {version('axis-backbone')}")
        raise typer.Exit()


app = typer.Typer(
    cls=_Axis,
    name="axis",
    help="Axis: carries signed edXML (QCVN 102:2016) documents between agencies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals would print keys
)


@app.callback()
def _start(_: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                  help="Print Axis's version and exit.")) -> None:
    # Before any command creates a file: the SQLite files hold plaintext bodies, the PKI holds keys.
    restrict_umask()
    settings.current()  # a bad AXIS_* value stops every command here, in one line, before it does anything


def demo(workdir: Path | None = typer.Option(None, "--dir", help="Keep the demo's files here "
                                                                   "(default: a temporary folder).")) -> None:
    """Four agencies, one hub and its gateway: a signed document with a PDF to two of them, delivered, answered."""
    from cli import demo as run  # the demo pulls in the hub and the store: only pay for it when asked

    run.demo(workdir)


def main() -> None:
    app()
