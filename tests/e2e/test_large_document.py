"""A document with a 100 MiB attachment from `axis send` through the gateway and intake to `axis inbox pull`.

The bytes the recipient stores are the bytes the sender signed (compared by SHA-256, so the test holds no
second copy). Memory is not asserted here: bench/bench_large.py measures it (docs/performance.md).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.e2e.harness import Deployment
from tests.e2e.packets import G22, H41, TestPKI, large_document

ATTACHMENT = 100 * 1024 * 1024


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@pytest.mark.slow(seconds=25)
def test_a_100_mib_attachment_arrives_byte_identical(embedded_deployment: Deployment, e2e_pki: TestPKI,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      request: pytest.FixtureRequest) -> None:
    deployment = embedded_deployment
    # Where the gateway spools uploads (its TMPDIR; short: the signer's socket goes there too): no upload is
    # left there once the packet is decided.
    spool = Path(tempfile.mkdtemp(prefix="axis-spool-"))
    request.addfinalizer(lambda: shutil.rmtree(spool, ignore_errors=True))
    monkeypatch.setenv("TMPDIR", str(spool))
    packet = tmp_path / "large.edxml"
    signed = large_document(e2e_pki, G22, [H41], 1, packet, attachment_bytes=ATTACHMENT)
    assert packet.stat().st_size > ATTACHMENT * 4 // 3  # base64 of the attachment, and the packet around it
    deployment.serve()

    sent = deployment.run("send", str(packet), "--json", timeout=120)
    assert sent.exit_code == 0, sent
    [answer] = json.loads(sent.stdout)
    assert answer["outcome"] == "accepted", answer

    assert list(spool.glob("axis-upload-*")) == []

    out = tmp_path / "inbox"
    pulled = deployment.run("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1",
                            "--max", "1", timeout=120)
    assert pulled.exit_code == 0, pulled
    stored = out / f"{answer['axis_id']}.edxml"
    assert [p.name for p in out.iterdir()] == [stored.name]
    assert _sha256(stored) == signed
    with deployment.store() as store:
        document, deliveries, _ = store.document_and_deliveries(answer["axis_id"])
        assert document is not None and document.digest == signed
        assert {d.recipient_code: d.state for d in deliveries} == {H41: "delivered"}


@pytest.mark.slow(seconds=10)
def test_a_large_queued_submission_waits_in_the_store_not_on_the_broker(
        embedded_deployment: Deployment, e2e_pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = embedded_deployment
    # Every submission goes through axis.intake; over 256 KiB its body waits in the store.
    monkeypatch.setenv("AXIS_INTAKE_AT", "hub")
    monkeypatch.setenv("AXIS_INLINE_BODY_BYTES", str(256 * 1024))
    large, small = tmp_path / "large.edxml", tmp_path / "small.edxml"
    signed_large = large_document(e2e_pki, G22, [H41], 1, large, attachment_bytes=2 * 1024 * 1024)
    signed_small = large_document(e2e_pki, G22, [H41], 2, small, attachment_bytes=1024)
    hub = deployment.serve()

    sent = deployment.run("send", str(large), str(small), "--json", timeout=120)
    assert sent.exit_code == 0, sent
    answers = {Path(a["file"]).name: a for a in json.loads(sent.stdout)}
    assert {a["outcome"] for a in answers.values()} == {"accepted"}, answers
    kept = [line for line in hub.stderr().splitlines() if "waited in the store, not on the broker" in line]
    assert len(kept) == 1 and answers["large.edxml"]["submission"] in kept[0], hub.stderr()[-3000:]

    out = tmp_path / "inbox"
    pulled = deployment.run("inbox", "pull", H41, *deployment.agency_files(H41), "--out", str(out), "--wait", "1",
                            "--max", "2", timeout=120)
    assert pulled.exit_code == 0, pulled
    assert _sha256(out / f"{answers['large.edxml']['axis_id']}.edxml") == signed_large
    assert _sha256(out / f"{answers['small.edxml']['axis_id']}.edxml") == signed_small
    with deployment.store() as store, store.engine.connect() as connection:
        # The large one's body was kept for the hub and removed once decided.
        assert connection.execute(sa.text("SELECT count(*) FROM submission_bodies")).scalar() == 0
