"""Helpers shared by the store tests (import as tests.store.store_helpers)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from axis.store import NewDocument, Store

SENDER = "000.00.00.G22"
R1, R2, R3 = "000.00.00.H01", "000.00.00.H02", "000.00.00.H03"
RECIPIENTS = (R1, R2, R3)


class FakeClock:
    """A clock the test moves by hand (lease expiry without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def new_doc(n: int | str, sender: str = SENDER, kind: str = "document", axis_id: str | None = None,
            **kw: object) -> NewDocument:
    return NewDocument(axis_id=axis_id or f"ax-{n}-{kind}", sender_code=sender, document_id=f"{n}/VPCP-TTĐT",
                       kind=kind, **kw)  # type: ignore[arg-type]


def body_of(n: int | str) -> bytes:
    return f"<edXML n='{n}'>signed bytes, kept exactly: ắ \r\n\x00</edXML>".encode()


def accept(store: Store, n: int | str, recipients: tuple[str, ...] = RECIPIENTS) -> str:
    """What the hub does for one document, in one unit of work."""
    doc = new_doc(n)
    with store.write() as tx:
        tx.insert_document(doc, body_of(n))
        tx.insert_deliveries(doc.axis_id, recipients)
        tx.add_receipt(doc.axis_id, "intake", b"<receipt/>")
        tx.audit("hub", "document.accepted", doc.axis_id, {"recipients": list(recipients)})
    return doc.axis_id


def table_counts(store: Store) -> dict[str, int]:
    from axis.store.schema import TABLES
    with store.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in TABLES}


def drop_audit_guard(store: Store) -> None:
    """What an attacker with database access does first."""
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update_delete ON audit_log")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")


def make_certificate(cn: str = SENDER) -> str:
    """A real self-signed EC certificate, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
