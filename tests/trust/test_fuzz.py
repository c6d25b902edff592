"""Random damage to a signed packet is refused, or changes nothing that is signed.

300 derandomized examples per test by default; AXIS_FUZZ_EXAMPLES=N runs N random
ones (6,000 per test ran clean when this was written).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from axis.refusals import Refusal
from tests.trust.helpers import H41

_EXAMPLES = os.environ.get("AXIS_FUZZ_EXAMPLES")
_PROFILE = settings(max_examples=int(_EXAMPLES or 300), deadline=None, derandomize=_EXAMPLES is None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutate(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        position = min(int(where * len(out)), len(out) - 1)
        if kind == "set":
            out[position] = value
        elif kind == "insert":
            out.insert(position, value)
        elif len(out) > 1:
            del out[position]
    return bytes(out)


# Bytes that keep XML well-formed more often than random ones, so the damage
# reaches the signature and certificate checks instead of stopping at the parser.
_XML_BYTES = list(b"ABCxyz019+/= <>\"'&;:#\t\n")
edits = st.lists(st.tuples(st.sampled_from(["set", "set", "insert", "delete"]),
                           st.floats(min_value=0, max_value=1, exclude_max=True),
                           st.one_of(st.sampled_from(_XML_BYTES), st.integers(min_value=0, max_value=255))),
                 min_size=1, max_size=3)


@_PROFILE
@given(edits=edits)
def test_mutations_are_refused_or_harmless(dev_pki, signed_status, edits):
    verifier = dev_pki.verifier()
    signed_c14n = etree.tostring(verifier.verify(signed_status).signed_root, method="c14n")
    mutated = _mutate(signed_status, edits)
    try:
        result = verifier.verify(mutated)
    except Refusal:
        return
    # Accepted: then what is signed is exactly what was signed before.
    assert result.signer_code == H41
    assert etree.tostring(result.signed_root, method="c14n") == signed_c14n


@_PROFILE
@given(edits=edits)
def test_mutations_inside_the_signature_are_refused_or_harmless(dev_pki, signed_status, edits):
    start = signed_status.index(b"<ds:Signature")
    end = signed_status.index(b"</ds:Signature>") + len(b"</ds:Signature>")
    verifier = dev_pki.verifier()
    signed_c14n = etree.tostring(verifier.verify(signed_status).signed_root, method="c14n")
    mutated = signed_status[:start] + _mutate(signed_status[start:end], edits) + signed_status[end:]
    try:
        result = verifier.verify(mutated)
    except Refusal:
        return
    assert result.signer_code == H41
    assert etree.tostring(result.signed_root, method="c14n") == signed_c14n


@_PROFILE
@given(edits=edits)
def test_mutations_of_a_default_namespace_signature(dev_pki, signed_status_default_ns, edits):
    # The xmlns="" excision path (see xmldsig._XMLVerifier) under random damage.
    start = signed_status_default_ns.index(b"<Signature")
    end = signed_status_default_ns.index(b"</Signature>") + len(b"</Signature>")
    verifier = dev_pki.verifier()
    signed_c14n = etree.tostring(verifier.verify(signed_status_default_ns).signed_root, method="c14n")
    mutated = (signed_status_default_ns[:start] + _mutate(signed_status_default_ns[start:end], edits)
               + signed_status_default_ns[end:])
    try:
        result = verifier.verify(mutated)
    except Refusal:
        return
    assert result.signer_code == H41
    assert etree.tostring(result.signed_root, method="c14n") == signed_c14n
