"""The `axis` command: one entry point for operators, agencies and auditors."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import typer

# typer's own click (it vendors one): its usage errors
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from axis.private import restrict_umask
from axis.trust.keys import KeyFileError
from cli import (
    adapter,
    agency_side,
    audit,
    auditor,
    backup,
    certs,
    compose,
    credentials,
    dlq,
    doctor,
    evidence,
    gateway,
    operator,
    packet,
    pki,
    registry,
    retention,
    settings,
    signer,
    traffic,
    tsa,
)
from cli.output import fail, stdout


class _Axis(TyperGroup):
    """Every command's everyday mistakes (a missing, unreadable or wrong key, certificate or CRL file) end in
    one line that names the file and what is wrong, never a traceback: every command loads such files
    through `axis.trust.keys`, which raises KeyFileError for them, so one place turns it into the message.
    So do a file or folder the command cannot read or write (an OSError naming it) and a usage error."""

    def invoke(self, ctx: Any) -> Any:  # click's Context, which typer vendors under a private name
        try:
            return super().invoke(ctx)
        except KeyFileError as exc:
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
app.command("serve")(operator.serve)
app.command("gateway")(gateway.gateway)
app.command("doctor")(doctor.doctor)


@app.callback()
def _start(_: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                  help="Print Axis's version and exit.")) -> None:
    # Before any command creates a file: the SQLite files hold plaintext bodies, the PKI holds keys.
    restrict_umask()
    settings.current()  # a bad AXIS_* value stops every command here, in one line, before it does anything


@app.command("demo")
def demo(workdir: Path | None = typer.Option(None, "--dir", help="Keep the demo's files here "
                                                                   "(default: a temporary folder).")) -> None:
    """Four agencies, one hub and its gateway: a signed document with a PDF to two of them, delivered, answered."""
    from cli import demo as run  # the demo pulls in the hub and the store: only pay for it when asked

    run.demo(workdir)


app.add_typer(pki.app, name="pki")
app.add_typer(packet.app, name="packet")
compose.mount(packet.app)  # packet new
app.add_typer(operator.agency_app, name="agency")
registry.mount(operator.agency_app)  # agency import, agency show
agency_side.mount(app)  # send, inbox pull, status send
app.add_typer(adapter.app, name="adapter")
app.command("receipts")(operator.receipts)
app.add_typer(audit.audit_app, name="audit")
auditor.mount(app)  # overdue, stats; and `audit log` on audit.audit_app
app.add_typer(dlq.app, name="dlq")
app.add_typer(credentials.app, name="credentials")
app.add_typer(tsa.app, name="tsa")
app.add_typer(evidence.app, name="evidence")
app.add_typer(signer.app, name="signer")
certs.mount(app)  # cert, key rotate, agency rename
traffic.mount(app)  # traffic list|show|tail, queues
app.add_typer(retention.app, name="retention")
app.command("backup")(backup.backup)


def main() -> None:
    app()
