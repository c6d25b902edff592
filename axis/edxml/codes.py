"""Agency codes ("mã định danh"): the routing key of Axis.

Two schemes exist side by side on the national axis:

- QCVN 102:2016 — `V1V2V3.Z1Z2.Y1Y2.MX1X2`, e.g. `000.00.00.G22`: four levels read
  right to left (level 1 `MX1X2` is a group letter A–K and two digits), unused
  levels are zeros, always 13 characters.
- QĐ 20/2020/QĐ-TTg — at most 35 characters of `.0-9A-Z`, groups read left to
  right, e.g. `G09.01` or `H37.DN.001`.

Real data also holds shortened QCVN 102 codes such as `28.22.H17` (the VNPT SDK
samples address a recipient that way). Such a code is *not* a QĐ 20 code — its
top level is on the right — and it is ambiguous, so strict mode (the default)
refuses it with INVALID_AGENCY_CODE and says how to write it. The named lenient
mode (`lenient=True`, `axis ... --lenient-codes`) pads the missing upper levels
with zeros (`28.22.H17` → `000.28.22.H17`) and keeps the original text.

Callers may rely on: `parse_agency_code` returns an `AgencyCode` whose `.text`
is the canonical routing key, or raises `PacketError(INVALID_AGENCY_CODE)`;
never anything else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from axis.refusals import PacketError, RefusalCode

LEVEL1_GROUPS = {
    "A": "Party bodies",
    "B": "Office of the President",
    "C": "National Assembly bodies",
    "D": "Supreme People's Court",
    "E": "Supreme People's Procuracy",
    "F": "State Audit",
    "G": "Government: ministries and ministry-level bodies",
    "H": "Provincial People's Committees",
    "I": "Central socio-political organisations",
    "J": "Central social and professional organisations",
    "K": "Provincial People's Councils",
}

_QCVN102 = re.compile(r"^(\d{3})\.(\d{2})\.(\d{2})\.([A-K]\d{2})$")
_QD20 = re.compile(r"^[0-9A-Z]+(\.[0-9A-Z]+)*$")
# A right-to-left code with missing upper levels: `22.H17`, `28.22.H17`.
_SHORT_QCVN102 = re.compile(r"^(?:(\d{2})\.)?(\d{2})\.([A-K]\d{2})$")
_LEVEL_WIDTHS = (3, 2, 2)  # level 4, level 3, level 2 (level 1 is the group code)
QD20_MAX_LENGTH = 35


class CodeScheme(str, Enum):
    QCVN102 = "qcvn102"
    QD20 = "qd20"


@dataclass(frozen=True, order=True)
class AgencyCode:
    """A validated agency code. `text` is canonical; `original` is what was written."""

    text: str
    scheme: CodeScheme = field(compare=False)
    original: str = field(compare=False, default="")
    padded: bool = field(compare=False, default=False)

    def __str__(self) -> str:
        return self.text

    @property
    def levels(self) -> tuple[str, ...]:
        """Groups from the top level down: `000.00.12.H49` → (`H49`, `12`, `00`, `000`)."""
        groups = tuple(self.text.split("."))
        return tuple(reversed(groups)) if self.scheme is CodeScheme.QCVN102 else groups

    @property
    def level(self) -> int:
        """1 for a level-1 body, up to 4 (QCVN 102) or the number of groups (QĐ 20)."""
        if self.scheme is CodeScheme.QCVN102:
            return max(i + 1 for i, group in enumerate(self.levels) if i == 0 or int(group) != 0)
        return len(self.levels)

    @property
    def group(self) -> str | None:
        """The level-1 group letter (A–K) of a QCVN 102 code."""
        return self.levels[0][0] if self.scheme is CodeScheme.QCVN102 else None

    @property
    def parent(self) -> AgencyCode | None:
        """The code one level up, or None for a level-1 body."""
        if self.level == 1:
            return None
        if self.scheme is CodeScheme.QCVN102:
            top_down = list(self.levels)
            deepest = self.level - 1
            top_down[deepest] = "0" * len(top_down[deepest])
            text = ".".join(reversed(top_down))
        else:
            text = ".".join(self.levels[:-1])
        return AgencyCode(text, self.scheme, text)

    def is_ancestor_of(self, other: AgencyCode) -> bool:
        node = other.parent
        while node is not None:
            if node == self:
                return True
            node = node.parent
        return False


def parse_agency_code(text: str, *, lenient: bool = False) -> AgencyCode:
    """Validate an agency code in either scheme; see the module docstring for the rules."""
    if not isinstance(text, str):
        raise PacketError(RefusalCode.INVALID_AGENCY_CODE, f"agency code must be text, got {type(text).__name__}")
    raw = text
    text = text.strip()
    if not text:
        raise PacketError(RefusalCode.INVALID_AGENCY_CODE, "the agency code is empty")
    if _QCVN102.match(text):
        return AgencyCode(text, CodeScheme.QCVN102, raw)
    short = _SHORT_QCVN102.match(text)
    if short:
        groups = [g for g in short.groups() if g is not None]
        missing = 4 - len(groups)
        padded = ".".join(["0" * w for w in _LEVEL_WIDTHS[:missing]] + groups)
        if lenient:
            return AgencyCode(padded, CodeScheme.QCVN102, raw, padded=True)
        raise PacketError(
            RefusalCode.INVALID_AGENCY_CODE,
            f"{text!r} is a QCVN 102 code with missing levels; write it in full as {padded!r} "
            "(or accept such codes with the lenient code mode)")
    if len(text) > QD20_MAX_LENGTH:
        raise PacketError(RefusalCode.INVALID_AGENCY_CODE,
                          f"{text[:40]!r}… is {len(text)} characters; QĐ 20/2020 codes have at most 35")
    if _QD20.match(text):
        if re.fullmatch(r"(\d+\.)+[A-Z]\d{2}", text):
            # Shaped like QCVN 102 (top level on the right), so not a QĐ 20 code either.
            if re.fullmatch(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}", text):
                raise PacketError(RefusalCode.INVALID_AGENCY_CODE,
                                  f"{text!r}: level-1 group letter {text[-3]!r} is not one of A–K")
            raise PacketError(RefusalCode.INVALID_AGENCY_CODE,
                              f"{text!r} looks like a QCVN 102 code but its levels are not 3.2.2 digits "
                              "(form 000.00.00.G22)")
        return AgencyCode(text, CodeScheme.QD20, raw)
    bad = sorted({c for c in text if not re.match(r"[.0-9A-Z]", c)})
    if bad:
        hint = " (codes are upper case)" if any(c.isalpha() for c in bad) else ""
        raise PacketError(RefusalCode.INVALID_AGENCY_CODE,
                          f"{text!r} contains {''.join(bad)!r}; only . 0-9 A-Z are allowed{hint}")
    raise PacketError(RefusalCode.INVALID_AGENCY_CODE,
                      f"{text!r} has an empty group (a leading, trailing or doubled dot)")


def is_valid_agency_code(text: str, *, lenient: bool = False) -> bool:
    try:
        parse_agency_code(text, lenient=lenient)
    except PacketError:
        return False
    return True
