"""Child processes that end with their parent: the hub's and the gateway's workers, the signer's
signing processes, the gateway child of `axis serve`.

`die_with_parent(parent)` asks Linux to send this process SIGTERM when its parent dies, even by
SIGKILL (PR_SET_PDEATHSIG), and exits at once if the parent is already gone (it may have died
before the request took effect). Elsewhere it does only the second part: an orderly stop of the
parent still stops its children.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux
    if os.getppid() != parent:
        os._exit(0)
