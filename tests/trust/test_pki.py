"""The development PKI: files, certificate profiles, CRLs."""
from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from axis.refusals import PacketError, RefusalCode
from axis.trust import AGENCY_CODE_OID, certificate_agency_code, keys, pki
from tests.trust.helpers import G22, H41


def _ext(cert: x509.Certificate, kind):
    return cert.extensions.get_extension_for_class(kind)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_writes_root_key_and_empty_crl(fresh_pki):
    assert {p.name for p in fresh_pki.iterdir()} == {"ca.pem", "ca.key.pem", "crl.pem"}
    assert _mode(fresh_pki / "ca.key.pem") == 0o600
    ca = pki.load_ca(fresh_pki)
    cert = ca.certificate
    assert cert.issuer == cert.subject
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert _ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key())
    [crl] = keys.load_crls(fresh_pki / "crl.pem")
    assert crl.is_signature_valid(cert.public_key()) and len(crl) == 0
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert crl.next_update_utc > crl.last_update_utc


def test_init_ca_never_replaces_a_ca(fresh_pki):
    before = (fresh_pki / "ca.pem").read_bytes()
    with pytest.raises(pki.PKIError, match="already exists"):
        pki.init_ca(fresh_pki)
    assert (fresh_pki / "ca.pem").read_bytes() == before


@pytest.mark.parametrize("key_type, key_class", [("ec", ec.EllipticCurvePrivateKey), ("rsa", rsa.RSAPrivateKey)])
def test_issued_agency_certificate_profile(dev_pki, key_type, key_class):
    code = H41 if key_type == "ec" else G22
    key = keys.load_private_key(dev_pki.key_paths[code]) if key_type == "ec" else dev_pki.keys[code]
    assert isinstance(key, key_class)
    if key_type == "rsa":
        assert key.key_size == 3072
    assert _mode(dev_pki.key_paths[code]) == 0o600
    assert dev_pki.key_paths[code].name == f"{code}.key.pem"
    cert = keys.load_certificate(dev_pki.cert_paths[code])
    assert dev_pki.cert_paths[code].name == f"{code}.cert.pem"
    ca = dev_pki.ca.certificate
    cert.verify_directly_issued_by(ca)
    assert [a.value for a in cert.subject.get_attributes_for_oid(AGENCY_CODE_OID)] == [code]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [code]
    assert certificate_agency_code(cert) == code
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [pki.DOCUMENT_SIGNING,
                                                            ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        _ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == [f"urn:axis:agency:{code}"]
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_issue_validates_the_code(fresh_pki, tmp_path):
    for bad in ("000.00.00.g22", "28.22.H17", "", "A" * 36):
        with pytest.raises(PacketError) as info:
            pki.issue(bad, fresh_pki, tmp_path / "out")
        assert info.value.code is RefusalCode.INVALID_AGENCY_CODE
    assert not (tmp_path / "out").exists()
    _key_path, cert_path = pki.issue("G09.01", fresh_pki, tmp_path / "out")   # a QĐ 20/2020 code
    assert certificate_agency_code(keys.load_certificate(cert_path)) == "G09.01"


def test_issue_refuses_to_overwrite_and_needs_a_ca(fresh_pki, tmp_path):
    pki.issue(H41, fresh_pki, tmp_path / "out")
    with pytest.raises(pki.PKIError, match="already exists"):
        pki.issue(H41, fresh_pki, tmp_path / "out")
    with pytest.raises(pki.PKIError, match="not a PKI directory"):
        pki.issue(H41, tmp_path / "nowhere", tmp_path / "out2")


def test_revoke_keeps_entries_and_increments_the_number(fresh_pki, tmp_path):
    _, first = pki.issue(H41, fresh_pki, tmp_path / "out")
    _, second = pki.issue(G22, fresh_pki, tmp_path / "out")
    serial_1 = pki.revoke(first, fresh_pki)
    serial_2 = pki.revoke(second, fresh_pki)
    again = pki.revoke(first, fresh_pki)        # idempotent: same entry, fresh CRL
    assert again == serial_1
    [crl] = keys.load_crls(fresh_pki / "crl.pem")
    ca = pki.load_ca(fresh_pki).certificate
    assert crl.is_signature_valid(ca.public_key())
    assert sorted(entry.serial_number for entry in crl) == sorted([serial_1, serial_2])
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 4
    assert (crl.next_update_utc - crl.last_update_utc).days == 7
    refreshed = pki.refresh_crl(fresh_pki)
    [crl] = keys.load_crls(refreshed)
    assert len(crl) == 2 and crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 5


def test_revoke_refuses_foreign_certificates_and_forged_crls(fresh_pki, tmp_path, other_root, dev_pki):
    # Same issuer name, other key: not ours.
    foreign = pki.build_agency_certificate(H41, dev_pki.keys[H41].public_key(), *other_root)
    path = tmp_path / "foreign.pem"
    keys.write_public_file(path, keys.certificate_pem(foreign))
    with pytest.raises(pki.PKIError, match="not signed by its key"):
        pki.revoke(path, fresh_pki)
    # A CRL on disk that the CA did not sign is not extended.
    ca = pki.load_ca(fresh_pki)
    keys.write_public_file(ca.crl_path, keys.crl_pem(pki.build_crl(ca.certificate, other_root[1])))
    _, cert_path = pki.issue(H41, fresh_pki, tmp_path / "out")
    with pytest.raises(pki.PKIError, match="unknown origin"):
        pki.revoke(cert_path, fresh_pki)


def test_odd_certificates_for_tests(dev_pki):
    ca, ca_key = dev_pki.ca.certificate, dev_pki.ca.key
    public = dev_pki.keys[H41].public_key()
    sha1 = pki.build_agency_certificate(H41, public, ca, ca_key, hash_algorithm=hashes.SHA1())
    assert isinstance(sha1.signature_hash_algorithm, hashes.SHA1)
    # A genuine SHA-1 signature by the CA key (cryptography itself no longer checks SHA-1 ones).
    ca.public_key().verify(sha1.signature, sha1.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1()))
    rsa_root_key = dev_pki.keys[G22]             # any RSA key will do as an issuer here
    rsa_root = pki.build_root_certificate(rsa_root_key, common_name="RSA test root")
    sha1_rsa = pki.build_agency_certificate(H41, public, rsa_root, rsa_root_key, hash_algorithm=hashes.SHA1())
    assert isinstance(sha1_rsa.signature_hash_algorithm, hashes.SHA1)
    rsa_root_key.public_key().verify(sha1_rsa.signature, sha1_rsa.tbs_certificate_bytes, padding.PKCS1v15(),
                                     hashes.SHA1())
    no_ds = pki.build_agency_certificate(H41, public, ca, ca_key, digital_signature=False)
    assert not _ext(no_ds, x509.KeyUsage).value.digital_signature
    no_code = pki.build_agency_certificate(H41, public, ca, ca_key, with_agency_code=False)
    assert not no_code.subject.get_attributes_for_oid(AGENCY_CODE_OID)
