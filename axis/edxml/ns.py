"""The edXML namespace (QCVN 102:2016): defined here once; every module that names edXML elements imports it."""
from __future__ import annotations

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
NSMAP = {"edXML": NS}


def q(name: str) -> str:
    """The qualified tag of an edXML element."""
    return f"{{{NS}}}{name}"
