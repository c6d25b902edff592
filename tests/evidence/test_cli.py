"""`axis evidence` as people and scripts meet it: the uncovered case, both spellings, and every everyday mistake
answered in one line with a non-zero exit, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import Result

from cli.output import INCOMPLETE
from tests.evidence.conftest import Story, axis


def _one_line(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_entries_no_checkpoint_covers_yet_are_refused_unless_asked_for(story: Story) -> None:
    _one_line(story.not_covered, 1, "not covered by a checkpoint yet", "after the next checkpoint", "--uncovered")
    verified = axis(story.home, "evidence", "verify", story.incomplete, "--trust", story.root)
    assert verified.exit_code == INCOMPLETE, verified.output
    assert "incomplete" in verified.stderr
    files = story.files(story.incomplete)
    index = json.loads(files["bundle.json"])
    assert index["complete"] is False and index["checkpoint"] == json.loads(
        story.files()["bundle.json"])["checkpoint"]
    proven = {p["seq"] for p in json.loads(files["log/proofs.json"])["entries"]}
    carried = [json.loads(line)["seq"] for line in files["log/entries.jsonl"].decode().split("\n")[:-1]]
    assert len(carried) - len(proven) == 2 and all(seq > index["checkpoint"] for seq in set(carried) - proven)
    assert "INCOMPLETE" in files["README.txt"].decode()


def test_both_spellings_build_a_bundle_that_verifies(story: Story, tmp_path: Path) -> None:
    """`axis evidence get AXIS_ID` is `axis evidence AXIS_ID`; now that checkpoint 2 covers the late status too,
    the bundle is complete again, with its proofs to checkpoint 2."""
    out = tmp_path / "got.zip"
    built = axis(story.home, "evidence", "get", story.axis_id, "--out", out, "--db", story.db)
    assert built.exit_code == 0, built.output
    assert "timestamped" in built.stdout
    verified = axis(story.home, "evidence", "verify", out, "--trust", story.root, "--tsa-trust", story.tsa_root)
    assert verified.exit_code == 0, verified.output
    assert "crl/revocations.pem" not in story.files(out)  # the data directory has no CRL and none was named


@pytest.mark.parametrize("case", ["no bundle", "not a zip", "no trust file", "trust is no CA", "bad as-of"])
def test_verify_mistakes_are_one_line(story: Story, tmp_path: Path, case: str) -> None:
    trust, bundle, extra = story.root, story.bundle, []
    if case == "no bundle":
        bundle = tmp_path / "nowhere.zip"
    elif case == "not a zip":
        bundle = tmp_path / "notes.zip"
        bundle.write_text("not a bundle")
    elif case == "no trust file":
        trust = tmp_path / "nowhere.pem"
    elif case == "trust is no CA":
        trust = story.pki / "keys" / "000.00.00.G22.cert.pem"
    else:
        extra = ["--as-of", "yesterday"]
    result = axis(story.home, "evidence", "verify", bundle, "--trust", trust, *extra)
    expected = {"no bundle": (1, "no such file"), "not a zip": (1, "not a readable ZIP"),
                "no trust file": (2, "cannot read"), "trust is no CA": (2, "not a CA"),
                "bad as-of": (2, "ISO 8601")}[case]
    _one_line(result, expected[0], expected[1])


@pytest.mark.parametrize("case", ["unknown", "status", "no database"])
def test_build_mistakes_are_one_line(story: Story, tmp_path: Path, case: str) -> None:
    axis_id, db = {"unknown": ("01a00000-0000-7000-8000-000000000000", story.db),
                   "status": (story.answers[0], story.db),
                   "no database": (story.axis_id, f"sqlite:///{tmp_path / 'none.db'}")}[case]
    result = axis(story.home, "evidence", axis_id, "--out", tmp_path / "b.zip", "--db", db)
    words = {"unknown": "holds no document", "status": f"is a status packet answering {story.axis_id}",
             "no database": "does not exist"}[case]
    _one_line(result, 1, words)
    assert not (tmp_path / "b.zip").exists()
