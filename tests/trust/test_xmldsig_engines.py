"""The two XML-DSig engines are interchangeable: each verifies what the other signs, both return the same
signed tree, and choosing one is explicit."""
from __future__ import annotations

import itertools
import socket

import pytest
from lxml import etree

from axis.receipt import Receipt, build_receipt, now_utc
from axis.refusals import Refusal, RefusalCode
from axis.trust import Signer, xmldsig
from axis.trust.placement import edxml
from tests.trust.helpers import G22, H14, H41, replace_once

ENGINES = ("xmlsec", "signxml")


@pytest.mark.parametrize(("signing", "verifying"), list(itertools.product(ENGINES, ENGINES)))
def test_each_engine_verifies_what_the_other_signs(dev_pki, status_packet, document_packet, signing, verifying):
    verifier = dev_pki.verifier(engine=xmldsig.engine(verifying))
    for code, packet in ((H41, status_packet), (G22, document_packet)):  # EC and RSA keys
        signer = Signer(dev_pki.keys[code], dev_pki.signers[code].certificate, engine=xmldsig.engine(signing))
        assert verifier.verify(signer.sign(packet)).signer_code == code
    receipt = Receipt(kind="delivery", outcome="delivered", issuer=H14, time=now_utc(), axis_id="ax-1",
                      sender=G22, recipient=H14, document_id="1/VPCP", digest="ab" * 32)
    signer = Signer(dev_pki.keys[H14], dev_pki.signers[H14].certificate, engine=xmldsig.engine(signing))
    assert verifier.verify_receipt(signer.sign_receipt(build_receipt(receipt))).signer_code == H14


def test_both_engines_return_the_same_signed_tree(dev_pki, signed_status):
    # Comments between elements (allowed, never signed) and in the Signature: both engines
    # must hand back exactly what the signature covers.
    changed = replace_once(signed_status, b"<edXML:From>", b"<edXML:From><!-- x -->")
    changed = replace_once(changed, b"</ds:Signature>", b"</ds:Signature><!-- after -->")
    changed = replace_once(changed, b"<ds:X509Data>", b"<ds:X509Data><!-- in -->")
    trees = [dev_pki.verifier(engine=xmldsig.engine(name)).verify(changed).signed_root for name in ENGINES]
    canonical = [etree.tostring(tree, method="c14n") for tree in trees]
    assert canonical[0] == canonical[1]
    assert b"<!--" not in canonical[0] and b"Signature" not in canonical[0]
    assert trees[0].find(f".//{edxml('From')}/{edxml('OrganId')}").text == H41


def test_a_retrieval_method_in_key_info_is_never_followed(dev_pki, signed_status):
    # KeyInfo is not signed: anyone on the path may add a RetrievalMethod. It is refused as
    # unsigned content, and the key always comes from the validated certificate: nothing is fetched.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/key".encode()
        changed = replace_once(signed_status, b"<ds:X509Data>",
                               b'<ds:RetrievalMethod URI="' + url + b'"/><ds:X509Data>')
        for name in ENGINES:
            with pytest.raises(Refusal) as refused:
                dev_pki.verifier(engine=xmldsig.engine(name)).verify(changed)
            assert refused.value.code is RefusalCode.UNSIGNED_CONTENT
        with pytest.raises(TimeoutError):
            server.accept()


def test_an_unknown_engine_is_an_error():
    with pytest.raises(ValueError, match="unknown XML-DSig engine 'fast'"):
        xmldsig.engine("fast")


def test_axis_xmldsig_forces_the_default(monkeypatch):
    monkeypatch.setattr(xmldsig, "_default", None)
    monkeypatch.setenv("AXIS_XMLDSIG", "signxml")
    assert xmldsig.default() is xmldsig.SIGNXML
    monkeypatch.setattr(xmldsig, "_default", None)
    monkeypatch.setenv("AXIS_XMLDSIG", "nonsense")
    with pytest.raises(ValueError):
        xmldsig.default()


def test_one_verifier_and_one_signer_shared_by_threads(dev_pki, status_packet):
    # A Verifier and a Signer are shared between threads (the adapters and the hub's thread mode do):
    # the engine's cached keys are copied into each signing context, never changed.
    from concurrent.futures import ThreadPoolExecutor

    signer, verifier = dev_pki.signers[H41], dev_pki.verifier()

    def round_trip(_: int) -> str:
        return verifier.verify(signer.sign(status_packet)).signer_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(round_trip, range(200))) == {H41}
