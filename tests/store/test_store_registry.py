"""Agencies and their certificates."""
from __future__ import annotations

import pytest

from axis.store import AlreadyExists, NotFound, Store
from tests.store.store_helpers import R1, R2, RECIPIENTS, SENDER, make_certificate


def test_add_get_list_agencies(seeded: Store) -> None:
    agency = seeded.get_agency(R1)
    assert agency is not None
    assert (agency.code, agency.parent_code, agency.state) == (R1, SENDER, "active")
    assert agency.created_at.tzinfo is not None
    assert seeded.get_agency(SENDER).name == "Văn phòng Chính phủ"  # type: ignore[union-attr]
    assert [a.code for a in seeded.list_agencies()] == sorted([SENDER, *RECIPIENTS])
    assert seeded.get_agency("H99") is None


def test_agency_rules(seeded: Store) -> None:
    with seeded.write() as tx:
        with pytest.raises(AlreadyExists, match=R1):
            tx.add_agency(R1, "again")
        with pytest.raises(NotFound, match="parent"):
            tx.add_agency("000.00.00.H09", "orphan", parent="000.00.00.X99")
        with pytest.raises(ValueError, match=r"1\.\.35"):
            tx.add_agency("X" * 36, "too long")
        with pytest.raises(ValueError, match="state"):
            tx.add_agency("000.00.00.H09", "bad", state="sleeping")
        tx.add_agency("000.00.00.H09", "still usable after refusals")
    assert seeded.get_agency("000.00.00.H09") is not None


def test_suspend_and_reactivate(seeded: Store, clock) -> None:
    before = seeded.get_agency(R2)
    clock.advance(5)
    with seeded.write() as tx:
        assert tx.set_agency_state(R2, "suspended") is True
        assert tx.set_agency_state(R2, "suspended") is False
        with pytest.raises(NotFound):
            tx.set_agency_state("000.00.00.X99", "suspended")
    after = seeded.get_agency(R2)
    assert after.state == "suspended" and after.updated_at > before.updated_at  # type: ignore[union-attr]
    assert seeded.agency_states([R1, R2, "000.00.00.X99"]) == {R1: "active", R2: "suspended"}
    with seeded.write() as tx:
        assert tx.set_agency_state(R2, "active") is True
    assert seeded.agency_states([R2]) == {R2: "active"}


def test_agency_states_for_many_codes(store: Store) -> None:
    codes = [f"H{n:05d}.00.00" for n in range(12_000)]  # more than one IN chunk
    with store.write() as tx:
        assert tx.add_agencies([("ROOT", "root", None)] + [(code, code, "ROOT") for code in codes]) == 12_001
        assert tx.add_agencies([(codes[0], "again", "ROOT")]) == 0
        with pytest.raises(NotFound, match="X99"):
            tx.add_agencies([("H1", "child of nobody", "X99")])
        tx.set_agency_state(codes[-1], "suspended")
    states = store.agency_states([*codes, "UNKNOWN"])
    assert len(states) == len(codes)
    assert states[codes[0]] == "active" and states[codes[-1]] == "suspended"


def test_certificates(seeded: Store) -> None:
    pem = make_certificate()
    with seeded.write() as tx:
        fp = tx.add_certificate(SENDER, pem)
        assert tx.add_certificate(SENDER, pem) == fp  # idempotent
        with pytest.raises(AlreadyExists, match=SENDER):
            tx.add_certificate(R1, pem)
        with pytest.raises(NotFound):
            tx.add_certificate("000.00.00.X99", make_certificate())
        with pytest.raises(ValueError, match="PEM"):
            tx.add_certificate(SENDER, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert len(fp) == 64
    assert seeded.certificate_registered(SENDER, fp)
    assert seeded.certificate_registered(SENDER, fp.upper())
    assert not seeded.certificate_registered(R1, fp)
    [cert] = seeded.certificates(SENDER)
    assert cert.fingerprint == fp and cert.state == "active" and cert.not_before < cert.not_after
    with seeded.write() as tx:
        assert tx.revoke_certificate(fp) is True
        assert tx.revoke_certificate(fp) is False
    assert not seeded.certificate_registered(SENDER, fp)
    with seeded.write() as tx:
        with pytest.raises(AlreadyExists, match="revoked"):
            tx.add_certificate(SENDER, pem)
