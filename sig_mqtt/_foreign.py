"""Other nodes' senders in our router: presence changes carried out on the router.

:class:`~sig_mqtt._presence.Presence` decides who is connected (pure); this
applies its :class:`~sig_mqtt._presence.Change` list to the router: a sender of
another node is added (its requests forwarded across the broker) or removed, and
a name that clashes with one of ours, or with one already in the router, is
logged and ignored. It runs on the node's dispatcher thread.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from typing import Any

from sig import Router, SenderConnectedError, SigError

from ._presence import Change, Presence

__all__ = ["ForeignSenders"]

logger = logging.getLogger("sig.mqtt.node")

#: ``forward(sender, method, params)``: a request to another node's sender, across the broker.
Forward = Callable[[Any, Any, Any], Any]


class ForeignSenders:
    """The senders of other nodes that ``router`` holds, and which node hosts each.

    Args:
        router: the node's router.
        local: our own senders (a name of ours is never taken over).
        forward: sends a request to another node's sender and returns its response.
        presence: who hosts what (a shared sender we stop hosting may still be hosted elsewhere).
    """

    def __init__(self, router: Router, local: Collection[Any], forward: Forward, presence: Presence) -> None:
        self.router = router
        self.local = local
        self.forward = forward
        self.presence = presence
        self.nodes: dict[Any, str] = {}  # sender -> the node that hosts it

    def __contains__(self, sender: Any) -> bool:
        return sender in self.nodes

    def apply(self, changes: list[Change]) -> None:
        """Carry out presence changes on the router (``#connect`` / ``#disconnect`` follow from them)."""
        for change in changes:
            if change.kind == "connect":
                self._connect(change)
            elif change.kind == "move":
                if change.sender in self.nodes:
                    self.nodes[change.sender] = change.nid
            elif self.nodes.get(change.sender) == change.nid:
                try:
                    self.router.removeSender(change.sender)
                except SigError:
                    pass
                self.nodes.pop(change.sender, None)

    def adopt(self, sender: Any) -> None:
        """We are about to host ``sender`` too (shared): another node's copy leaves the router silently."""
        if self.nodes.pop(sender, None) is not None:
            try:
                self.router.removeSender(sender, announce=False)
            except SigError:
                pass

    def resume(self, sender: Any) -> None:
        """We stopped hosting shared ``sender``: it is back in the router if other nodes still host it."""
        nid, birth = self.presence.owner(sender), self.presence.birth(sender)
        if nid is not None and birth is not None and sender not in self.local:
            self._connect(Change("connect", sender, nid, birth))

    def _connect(self, change: Change) -> None:
        sender = change.sender
        if sender in self.local:
            if not change.birth.shared:  # else another host of a shared sender we host too
                logger.warning("sender %r of node %s clashes with ours: ignored", sender, change.nid)
            return
        requests = None
        if change.birth.requests is not None:
            forward = functools.partial(self.forward, sender)
            requests = {m: (forward if m is None else functools.partial(forward, m)) for m in change.birth.requests}
        self.nodes[sender] = change.nid
        try:
            self.router.addSender(sender, change.birth.events, requests=requests, announce=change.announce)
        except SenderConnectedError:
            self.nodes.pop(sender, None)
            logger.warning("sender %r of node %s is connected here already: ignored", sender, change.nid)
        except (SigError, TypeError, ValueError) as exc:
            self.nodes.pop(sender, None)
            logger.warning("sender %r of node %s not added: %s", sender, change.nid, exc)
