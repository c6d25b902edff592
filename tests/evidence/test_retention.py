"""The evidence of a document whose packet retention removed: built, it says so; checked, it passes and says so.

The module's own story (tests/evidence/conftest.py: real hub, gateway, signatures, TSA), then retention with a
policy that keeps nothing delivered, a new checkpoint, `axis evidence` and `axis evidence verify`.
"""
from __future__ import annotations

import zipfile

from axis.audit.checkpoints import CheckpointWriter
from axis.audit.logkeys import seal_store
from axis.audit.verify import verify_store
from axis.store import open_store
from axis.store.retention import RetentionPolicy, run_retention
from axis.trust import keys
from tests.audit.conftest import key_signer
from tests.evidence.conftest import Story, axis


def test_a_removed_packet_is_named_in_the_bundle_and_the_bundle_checks(story: Story, tmp_path) -> None:
    axis_key = story.pki / "keys" / "AXIS.key.pem", story.pki / "keys" / "AXIS.cert.pem"
    store = open_store(story.db)
    try:
        seal_store(store, key_signer(*axis_key), "hub")
        report = run_retention(store, RetentionPolicy(bodies_days=1e-9, submissions_days=0, inbox_days=0))
        assert report.bodies == 1 + len(story.answers)  # the late 03 waits for G22 to fetch it: kept
        assert CheckpointWriter(store, key_signer(*axis_key)).write() is not None
        assert verify_store(store, keys.load_certificates(story.root)).ok
    finally:
        store.close()

    built = axis(story.home, "evidence", story.axis_id, "--out", tmp_path / "b.zip", "--db", story.db)
    assert built.exit_code == 0, built.output
    assert "removed" in built.output and "retention" in built.output
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert "document.xml" not in archive.namelist()
        assert "removed its body by retention" in archive.read("README.txt").decode()

    checked = axis(story.home, "evidence", "verify", tmp_path / "b.zip", "--trust", story.root)
    assert checked.exit_code == 0, checked.output
    assert f"the packet of {story.axis_id} was removed from Axis by retention" in checked.output
