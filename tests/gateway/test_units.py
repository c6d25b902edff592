"""Small parts of the gateway on their own: the token bucket, the loopback rule, the credential format."""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from axis.gateway.app import RateLimiter
from axis.gateway.credentials import new_credential_id, new_token, token_digest
from axis.gateway.server import check_listen, is_loopback
from axis.trust import pki


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)        # the next token in half a second
    assert limiter.take("b") == 0.0                        # every key has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    now[0] += 100
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]   # never more than the burst saved up
    assert limiter.take("a") > 0


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.10", False), ("10.1.2.3", False),
    ("no-such-host.invalid", False),
])
def test_only_loopback_addresses_may_serve_plain_http(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    refusal = check_listen(host, None, None)
    assert (refusal is None) is loopback, refusal
    if not loopback:
        assert "refusing plain HTTP" in refusal and "--tls-cert" in refusal


def test_tls_needs_both_files_and_a_key_that_fits(tmp_path: Path) -> None:
    pki.init_ca(tmp_path / "ca")
    key, cert = pki.issue_tls(["gw.example.gov.vn", "192.0.2.10"], tmp_path / "ca", tmp_path / "tls")
    other_key, _ = pki.issue_tls(["other.example"], tmp_path / "ca", tmp_path / "tls")
    assert check_listen("0.0.0.0", cert, key) is None
    assert "both --tls-cert and --tls-key" in (check_listen("0.0.0.0", cert, None) or "")
    assert "cannot use" in (check_listen("0.0.0.0", cert, other_key) or "")
    assert "no such file" in (check_listen("0.0.0.0", tmp_path / "missing.pem", key) or "")
    with pytest.raises(pki.PKIError, match="already exists"):
        pki.issue_tls(["gw.example.gov.vn"], tmp_path / "ca", tmp_path / "tls")
    with pytest.raises(pki.PKIError, match="neither a host name nor an IP address"):
        pki.issue_tls(["bad name"], tmp_path / "ca", tmp_path / "tls2")


def test_a_credential_is_256_random_bits_stored_as_its_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.startswith("axis_") and len(token) == 48
        assert len(base64.urlsafe_b64decode(token[5:] + "=")) == 32
        assert token_digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len({new_credential_id() for _ in range(100)}) == 100
