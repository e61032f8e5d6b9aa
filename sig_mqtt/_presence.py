"""Who is connected, from other nodes' states and births (pure, no I/O, no clock).

A sender is connected while its birth exists **and** its node's state says
online with the same session, and that state is not stale. Every message that
changes that answer yields a :class:`Change`; the node turns them into the
router's ``#connect`` / ``#disconnect``.

A change caused by a retained message is not *announced*: the sender was
connected before we looked (pysig tells no listener that subscribes after a
sender connected), so the router learns of it silently. A sender we knew
before and lost is announced however it comes back: after our own reconnect,
listeners hear the differences.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ._payload import Birth, NodeState

__all__ = ["Presence", "Change"]

logger = logging.getLogger("sig.mqtt.presence")


@dataclass(frozen=True)
class Change:
    """``connect`` or ``disconnect`` of ``sender`` hosted by node ``nid``; ``move``: a shared
    sender's host changed (another one still hosts it: nothing to announce)."""

    kind: str
    sender: Any
    nid: str
    birth: Birth
    announce: bool = True


@dataclass
class _Node:
    state: NodeState | None = None
    seen: float = 0.0  # wall-clock seconds of the last state
    stale: bool = False
    senders: set[Any] = field(default_factory=set)


class Presence:
    """Tracks other nodes and their senders.

    Args:
        own_nid: this node's id (its own states and births are not tracked here).
        heartbeat: the default heartbeat of nodes whose state does not say theirs.
    """

    def __init__(self, own_nid: str, heartbeat: float = 30.0) -> None:
        self.own_nid = own_nid
        self.heartbeat = heartbeat
        self.nodes: dict[str, _Node] = {}
        self.births: dict[Any, dict[str, Birth]] = {}
        self.owners: dict[Any, str] = {}
        # The birth each connected sender had, for its #disconnect once the birth is gone.
        self._last: dict[Any, Birth] = {}
        # Senders we have known connected: when one comes back, even through a retained
        # birth (after our own reconnect), its listeners hear it (only the difference).
        self._known: set[Any] = set()

    # -- queries ----------------------------------------------------------------

    def owner(self, sender: Any) -> str | None:
        """The node that hosts ``sender`` now, or ``None``."""
        return self.owners.get(sender)

    def proto(self, nid: str) -> int:
        """The MQTT version node ``nid`` said it speaks (5 when unknown)."""
        node = self.nodes.get(nid)
        return node.state.proto if node is not None and node.state is not None else 5

    def alive(self, nid: str, birth: Birth) -> bool:
        """Whether ``birth`` is of node ``nid``'s current run and that node is online (not stale)."""
        return self._alive(nid, birth)

    def birth(self, sender: Any) -> Birth | None:
        """The birth of a connected sender."""
        nid = self.owners.get(sender)
        return None if nid is None else self.births.get(sender, {}).get(nid)

    # -- inputs -------------------------------------------------------------------

    def node_state(self, nid: str, state: NodeState | None, retained: bool, now: float) -> list[Change]:
        """A node state arrived (``None``: deleted or unreadable)."""
        node = self.nodes.setdefault(nid, _Node())
        node.state = state
        node.stale = False
        if state is not None:
            # A retained state is as old as its ts; a live one is fresh.
            node.seen = state.ts / 1000.0 if retained and state.ts is not None else now
            if state.online and self._expired(node, now):
                logger.info("node %s: its retained state is stale (ts %s)", nid, state.ts)
                node.stale = True
        return self._evaluate(list(node.senders), announce=not retained)

    def sender_birth(self, nid: str, sender: Any, birth: Birth | None, retained: bool) -> list[Change]:
        """A birth arrived (``None``: removed)."""
        births = self.births.setdefault(sender, {})
        node = self.nodes.setdefault(nid, _Node())
        if birth is None:
            births.pop(nid, None)
            node.senders.discard(sender)
        else:
            births[nid] = birth
            node.senders.add(sender)
        changes = self._evaluate([sender], announce=not retained)
        if not births:
            self.births.pop(sender, None)
        return changes

    def expire(self, now: float) -> list[Change]:
        """Treat nodes whose state is older than 3 heartbeats as offline."""
        senders: list[Any] = []
        for nid, node in self.nodes.items():
            if node.state is not None and node.state.online and not node.stale and self._expired(node, now):
                logger.warning("node %s: no state for %.0f s, taken as offline", nid, now - node.seen)
                node.stale = True
                senders.extend(node.senders)
        return self._evaluate(senders, announce=True)

    def refresh(self, now: float) -> None:
        """Restart every node's staleness clock (after our own outage, when we heard nothing)."""
        for node in self.nodes.values():
            node.seen = max(node.seen, now)

    # -- internals ----------------------------------------------------------------

    def _expired(self, node: _Node, now: float) -> bool:
        assert node.state is not None
        heartbeat = node.state.heartbeat or self.heartbeat
        return now - node.seen > 3 * heartbeat

    def _alive(self, nid: str, birth: Birth) -> bool:
        node = self.nodes.get(nid)
        if node is None or node.state is None or node.stale or not node.state.online:
            return False
        return node.state.session == birth.session

    def _evaluate(self, senders: list[Any], announce: bool) -> list[Change]:
        changes: list[Change] = []
        for sender in senders:
            births = self.births.get(sender, {})
            alive = [nid for nid, birth in births.items() if self._alive(nid, birth)]
            current = self.owners.get(sender)
            if current is not None and current in alive:
                continue
            if current is not None:
                last = self._last.get(sender)
                if alive and last is not None and last.shared and births[alive[0]].shared:
                    # a shared sender (._shared): another host takes over, nothing to announce
                    self.owners[sender], self._last[sender] = alive[0], births[alive[0]]
                    changes.append(Change("move", sender, alive[0], births[alive[0]]))
                    continue
                del self.owners[sender]
                gone = self._last.pop(sender, None) or births.get(current)
                if gone is not None:
                    changes.append(Change("disconnect", sender, current, gone))
            if alive:
                if len(alive) > 1 and not all(births[nid].shared for nid in alive):
                    logger.warning("sender %r is claimed by nodes %s; keeping %s", sender, alive, alive[0])
                nid = alive[0]
                self.owners[sender] = nid
                self._last[sender] = births[nid]
                changes.append(Change("connect", sender, nid, births[nid], announce or sender in self._known))
                self._known.add(sender)
        return changes
