"""The two exceptions a transport raises for broker or storage trouble.

Callers may rely on:
- every failure of the broker, the connection or the embedded database surfacing
  as `TransportError` (never as an aio-pika, aiormq or sqlite3 exception);
- `UnroutableError` meaning that nothing was stored because the named queue does
  not exist; any other `TransportError` from a publish meaning "maybe stored":
  retry it, and let consumers de-duplicate on the message id.

Programming errors (a bad queue name, a priority out of range, a reserved header
name, settling a delivery twice) raise `ValueError` / `RuntimeError` instead,
because retrying them cannot help.
"""
from __future__ import annotations


class TransportError(Exception):
    """The broker or the embedded queue database failed; the operation may be retried."""


class BrokerRefused(TransportError):
    """The broker refused the connection itself (wrong user or password, no such vhost, no access).

    Waiting does not change that, so the retry policy gives up at once: fix the URL or the account.
    """


class UnroutableError(TransportError):
    """The named queue does not exist, so nothing was stored. Declare the queue first."""
