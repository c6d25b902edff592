"""The per-recipient delivery state machine.

Every (document, recipient) pair has exactly one state. The rules, which the
store applies inside the UPDATE itself (compare-and-set), are:

- Progress has a rank: queued < published < delivered < arrived (01) <
  accepted (03) < assigned (04) < processing (05) < done (06). A transition
  must strictly raise the rank; skipping ranks is allowed (receipts may arrive
  out of order: a status 03 can overtake the delivery receipt).
- refused (02) and recalled (15) are terminal: once there, the state never
  changes again. They are reachable from every other state but failed.
- parked: the recipient reported that it cannot take the document (e.g. its
  signature does not verify under the recipient's trust roots). Reachable only
  before the recipient has the document (queued, published), so a late report
  never contradicts a receipt. Not terminal: an operator's replay moves it back
  to queued (a new delivery attempt, and the only transition back to an
  earlier state), a purge moves it to failed, and proof
  that the recipient has the document (below) moves it on as from failed.
- failed: a parked delivery the operator purged (`axis dlq purge`); reachable
  from parked only. It is final except for one way out: proof that the
  recipient has the document after all (its verified delivery receipt, or a
  business status) moves it on to `delivered` or beyond, because the recipient
  holds the bytes, whatever was reported before (a failure report is only a
  claim: anyone who holds the recipient's credential, or can write to the
  broker, can make one).
- Repeating the current state is not a transition (no second receipt).

Callers may rely on: `can_transition` being a pure function of its two
arguments and the only rule the store applies; `state_for_status` mapping an
edXML StatusCode to the state it moves to (None for 13 and 16, which are
recorded as receipts but do not move the state).
"""
from __future__ import annotations

import enum


class DeliveryState(str, enum.Enum):
    QUEUED = "queued"
    PUBLISHED = "published"
    DELIVERED = "delivered"
    ARRIVED = "arrived"        # 01
    ACCEPTED = "accepted"      # 03
    ASSIGNED = "assigned"      # 04
    PROCESSING = "processing"  # 05
    DONE = "done"              # 06
    REFUSED = "refused"        # 02, terminal
    PARKED = "parked"          # the recipient could not take it; waits for an operator's replay or purge
    FAILED = "failed"          # purged by an operator; left only for delivered and beyond
    RECALLED = "recalled"      # 15, terminal

    def __str__(self) -> str:
        return self.value


_PROGRESS = (
    DeliveryState.QUEUED, DeliveryState.PUBLISHED, DeliveryState.DELIVERED, DeliveryState.ARRIVED,
    DeliveryState.ACCEPTED, DeliveryState.ASSIGNED, DeliveryState.PROCESSING, DeliveryState.DONE,
)
RANK: dict[DeliveryState, int] = {state: i for i, state in enumerate(_PROGRESS)}
TERMINAL: frozenset[DeliveryState] = frozenset({DeliveryState.REFUSED, DeliveryState.RECALLED})
ALL_STATES: tuple[DeliveryState, ...] = tuple(DeliveryState)

_STATUS_TO_STATE: dict[str, DeliveryState] = {
    "01": DeliveryState.ARRIVED,
    "02": DeliveryState.REFUSED,
    "03": DeliveryState.ACCEPTED,
    "04": DeliveryState.ASSIGNED,
    "05": DeliveryState.PROCESSING,
    "06": DeliveryState.DONE,
    "15": DeliveryState.RECALLED,
}
_RECEIPT_ONLY_STATUSES = frozenset({"13", "16"})


def parse_state(value: str | DeliveryState) -> DeliveryState:
    """The `DeliveryState` named by `value`; ValueError naming the valid ones otherwise."""
    try:
        return DeliveryState(value)
    except ValueError:
        valid = ", ".join(s.value for s in ALL_STATES)
        raise ValueError(f"unknown delivery state {value!r}; expected one of: {valid}") from None


def can_transition(old: str | DeliveryState, new: str | DeliveryState) -> bool:
    """True when a delivery in state `old` may move to `new` (see the module rules)."""
    old, new = parse_state(old), parse_state(new)
    if old == new or old in TERMINAL:
        return False
    if old is DeliveryState.FAILED:
        return new in RANK and RANK[new] >= RANK[DeliveryState.DELIVERED]
    if old is DeliveryState.PARKED:
        return (new in (DeliveryState.QUEUED, DeliveryState.FAILED) or new in TERMINAL
                or RANK[new] >= RANK[DeliveryState.DELIVERED])
    if new in TERMINAL:
        return True
    if new is DeliveryState.PARKED:
        return RANK[old] < RANK[DeliveryState.DELIVERED]
    if new is DeliveryState.FAILED:
        return False
    return RANK[new] > RANK[old]


def sources_for(new: str | DeliveryState) -> frozenset[DeliveryState]:
    """Every state from which `new` is reachable: the WHERE clause of the compare-and-set."""
    new = parse_state(new)
    return frozenset(old for old in ALL_STATES if can_transition(old, new))


def state_for_status(code: str) -> DeliveryState | None:
    """The state an edXML StatusCode moves a delivery to; None for 13/16 (receipt only).

    Raises ValueError for a code that is not a known status, so a typo never
    silently leaves a delivery where it was.
    """
    if code in _STATUS_TO_STATE:
        return _STATUS_TO_STATE[code]
    if code in _RECEIPT_ONLY_STATUSES:
        return None
    raise ValueError(f"unknown edXML status code {code!r}; expected 01-06, 13, 15 or 16")
