"""Waiting for SUBACKs: a listener registered is a listener that hears.

A broker acknowledges the SUBSCRIBEs of one connection in the order they were
sent, so "every SUBSCRIBE sent before this moment is acknowledged" is a count:
:meth:`Subacks.mark` notes how many were sent, :meth:`Subacks.wait` waits until
as many were acknowledged. A connection that ends acknowledges nothing more:
:meth:`Subacks.reset` releases the waiters (the filters are subscribed again on
the next connection). Refusals (a SUBACK reason code of 0x80 or more, e.g. an
ACL that denies the filter, or a QoS the broker does not grant) are returned to
the link, which logs them with the filter they refuse; :meth:`Subacks.refusals`
tells a registration which of the SUBSCRIBEs it waited for were refused (it then
fails with :class:`SubscriptionRefusedError`). A QoS granted below the one asked
for is noted once per filter (:meth:`Subacks.take_downgrades`), and lowers
:attr:`Subacks.max_qos`: the link then subscribes and publishes at most at that QoS
(NATS grants QoS 1 for QoS 2 and drops a client that publishes at QoS 2).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sig import AccessDeniedError

__all__ = ["SubscriptionRefusedError", "Subacks"]

logger = logging.getLogger("sig.mqtt.link")


class SubscriptionRefusedError(AccessDeniedError):
    """The broker refused a subscription a listener needs (a SUBACK failure: an ACL, a
    clustered broker that cannot create the subscription, a QoS it does not grant).

    Attributes:
        refused: ``[(filter, reason)]``.
    """

    def __init__(self, refused: list[tuple[str, str]]) -> None:
        super().__init__("the broker refused the subscription%s %s: the listener would hear nothing" % (
            "s" if len(refused) > 1 else "", ", ".join("to %s (%s)" % item for item in refused)))
        self.refused = refused


class Subacks:
    """Counts SUBSCRIBEs sent and acknowledged on the current connection (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._sent = 0
        self._acked = 0
        self._filters: dict[int, tuple[int, list[str], int]] = {}  # mid -> (sequence number, filters, qos)
        self._refusals: list[tuple[int, int, str, str]] = []  # (generation, sequence number, filter, reason)
        self._downgraded: dict[str, int] = {}  # filter -> granted QoS, noted once
        self._new_downgrades: list[tuple[str, int, int]] = []
        self.refused: list[tuple[str, str]] = []  # (filter, reason) of every refusal, for users and tests
        self.max_qos = 2  # the highest QoS to use: the lowest the broker granted below what we asked
        self.on_refused: Callable[[list[tuple[str, str]]], None] | None = None  # told of each SUBACK's refusals

    def reset(self) -> None:
        """The connection ended (or a new one began): release every waiter."""
        with self._cond:
            self._generation += 1
            self._sent = self._acked = 0
            self._filters.clear()
            self._cond.notify_all()

    def sent(self, mid: int, filters: list[str], qos: int = 0) -> None:
        """A SUBSCRIBE of ``filters`` at ``qos`` went out with packet id ``mid``."""
        with self._cond:
            self._sent += 1
            self._filters[mid] = (self._sent, filters, qos)

    def acked(self, mid: int, reason_codes: list[Any]) -> list[tuple[str, str]]:
        """Its SUBACK came; return ``(filter, reason)`` for each filter the broker refused."""
        with self._cond:
            self._acked += 1
            sequence, filters, qos = self._filters.pop(mid, (0, [], 0))
            self._cond.notify_all()
            refused = []
            for index, code in enumerate(reason_codes):
                topic_filter = filters[index] if index < len(filters) else "?"
                value = getattr(code, "value", code)
                if getattr(code, "is_failure", False) or (isinstance(value, int) and value >= 0x80):
                    refused.append((topic_filter, str(code)))
                    self._refusals.append((self._generation, sequence, topic_filter, str(code)))
                elif isinstance(value, int) and value < qos and topic_filter not in self._downgraded:
                    self._downgraded[topic_filter] = value
                    self._new_downgrades.append((topic_filter, qos, value))
                    if value < self.max_qos:
                        self.max_qos = value
                        logger.warning("[MQTT] the broker grants QoS %d at most: publishing and subscribing at "
                                       "QoS %d from now on", value, value)
            self.refused.extend(refused)
            del self.refused[:-100]
            del self._refusals[:-100]
        if refused and self.on_refused is not None:
            self.on_refused(refused)
        return refused

    def refusals(self, before: tuple[int, int], after: tuple[int, int]) -> list[tuple[str, str]]:
        """``(filter, reason)`` of the SUBSCRIBEs sent between two marks that the broker refused."""
        with self._cond:
            return [(topic_filter, reason) for generation, sequence, topic_filter, reason in self._refusals
                    if generation == after[0] and (before[1] if before[0] == generation else 0) < sequence <= after[1]]

    def take_downgrades(self) -> list[tuple[str, int, int]]:
        """``(filter, asked QoS, granted QoS)`` noted since the last call, each filter once ever."""
        with self._cond:
            new, self._new_downgrades = self._new_downgrades, []
            return new

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
