"""Agency codes: both schemes, parent/child relations, and the shortened real-world form."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axis.edxml.codes import CodeScheme, parse_agency_code
from axis.refusals import PacketError, RefusalCode


@pytest.mark.parametrize("text, level, parent", [
    ("000.00.00.G22", 1, None),
    ("000.00.12.H49", 2, "000.00.00.H49"),
    ("000.03.12.H49", 3, "000.00.12.H49"),
    ("001.03.12.H49", 4, "000.03.12.H49"),
    ("000.00.00.A01", 1, None),
    ("000.00.00.K54", 1, None),
    # Seen in the SDK samples: a level-4 unit under a level-2 body with level 3 unused.
    ("002.00.20.H13", 4, "000.00.20.H13"),
])
def test_qcvn102_codes(text: str, level: int, parent: str | None) -> None:
    code = parse_agency_code(text)
    assert code.scheme is CodeScheme.QCVN102
    assert code.text == text
    assert code.level == level
    assert (str(code.parent) if code.parent else None) == parent
    assert code.group == text[-3]


@pytest.mark.parametrize("text, level, parent", [
    ("G09", 1, None), ("G09.01", 2, "G09"), ("H37.DN.001", 3, "H37.DN"), ("0123456789", 1, None),
    ("A" * 35, 1, None),
])
def test_qd20_codes(text: str, level: int, parent: str | None) -> None:
    code = parse_agency_code(text)
    assert code.scheme is CodeScheme.QD20
    assert code.level == level
    assert (str(code.parent) if code.parent else None) == parent


def test_ancestry() -> None:
    top = parse_agency_code("000.00.00.H49")
    child = parse_agency_code("000.00.12.H49")
    grandchild = parse_agency_code("000.07.12.H49")
    assert top.is_ancestor_of(grandchild) and child.is_ancestor_of(grandchild)
    assert not grandchild.is_ancestor_of(top)
    assert not parse_agency_code("000.00.00.H50").is_ancestor_of(grandchild)
    assert parse_agency_code("H37").is_ancestor_of(parse_agency_code("H37.DN.001"))


def test_shortened_qcvn102_code_is_refused_in_strict_mode_with_the_fix() -> None:
    with pytest.raises(PacketError) as info:
        parse_agency_code("28.22.H17")
    assert info.value.code is RefusalCode.INVALID_AGENCY_CODE
    assert "000.28.22.H17" in info.value.detail


def test_shortened_qcvn102_code_is_padded_in_lenient_mode() -> None:
    code = parse_agency_code("28.22.H17", lenient=True)
    assert code.text == "000.28.22.H17" and code.original == "28.22.H17" and code.padded
    assert code.scheme is CodeScheme.QCVN102 and code.level == 3
    assert str(parse_agency_code("22.H17", lenient=True)) == "000.00.22.H17"


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("vxp.saas.03", "upper case"),
    ("000.00.00.L22", "A–K"),
    ("1.2.3.G22", "3.2.2"),
    ("A" * 36, "at most 35"),
    ("H37..001", "empty group"),
    (".G09", "empty group"),
    ("G09.", "empty group"),
    ("G09-01", "'-'"),
    ("Đ01", "'Đ'"),
])
def test_invalid_codes(text: str, fragment: str) -> None:
    with pytest.raises(PacketError) as info:
        parse_agency_code(text)
    assert info.value.code is RefusalCode.INVALID_AGENCY_CODE
    assert fragment in info.value.detail


@given(st.text(max_size=60))
def test_any_text_gives_a_code_or_a_refusal(text: str) -> None:
    for lenient in (False, True):
        try:
            code = parse_agency_code(text, lenient=lenient)
        except PacketError as exc:
            assert exc.code is RefusalCode.INVALID_AGENCY_CODE
        else:
            assert parse_agency_code(code.text) == code  # canonical text parses strictly to itself
            assert code.parent is None or code.parent.is_ancestor_of(code)
