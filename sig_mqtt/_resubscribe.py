"""Subscribing again to what a broker refused while the node was already online.

A clustered broker may refuse a subscription for a while: NATS right after a member
died answers SUBACK 0x80 while JetStream elects new stream leaders. A listener that
registers gets the refusal as an error (see :mod:`._subacks`); but the subscriptions
a node makes again by itself on every (re)connect have no caller to tell. Those are
tried again, with a doubling delay per filter, for as long as the node still needs
them; a new connection starts over (it subscribes everything anyway).

:class:`RetryPlan` is the decision (no thread, no clock); :class:`Resubscriber`
the thin shell that runs it with timers and the node's dispatcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Resubscriber", "RetryPlan", "resubscriber_for"]

logger = logging.getLogger("sig.mqtt.resubscribe")


class RetryPlan:
    """When to subscribe again to each refused filter.

    Args:
        first: seconds before the first new try.
        most: the longest wait between tries.
    """

    def __init__(self, first: float = 1.0, most: float = 30.0) -> None:
        self.first = first
        self.most = most
        self.generation = -1
        self._tries: dict[str, int] = {}

    def refused(self, generation: int, filters: list[str]) -> float:
        """The broker refused ``filters`` on connection ``generation``: seconds until the next try."""
        if generation != self.generation:
            self.generation = generation
            self._tries.clear()
        tries = max((self._tries.get(topic_filter, 0) for topic_filter in filters), default=0)
        for topic_filter in filters:
            self._tries[topic_filter] = tries + 1
        return float(min(self.first * 2 ** min(tries, 30), self.most))

    def current(self, generation: int) -> bool:
        """Whether a try planned on connection ``generation`` is still worth making."""
        return generation == self.generation


class Resubscriber:
    """Runs :class:`RetryPlan`: a timer per refusal hands the new try to the node's dispatcher.

    Args:
        submit: puts a job on the node's dispatcher.
        again: ``again(filters)`` subscribes those of ``filters`` the node still needs; returns them.
        generation: the current connection's number (``Subacks.mark()[0]``).
    """

    def __init__(self, submit: Callable[[Callable[[], None]], None], again: Callable[[set[str]], list[str]],
                 generation: Callable[[], int], plan: RetryPlan | None = None) -> None:
        self.submit = submit
        self.again = again
        self.generation = generation
        self.plan = plan or RetryPlan()
        self._lock = threading.Lock()

    def refused(self, refused: list[tuple[str, str]]) -> None:
        """Called with the refusals of one SUBACK (on paho's thread: returns at once)."""
        filters = [topic_filter for topic_filter, _ in refused]
        generation = self.generation()
        with self._lock:
            delay = self.plan.refused(generation, filters)
        timer = threading.Timer(delay, self.submit, args=(lambda: self._retry(generation, set(filters)),))
        timer.daemon = True
        timer.start()

    def _retry(self, generation: int, filters: set[str]) -> None:
        with self._lock:
            if not self.plan.current(generation) or generation != self.generation():
                return  # a new connection subscribed everything again
        done = self.again(filters)
        if done:
            logger.info("[MQTT] subscribed again to %s (refused by the broker)", ", ".join(done))


def resubscriber_for(node: Any) -> Resubscriber:
    """The :class:`Resubscriber` of an :class:`~sig_mqtt._node.MqttNode` (on its dispatcher, under its lock)."""

    def again(filters: set[str]) -> list[str]:
        with node._lock:
            wanted = [item for item in node.core.resubscribe(node.link.protocol == 5) if item[0] in filters]
            if wanted and node.link.connected:
                node.outlet.subscribe(wanted)
        return [topic_filter for topic_filter, _ in wanted]

    return Resubscriber(node._jobs.put, again, lambda: int(node.link.subacks.mark()[0]))
