"""Who is connected, from other nodes' states and births (pure, no I/O, no clock).

A sender is connected while its birth exists **and** its node's state says
online with the same session, and that state is not stale. Every message that
changes that answer yields a :class:`Change`; the node turns them into the
router's ``#connect`` / ``#disconnect``.

Staleness (the only way to learn of a node whose Will died with its broker member,
on a cluster): a node that advertises its heartbeat (``"heartbeat"`` in its state,
or in its births) is taken as offline when no state of it was heard for **1.5 of
its heartbeats**; it re-publishes its state every heartbeat, so half a heartbeat is
the margin for transport and scheduling. A node that does not advertise one keeps
the older rule: 3 heartbeats (ours). Both are measured on our monotonic clock from
the receipt of the last state, not from its ``ts``, so clock skew between hosts does
not matter (and a retained state starts its clock when it arrives). Only a retained
state's ``ts`` is compared with our wall clock, with the lenient 3 heartbeats: one
that old was left behind by a node that died without its Will. A state that comes
back is a new ``#connect`` only for a node that was taken as offline.

A change caused by a retained message, or by a birth re-published in answer to a
rebirth request (``"rebirth": true``), is not *announced*: the sender was
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


#: a node that advertises its heartbeat is offline after this many heartbeats without a state
ADVERTISED_LIMIT = 1.5
#: the same for a node that does not (and for a retained state's ``ts``)
DEFAULT_LIMIT = 3.0


@dataclass
class _Node:
    state: NodeState | None = None
    seen: float = 0.0  # monotonic seconds of the last state's receipt
    stale: bool = False
    senders: set[Any] = field(default_factory=set)
    birth_heartbeat: float | None = None  # what its births advertise

    @property
    def heartbeat(self) -> float | None:
        """The heartbeat the node advertises (its state's, else its births'), or None."""
        if self.state is not None and self.state.heartbeat is not None:
            return self.state.heartbeat
        return self.birth_heartbeat


class Presence:
    """Tracks other nodes and their senders.

    Times (``now``) are seconds of a monotonic clock; ``wall`` is the wall clock (``time.time()``).

    Args:
        own_nid: this node's id (its own states and births are not tracked here).
        heartbeat: the default heartbeat of nodes that do not advertise theirs.
    """

    def __init__(self, own_nid: str, heartbeat: float = 30.0) -> None:
        self.own_nid = own_nid
        self.heartbeat = heartbeat
        #: when :meth:`expire` may have something to do (monotonic; never later than needed)
        self.deadline = float("inf")
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
        node = self.nodes.get(nid)
        if node is None or node.state is None or node.stale or not node.state.online:
            return False
        return node.state.session == birth.session

    def birth(self, sender: Any) -> Birth | None:
        """The birth of a connected sender."""
        nid = self.owners.get(sender)
        return None if nid is None else self.births.get(sender, {}).get(nid)

    # -- inputs -------------------------------------------------------------------

    def node_state(self, nid: str, state: NodeState | None, retained: bool, now: float,
                   wall: float | None = None) -> list[Change]:
        """A node state arrived at ``now`` (``None``: deleted or unreadable).

        ``wall``: our wall clock, to tell a retained state left behind long ago by its ``ts``.
        """
        node = self.nodes.setdefault(nid, _Node())
        node.state = state
        node.stale = False
        node.seen = now
        if state is not None and state.online:
            age = None if wall is None or state.ts is None or not retained else wall - state.ts / 1000.0
            if age is not None and age > DEFAULT_LIMIT * (node.heartbeat or self.heartbeat):
                logger.info("node %s: its retained state is stale (ts %s)", nid, state.ts)
                node.stale = True
            else:
                self.deadline = min(self.deadline, now + self._limit(node))
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
            if birth.heartbeat is not None:
                node.birth_heartbeat = birth.heartbeat
        changes = self._evaluate([sender], announce=not retained)
        if not births:
            self.births.pop(sender, None)
        return changes

    def expire(self, now: float) -> list[Change]:
        """Take as offline the nodes not heard for 1.5 of their heartbeats (3 of ours when they do
        not advertise one); see the module docstring."""
        senders: list[Any] = []
        self.deadline = float("inf")
        for nid, node in self.nodes.items():
            if node.state is None or not node.state.online or node.stale:
                continue
            due = node.seen + self._limit(node)
            if now >= due:
                logger.warning("node %s: no state for %.1f s, taken as offline", nid, now - node.seen)
                node.stale = True
                senders.extend(node.senders)
            else:
                self.deadline = min(self.deadline, due)
        return self._evaluate(senders, announce=True)

    def refresh(self, now: float) -> None:
        """Restart every node's staleness clock (after our own outage, when we heard nothing)."""
        for node in self.nodes.values():
            node.seen = max(node.seen, now)
        self.deadline = now  # recomputed by the next expire()

    # -- internals ----------------------------------------------------------------

    def _limit(self, node: _Node) -> float:
        """Seconds without a state after which ``node`` is offline."""
        advertised = node.heartbeat
        return DEFAULT_LIMIT * self.heartbeat if advertised is None else ADVERTISED_LIMIT * advertised

    def _evaluate(self, senders: list[Any], announce: bool) -> list[Change]:
        changes: list[Change] = []
        for sender in senders:
            births = self.births.get(sender, {})
            alive = [nid for nid, birth in births.items() if self.alive(nid, birth)]
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
                # a birth re-published for a rebirth request is state sync, as a retained one
                fresh = announce and not births[nid].rebirth
                changes.append(Change("connect", sender, nid, births[nid], fresh or sender in self._known))
                self._known.add(sender)
        return changes
