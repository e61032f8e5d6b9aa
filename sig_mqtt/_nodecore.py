"""What an MQTT node decides, without I/O: the sans-I/O core of :class:`~sig_mqtt._node.MqttNode`.

The node's shell (threads, paho, the router) asks this object and carries out
its answers; here there is no socket, thread, lock, sleep or clock (time is
passed in as a number), so every decision is tested with plain calls
(``tests/test_nodecore.py``):

* **which filters to hold**: the router's listeners ask for ``(sender, event)``
  pairs (DESIGN's filter table), counted, so the last listener of a pair
  unsubscribes; our senders need their request filter; followed senders their
  births and node states; foreign topics their own filters. Each answer is a
  :data:`Changes` pair (filters to subscribe with their MQTT 5 Subscription
  Identifiers, filters to unsubscribe), ready for the link;
* **what an incoming message is**: another copy of one already dispatched
  (overlapping filters), too large, a reply, a request, a message of the tree
  (event, birth, node state, rebirth) or a foreign topic;
* **what to publish**: an event of ours (topic, payload, retained or not), a birth
  (pending while its claim is decided, :mod:`sig_mqtt._claims`; shared or not,
  :mod:`sig_mqtt._shared`), our node state; which of our own retained births are
  stale after a reconnect;
* **when the heartbeat is due**.

Presence (who is connected, from others' births and states) is the other pure
part, in :mod:`sig_mqtt._presence`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sig import EVENT_CONNECT, EVENT_DISCONNECT

from ._claims import ClaimBook
from ._filters import Changes, FilterSet, demand_filters
from ._payload import Birth, NodeState, encode_data
from ._shared import shared_request_filter
from ._topics import Parsed, Topics

__all__ = ["Incoming", "NodeCore", "NO_CHANGE"]

logger = logging.getLogger("sig.mqtt.node")

_BUILTIN = (EVENT_CONNECT, EVENT_DISCONNECT)

#: No subscription to change (compare with it; never hand it out to be filled).
NO_CHANGE: Changes = ([], [])


@dataclass(frozen=True)
class Incoming:
    """What an incoming message is: ``kind`` is ``copy`` (drop it: another copy is dispatched),
    ``oversized`` (drop it, with a warning), ``reply``, ``request``, ``tree`` (``parsed`` says
    which part of sig's tree) or ``raw`` (a foreign topic)."""

    kind: str
    parsed: Parsed | None = None


class NodeCore:
    """The decisions of node ``nid`` under ``topics`` (see the module docstring).

    Args:
        topics: sig's topic tree (its prefix).
        nid: the node id.
        session: this run's session id (in our node state and births).
        identifiers: True on MQTT 5 (Subscription Identifiers), False on 3.1.1.
        heartbeat: seconds between node-state refreshes.
        max_payload: larger messages on sig's topics are dropped.
        retain: which events the broker keeps (False, True, or event names and
            ``(sender, event)`` pairs).
        follow_all: hold the births and node states of the whole tree.
    """

    def __init__(
        self,
        topics: Topics,
        nid: str,
        session: str,
        *,
        identifiers: bool = True,
        heartbeat: float = 30.0,
        max_payload: int = 1 << 20,
        retain: Any = False,
        follow_all: bool = False,
    ) -> None:
        self.topics = topics
        self.nid = nid
        self.session = session
        self.heartbeat = heartbeat
        self.max_payload = max_payload
        self.retain = retain if isinstance(retain, bool) else frozenset(retain)
        self.follow_all = follow_all
        self.filters = FilterSet(identifiers=identifiers)
        self.local: dict[Any, dict[str, Any]] = {}  # our senders -> their #connect data
        self.claims = ClaimBook(nid, session)  # our claims on sender names (see ._claims)
        self.own_births: dict[Any, Birth | None] = {}  # our births the broker kept, seen since the connect
        self.next_heartbeat = 0.0
        self.dropped_oversized = 0
        self._demand: dict[tuple[Any, Any], int] = {}
        self._watched: set[Any] = set()
        own = [topics.reply(nid), topics.rebirth, topics.birth_filter(None, nid)]
        if follow_all:  # every sender of every node, listened to or not (a bridge's view)
            own += [topics.birth_filter(), topics.node_filter]
        for topic_filter in own:
            self.filters.add(topic_filter)

    # -- which filters to hold -------------------------------------------------------------

    def listener_changed(self, sender: Any, event: Any, added: bool) -> Changes:
        """A listener on ``(sender, event)`` was added or removed in the router."""
        key = (sender, event)
        count = self._demand.get(key, 0) + (1 if added else -1)
        if count > 0:
            self._demand[key] = count
        else:
            self._demand.pop(key, None)
        if not ((count == 1 and added) or (count == 0 and not added)):
            return [], []  # a fresh pair: callers may extend what they get
        subscribe: list[tuple[str, int | None]] = []
        unsubscribe: list[str] = []
        for topic_filter in demand_filters(self.topics, sender, event):
            more, fewer = self.filters.add(topic_filter) if added else self.filters.remove(topic_filter)
            subscribe += more
            unsubscribe += fewer
        return subscribe, unsubscribe

    def watch(self, sender: Any) -> Changes | None:
        """Follow the presence of ``sender`` from now on; None when followed already."""
        if sender in self._watched:
            return None
        self._watched.add(sender)
        subscribe: list[tuple[str, int | None]] = []
        unsubscribe: list[str] = []
        for topic_filter in (self.topics.birth_filter(sender), self.topics.node_filter):
            more, fewer = self.filters.add(topic_filter)
            subscribe += more
            unsubscribe += fewer
        return subscribe, unsubscribe

    def follows_presence(self) -> bool:
        """Whether we follow some sender's presence (then a connect asks for a rebirth)."""
        return self.follow_all or bool(self._watched)

    def add_filter(self, topic_filter: str) -> Changes:
        """Hold one more filter (a foreign topic of the bridge's rules)."""
        return self.filters.add(topic_filter)

    def resubscribe(self, identifiers: bool) -> list[tuple[str, int | None]]:
        """Every filter held, for a new connection (its protocol decides the identifiers)."""
        if self.filters.identifiers != identifiers:
            self.filters.set_identifiers(identifiers)
        return list(self.filters.subscribed.items())

    # -- our senders -------------------------------------------------------------------------

    def sender_up(self, sender: Any, description: Any, now: int = 0) -> Changes:
        """One of the router's senders connected: host it (its request filter); its claim is held
        (one made now, at ``now`` ms, if it came without one: a ServerRouter's client)."""
        if not isinstance(description, dict):
            description = {"events": [], "requests": None}
        self.claims.hold(sender, now)
        self.local[sender] = description
        return self.filters.add(self.request_filter(sender))

    def sender_down(self, sender: Any) -> Changes | None:
        """One of our senders left; None when it was not ours (then nothing to publish)."""
        request_filter = self.request_filter(sender)
        self.claims.close(sender)
        if self.local.pop(sender, None) is None:
            return None
        return self.filters.remove(request_filter)

    def revoke(self, sender: Any) -> Changes | None:
        """Another node's claim on our ``sender`` came first (see ._claims): host it no more."""
        if self.local.pop(sender, None) is None:
            return None
        self.claims.revoked.add(sender)
        return self.filters.remove(self.request_filter(sender))

    def request_filter(self, sender: Any) -> str:
        """The filter our ``sender`` gets its requests on (a shared subscription for a shared sender)."""
        if self.claims.shared(sender):
            return shared_request_filter(self.topics, sender)
        return self.topics.request_filter(sender)

    def birth(self, sender: Any, rebirth: bool = False) -> tuple[str, bytes] | None:
        """The retained birth of our sender: ``(topic, payload)``; None when it cannot be encoded (logged).

        ``rebirth``: the birth answers a rebirth request (``"rebirth": true``: state sync, not a connect).
        """
        description = self.local.get(sender)
        if description is None:
            return None
        return self._birth(sender, description, False, rebirth)

    def pending_birth(self, sender: Any, description: Any) -> tuple[str, bytes] | None:
        """The birth of a claim being decided (``"pending": true``)."""
        return self._birth(sender, description if isinstance(description, dict) else {}, True)

    def _birth(self, sender: Any, description: dict[str, Any], pending: bool,
               rebirth: bool = False) -> tuple[str, bytes] | None:
        events = list(description.get("events") or [])
        retained = [e for e in events if self.retains(sender, e)]  # listed in the birth (docs/convention.md 6.3)
        claim = self.claims.mine.get(sender)
        birth = Birth(events, description.get("requests"), self.session, retained or None, self.heartbeat,
                      shared=claim is not None and claim.shared, pending=pending,
                      since=None if claim is None else claim.since, rebirth=rebirth)
        try:
            return self.topics.birth(self.nid, sender), birth.encode()
        except (TypeError, ValueError) as exc:
            logger.error("birth of %r not published: %s", sender, exc)
            return None

    def state(self, online: bool, now_ms: int, protocol: int) -> bytes:
        """Our node state's payload."""
        return NodeState(online, self.session, now_ms, protocol, self.heartbeat).encode()

    def event(self, sender: Any, event: Any, data: Any) -> tuple[str, bytes, bool] | None:
        """What to publish for an event the router dispatched: ``(topic, payload, retain)``.

        None for what is not ours to publish (another node's event, a plain
        device's, ``#connect`` / ``#disconnect``) or data that is not JSON (logged).
        """
        if event in _BUILTIN or sender not in self.local:
            return None
        try:
            payload = encode_data(data)
        except (TypeError, ValueError) as exc:
            logger.error("event %r:%r not published: its data is not JSON (%s)", sender, event, exc)
            return None
        return self.topics.event(sender, event), payload, self.retains(sender, event)

    def retains(self, sender: Any, event: Any) -> bool:
        """Whether the broker keeps the last value of ``event`` of our ``sender``."""
        retain = self.retain
        if isinstance(retain, bool):
            return retain
        return event in retain or (sender, event) in retain

    def stale_own_births(self) -> list[Any]:
        """After a broker round trip: our retained births that are not of this run (remove them)."""
        stale = [sender for sender, birth in self.own_births.items() if birth is not None and (
            birth.session != self.session or (sender not in self.local and sender not in self.claims.mine))]
        self.own_births.clear()
        return stale

    # -- what an incoming message is ---------------------------------------------------------

    def classify(self, topic: str, size: int, identifiers: list[int] | None) -> Incoming:
        """Sort an incoming message by its topic, size and MQTT 5 Subscription Identifiers."""
        if identifiers and not self.filters.accept(topic, identifiers):
            return Incoming("copy")
        parsed = self.topics.parse(topic)
        if size > self.max_payload:
            self.dropped_oversized += 1
            return Incoming("oversized", parsed)
        if parsed is None:
            return Incoming("raw")
        if parsed.kind in ("reply", "request"):
            return Incoming(parsed.kind, parsed)
        return Incoming("tree", parsed)

    def is_echo(self, sender: Any, event: Any) -> bool:
        """An event of ours coming back (3.1.1 has no No Local), or not an event at all."""
        return sender in self.local or event in _BUILTIN

    # -- heartbeat -----------------------------------------------------------------------------

    def heartbeat_due(self, now: float) -> bool:
        """True (once per period) when our node state is to be published again."""
        if now < self.next_heartbeat:
            return False
        self.next_heartbeat = now + self.heartbeat
        return True

    def wait(self, now: float, ready: bool, check_at: float = float("inf")) -> float:
        """How long the dispatcher may sleep before the next heartbeat or staleness check
        (``check_at``: when presence next needs one, monotonic like ``now``)."""
        return max(0.05, min(1.0, self.next_heartbeat - now, check_at - now)) if ready else 1.0
