"""The refusal table in code and in docs/refusal-codes.md are the same table."""
from __future__ import annotations

from pathlib import Path

from axis.refusals import PacketError, Refusal, RefusalCode

DOC = Path(__file__).resolve().parents[1] / "docs" / "refusal-codes.md"


def test_numbers_and_names_are_unique() -> None:
    assert len({c.number for c in RefusalCode}) == len(RefusalCode)
    assert all(200 <= c.number < 600 for c in RefusalCode)


def test_every_code_is_documented_exactly() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for code in RefusalCode:
        assert f"| AX{code.number} | `{code.name}` | {code.message} |" in doc, code
    documented = {line.split("|")[1].strip() for line in doc.splitlines() if line.startswith("| AX")}
    assert documented == {f"AX{c.number}" for c in RefusalCode}


def test_refusal_text_and_dict() -> None:
    refusal = PacketError(RefusalCode.MALFORMED, "line 3, column 4: oops")
    assert isinstance(refusal, Refusal)
    assert str(refusal) == "AX200 MALFORMED: line 3, column 4: oops"
    assert refusal.as_dict()["code"] == 200
    assert RefusalCode.from_number(316) is RefusalCode.SIGNER_NOT_SENDER
