"""Which MQTT filters a node subscribes, so that each message is dispatched once.

Pure bookkeeping, no I/O. Registrations want filters (refcounted); the
:class:`FilterSet` turns them into the subscriptions to make:

* MQTT 5: every wanted filter is subscribed as is; those that overlap another
  get a Subscription Identifier. A broker may send one copy per matching
  subscription (Mosquitto does); :meth:`FilterSet.accept` keeps the copy that
  carries the lowest identifier matching the topic and drops the others.
* MQTT 3.1.1 has no identifiers: the subscribed set is kept free of overlaps by
  widening two overlapping filters to the one that covers both (``a/+`` and
  ``+/b`` -> ``+/+``), so even a broker that sends one copy per subscription
  (amqtt) sends one. Routing then filters locally.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from sig import EVENT_CONNECT, EVENT_DISCONNECT, is_channel

from ._topics import Topics, filter_matches

__all__ = ["FilterSet", "Changes", "demand_filters", "overlap", "covers", "join"]

#: (filters to subscribe with their identifier or None, filters to unsubscribe)
Changes = tuple[list[tuple[str, int | None]], list[str]]

_BUILTIN = (EVENT_CONNECT, EVENT_DISCONNECT)
_TOPIC_CACHE = 4096


def demand_filters(topics: Topics, sender: Any, event: Any) -> list[str]:
    """Return the filters a listener on ``(sender, event)`` needs (DESIGN's filter table).

    ``(None, "plain")`` needs none: in pysig it never fires.
    """
    presence = [topics.birth_filter(sender), topics.node_filter]
    if event is None:
        return [topics.event_filter(sender, None)] + presence
    if event in _BUILTIN:
        return presence
    if sender is None and not is_channel(event):
        return []
    return [topics.event_filter(sender, event)]


def overlap(a: str, b: str) -> bool:
    """Tell whether some topic name matches both filters (a shared subscription, ``$share/...``,
    is a subscription of its own: it overlaps nothing, and nothing covers it)."""
    if a.startswith("$share/") or b.startswith("$share/"):
        return a == b
    la, lb = a.split("/"), b.split("/")
    for index in itertools.count():
        end_a, end_b = index >= len(la), index >= len(lb)
        if end_a and end_b:
            return True
        if (not end_a and la[index] == "#") or (not end_b and lb[index] == "#"):
            return True
        if end_a or end_b:
            return False
        if la[index] != lb[index] and "+" not in (la[index], lb[index]):
            return False
    raise AssertionError("unreachable")


def covers(a: str, b: str) -> bool:
    """Tell whether every topic name that matches ``b`` also matches ``a``."""
    la, lb = a.split("/"), b.split("/")
    for index, level in enumerate(la):
        if level == "#":
            return True
        if index >= len(lb) or lb[index] == "#":
            return False
        if level != "+" and level != lb[index]:
            return False
    return len(la) == len(lb)


def join(a: str, b: str) -> str:
    """Return the narrowest filter of this shape that covers both."""
    la, lb = a.split("/"), b.split("/")
    out: list[str] = []
    for index in range(max(len(la), len(lb))):
        if index >= len(la) or index >= len(lb) or "#" in (la[index], lb[index]):
            out.append("#")
            break
        out.append(la[index] if la[index] == lb[index] else "+")
    return "/".join(out)


class FilterSet:
    """Refcounted wanted filters and the subscriptions that serve them.

    Args:
        identifiers: True on MQTT 5 (one subscription per filter, with an
            identifier); False on 3.1.1 (a set without overlaps).
    """

    def __init__(self, identifiers: bool) -> None:
        self.identifiers = identifiers
        self.wanted: Counter[str] = Counter()
        self.subscribed: dict[str, int | None] = {}
        self._ids = itertools.count(1)
        # A filter keeps its identifier for good: a resumed session's queued
        # messages carry the one it had when they were queued.
        self._assigned: dict[str, int] = {}
        self._lowest: dict[str, int | None] = {}

    def add(self, topic_filter: str) -> Changes:
        """Want one more ``topic_filter``; return the subscriptions to change."""
        self.wanted[topic_filter] += 1
        if self.wanted[topic_filter] > 1:
            return [], []
        return self._update()

    def remove(self, topic_filter: str) -> Changes:
        """Want one less ``topic_filter``; return the subscriptions to change."""
        if self.wanted[topic_filter] <= 0:
            self.wanted.pop(topic_filter, None)
            return [], []
        self.wanted[topic_filter] -= 1
        if self.wanted[topic_filter]:
            return [], []
        del self.wanted[topic_filter]
        return self._update()

    def set_identifiers(self, identifiers: bool) -> None:
        """Switch mode (the broker's protocol is known once connected); subscriptions start afresh."""
        self.identifiers = identifiers
        self.subscribed = {}
        self._lowest = {}
        self._update()

    def accept(self, topic: str, identifiers: list[int] | None) -> bool:
        """Tell whether to dispatch this copy of a message (False: another copy is the one).

        On 3.1.1, and for a copy with no identifiers, always True.
        """
        if not self.identifiers or not identifiers:
            return True
        lowest = self._lowest.get(topic, -1)
        if lowest == -1:
            ids = [sid for f, sid in self.subscribed.items() if sid is not None and filter_matches(f, topic)]
            lowest = min(ids) if ids else None
            if len(self._lowest) >= _TOPIC_CACHE:
                self._lowest.clear()
            self._lowest[topic] = lowest
        return lowest is None or lowest in identifiers

    def _identifier(self, topic_filter: str) -> int:
        sid = self._assigned.get(topic_filter)
        if sid is None:
            sid = self._assigned[topic_filter] = next(self._ids)
        return sid

    def _update(self) -> Changes:
        target: dict[str, int | None]
        if self.identifiers:
            # Only a filter that overlaps another needs an identifier (paho decodes it on
            # every message it brings); one that changes needs subscribing again.
            wanted = list(self.wanted)
            target = {f: (self._identifier(f) if any(g != f and overlap(f, g) for g in wanted) else None)
                      for f in wanted}
            changed = [f for f, sid in target.items() if f in self.subscribed and self.subscribed[f] != sid]
        else:
            target = dict.fromkeys(_cover(list(self.wanted)))
            changed = []
        subscribe = [(f, sid) for f, sid in target.items() if f not in self.subscribed or f in changed]
        unsubscribe = [f for f in self.subscribed if f not in target]
        self.subscribed = target
        if subscribe or unsubscribe:
            self._lowest = {}
        return subscribe, unsubscribe


def _cover(filters: list[str]) -> list[str]:
    """A set of filters without overlaps that matches every topic ``filters`` match."""
    result: list[str] = []
    for candidate in sorted(filters, key=lambda f: (f.count("+") + 2 * f.count("#")), reverse=True):
        while True:
            clash = next((f for f in result if overlap(f, candidate)), None)
            if clash is None:
                result.append(candidate)
                break
            if covers(clash, candidate):
                break
            result.remove(clash)
            candidate = candidate if covers(candidate, clash) else join(candidate, clash)
    return result
