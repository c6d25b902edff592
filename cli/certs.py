"""`axis cert …`, `axis key rotate` and `axis agency rename`: agencies' certificates, the axis's own key, renamed codes.

An agency may have several active certificates at once: a new one is added
(`cert add`) while the old one still signs, and the old one stops when it is
withdrawn (`cert withdraw`), revoked by its CA or expires (rotation with
overlap). The axis key is replaced by `key rotate`, which keeps the old key and
certificate in `retired/` next to them; what the old key signed still verifies
against the trusted roots. `agency rename` routes an old code's documents to a
new one for a while, and keeps every record of the old code as it was.
docs/certificates.md says what each does to intake.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Column

from axis import wire
from axis.edxml import parse_agency_code
from axis.refusals import Refusal
from cli.operator import DbOption, _open_store
from cli.output import fail, print_json, refuse, stdout, table
from cli.settings import current

if TYPE_CHECKING:
    from cryptography import x509

    from axis.store import Certificate
    from axis.trust import SigningKey, Verifier

cert_app = typer.Typer(help="Agencies' signing certificates: add, list, withdraw (rotation with overlap).",
                       no_args_is_help=True)
key_app = typer.Typer(help="The axis's own signing key.", no_args_is_help=True)

TrustOption = typer.Option(None, "--trust", help="Trusted roots (env AXIS_TRUST; default axis-data/pki/ca.pem).")
CrlOption = typer.Option(None, "--crl", help="CRL (env AXIS_CRL; default axis-data/pki/crl.pem if it exists).")
# Where a running hub may still take a certificate for registered without asking the store (axis/hub/intake.py).
_REGISTRATION_TTL = 30


def _code(text: str) -> str:
    try:
        return parse_agency_code(text).text
    except Refusal as refusal:
        refuse(refusal)


def _verifier(trust: Path | None, crl: Path | None) -> Verifier:
    from axis.trust import Verifier

    chosen = current(trust=trust, crl=crl)
    if not chosen.trust_roots.is_file():
        fail(f"trusted roots not found at {chosen.trust_roots}: pass --trust ROOT.pem (AXIS_TRUST)", 2)
    return Verifier.from_files(chosen.trust_roots, chosen.revocations)


def _fingerprint(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return certificate.fingerprint(hashes.SHA256()).hex()


# ------------------------------------------------------------------ agencies' certificates

@cert_app.command("add")
def cert_add(
    code: str = typer.Argument(..., help="The registered agency the certificate is issued to."),
    cert: Path = typer.Argument(..., help="The certificate (PEM; its chain may follow it)."),
    trust: Path | None = TrustOption,
    crl: Path | None = CrlOption,
    db: str | None = DbOption,
) -> None:
    """Register another signing certificate of an agency; its other certificates stay valid (rotation with overlap)."""
    from axis.trust import certificate_agency_code
    from axis.trust.keys import certificate_pem, load_certificates

    code = _code(code)
    certificates = load_certificates(cert)
    leaf = certificates[0]
    try:
        named = certificate_agency_code(leaf)
        if named != code:
            fail(f"{cert} is issued to {named}, not {code}")
        _verifier(trust, crl).check_certificate(leaf, certificates[1:])
    except Refusal as refusal:
        refuse(refusal)
    fingerprint = _fingerprint(leaf)
    store = _open_store(db, writes=True)
    try:
        with store.write() as tx:
            if tx.get_agency(code) is None:
                fail(f"{code} is not registered: register it with `axis agency add {code} --name NAME --cert {cert}`")
            known = tx.certificate(fingerprint)
            if known is not None:
                fail(f"certificate {fingerprint[:16]}… is already registered to {known.agency_code} ({known.state})"
                     + ("" if known.state == "active" else "; a certificate taken out of use never comes back: "
                        "register a new one"))
            tx.add_certificate(code, certificate_pem(leaf))
            active = sum(c.state == "active" for c in tx.certificates(code))
            tx.audit("operator", "certificate-added", code, {
                "fingerprint": fingerprint, "subject": leaf.subject.rfc4514_string(),
                "not_before": leaf.not_valid_before_utc.isoformat(), "not_after": leaf.not_valid_after_utc.isoformat()})
    finally:
        store.close()
    stdout.print(f"registered certificate {fingerprint} for {code} (valid until {leaf.not_valid_after_utc:%Y-%m-%d}); "
                 f"{code} has {active} active certificate(s), each accepted until withdrawn (axis cert withdraw "
                 "FINGERPRINT), revoked or expired")


def _revoked(certificate: Certificate, crls: list[x509.CertificateRevocationList]) -> bool:
    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(certificate.certificate.encode("ascii"))
    return any(crl.issuer == parsed.issuer and crl.get_revoked_certificate_by_serial_number(parsed.serial_number)
               is not None for crl in crls)


def _state(certificate: Certificate, now: datetime, crls: list[x509.CertificateRevocationList]) -> str:
    """What the certificate is worth now: the registry's state, then the CRL's and the calendar's verdicts."""
    if certificate.state != "active":
        return certificate.state
    if crls and _revoked(certificate, crls):
        return "revoked"
    if certificate.not_after <= now:
        return "expired"
    if certificate.not_before > now:
        return "not yet valid"
    return "active"


@cert_app.command("list")
def cert_list(
    code: str | None = typer.Argument(None, help="Only this agency's certificates."),
    expiring: int | None = typer.Option(None, "--expiring", min=0, metavar="DAYS",
                                        help="Only certificates in use that expire within DAYS days (or expired)."),
    as_json: bool = typer.Option(False, "--json"),
    crl: Path | None = CrlOption,
    db: str | None = DbOption,
) -> None:
    """Registered certificates: fingerprint, agency, validity, days left and state (the CRL's revocations too)."""
    from axis.trust.keys import load_crls

    agency = _code(code) if code else None
    revocations = current(crl=crl).revocations
    crls = load_crls(revocations) if revocations is not None else []
    now = datetime.now(UTC)
    store = _open_store(db)
    try:
        registered = store.list_certificates(agency)
    finally:
        store.close()
    rows = []
    for c in registered:
        if expiring is not None and c.not_after > now + timedelta(days=expiring):
            continue
        state = _state(c, now, crls)
        if expiring is not None and state in ("withdrawn", "revoked"):  # out of use already
            continue
        rows.append({"fingerprint": c.fingerprint, "agency": c.agency_code, "not_before": c.not_before,
                     "not_after": c.not_after, "days_left": int((c.not_after - now).total_seconds() / 86400),
                     "state": state, "added_at": c.added_at})
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no certificates" + (f" of {agency}" if agency else "") +
                     (f" expire within {expiring} days" if expiring is not None else " are registered"))
        return
    grid = table(Column("fingerprint", no_wrap=True), Column("agency", overflow="fold"),
                 Column("not before", no_wrap=True), Column("not after", no_wrap=True),
                 Column("days", justify="right", no_wrap=True), Column("state", overflow="fold"))
    for row in rows:
        grid.add_row(row["fingerprint"][:16], row["agency"], f"{row['not_before']:%Y-%m-%d}",
                     f"{row['not_after']:%Y-%m-%d}", str(row["days_left"]), row["state"])
    stdout.print(grid)


@cert_app.command("withdraw")
def cert_withdraw(
    fingerprint: str = typer.Argument(..., help="The certificate's SHA-256 fingerprint, or its first 8 or more hex "
                                                "digits (as `axis cert list` shows them), or its PEM file."),
    db: str | None = DbOption,
) -> None:
    """Take a certificate out of use: packets signed with it are refused (AX404 CERT_NOT_REGISTERED)."""
    from axis.trust.keys import load_certificate

    if Path(fingerprint).is_file():
        fingerprint = _fingerprint(load_certificate(fingerprint))
    prefix = fingerprint.strip().lower().replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{8,64}", prefix):
        fail(f"{fingerprint!r} is not a fingerprint: give the hex SHA-256 `axis cert list` shows (at least 8 digits)",
             2)
    store = _open_store(db, writes=True)
    try:
        with store.write() as tx:
            found = tx.certificates_like(prefix)
            if not found:
                fail(f"no registered certificate's fingerprint begins with {prefix}; see `axis cert list`")
            if len(found) > 1:
                fail(f"{prefix} begins the fingerprints of several certificates; give more of its digits")
            [certificate] = found
            withdrawn = tx.withdraw_certificate(certificate.fingerprint)
            left = sum(c.state == "active" for c in tx.certificates(certificate.agency_code))
            if withdrawn:
                tx.audit("operator", "certificate-withdrawn", certificate.agency_code,
                         {"fingerprint": certificate.fingerprint, "active_left": left})
    finally:
        store.close()
    code = certificate.agency_code
    if not withdrawn:
        stdout.print(f"certificate {certificate.fingerprint} of {code} is already {certificate.state}")
        return
    stdout.print(f"withdrew certificate {certificate.fingerprint} of {code}: packets signed with it are refused "
                 f"(AX404), by a running hub within {_REGISTRATION_TTL} s; {code} has {left} active certificate(s) "
                 "left" + ("" if left else f": it cannot send until `axis cert add {code} CERT.pem`"))


# ------------------------------------------------------------------ the axis's own key

@key_app.command("rotate")
def key_rotate(
    key: Path | None = typer.Option(None, "--key", help="The new axis key (PEM)."),
    cert: Path | None = typer.Option(None, "--cert", help="Its certificate (PEM, then its chain): it must name AXIS "
                                                          "and chain to the trusted roots."),
    pki_dir: Path | None = typer.Option(None, "--pki", help="Without --key and --cert: issue them from this "
                                                            "development CA (default axis-data/pki)."),
    trust: Path | None = TrustOption,
    crl: Path | None = CrlOption,
    db: str | None = DbOption,
) -> None:
    """Install a new axis key and certificate where the signer reads them (AXIS_KEY, AXIS_CERT), keeping the old
    ones in retired/ beside them. The signer signs with the new key once restarted (`axis serve`, `axis signer
    serve`); what the old key signed (receipts, seals, checkpoints, log keys) still verifies."""
    from axis.trust import certificate_agency_code, pki
    from axis.trust.keys import load_certificates, load_private_key, same_public_key

    chosen = current(trust=trust, crl=crl)
    if (key is None) != (cert is None):
        fail("give both --key and --cert (the new key and its certificate), or neither to issue them from the "
             "development CA", 2)
    if key is not None and cert is not None:
        new_key = load_private_key(key)
        new_chain = load_certificates(cert)
        if not same_public_key(new_key, new_chain[0]):
            fail(f"{key} is not the key of {cert}", 2)
    else:
        directory = pki_dir or chosen.pki_dir
        try:
            ca = pki.load_ca(directory)
        except pki.PKIError as exc:
            fail(f"{exc}; or give the new key and certificate with --key and --cert", 2)
        new_key = pki.generate_key("ec")
        new_chain = [pki.build_agency_certificate(wire.HUB_IDENTITY, new_key.public_key(), ca.certificate, ca.key)]
    leaf = new_chain[0]
    what = cert or "the new certificate"
    try:
        named = certificate_agency_code(leaf)
    except Refusal as refusal:
        fail(f"{what} cannot be the axis certificate: {refusal}", 2)
    if named != wire.HUB_IDENTITY:
        fail(f"{what} is issued to {named}, not to the axis ({wire.HUB_IDENTITY})", 2)
    try:
        _verifier(trust, crl).check_certificate(leaf, new_chain[1:])
    except Refusal as refusal:
        fail(f"{what} cannot be the axis certificate: {refusal}", 2)
    new = _fingerprint(leaf)
    old_key, old_cert = chosen.hub_key, chosen.hub_cert
    old = None
    if old_cert.is_file():
        old = _fingerprint(load_certificates(old_cert)[0])
        if old == new:
            fail(f"{what} is already the axis certificate ({old_cert})", 2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    retired = old_cert.parent / "retired"
    # Opened with the old key, so its certificate is among the audit log's signers (the gateway finds the
    # certificate of a packet sealed before the rotation there).
    store = _open_store(db, writes=True)
    try:
        with store.write() as tx:
            try:
                kept = _replace_axis_key(old_key, old_cert, retired, stamp, old or new, new_key, new_chain)
            except OSError as exc:
                fail(f"cannot install the new axis key: {exc}; nothing was changed in the database")
            tx.audit("operator", "axis-key-rotated", wire.HUB_IDENTITY, {
                "old": old, "new": new, "not_after": leaf.not_valid_after_utc.isoformat(), "retired": kept})
    finally:
        store.close()
    stdout.print(f"the axis key is rotated: certificate {new} (valid until {leaf.not_valid_after_utc:%Y-%m-%d}) → "
                 f"{old_cert}; the old key and certificate are kept in {retired}. Restart `axis serve` (and "
                 "`axis signer serve`, `axis gateway`) to sign with the new key.")


def _replace_axis_key(old_key: Path, old_cert: Path, retired: Path, stamp: str, label: str, new_key: SigningKey,
                      new_chain: list[x509.Certificate]) -> list[str]:
    """Copy the current key and certificate to `retired`, then write the new ones in their place; the copies."""
    from axis.trust.keys import certificate_pem, write_private_key, write_public_file

    kept = []
    for path, suffix in ((old_key, "key.pem"), (old_cert, "cert.pem")):
        if path.is_file():
            target = retired / f"{wire.HUB_IDENTITY}-{stamp}-{label[:12]}.{suffix}"
            write_public_file(target, path.read_bytes())  # 0600, like every file Axis writes
            kept.append(str(target))
    write_public_file(old_cert, certificate_pem(*new_chain))
    write_private_key(old_key, new_key)
    return kept


# ------------------------------------------------------------------ renamed codes

def agency_rename(
    old: str = typer.Argument(..., help="The agency's code until now."),
    new: str = typer.Argument(..., help="Its new code (registered here unless --merge)."),
    name: str | None = typer.Option(None, "--name", help="NEW's name, when NEW is registered here (default: OLD's)."),
    days: int | None = typer.Option(None, "--for", min=1, metavar="DAYS",
                                    help="Days documents addressed to OLD are routed to NEW (env "
                                         "AXIS_RENAME_GRACE_DAYS; default 180)."),
    merge: bool = typer.Option(False, "--merge", help="NEW is a registered agency OLD merges into."),
    db: str | None = DbOption,
) -> None:
    """Rename (or merge) an agency: documents to OLD go to NEW for a while; OLD sends no more documents, what
    waits for it stays in its inbox, and its history keeps its code."""
    old, new = _code(old), _code(new)
    if old == new:
        fail(f"{old} is already its own code", 2)
    grace = timedelta(days=current(rename_grace_days=days).rename_grace_days)
    store = _open_store(db, writes=True)
    try:
        with store.write() as tx:
            before = tx.get_agency(old)
            if before is None:
                fail(f"{old} is not registered")
            renamed = tx.aliases([old, new])
            if old in renamed:
                fail(f"{old} was already renamed {renamed[old].new_code} on {renamed[old].created_at:%Y-%m-%d}")
            if new in renamed:
                fail(f"{new} was itself renamed {renamed[new].new_code}: a code cannot be renamed to a code that was "
                     f"renamed (rename {old} to {renamed[new].new_code})")
            target = tx.get_agency(new)
            if target is not None and not merge:
                fail(f"{new} is already registered ({target.name}): to route {old}'s documents to it (a merger), "
                     "pass --merge")
            if target is None and merge:
                fail(f"{new} is not registered: --merge is for merging into a registered agency; leave it out to "
                     f"register {new}")
            if target is not None and name is not None:
                fail(f"{new} is registered already, as {target.name}: --name names a new code only", 2)
            if target is not None and target.state != "active":
                fail(f"{new} is {target.state}: resume it first (axis agency resume {new})")
            if target is None:
                target = tx.add_agency(new, name or before.name, before.parent_code)
                tx.audit("operator", "agency-added", new, {"name": target.name, "parent": target.parent_code,
                                                         "renamed_from": old, "certificates": []})
            alias = tx.add_alias(old, new, store.clock() + grace)
            tx.audit("operator", "agency-renamed", old, {"new": new, "until": alias.until.isoformat(),
                                                         "merge": merge})
            certified = any(c.state == "active" for c in tx.certificates(new))
    finally:
        store.close()
    stdout.print(f"{old} is renamed {new}: documents addressed to {old} go to {new} until {alias.until:%Y-%m-%d} "
                 f"(then {old} is unknown to routing); {old} sends no more documents, and what waits for it stays in "
                 "its inbox" + ("" if certified else f". Next: axis cert add {new} CERT.pem, then axis credentials "
                                                     f"issue --agency {new}"))
