"""The axis key's one keeper: a signer process, and the narrow interface everything else signs through.

Processes that parse hostile XML (the hub's and the gateway's intake workers)
and the gateway itself never hold the axis key: they hold an `AxisSigner`
(`interface.py`) that asks the signer process over a local Unix socket
(`client.py`, `protocol.py`). The signer process (`service.py`) loads the key
once and signs receipts, seals, raw bytes (audit checkpoints) and hands out
its certificates; `axis serve` and `axis gateway` start one as their child
(`supervisor.py`) unless `AXIS_SIGNER` names one already running (`axis
signer serve`). `LocalSigner` (`local.py`) is the same interface with the key
in the calling process: what the signer process runs, and what tests and
`workers=0` may use when the key in the hub's own process is acceptable.

Getting a signer in other code: `SignerClient(socket_path)` (the socket is
`Settings.signer`, or `SignerChild.socket` of the signer this process
started); inside `axis serve`, `Hub.signer` is the hub's own.
"""
from axis.signer.client import SignerClient
from axis.signer.interface import (
    AxisSigner,
    SealRequest,
    SignerError,
    SignerRefused,
    SignerStartError,
    SignerUnavailable,
)
from axis.signer.local import LocalSigner
from axis.signer.supervisor import SignerChild

__all__ = ["AxisSigner", "LocalSigner", "SealRequest", "SignerChild", "SignerClient", "SignerError",
           "SignerRefused", "SignerStartError", "SignerUnavailable"]
