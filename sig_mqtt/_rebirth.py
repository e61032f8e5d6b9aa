"""Presence that does not rely on retained messages reaching wildcard subscriptions.

Some brokers (RabbitMQ's MQTT plugin) deliver retained messages only to exact-topic
subscriptions, never to ``P/node/+/sender/S``: a node that starts following presence
would never learn of senders already online. So it also asks: it publishes an empty
``P/cmd/rebirth`` (DESIGN: "ask every node to re-publish its births") right after it
subscribed to the presence filters, and every node answers by publishing its node
state and births again, after a random delay (jitter), so that a crowd of nodes does
not answer in the same millisecond; requests that arrive while an answer is pending
share that answer. The request stays empty (as DESIGN says), so a node tells its own
request coming back from none other: for each request it sent, it lets one incoming
request pass unanswered. That is right whichever it was: every answer goes to all,
so the requests that pass are served by the answer to the other.

:class:`RebirthPlan` is the decision (no clock, no randomness of its own);
:class:`Rebirths` the thin shell (a timer that hands the answer to the node's dispatcher).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RebirthPlan", "Rebirths", "rebirths_for"]

logger = logging.getLogger("sig.mqtt.rebirth")


class RebirthPlan:
    """When to answer a rebirth request.

    Args:
        jitter: the longest delay before answering, in seconds.
    """

    def __init__(self, jitter: float = 1.0) -> None:
        self.jitter = max(jitter, 0.0)
        self.pending_until: float | None = None
        self.answers = 0

    def asked(self, now: float, rand: float) -> float | None:
        """A request arrived at ``now``; ``rand`` in [0, 1). Seconds until the answer, or None
        when an answer is already pending (it serves this request too)."""
        if self.pending_until is not None and now <= self.pending_until:
            return None
        delay = self.jitter * min(max(rand, 0.0), 1.0)
        self.pending_until = now + delay
        return delay

    def answered(self) -> None:
        """The answer went out: the next request gets its own."""
        self.pending_until = None
        self.answers += 1


class Rebirths:
    """Sends rebirth requests and answers them with jitter.

    Args:
        ask: publishes the request (an empty ``P/cmd/rebirth``); False when offline.
        answer: publishes our node state and births again (run on the dispatcher).
        submit: puts a job on the node's dispatcher.
        jitter: see :class:`RebirthPlan`.
    """

    def __init__(self, ask: Callable[[], bool], answer: Callable[[], None],
                 submit: Callable[[Callable[[], None]], None], jitter: float = 1.0) -> None:
        self.ask = ask
        self.answer = answer
        self.submit = submit
        self.plan = RebirthPlan(jitter)
        self.requests = 0
        self._own = 0  # our requests not yet come back
        self._random = random.Random()  # not the global generator, which tests may seed and watch
        self._lock = threading.Lock()

    def request(self, connected: bool = False) -> None:
        """Ask every node for its births (after subscribing to the presence filters).

        ``connected``: the connection is new (requests sent on the old one never come back).
        """
        with self._lock:
            if connected:
                self._own = 0
            if not self.ask():
                return  # offline: the next connect asks
            self.requests += 1
            self._own += 1

    def asked(self) -> None:
        """A rebirth request arrived (dispatcher thread)."""
        with self._lock:
            if self._own > 0:
                self._own -= 1  # ours (or one our request's answers serve)
                return
            delay = self.plan.asked(time.monotonic(), self._random.random())
        if delay is None:
            return
        timer = threading.Timer(delay, self.submit, args=(self._answer,))
        timer.daemon = True
        timer.start()

    def _answer(self) -> None:
        with self._lock:
            self.plan.answered()
        self.answer()


def rebirths_for(node: Any, jitter: float = 1.0) -> Rebirths:
    """The :class:`Rebirths` of an :class:`~sig_mqtt._node.MqttNode`."""

    def ask() -> bool:
        if not node.link.connected:
            return False
        node.outlet.publish(node.topics.rebirth, b"", 1, False)
        return True

    def answer() -> None:
        if not node.ready:
            return  # offline: the next connect publishes everything anyway
        logger.info("[MQTT] rebirth asked: publishing state and %d birth(s)", len(node.core.local))
        node._publish_state(True)
        for sender in list(node.core.local):
            node.router_side.publish_birth(sender, rebirth=True)

    return Rebirths(ask, answer, node._jobs.put, jitter)
