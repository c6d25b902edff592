"""`axis evidence` writes what the issue asks, and `axis evidence verify` accepts it, now and in twenty years."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from axis.receipt import read_receipt
from axis.store import open_store
from tests.evidence.conftest import G22, H14, H41, Story, axis


def _verify(story: Story, bundle=None, *extra: object):
    return axis(story.home, "evidence", "verify", bundle or story.bundle, "--trust", story.root,
                "--tsa-trust", story.tsa_root, *extra)


def test_the_bundle_carries_the_packet_every_receipt_and_status_and_the_log(story: Story) -> None:
    files = story.files()
    store = open_store(story.db)
    try:
        assert files["document.xml"] == store.document_body(story.axis_id)
        # Every receipt of the document, each under its own name, the statuses once each as their packets.
        late = ("status", H14, "03")  # H14's status after the bundle was built
        stored = [r for r in store.receipts(story.axis_id) if (r.kind, r.recipient_code, r.code) != late]
        bodies = set(files.values())
        assert all(r.body in bodies for r in stored)
        kinds = sorted((r.kind, r.recipient_code or "", r.code) for r in stored)
        assert kinds == sorted([("intake", "", "accepted"), ("error", H14, "409"), ("delivery", H41, "delivered"),
                                ("delivery", H14, "delivered"), ("status", H41, "01"), ("status", H41, "03"),
                                ("status", H14, "01")]), kinds
        assert sum(name.startswith("receipts/") for name in files) == 4  # the statuses are under answers/
        for n, answer in enumerate(story.answers, 1):
            sender = store.get_document(answer).sender_code
            assert files[f"answers/0{n}-{sender}/packet.xml"] == store.document_body(answer)
            # ... and the status packet's own receipts: Axis's intake receipt, G22's delivery receipt (Axis signed).
            assert {read_receipt(files[name]).kind for name in files
                    if name.startswith(f"answers/0{n}-{sender}/receipts/")} == {"intake", "delivery"}
        # The log entries about the document and its answers, each with its proof, all to checkpoint 1.
        checkpoint = next(iter(store.checkpoints()))
        about = {e.seq for subject in [story.axis_id, *story.answers] for e in store.audit_entries_about(subject)
                 if e.seq <= checkpoint.size}
        lines = files["log/entries.jsonl"].decode().split("\n")[:-1]
        assert {json.loads(line)["seq"] for line in lines} == about
        proofs = json.loads(files["log/proofs.json"])
        assert proofs["tree_size"] == checkpoint.size and {p["seq"] for p in proofs["entries"]} == about
        assert files["log/checkpoint.note"].decode() == checkpoint.note
        assert files["log/checkpoint.sig"] == checkpoint.signature
        assert files["log/checkpoint.tsr"] == store.checkpoint_stamp(checkpoint.size).token
        assert files["log/checkpoint-signer.pem"] == (story.pki / "keys" / "AXIS.cert.pem").read_bytes()
        assert files["crl/revocations.pem"] == (story.pki / "ca" / "crl.pem").read_bytes()
    finally:
        store.close()
    # The certificates of every XML signer: the sender, both recipients, Axis.
    assert sorted(name.split("/")[1].rsplit("-", 1)[0] for name in files if name.startswith("certs/")) == \
        sorted(["AXIS", G22, H14, H41])
    index = json.loads(files["bundle.json"])
    assert index == {"format": "axis-evidence/1", "axis_id": story.axis_id, "built_at": index["built_at"],
                     "complete": True, "checkpoint": checkpoint.size, "stamped": True, "crl": "crl/revocations.pem"}
    listed = [line.split("  ", 1)[1] for line in files["MANIFEST.sha256"].decode().split("\n")[:-1]]
    assert sorted(listed) == sorted(set(files) - {"MANIFEST.sha256"})


def test_it_verifies_today_and_twenty_years_later(story: Story) -> None:
    today = _verify(story)
    assert today.exit_code == 0, today.output
    assert f"the evidence of {story.axis_id} checks" in today.stdout and "timestamped" in today.stdout
    later = (datetime.now(UTC) + timedelta(days=20 * 366)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert min(c.not_valid_after_utc for c in _certificates(story)) < datetime.now(UTC) + timedelta(days=20 * 366)
    result = _verify(story, None, "--as-of", later)
    assert result.exit_code == 0, result.output
    as_json = _verify(story, None, "--as-of", later, "--json")
    report = json.loads(as_json.stdout)
    assert report["ok"] and report["complete"] and report["signatures"] >= 12 and report["proven"] == report["entries"]


def test_a_check_dated_before_the_events_fails(story: Story) -> None:
    result = _verify(story, None, "--as-of", "2020-01-01")
    assert result.exit_code == 1
    assert "after the moment of the check" in result.stderr


def _certificates(story: Story):
    from axis.trust import keys
    return [keys.load_certificate(path) for path in (story.pki / "keys").glob("*.cert.pem")]
