"""Transports: durable named queues carrying opaque signed packets (see `base` for the contract)."""
from .base import (
    MAX_PRIORITY,
    Consumer,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    RetryPolicy,
    Transport,
)
from .errors import TransportError, UnroutableError
from .factory import open_transport

__all__ = [
    "MAX_PRIORITY",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "OutgoingMessage",
    "RetryPolicy",
    "Transport",
    "TransportError",
    "UnroutableError",
    "open_transport",
]
