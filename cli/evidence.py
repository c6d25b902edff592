"""`axis evidence AXIS_ID --out bundle.zip` and `axis evidence verify bundle.zip --trust ROOT.pem`.

The first builds a document's evidence bundle from the store (`axis evidence get AXIS_ID` is the
same command); the second checks one offline, with no database and no setting but the roots it is
given. Exit codes: 0 it checks, 1 it does not (or no bundle could be built), 3 it checks but part
of it no checkpoint covers yet (`cli.output.INCOMPLETE`). Bundle format: docs/evidence.md.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from cli.operator import DbOption, _open_store
from cli.output import INCOMPLETE, fail, print_json, stderr, stdout


class _GetByDefault(TyperGroup):
    """`axis evidence AXIS_ID …` is `axis evidence get AXIS_ID …`: what no subcommand names is an axis id."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["get", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_GetByDefault, no_args_is_help=True,
                  help="A document's evidence bundle: `axis evidence AXIS_ID --out FILE.zip` builds it, "
                       "`axis evidence verify FILE.zip --trust ROOT.pem` checks it offline.")


@app.command("get")
def get(
    axis_id: str = typer.Argument(..., help="The document's axis id (`axis receipts DOCUMENT_ID` shows it)."),
    out: Path | None = typer.Option(None, "--out", help="The ZIP to write, replaced if it exists "
                                                        "(default: evidence-AXIS_ID.zip)."),
    uncovered: bool = typer.Option(False, "--uncovered",
                                   help="Carry log entries no checkpoint covers yet, without proofs, in a bundle "
                                        "marked incomplete (default: refuse, and wait for the next checkpoint)."),
    crl: Path | None = typer.Option(None, "--crl", help="The CRL file to carry (env AXIS_CRL; default the "
                                                        "PKI's crl.pem when it exists)."),
    db: str | None = DbOption,
) -> None:
    """Build a document's evidence bundle: packet, receipts, statuses, log entries proven in a checkpoint."""
    from axis.audit.evidence import EvidenceError, NotCovered, build_bundle
    from cli.settings import current

    out = out or Path(f"evidence-{axis_id}.zip")
    revocations = current(crl=crl).revocations
    store = _open_store(db)
    try:
        bundle = build_bundle(store, axis_id, crl=revocations, uncovered=uncovered)
    except NotCovered as exc:
        fail(f"{exc}, or pass --uncovered for a bundle marked incomplete")
    except EvidenceError as exc:
        fail(str(exc))
    finally:
        store.close()
    try:
        bundle.write(out)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    anchor = (f"checkpoint {bundle.checkpoint}{', timestamped' if bundle.stamped else ', not timestamped yet'}"
              if bundle.checkpoint is not None else "no checkpoint")
    stdout.print(f"{out}: evidence of {axis_id}, {len(bundle.files) + 1} files, {anchor}", markup=False)
    for key, digest, seq in bundle.removed:
        stderr.print(f"note: the packet of {key} is not in the bundle: retention removed its body (log entry {seq}), "
                     f"which the bundle carries; it proves the digest {digest}", markup=False)
    if bundle.uncovered:
        stderr.print(f"incomplete: log entries {', '.join(map(str, bundle.uncovered))} are carried without proofs "
                     "(no checkpoint covers them yet)", markup=False)


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="The evidence bundle (a ZIP from `axis evidence`)."),
    trust: Path = typer.Option(..., "--trust", help="The root certificates you trust (PEM): agencies' and "
                                                    "Axis's CA."),
    tsa_trust: Path | None = typer.Option(None, "--tsa-trust", help="The roots of the time-stamping authority "
                                                                    "(PEM); without it the token is not checked."),
    as_of: str | None = typer.Option(None, "--as-of", help="The moment of the check, ISO 8601 (default now): "
                                                           "nothing in the bundle may be dated after it. Each "
                                                           "signature is judged as of its own log time."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check an evidence bundle offline: manifest, signatures as of their log time, proofs, checkpoint, token."""
    from axis.audit.evidence_check import BundleInvalid, check_bundle
    from axis.trust import keys

    moment = _moment(as_of)
    try:
        roots = keys.load_certificates(trust)
        tsa_roots = keys.load_certificates(tsa_trust) if tsa_trust is not None else []
    except ValueError as exc:
        fail(f"{exc}; pass the PEM file of the roots you trust", 2)
    try:
        checked = check_bundle(bundle, roots, tsa_trust=tsa_roots, as_of=moment)
    except BundleInvalid as exc:
        if as_json:
            print_json({"ok": False, "file": exc.file, "reason": exc.reason})
        fail(str(exc) if exc.file == str(bundle) else f"{bundle}: {exc}")  # the ZIP itself is named once
    except ValueError as exc:  # the roots themselves: not CA certificates
        fail(f"--trust {trust}: {exc}", 2)
    if as_json:
        print_json({"ok": True, **vars(checked)})
    else:
        anchor = "no checkpoint"
        if checked.checkpoint is not None and checked.checkpoint_at is not None:
            anchor = f"checkpoint {checked.checkpoint} of {checked.checkpoint_at:%Y-%m-%d %H:%M:%S} UTC signed by Axis"
            if checked.stamped_at is not None:
                anchor += f", timestamped {checked.stamped_at:%Y-%m-%d %H:%M:%S} UTC by the TSA"
        stdout.print(f"{bundle}: the evidence of {checked.axis_id} checks: {checked.files} files, "
                     f"{checked.signatures} signatures (each as of its log time), {checked.proven} of "
                     f"{checked.entries} log entries proven in {anchor}", markup=False)
        for note in checked.notes:
            stderr.print(f"note: {note}", markup=False)
    if not checked.complete:
        raise typer.Exit(INCOMPLETE)


def _moment(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--as-of {text!r} is not an ISO 8601 date or time, e.g. 2046-01-01 or 2046-01-01T08:00:00Z", 2)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

