"""Axis receipts (axis/receipt.py) signed by Signer.sign_receipt and checked by Verifier.verify_receipt."""
from __future__ import annotations

import pytest
from lxml import etree
from signxml import DigestAlgorithm

from axis.receipt import NS, Receipt, build_receipt, now_utc, read_receipt
from axis.refusals import PacketError, Refusal, RefusalCode
from axis.trust import Signer, Verifier, pki
from axis.trust.placement import RECEIPT_NS, SIGNATURE
from tests.trust.helpers import G22, H41, replace_once

C = RefusalCode


def _delivery(issuer: str = H41) -> bytes:
    return build_receipt(Receipt(kind="delivery", outcome="delivered", issuer=issuer, time=now_utc(),
                                 axis_id="ax-1", sender=G22, recipient=issuer, digest="ab" * 32))


def test_receipt_namespace_matches_the_receipt_module():
    assert RECEIPT_NS == NS


def test_delivery_receipt_round_trip(dev_pki):
    signed = dev_pki.signers[H41].sign_receipt(_delivery())
    root = etree.fromstring(signed)
    assert root[-1].tag == SIGNATURE                 # the signature is the last child
    result = dev_pki.verifier().verify_receipt(signed)
    assert result.signer_code == H41
    receipt = read_receipt(result.signed_root)
    assert (receipt.kind, receipt.issuer, receipt.digest) == ("delivery", H41, "ab" * 32)


def test_hub_receipt_with_the_axis_identity(fresh_pki, tmp_path):
    key_path, cert_path = pki.issue("AXIS", fresh_pki, tmp_path / "hub")
    intake = build_receipt(Receipt(kind="intake", outcome="accepted", issuer="AXIS", time=now_utc(), axis_id="ax-2"))
    signed = Signer.from_files(key_path, cert_path).sign_receipt(intake)
    verifier = Verifier.from_files(fresh_pki / "ca.pem", fresh_pki / "crl.pem")
    assert verifier.verify_receipt(signed).signer_code == "AXIS"
    with pytest.raises(PacketError) as info:   # verify() is for edXML packets only
        verifier.verify(signed)
    assert info.value.code is C.NOT_EDXML


def test_receipt_issuer_must_be_the_signer(dev_pki):
    signed = dev_pki.signers[G22].sign_receipt(_delivery(issuer=H41))
    refusal = refusal_of_receipt(dev_pki, signed)
    assert refusal.code is C.SIGNER_NOT_SENDER and "Issuer" in refusal.detail


def test_tampered_receipt(dev_pki):
    signed = dev_pki.signers[H41].sign_receipt(_delivery())
    tampered = replace_once(signed, b">delivered<", b">failed<")
    assert refusal_of_receipt(dev_pki, tampered).code is C.SIGNATURE_INVALID


def test_receipt_signature_elsewhere_and_packets_as_receipts(dev_pki, signed_status):
    signed = dev_pki.signers[H41].sign_receipt(_delivery())
    sig_start = signed.index(b"<ds:Signature")
    sig = signed[sig_start:signed.index(b"</ds:Signature>") + len(b"</ds:Signature>")]
    moved = replace_once(replace_once(signed, sig, b""), b"</axr:Kind>", sig + b"</axr:Kind>")
    assert refusal_of_receipt(dev_pki, moved).code is C.SIGNATURE_MISPLACED
    with pytest.raises(PacketError) as info:
        dev_pki.verifier().verify_receipt(signed_status)
    assert info.value.code is C.NOT_EDXML


def test_sha1_is_never_accepted_on_receipts(dev_pki):
    signed = dev_pki.signers[G22].sign_receipt(_delivery(issuer=G22), digest_method=DigestAlgorithm.SHA1)
    verifier = dev_pki.verifier(allow_sha1_for=frozenset({G22}))
    assert refusal_of_receipt(dev_pki, signed, verifier).code is C.WEAK_ALGORITHM


def refusal_of_receipt(dev_pki, data: bytes, verifier=None) -> Refusal:
    with pytest.raises(Refusal) as info:
        (verifier or dev_pki.verifier()).verify_receipt(data)
    return info.value
