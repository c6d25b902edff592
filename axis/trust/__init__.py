"""Trust: keys, certificates, the development PKI, signing and verifying edXML packets.

Knows nothing of routing, brokers or databases. The public API:

- `Signer` (`Signer.from_files(key, cert)`, `.sign(bytes) -> bytes`);
- `Verifier` (`Verifier.from_files(roots, crl)`, `.verify(bytes) -> VerificationResult`);
- the development PKI: `init_ca`, `issue`, `revoke`, `refresh_crl`, `load_ca`, and the
  in-memory builders `generate_key`, `build_root_certificate`,
  `build_intermediate_certificate`, `build_agency_certificate`, `build_crl`;
- `certificate_agency_code(cert)`: the agency code a certificate is bound to.

Rules and refusal codes: docs/trust.md.
"""
from axis.trust.identity import AGENCY_CODE_OID, certificate_agency_code
from axis.trust.keys import KeyFileError, SigningKey, load_certificate, load_certificates, load_crls, load_private_key
from axis.trust.pki import (
    CertificateAuthority,
    KeyType,
    PKIError,
    build_agency_certificate,
    build_crl,
    build_intermediate_certificate,
    build_root_certificate,
    generate_key,
    init_ca,
    issue,
    load_ca,
    refresh_crl,
    revoke,
)
from axis.trust.signer import Signer
from axis.trust.verifier import VerificationResult, Verifier

__all__ = [
    "AGENCY_CODE_OID", "CertificateAuthority", "KeyFileError", "KeyType", "PKIError", "Signer", "SigningKey",
    "VerificationResult", "Verifier", "build_agency_certificate", "build_crl", "build_intermediate_certificate",
    "build_root_certificate", "certificate_agency_code", "generate_key", "init_ca", "issue", "load_ca",
    "load_certificate", "load_certificates", "load_crls", "load_private_key", "refresh_crl", "revoke",
]
