"""The signer's certificate: chain, validity, KeyUsage, revocation, CRLs, the agency code, caching."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography.hazmat.primitives import hashes

from axis.refusals import RefusalCode
from axis.trust import Signer, Verifier, keys, pki
from tests.trust.helpers import H14, H41, code_of, raw_sign, refusal_of, replace_once

C = RefusalCode
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def _sign_with(dev_pki, packet, **certificate_options) -> bytes:
    return dev_pki.signer(H41, **certificate_options).sign(packet)


# ------------------------------------------------------------------ validity

def test_expired(dev_pki, status_packet):
    signed = _sign_with(dev_pki, status_packet, not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    refusal = refusal_of(dev_pki.verifier(), signed)
    assert refusal.code is C.CERT_EXPIRED and "expired" in refusal.detail


def test_not_yet_valid(dev_pki, status_packet):
    signed = _sign_with(dev_pki, status_packet, not_before=NOW + DAY, not_after=NOW + 30 * DAY)
    refusal = refusal_of(dev_pki.verifier(), signed)
    assert refusal.code is C.CERT_EXPIRED and "not yet valid" in refusal.detail


def test_expired_and_untrusted_is_untrusted(dev_pki, status_packet, other_root):
    signed = _sign_with(dev_pki, status_packet, issuer=other_root, not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    assert code_of(dev_pki.verifier(), signed) is C.CERT_UNTRUSTED


def test_validity_is_judged_at_the_verifiers_clock(dev_pki, signed_status):
    cert = dev_pki.signers[H41].certificate
    later = dev_pki.verifier(clock=lambda: cert.not_valid_after_utc + DAY)
    assert code_of(later, signed_status) is C.CERT_EXPIRED


# ------------------------------------------------------------------ trust

def test_untrusted_root_with_the_same_name(dev_pki, status_packet, other_root):
    assert other_root[0].subject == dev_pki.ca.certificate.subject
    signed = _sign_with(dev_pki, status_packet, issuer=other_root)
    refusal = refusal_of(dev_pki.verifier(), signed)
    assert refusal.code is C.CERT_UNTRUSTED


def test_trusting_the_other_root_accepts_it(dev_pki, status_packet, other_root):
    signed = _sign_with(dev_pki, status_packet, issuer=other_root)
    assert Verifier([other_root[0]]).verify(signed).signer_code == H41


def test_root_certificate_as_signer(dev_pki, status_packet):
    # The root's own key signing a packet: a CA certificate is not a signing certificate.
    root_key, root_cert = dev_pki.ca.key, dev_pki.ca.certificate
    root_signer = Signer(root_key, root_cert)
    assert root_signer.agency_code is None
    assert code_of(dev_pki.verifier(), root_signer.sign(status_packet)) is C.CERT_KEY_USAGE


def test_intermediate_chain(dev_pki, status_packet):
    root_key = pki.generate_key("ec")
    root = pki.build_root_certificate(root_key, path_length=1, common_name="Axis Test Root (path length 1)")
    issuing_key = pki.generate_key("ec")
    issuing = pki.build_intermediate_certificate(issuing_key, root, root_key)
    leaf = dev_pki.certificate(H41, issuer=(issuing, issuing_key))
    signed = Signer(dev_pki.keys[H41], leaf, [issuing]).sign(status_packet)
    assert Verifier([root]).verify(signed).signer_code == H41
    # Without the intermediate in KeyInfo there is no path.
    alone = Signer(dev_pki.keys[H41], leaf).sign(status_packet)
    assert code_of(Verifier([root]), alone) is C.CERT_UNTRUSTED
    # A root with path_length=0 may not have an intermediate under it.
    strict_key = pki.generate_key("ec")
    strict = pki.build_root_certificate(strict_key, common_name="Axis Test Root (path length 0)")
    issuing0 = pki.build_intermediate_certificate(issuing_key, strict, strict_key)
    leaf0 = dev_pki.certificate(H41, issuer=(issuing0, issuing_key))
    signed0 = Signer(dev_pki.keys[H41], leaf0, [issuing0]).sign(status_packet)
    assert code_of(Verifier([strict]), signed0) is C.CERT_UNTRUSTED
    # Revocation applies at every level: the intermediate on the root's CRL ...
    crl = pki.build_crl(root, root_key, [(issuing.serial_number, NOW - DAY)])
    assert code_of(Verifier([root], [crl]), signed) is C.CERT_REVOKED
    # ... and the leaf on the intermediate's CRL.
    crl = pki.build_crl(issuing, issuing_key, [(leaf.serial_number, NOW - DAY)])
    assert code_of(Verifier([root], [crl]), signed) is C.CERT_REVOKED


def test_sha1_signed_certificate(dev_pki, status_packet):
    cert = dev_pki.certificate(H41, hash_algorithm=hashes.SHA1())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    signed = Signer(dev_pki.keys[H41], cert).sign(status_packet)
    assert code_of(dev_pki.verifier(), signed) is C.WEAK_ALGORITHM
    # The per-agency SHA-1 allowance covers signatures, not certificates.
    assert code_of(dev_pki.verifier(allow_sha1_for=frozenset({H41})), signed) is C.WEAK_ALGORITHM


def test_key_other_than_p256_is_not_allowed(dev_pki, status_packet):
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP384R1())
    cert = pki.build_agency_certificate(H41, key.public_key(), dev_pki.ca.certificate, dev_pki.ca.key)
    with pytest.raises(ValueError, match="P-256"):
        Signer(key, cert)
    assert code_of(dev_pki.verifier(), raw_sign(status_packet, key, cert)) is C.ALGORITHM_NOT_ALLOWED


# ------------------------------------------------------------------ usage and identity

def test_without_digital_signature(dev_pki, status_packet):
    signed = _sign_with(dev_pki, status_packet, digital_signature=False)
    refusal = refusal_of(dev_pki.verifier(), signed)
    assert refusal.code is C.CERT_KEY_USAGE and "digitalSignature" in refusal.detail


def test_without_key_usage(dev_pki, status_packet):
    assert code_of(dev_pki.verifier(), _sign_with(dev_pki, status_packet, key_usage=False)) is C.CERT_KEY_USAGE


def test_without_agency_code(dev_pki, status_packet):
    signer = dev_pki.signer(H41, with_agency_code=False)
    assert signer.agency_code is None
    refusal = refusal_of(dev_pki.verifier(), signer.sign(status_packet))
    assert refusal.code is C.CERT_NO_AGENCY_CODE and "organizationIdentifier" in refusal.detail


# ------------------------------------------------------------------ malformed certificates

@pytest.mark.parametrize("replacement", [
    b"<ds:X509Certificate>MIIFqTCCBJG</ds:X509Certificate>",   # truncated, as in the VNPT samples
    b"<ds:X509Certificate>not base64!</ds:X509Certificate>",
    b"<ds:X509Certificate></ds:X509Certificate>",
    b"<ds:X509SubjectName>CN=000.00.00.H41</ds:X509SubjectName>",  # no certificate at all
])
def test_malformed_certificate(dev_pki, signed_status, replacement):
    tampered = re.sub(rb"<ds:X509Certificate>.*?</ds:X509Certificate>", replacement, signed_status, flags=re.DOTALL)
    assert code_of(dev_pki.verifier(), tampered) is C.CERT_MALFORMED


@pytest.mark.parametrize("character", ["\u0085", "\u00a0", "\u2028", "\u2029", "\u3000"])
def test_certificate_base64_with_a_character_xml_does_not_call_whitespace(dev_pki, signed_status, character):
    # Found by the fuzz campaign (tests/fuzz): Python's str.split() drops these as whitespace, so the certificate
    # decoded and the packet was accepted and delivered carrying them, though XML whitespace is only space, tab,
    # CR and LF and any other text in KeyInfo is refused (AX305). Line breaks and spaces stay allowed.
    start = signed_status.index(b"<ds:X509Certificate>") + len(b"<ds:X509Certificate>")
    for allowed in (b"\n", b"\r\n", b" ", b"\t", b"&#13;"):
        assert dev_pki.verifier().verify(signed_status[:start + 8] + allowed + signed_status[start + 8:])
    tampered = signed_status[:start + 8] + character.encode() + signed_status[start + 8:]
    refusal = refusal_of(dev_pki.verifier(), tampered)
    assert refusal.code is C.CERT_MALFORMED and "not valid base64" in refusal.detail


def test_too_many_certificates(dev_pki, signed_status):
    cert = re.search(rb"<ds:X509Certificate>.*?</ds:X509Certificate>", signed_status, re.DOTALL).group(0)
    assert dev_pki.verifier().verify(replace_once(signed_status, cert, cert * 3)).signer_code == H41
    refusal = refusal_of(dev_pki.verifier(), replace_once(signed_status, cert, cert * 9))
    assert refusal.code is C.CERT_MALFORMED and "at most 8" in refusal.detail


def test_certificate_of_another_key(dev_pki, signed_status):
    # A valid, trusted H41 certificate over H14's key: the signature cannot verify with it.
    swapped = dev_pki.certificate(H41, key_of=H14)
    text = keys.certificate_pem(swapped).decode().split("-----")[2].strip().encode()
    tampered = re.sub(rb"<ds:X509Certificate>.*?</ds:X509Certificate>",
                      b"<ds:X509Certificate>" + text + b"</ds:X509Certificate>", signed_status, flags=re.DOTALL)
    assert code_of(dev_pki.verifier(), tampered) is C.SIGNATURE_INVALID


# ------------------------------------------------------------------ revocation and CRLs

def test_revoked_through_the_files(fresh_pki, tmp_path, status_packet):
    key_path, cert_path = pki.issue(H41, fresh_pki, tmp_path / "out")
    signed = Signer.from_files(key_path, cert_path).sign(status_packet)
    assert Verifier.from_files(fresh_pki / "ca.pem", fresh_pki / "crl.pem").verify(signed).signer_code == H41
    pki.revoke(cert_path, fresh_pki)
    refusal = refusal_of(Verifier.from_files(fresh_pki / "ca.pem", fresh_pki / "crl.pem"), signed)
    assert refusal.code is C.CERT_REVOKED and "revoked" in refusal.detail


def test_replace_crls_drops_cached_verdicts(fresh_pki, tmp_path, status_packet):
    key_path, cert_path = pki.issue(H41, fresh_pki, tmp_path / "out")
    signed = Signer.from_files(key_path, cert_path).sign(status_packet)
    verifier = Verifier.from_files(fresh_pki / "ca.pem", fresh_pki / "crl.pem")
    assert verifier.verify(signed).signer_code == H41       # now cached
    assert verifier.verify(signed).signer_code == H41
    pki.revoke(cert_path, fresh_pki)
    verifier.replace_crls(keys.load_crls(fresh_pki / "crl.pem"))
    assert code_of(verifier, signed) is C.CERT_REVOKED


def test_crl_not_signed_by_its_ca(dev_pki, signed_status, other_root):
    forged = pki.build_crl(dev_pki.ca.certificate, other_root[1])   # names our CA, signed by another key
    assert forged.issuer == dev_pki.ca.certificate.subject
    refusal = refusal_of(Verifier([dev_pki.ca.certificate], [forged]), signed_status)
    assert refusal.code is C.CRL_INVALID and "not signed" in refusal.detail


def test_crl_past_next_update(dev_pki, signed_status):
    stale = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, last_update=NOW - 10 * DAY,
                          next_update=NOW - DAY)
    refusal = refusal_of(Verifier([dev_pki.ca.certificate], [stale]), signed_status)
    assert refusal.code is C.CRL_INVALID and "nextUpdate" in refusal.detail


def test_the_cache_ends_at_the_crls_next_update(dev_pki, signed_status):
    # Not the module's NOW: the session PKI may be issued minutes after this module was imported.
    now = dt.datetime.now(dt.UTC)
    clock = [now]
    crl = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, next_update=now + DAY)
    verifier = Verifier([dev_pki.ca.certificate], [crl], clock=lambda: clock[0])
    assert verifier.verify(signed_status).signer_code == H41
    clock[0] = now + 2 * DAY
    assert code_of(verifier, signed_status) is C.CRL_INVALID


def test_revocation_is_judged_at_the_verifiers_clock(dev_pki, signed_status):
    """A certificate revoked on day R still verified a signature judged as of a moment before R (an evidence
    bundle checks each signature as of the time the log recorded it), and not one judged on or after R."""
    serial = dev_pki.signers[H41].certificate.serial_number
    revoked = (NOW + DAY).replace(microsecond=0)
    crl = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, [(serial, revoked)], next_update=NOW + 30 * DAY)
    clock = [revoked - dt.timedelta(seconds=1)]
    verifier = Verifier([dev_pki.ca.certificate], [crl], clock=lambda: clock[0])
    assert verifier.verify(signed_status).signer_code == H41
    clock[0] = revoked  # the cached verdict ends where the revocation begins
    refusal = refusal_of(verifier, signed_status)
    assert refusal.code is C.CERT_REVOKED and revoked.isoformat() in refusal.detail


def test_newest_crl_wins(dev_pki, signed_status):
    serial = dev_pki.signers[H41].certificate.serial_number
    old = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, number=1)
    new = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, [(serial, NOW)], number=2)
    assert code_of(Verifier([dev_pki.ca.certificate], [new, old]), signed_status) is C.CERT_REVOKED
    assert code_of(Verifier([dev_pki.ca.certificate], [old, new]), signed_status) is C.CERT_REVOKED


def test_require_crl(dev_pki, signed_status):
    assert Verifier([dev_pki.ca.certificate]).verify(signed_status).signer_code == H41
    refusal = refusal_of(Verifier([dev_pki.ca.certificate], require_crl=True), signed_status)
    assert refusal.code is C.CRL_INVALID


# ------------------------------------------------------------------ configuration

def test_naive_clock_is_a_programming_error(dev_pki, signed_status):
    with pytest.raises(TypeError, match="aware"):
        Verifier([dev_pki.ca.certificate], clock=lambda: dt.datetime(2030, 1, 1)).verify(signed_status)


def test_verifier_needs_roots_and_cas(dev_pki):
    with pytest.raises(ValueError, match="no trusted root"):
        Verifier([])
    with pytest.raises(ValueError, match="not a CA"):
        Verifier([dev_pki.signers[H41].certificate])
    with pytest.raises(ValueError, match="allow_sha1_for"):
        Verifier([dev_pki.ca.certificate], allow_sha1_for=frozenset({"h41"}))


def test_verdicts_are_cached_per_certificate(dev_pki, signed_status, status_packet):
    verifier = Verifier([dev_pki.ca.certificate])
    first = verifier.verify(signed_status)
    second = verifier.verify(dev_pki.signers[H41].sign(replace_once(status_packet, b"Phong", "Phòng".encode())))
    assert first.certificate is second.certificate   # the parsed certificate came from the cache
    assert len(verifier._state.cache) == 1


def test_crl_file_with_several_crls(dev_pki, signed_status, tmp_path):
    serial = dev_pki.signers[H41].certificate.serial_number
    old = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, number=7)
    new = pki.build_crl(dev_pki.ca.certificate, dev_pki.ca.key, [(serial, NOW)], number=8)
    path = tmp_path / "crls.pem"
    path.write_bytes(keys.crl_pem(new) + keys.crl_pem(old))
    assert len(keys.load_crls(path)) == 2
    assert code_of(Verifier.from_files(dev_pki.ca_path, path), signed_status) is C.CERT_REVOKED


def test_unreadable_configuration_files(dev_pki, tmp_path):
    with pytest.raises(ValueError, match="not a readable PEM private key"):
        Signer.from_files(dev_pki.cert_paths[H41], dev_pki.cert_paths[H41])
    with pytest.raises(ValueError, match="no PEM CRL"):
        Verifier.from_files(dev_pki.ca_path, dev_pki.ca_path)
    with pytest.raises(ValueError, match="cannot read"):
        Verifier.from_files(tmp_path / "missing.pem")
