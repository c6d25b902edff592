"""Signing and verifying edXML packets: Axis's Signer/Verifier next to raw signxml, same run.

    python bench/bench_signing.py [--seconds 1.0]

Packets are the SDK sample edoc_update.edxml (its broken SDK signature removed)
with the attachment's base64 cut or repeated to ~5 KB (the header alone is ~8 kB,
so ~9 kB signed) and ~1 MB. Keys: EC P-256
and RSA-3072, from a fresh in-memory development PKI, loaded once.

"raw" is what signxml costs on its own with everything preloaded: sign = parse
+ placeholder + XMLSigner.sign + serialise; verify = XMLVerifier.verify(bytes,
x509_cert=leaf, pinned location) with no chain, CRL or sender checks. "ours"
adds safe parsing, placement and algorithm checks, the cached certificate
verdict and the signer = sender binding, and does the XML-DSig work with the
process's engine (`axis.trust.xmldsig`: libxmlsec1 by default; run with
AXIS_XMLDSIG=signxml to compare like with like). Ours and raw alternate op by op so
both see the same machine state. "cold" verifies with the certificate cache
emptied before every packet (chain + CRL validation each time). "coverage" is the
unsigned-content check alone (`axis.trust.coverage.check_covered`, part of every
"ours" verify) on the parsed packet.
"""
from __future__ import annotations

import argparse
import functools
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lxml import etree  # noqa: E402
from signxml import DigestAlgorithm, SignatureConfiguration, XMLSigner, XMLVerifier, methods  # noqa: E402
from signxml.algorithms import CanonicalizationMethod  # noqa: E402

from axis.edxml.safe import parse_xml  # noqa: E402
from axis.trust import Signer, Verifier, pki, xmldsig  # noqa: E402
from axis.trust.coverage import check_covered  # noqa: E402
from axis.trust.placement import DS_NS, SIGNATURE, SIGNXML_LOCATION, header_of, signature_anchor  # noqa: E402

SAMPLES = ROOT / "tests" / "vectors" / "vdxp-sdk"
CODE = "000.00.00.G22"
# The sample's header alone is ~8 kB, so the "5 KB" packet comes out at ~9 kB signed.
SIZES = (5_000, 1_000_000)


def document(size: int) -> bytes:
    data = (SAMPLES / "edoc_update.edxml").read_bytes()
    data = re.sub(rb"\s*<Signature>.*?</Signature>", b"", data, count=1, flags=re.DOTALL)
    match = re.search(rb"(<edXML:ContentTransferEncoded[^>]*>)([A-Za-z0-9+/=\s]*)(</edXML:ContentTransferEncoded>)",
                      data)
    body = re.sub(rb"[\s=]", b"", match.group(2))
    want = max(4, (size - (len(data) - len(match.group(2)))) // 4 * 4)
    return data[:match.start(2)] + (body * (want // len(body) + 1))[:want] + data[match.end(2):]


def raw_signer(key, cert, method):
    def sign(data: bytes) -> bytes:
        root = etree.fromstring(data)
        signature_anchor(header_of(root)).addnext(
            etree.Element(SIGNATURE, {"Id": "placeholder"}, nsmap={"ds": DS_NS}))
        signer = XMLSigner(method=methods.enveloped, signature_algorithm=method,
                           digest_algorithm=DigestAlgorithm.SHA256,
                           c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
        return etree.tostring(signer.sign(root, key=key, cert=[cert]), xml_declaration=True, encoding="UTF-8")
    return sign


def raw_verifier(cert):
    config = SignatureConfiguration(location=SIGNXML_LOCATION, expect_references=1)

    def verify(data: bytes):
        return XMLVerifier().verify(data, x509_cert=cert, expect_config=config).signed_xml
    return verify


def measure(pairs: dict[str, callable], seconds: float) -> dict[str, list[float]]:
    """Run the callables in turn, op by op, until `seconds` have passed (at least 5 rounds)."""
    times: dict[str, list[float]] = {name: [] for name in pairs}
    for fn in pairs.values():  # warm-up
        fn()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(next(iter(times.values()))) < 5:
        for name, fn in pairs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _verify_cold(verifier: Verifier, crl, signed: bytes):
    verifier.replace_crls([crl])  # drops every cached certificate verdict
    return verifier.verify(signed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measured pair (default 1.0)")
    args = parser.parse_args()

    root_key = pki.generate_key("ec")
    root = pki.build_root_certificate(root_key)
    crl = pki.build_crl(root, root_key)
    rows = []
    coverage_rows = []
    for key_type in ("ec", "rsa"):
        key = pki.generate_key(key_type)
        cert = pki.build_agency_certificate(CODE, key.public_key(), root, root_key)
        ours_signer = Signer(key, cert)
        verifier = Verifier([root], [crl])
        cold = Verifier([root], [crl])
        sign_raw = raw_signer(key, cert, ours_signer.signature_method)
        verify_raw = raw_verifier(cert)
        for size in SIZES:
            packet = document(size)
            signed = ours_signer.sign(packet)
            assert verifier.verify(signed).signer_code == CODE
            verify_raw(signed)

            verify_cold = functools.partial(_verify_cold, cold, crl, signed)
            sign = measure({"ours": functools.partial(ours_signer.sign, packet),
                            "raw": functools.partial(sign_raw, packet)}, args.seconds)
            verify = measure({"ours": functools.partial(verifier.verify, signed),
                              "raw": functools.partial(verify_raw, signed), "cold": verify_cold}, args.seconds)
            label = f"{'ECDSA P-256' if key_type == 'ec' else 'RSA-3072'} {len(signed) / 1000:,.0f} kB"
            rows.append((label, "sign", sign, None))
            rows.append((label, "verify", verify, verify["cold"]))
            tree = parse_xml(signed)
            signature = next(tree.iter(SIGNATURE))
            coverage = measure({"ours": functools.partial(check_covered, tree, signature)}, args.seconds / 4)
            coverage_ms = statistics.median(coverage["ours"]) * 1000
            coverage_rows.append((label, coverage_ms, coverage_ms / (statistics.median(verify["ours"]) * 1000)))

    print(f"Axis's XML-DSig engine: {xmldsig.default().name}")
    print(f"{'packet':<28} {'op':<7} {'ours ops/s':>10} {'ours ms':>8} {'raw ops/s':>10} {'raw ms':>8} "
          f"{'ours/raw':>8} {'cold ms':>8}")
    for label, op, times, cold in rows:
        ours, raw = times["ours"], times["raw"]
        ours_ms, raw_ms = statistics.median(ours) * 1000, statistics.median(raw) * 1000
        cold_ms = f"{statistics.median(cold) * 1000:8.2f}" if cold else f"{'':>8}"
        print(f"{label:<28} {op:<7} {len(ours) / sum(ours):10.1f} {ours_ms:8.2f} {len(raw) / sum(raw):10.1f} "
              f"{raw_ms:8.2f} {ours_ms / raw_ms:8.2f} {cold_ms}")
    print(f"\n{'packet':<28} {'coverage ms':>11} {'of verify':>9}")
    for label, ms, share in coverage_rows:
        print(f"{label:<28} {ms:11.4f} {share:9.1%}")
    print("\nms = median per operation; ops/s = operations / total time, one thread; "
          "ours/raw = ratio of medians; cold = ours with the certificate cache emptied each time.")


if __name__ == "__main__":
    main()
