"""Transports: durable named queues carrying opaque signed packets (see `base` for the contract)."""
from .base import (
    DEAD_LETTER_FEED,
    MAX_PRIORITY,
    Consumer,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    QueueStats,
    RetryPolicy,
    Transport,
)
from .errors import BrokerRefused, TransportError, UnroutableError
from .factory import open_transport

__all__ = [
    "DEAD_LETTER_FEED",
    "MAX_PRIORITY",
    "BrokerRefused",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "OutgoingMessage",
    "QueueStats",
    "RetryPolicy",
    "Transport",
    "TransportError",
    "UnroutableError",
    "open_transport",
]
