"""Entries added behind Axis's back are named even after the newest checkpoint: every unit of work is sealed
by its writer's log key, which the axis key certified (axis/audit/logkeys.py). An attacker with the database
(and the append-only guard dropped) but without the axis key tries each way round it. SQLite and PostgreSQL.
"""
from __future__ import annotations

import base64
import json
import zipfile
from datetime import timedelta

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from axis.audit import logkeys
from axis.audit.checkpoints import CheckpointWriter
from axis.audit.verify import verify_store
from axis.store import Store
from axis.store import audit as chain
from tests.audit.conftest import Pki, key_signer
from tests.audit.test_verify import _bad, _exec, _log
from tests.store.store_helpers import accept, drop_audit_guard


def _append(store: Store, *, action: str = "accepted", subject: str = "ax-forged", **seal: object) -> int:
    """A forged entry at the end of the log, its hash computed exactly as the store does; its seq."""
    seq, prev = store.audit_head()
    at = store.clock() + timedelta(seconds=1)
    body = chain.entry_body(seq + 1, at, "hub", action, subject, {}, prev, None, seal.get("sealed_from"),
                            seal.get("seal_key"))  # type: ignore[arg-type]
    row = {"seq": seq + 1, "at": at.replace(tzinfo=None) if store.dialect == "sqlite" else at, "actor": "hub",
           "action": action, "subject": subject, "data": json.dumps({}), "prev_hash": prev,
           "hash": chain.entry_hash(prev, body), "sealed_from": seal.get("sealed_from"),
           "seal_key": seal.get("seal_key"), "seal": seal.get("seal")}
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log (seq, at, actor, action, subject, data, prev_hash, hash, "
                             "sealed_from, seal_key, seal) VALUES (:seq, :at, :actor, :action, :subject, :data, "
                             ":prev_hash, :hash, :sealed_from, :seal_key, :seal)"), row)
    return seq + 1


def test_every_unit_of_work_is_sealed_and_verifies(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    entries = list(seeded.audit_entries())
    assert entries[-1].seal is not None and all(e.seal_key is not None for e in entries if e.seal is not None)
    report = verify_store(seeded, audit_pki.trust)
    assert report.ok, report
    assert not any("carry no seal" in note for note in report.notes), report.notes


def test_an_entry_appended_after_the_newest_checkpoint_is_named(seeded: Store, writer: CheckpointWriter,
                                                                 audit_pki: Pki) -> None:
    _log(seeded, writer)
    writer.write()
    seq = _append(seeded)
    _bad(verify_store(seeded, audit_pki.trust), f"entry {seq}", "no seal", "behind Axis's back")


def test_a_forged_entry_stays_named_when_axis_writes_and_signs_after_it(seeded: Store, writer: CheckpointWriter,
                                                                        audit_pki: Pki) -> None:
    """The next unit Axis writes chains onto the forgery and the next checkpoint covers it: its seal still
    starts after it."""
    _log(seeded, writer)
    seq = _append(seeded)
    accept(seeded, "after")
    assert writer.write() is not None
    _bad(verify_store(seeded, audit_pki.trust), f"entry {seq}", "no seal")


def test_a_seal_copied_from_another_entry_is_named(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    last = list(seeded.audit_entries())[-1]
    seq = _append(seeded, sealed_from=seeded.audit_head()[0] + 1, seal_key=last.seal_key, seal=last.seal)
    _bad(verify_store(seeded, audit_pki.trust), f"entry {seq}", "not log key")


def test_a_seal_by_a_key_the_axis_key_did_not_certify_is_named(seeded: Store, writer: CheckpointWriter,
                                                                audit_pki: Pki) -> None:
    """The attacker makes a log key and certifies it with an "AXIS" certificate of their own CA."""
    _log(seeded, writer)
    rogue = key_signer(audit_pki.rogue_key, audit_pki.rogue_cert)
    sealer, row, pem = logkeys.certify(rogue, "hub", seeded.clock())
    with seeded.write() as tx:
        tx.add_log_key(row, pem)
    seq = seeded.audit_head()[0] + 1
    forged_hash = chain.entry_hash(seeded.audit_head()[1], chain.entry_body(
        seq, seeded.clock() + timedelta(seconds=1), "hub", "accepted", "ax-forged", {}, seeded.audit_head()[1],
        None, seq, sealer.key_id))
    _append(seeded, sealed_from=seq, seal_key=sealer.key_id,
            seal=sealer.sign(chain.seal_message(sealer.key_id, seq, seq, forged_hash)))
    _bad(verify_store(seeded, audit_pki.trust), f"entry {seq}", "not certified by the axis key")


def test_a_log_key_with_no_certificate_at_all_is_named(seeded: Store, writer: CheckpointWriter,
                                                        audit_pki: Pki) -> None:
    """The attacker registers a bare key, with a statement signed by nobody Axis trusts (a self-made key)."""
    _log(seeded, writer)
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = logkeys.key_id(public)
    text = logkeys.Statement(key_id, public, "hub", seeded.clock()).text()
    own = next(iter(seeded.audit_signers()))
    with seeded.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log_keys (key_id, public_key, created_at, writer, statement, "
                             "signature, signer) VALUES (:k, :p, :t, 'hub', :s, :sig, :signer)"),
                     {"k": key_id, "p": public, "t": seeded.clock().replace(tzinfo=None)
                      if seeded.dialect == "sqlite" else seeded.clock(), "s": text, "sig": b"\0" * 256,
                      "signer": own})
    seq, prev = seeded.audit_head()
    at = seeded.clock() + timedelta(seconds=1)
    digest = chain.entry_hash(prev, chain.entry_body(seq + 1, at, "hub", "accepted", "ax-forged", {}, prev, None,
                                                     seq + 1, key_id))
    _append(seeded, sealed_from=seq + 1, seal_key=key_id,
            seal=private.sign(chain.seal_message(key_id, seq + 1, seq + 1, digest)))
    _bad(verify_store(seeded, audit_pki.trust), f"entry {seq + 1}", "not certified by the axis key")


def test_a_stripped_seal_is_named(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    _log(seeded, writer)
    sealed = [e.seq for e in seeded.audit_entries() if e.seal is not None]
    drop_audit_guard(seeded)
    _exec(seeded, "UPDATE audit_log SET seal = NULL WHERE seq = :n", n=sealed[3])
    _bad(verify_store(seeded, audit_pki.trust), f"entry {sealed[3]}", "seal was removed")
    # Removing what names the seal as well changes the entry's hash.
    _exec(seeded, "UPDATE audit_log SET seal_key = NULL, sealed_from = NULL WHERE seq = :n", n=sealed[3])
    _bad(verify_store(seeded, audit_pki.trust), f"entry {sealed[3]}", "changed")


def test_a_changed_statement_is_named(seeded: Store, writer: CheckpointWriter, audit_pki: Pki) -> None:
    """The attacker swaps a certified key's public key for their own in its row."""
    _log(seeded, writer)
    with seeded.engine.begin() as conn:
        if seeded.dialect == "postgresql":
            conn.exec_driver_sql("SET session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_keys_no_update")
        conn.execute(sa.text("UPDATE audit_log_keys SET public_key = :p"), {"p": b"\1" * 32})
    first = min(e.seq for e in seeded.audit_entries() if e.seal is not None)
    _bad(verify_store(seeded, audit_pki.trust), f"entry {first}", "differs from the statement")


def test_an_export_carries_the_seals(seeded: Store, writer: CheckpointWriter, audit_pki: Pki, tmp_path) -> None:
    from axis.audit.export import export_log
    from axis.audit.verify import verify_export

    _log(seeded, writer)
    writer.write()
    export_log(seeded, tmp_path / "export")
    report = verify_export(tmp_path / "export", audit_pki.trust)
    assert report.ok, report
    with zipfile.ZipFile(tmp_path / "export" / "axis-audit-000001.zip") as archive:
        last = json.loads(archive.read("entries.jsonl").splitlines()[-1])
        assert archive.read("log-keys.jsonl")
    assert base64.b64decode(last["seal"]) and last["seal_key"]
