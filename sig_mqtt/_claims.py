"""One owner per sender name, even when nodes register it at the same moment.

Checking that nobody hosts a name and then publishing our birth are two steps: two nodes
that register one name at the same moment both pass the check. So registering sender S
is a *claim*, decided over S's retained births (``P/node/NID/sender/S``):

1. **Check**: follow S's presence (one round trip through the broker); a live birth of
   another node that conflicts with ours: ``NameError``, nothing published.
2. **Claim**: publish our birth with ``"pending": true`` and ``"since"`` (when we claim;
   listeners do not count a pending birth as connected), wait one round trip, so that every
   claim the broker took before our marker has reached us, then :meth:`ClaimBook.judge`:

   * another live birth that is not pending (held) and conflicts: we lose;
   * another live pending one that conflicts and ranks before ours: we lose;
   * other conflicting pending ones that all rank after ours: we wait until each is
     removed (its node lost) or held (its node had not seen ours: it won);
   * none: we win, and the birth is published again without ``pending`` (connected).

   A loser removes its pending birth and its registration raises ``NameError``.

Claims rank by ``(since, session, node id)``, lowest first. Two claims conflict unless
both are shared (:mod:`._shared`). On one broker, which hands every subscriber what it
takes in the order it takes it, at most one claim wins: of two claims A and B, whichever
the broker took second had its marker after the other's birth, so it saw that birth; it
yields to a held one or to a pending one ranking first, and a winner ranking first waits
for it to yield or to be held (then it yields itself). Waiting always ends: a claim waits
only for claims ranking after it, and the last of them waits for none.

After registration (our birth held) the rule still holds: if a held birth of another node
that conflicts reaches us later (a clustered broker that took the claims in different
orders on different members, presence that came late through a rebirth), the claim ranking
first keeps the name; the other node logs an error, removes its birth and publishes
nothing more for that sender (no events, no requests answered) until it is registered again.

:class:`ClaimBook` is the decision (no I/O, no clock); :class:`Claimer` the shell.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from sig import CarrierError, SenderConnectedError

from ._payload import Birth, now_ms

__all__ = ["Claim", "ClaimBook", "Claimer"]

logger = logging.getLogger("sig.mqtt.claims")


@dataclass(frozen=True)
class Claim:
    """One node's claim on a sender name (its birth, or ours being decided)."""

    nid: str
    session: str
    since: int
    shared: bool = False
    pending: bool = False

    @property
    def rank(self) -> tuple[int, str, str]:
        """Lowest first: the claim made first, then the lowest session, then the lowest node id."""
        return self.since, self.session, self.nid

    def conflicts(self, other: Claim) -> bool:
        """Whether the two cannot both host the name (only shared claims can)."""
        return not (self.shared and other.shared)

    @classmethod
    def of(cls, nid: str, birth: Birth) -> Claim:
        """The claim another node's birth makes (no ``since``: an older node, ranks first)."""
        return cls(nid, birth.session, birth.since or 0, birth.shared, birth.pending)


class ClaimBook:
    """Our claims, and others' pending births (held ones are :class:`~sig_mqtt._presence.Presence`'s).

    Args:
        nid: our node id.
        session: our session.
    """

    def __init__(self, nid: str, session: str) -> None:
        self.nid = nid
        self.session = session
        self.mine: dict[Any, Claim] = {}
        self.revoked: set[Any] = set()
        self.pending: dict[Any, dict[str, Birth]] = {}  # sender -> node -> its pending birth

    # -- what others publish ------------------------------------------------------------

    def note(self, nid: str, sender: Any, birth: Birth | None) -> None:
        """Another node's birth of ``sender`` arrived (``None``: removed)."""
        if birth is not None and birth.pending:
            self.pending.setdefault(sender, {})[nid] = birth
            return
        births = self.pending.get(sender)
        if births is not None:
            births.pop(nid, None)
            if not births:
                del self.pending[sender]

    # -- ours ---------------------------------------------------------------------------

    def open(self, sender: Any, shared: bool, now: int) -> Claim:
        """Begin a claim on ``sender`` at ``now`` (ms): its birth is pending."""
        claim = self.mine[sender] = Claim(self.nid, self.session, now, shared, pending=True)
        self.revoked.discard(sender)
        return claim

    def hold(self, sender: Any, now: int) -> Claim:
        """The claim won (or a sender came without one, e.g. a ServerRouter's client: held since ``now``)."""
        claim = self.mine.get(sender)
        claim = self.mine[sender] = Claim(self.nid, self.session, now) if claim is None else replace(
            claim, pending=False)
        return claim

    def close(self, sender: Any) -> Claim | None:
        """Forget our claim on ``sender`` (lost, revoked and removed, or the sender left)."""
        self.revoked.discard(sender)
        return self.mine.pop(sender, None)

    def shared(self, sender: Any) -> bool:
        """Whether our claim on ``sender`` is a shared one."""
        claim = self.mine.get(sender)
        return claim is not None and claim.shared

    # -- decisions (``others``: the live claims of other nodes on that name) -------------

    def blocker(self, shared: bool, others: list[Claim]) -> Claim | None:
        """Before claiming: a held claim that conflicts with ours would be (then: ``NameError``)."""
        ours = Claim(self.nid, self.session, 0, shared)
        return next((other for other in others if not other.pending and ours.conflicts(other)), None)

    def judge(self, sender: Any, others: list[Claim]) -> tuple[str, Claim | None]:
        """Our pending claim after a round trip: ``("win", None)``, ``("lose", the claim it yields to)``
        or ``("wait", a pending claim ranking after ours)``."""
        ours = self.mine[sender]
        waiting = None
        for other in others:
            if not ours.conflicts(other):
                continue
            if not other.pending or other.rank < ours.rank:
                return "lose", other
            waiting = other
        return ("wait", waiting) if waiting is not None else ("win", None)

    def contest(self, sender: Any, others: list[Claim]) -> Claim | None:
        """Our held claim met others: the held one that ranks before it and conflicts (then we yield)."""
        ours = self.mine.get(sender)
        if ours is None or ours.pending or sender in self.revoked:
            return None
        return next((other for other in others
                     if not other.pending and other.rank < ours.rank and ours.conflicts(other)), None)


class Claimer:
    """Runs the claims of an :class:`~sig_mqtt._node.MqttNode` (see the module docstring).

    Args:
        node: the node.
        timeout: seconds a claim waits for its round trip, and then for competing claims.
    """

    def __init__(self, node: Any, timeout: float = 5.0) -> None:
        self.node = node
        self.book: ClaimBook = node.core.claims
        self.timeout = timeout
        self._changed = threading.Condition()

    def claim(self, sender: Any, description: Any, shared: bool = False) -> None:
        """Claim ``sender`` for our node; return when it is ours (then register it in the router).

        Raises:
            SenderConnectedError: another node hosts it, or won the race for it (a ``NameError``).
            SharedSubscriptionsUnsupported: ``shared`` on a broker without shared subscriptions.
        """
        node = self.node
        node.watch(sender, min(self.timeout, 2.0))
        if shared:
            node.shared.check()
        with self._changed:
            blocker = self.book.blocker(shared, self._others(sender))
        if blocker is not None:
            raise SenderConnectedError("sender %r is already connected on node %s" % (sender, blocker.nid))
        with node._lock:
            claim = self.book.open(sender, shared, now_ms())
            self._publish(node.core.pending_birth(sender, description))
        node.round_trip(self.timeout)  # every claim the broker took before our marker is in
        deadline = time.monotonic() + self.timeout
        with self._changed:
            while True:
                verdict, other = self.book.judge(sender, self._others(sender))
                if verdict == "win":
                    self.book.hold(sender, claim.since)
                    break
                left = deadline - time.monotonic()
                if verdict == "lose" or left <= 0:
                    break
                self._changed.wait(left)
        if verdict == "win":
            if shared:
                node._foreign.adopt(sender)  # another host's copy in our router makes way for ours
            return
        self.unclaim(sender)
        if other is None or verdict == "wait":
            raise SenderConnectedError("sender %r: the claim of node %s did not settle in %.1f s" % (
                sender, getattr(other, "nid", "?"), self.timeout))
        raise SenderConnectedError("sender %r is claimed by node %s at the same moment, which keeps it" % (
            sender, other.nid))

    def unclaim(self, sender: Any) -> None:
        """Give up a claim that did not become a registration: its pending birth is removed."""
        with self.node._lock:
            if sender in self.node.core.local:
                return
            if self.book.close(sender) is not None:
                self._publish((self.node.topics.birth(self.node.nid, sender), b""))

    def note(self, nid: str, sender: Any, birth: Birth | None) -> bool:
        """Another node's birth arrived (dispatcher); False when it is pending (not for presence)."""
        with self._changed:
            self.book.note(nid, sender, birth)
        return birth is None or not birth.pending

    def changed(self, sender: Any = None) -> None:
        """A birth of ``sender`` (None: a node state) changed presence (dispatcher, after presence took
        it): waiting claims judge again; a held claim of ours that meets one ranking first is revoked."""
        if not self.book.mine:
            return
        with self._changed:
            self._changed.notify_all()
            senders = list(self.book.mine) if sender is None else [sender] if sender in self.book.mine else []
            lost = [(name, winner) for name in senders
                    for winner in [self.book.contest(name, self._others(name))] if winner is not None]
        for name, winner in lost:
            self._revoke(name, winner)

    def _others(self, sender: Any) -> list[Claim]:
        presence = self.node.presence
        births = list(presence.births.get(sender, {}).items()) + list(self.book.pending.get(sender, {}).items())
        return [Claim.of(nid, birth) for nid, birth in births if nid != self.book.nid and presence.alive(nid, birth)]

    def _revoke(self, sender: Any, winner: Claim) -> None:
        node = self.node
        logger.error("[MQTT] sender %r is also held by node %s, whose claim came first: node %s removes its "
                     "birth and publishes nothing more for it (register it again once it is free)",
                     sender, winner.nid, node.nid)
        with node._lock:
            change = node.core.revoke(sender)
            if change is not None:
                node.outlet.apply(change)
            self._publish((node.topics.birth(node.nid, sender), b""))

    def _publish(self, birth: tuple[str, bytes] | None) -> None:
        if birth is None:
            return
        try:
            self.node.outlet.publish(birth[0], birth[1], 1, True)
        except CarrierError as exc:
            logger.warning("[MQTT] birth %s not published: %s", birth[0], exc)
