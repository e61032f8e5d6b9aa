"""A node follows its router: senders become births and request filters, listeners become
subscriptions, events become publishes.

The router calls in on the thread that changes it (``addSender``, ``addListener``,
a trigger): :meth:`RouterSide.outbound` is a router-broadcast listener, and
:meth:`RouterSide.listeners_changed` the router's listener watcher. The decisions
are :class:`~sig_mqtt._nodecore.NodeCore`'s; this carries them out through the
node's :class:`~sig_mqtt._outlet.Outlet`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sig import EVENT_CONNECT, EVENT_DISCONNECT, Router

from ._dedup import Sequencer
from ._foreign import ForeignSenders
from ._link import MqttLink
from ._nodecore import NodeCore
from ._outlet import Outlet
from ._payload import now_ms

__all__ = ["RouterSide"]

logger = logging.getLogger("sig.mqtt.node")


class RouterSide:
    """The router's changes carried to the broker for one node.

    Args:
        router: the node's router.
        core: the node's decisions.
        outlet: publishes and subscriptions.
        link: the MQTT connection (to wait for SUBACKs).
        lock: the node's lock.
        foreign: other nodes' senders in the router (their ``#connect`` is not ours to publish).
        qos: QoS of events.
        subscribe_timeout: seconds a new listener waits for its SUBACK.
        dispatcher: the node's dispatcher thread, which must never wait for a SUBACK.

    Attributes:
        sequencer: numbers our events on MQTT 5 (see :mod:`._dedup`).
    """

    def __init__(self, router: Router, core: NodeCore, outlet: Outlet, link: MqttLink, lock: threading.RLock,
                 foreign: ForeignSenders, qos: int, subscribe_timeout: float,
                 dispatcher: Callable[[], threading.Thread | None]) -> None:
        self.router = router
        self.core = core
        self.outlet = outlet
        self.link = link
        self.lock = lock
        self.foreign = foreign
        self.qos = qos
        self.subscribe_timeout = subscribe_timeout
        self.dispatcher = dispatcher
        self.sequencer = Sequencer(core.session)

    def attach(self) -> None:
        """Host the router's connected senders, subscribe for its listeners, then follow its changes."""
        self.router.addListener(self.outbound)  # every event of every sender; not counted as demand
        for objsender in self.router.getSenders():
            if objsender.isConnected():
                self.sender_up(objsender.getName(), objsender.describe())
        for name, objsender in list(self.router.senders.items()):
            for event, objevent in objsender.getEvents().items():
                for _ in range(sum(1 for listener in objevent.listeners if listener != self.outbound)):
                    self.listeners_changed(name, event, True)
        self.router.watchListeners(self.listeners_changed)

    def detach(self) -> None:
        """Stop following the router."""
        self.router.unwatchListeners(self.listeners_changed)
        try:
            self.router.removeListener(self.outbound)
        except LookupError:
            pass

    def outbound(self, info: dict[str, Any], data: Any) -> None:
        """Router broadcast listener: publish what our senders do."""
        sender = info["sender"]
        event = info["event"]
        if event in (EVENT_CONNECT, EVENT_DISCONNECT):
            if sender not in self.foreign:
                self.sender_up(sender, data) if event == EVENT_CONNECT else self.sender_down(sender)
            return
        out = self.core.event(sender, event, data)
        if out is not None:
            props = self.sequencer.next() if self.link.protocol == 5 else None
            self.outlet.publish(out[0], out[1], self.qos, out[2], buffer=True, properties=props)

    def sender_up(self, sender: Any, description: Any) -> None:
        """One of the router's senders connected: its request filter, its birth."""
        with self.lock:
            self.outlet.apply(self.core.sender_up(sender, description, now_ms()))
        if self.outlet.ready:
            self.publish_birth(sender)

    def sender_down(self, sender: Any) -> None:
        """One of our senders left: its birth is removed."""
        with self.lock:
            shared = self.core.claims.shared(sender)
            change = self.core.sender_down(sender)
            if change is None:
                return
            self.outlet.apply(change)
        if self.outlet.ready:
            self.outlet.publish(self.core.topics.birth(self.core.nid, sender), b"", 1, True)
        if shared:
            self.foreign.resume(sender)  # other hosts may still have it

    def publish_birth(self, sender: Any, rebirth: bool = False) -> None:
        """Publish the retained birth of our ``sender`` (``rebirth``: in answer to a rebirth request)."""
        birth = self.core.birth(sender, rebirth)
        if birth is not None:
            self.outlet.publish(birth[0], birth[1], 1, True)

    def listeners_changed(self, sender: Any, event: Any, added: bool) -> None:
        """Router watcher: subscribe what the router's listeners need.

        A new subscription is waited for (its SUBACK, at most ``subscribe_timeout``
        seconds): once ``addListener`` returns, the listener hears what is published.
        """
        mark = None
        with self.lock:
            self.outlet.apply(self.core.listener_changed(sender, event, added))
            if added and self.link.connected:
                mark = self.link.subacks.mark()
        if mark is not None and threading.current_thread() is not self.dispatcher():
            if not self.link.wait_subscribed(mark, self.subscribe_timeout):
                logger.warning("[MQTT] no SUBACK in %.1f s for the listener on (%r, %r): it may miss the first "
                               "events", self.subscribe_timeout, sender, event)
