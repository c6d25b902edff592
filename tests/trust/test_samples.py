"""How the national SDK samples fare: each gets a specific refusal, never a crash.

- status*.edxml: unsigned                                    → SIGNATURE_MISSING
- edoc_update / _revocation / _replacement: a `<Signature>` in the edXML
  namespace (RSA-SHA1, an 11-character "certificate")          → SIGNATURE_MISPLACED
  (put into the XML-DSig namespace, as the SDK meant it: WEAK_ALGORITHM; with
  SHA-1 allowed for the sender, ALGORITHM_NOT_ALLOWED for its non-standard
  exclusive-C14N URI http://www.w3.org/TR/xml-exc-c14n#; with that URI
  corrected, CERT_MALFORMED for the truncated certificate)
- edoc.edxml (undeclared xlink: prefix), edoc_new.edxml (junk before the
  declaration)                                                 → MALFORMED, with line and column
"""
from __future__ import annotations

import pytest

from axis.refusals import PacketError, RefusalCode, TrustError
from tests.trust.helpers import G22, refusal_of, replace_once

C = RefusalCode
STATUS = ["status.edxml", "status_inbox_01.edxml", "status_rejection_02.edxml", "status_acceptance_03.edxml",
          "status_assignment_04.edxml", "status_processing_05.edxml", "status_finish_06.edxml",
          "status_cancellation_13.edxml", "status_change-acceptance_15.edxml", "status_change-rejection_16.edxml"]
SDK_SIGNED = ["edoc_update.edxml", "edoc_revocation.edxml", "edoc_replacement.edxml"]


def test_every_sample_is_covered(samples_dir):
    assert sorted(p.name for p in samples_dir.glob("*.edxml")) == sorted(
        STATUS + SDK_SIGNED + ["edoc.edxml", "edoc_new.edxml"])


@pytest.mark.parametrize("name", STATUS)
def test_status_samples_are_unsigned(dev_pki, samples_dir, name):
    refusal = refusal_of(dev_pki.verifier(), (samples_dir / name).read_bytes())
    assert isinstance(refusal, TrustError) and refusal.code is C.SIGNATURE_MISSING


@pytest.mark.parametrize("name", SDK_SIGNED)
def test_sdk_signatures_are_not_xml_dsig(dev_pki, samples_dir, name):
    data = (samples_dir / name).read_bytes()
    for verifier in (dev_pki.verifier(), dev_pki.verifier(allow_sha1_for=frozenset({G22}))):
        refusal = refusal_of(verifier, data)
        assert refusal.code is C.SIGNATURE_MISPLACED
        assert "http://www.mic.gov.vn/TBT/QCVN_102_2016" in refusal.detail
        assert "rsa-sha1" in refusal.detail and "not a readable certificate" in refusal.detail


@pytest.mark.parametrize("name", SDK_SIGNED)
def test_sdk_signatures_in_the_dsig_namespace(dev_pki, samples_dir, name):
    data = replace_once((samples_dir / name).read_bytes(), b"<Signature>",
                        b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">')
    assert refusal_of(dev_pki.verifier(), data).code is C.WEAK_ALGORITHM
    sha1_allowed = dev_pki.verifier(allow_sha1_for=frozenset({G22}))
    refusal = refusal_of(sha1_allowed, data)
    assert refusal.code is C.ALGORITHM_NOT_ALLOWED and "http://www.w3.org/TR/xml-exc-c14n#" in refusal.detail
    corrected = replace_once(data, b"http://www.w3.org/TR/xml-exc-c14n#", b"http://www.w3.org/2001/10/xml-exc-c14n#")
    assert refusal_of(sha1_allowed, corrected).code is C.CERT_MALFORMED


@pytest.mark.parametrize("name, line", [("edoc.edxml", 116), ("edoc_new.edxml", 1)])
def test_malformed_samples(dev_pki, samples_dir, name, line):
    refusal = refusal_of(dev_pki.verifier(), (samples_dir / name).read_bytes())
    assert isinstance(refusal, PacketError) and refusal.code is C.MALFORMED
    assert refusal.detail.startswith(f"line {line}, column ")
