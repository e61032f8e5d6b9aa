"""Waiting for SUBACKs: a listener registered is a listener that hears.

A broker acknowledges the SUBSCRIBEs of one connection in the order they were
sent, so "every SUBSCRIBE sent before this moment is acknowledged" is a count:
:meth:`Subacks.mark` notes how many were sent, :meth:`Subacks.wait` waits until
as many were acknowledged. A connection that ends acknowledges nothing more:
:meth:`Subacks.reset` releases the waiters (the filters are subscribed again on
the next connection). Refusals (a SUBACK reason code of 0x80 or more, e.g. an
ACL that denies the filter, or a QoS the broker does not grant) are returned to
the link, which logs them with the filter they refuse.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["Subacks"]


class Subacks:
    """Counts SUBSCRIBEs sent and acknowledged on the current connection (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._sent = 0
        self._acked = 0
        self._filters: dict[int, list[str]] = {}
        self.refused: list[tuple[str, str]] = []  # (filter, reason) of every refusal, for users and tests

    def reset(self) -> None:
        """The connection ended (or a new one began): release every waiter."""
        with self._cond:
            self._generation += 1
            self._sent = self._acked = 0
            self._filters.clear()
            self._cond.notify_all()

    def sent(self, mid: int, filters: list[str]) -> None:
        """A SUBSCRIBE of ``filters`` went out with packet id ``mid``."""
        with self._cond:
            self._sent += 1
            self._filters[mid] = filters

    def acked(self, mid: int, reason_codes: list[Any]) -> list[tuple[str, str]]:
        """Its SUBACK came; return ``(filter, reason)`` for each filter the broker refused."""
        with self._cond:
            self._acked += 1
            filters = self._filters.pop(mid, [])
            self._cond.notify_all()
            refused = []
            for index, code in enumerate(reason_codes):
                if getattr(code, "is_failure", False) or (isinstance(code, int) and code >= 0x80):
                    topic_filter = filters[index] if index < len(filters) else "?"
                    refused.append((topic_filter, str(code)))
            self.refused.extend(refused)
            del self.refused[:-100]
            return refused

    def mark(self) -> tuple[int, int]:
        """A mark for :meth:`wait`: every SUBSCRIBE sent until now."""
        with self._cond:
            return self._generation, self._sent

    def wait(self, mark: tuple[int, int], timeout: float) -> bool:
        """Wait until every SUBSCRIBE sent before ``mark`` is acknowledged.

        Returns:
            True when they are (or the connection ended: nothing more to wait for);
            False after ``timeout`` seconds.
        """
        generation, count = mark
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._generation == generation and self._acked < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
