"""What a node sends to its broker: publishes (buffered while offline, with backpressure) and filter changes.

Events published while the broker is away wait in a bounded buffer
(:class:`sig.DropOldestBuffer`: oldest dropped first, counted); node states and
births are not buffered (they are published again on every connect). A publisher
waits while the link has ``max_outstanding`` publishes in flight, instead of growing
paho's unbounded queue (never on paho's own thread, which must keep reading).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from paho.mqtt.properties import Properties

from sig import CarrierError, DropOldestBuffer

from ._filters import Changes
from ._link import MqttLink

__all__ = ["Outlet"]

logger = logging.getLogger("sig.mqtt.node")

#: A publish kept while offline: topic, payload, QoS, retain, MQTT 5 properties.
Buffered = tuple[str, bytes, int, bool, "Properties | None"]


class Outlet:
    """Publishes and subscribes through ``link`` for a node.

    Args:
        link: the node's MQTT connection.
        lock: the node's lock (``ready`` and the buffer change together under it).
        buffer_size: events kept while the broker is unreachable.
        max_outstanding: publishes in flight before a publisher waits.
        qos: QoS of subscriptions.
        event_root: the topic prefix of events (subscribed with No Local).
    """

    def __init__(self, link: MqttLink, lock: threading.RLock, buffer_size: int, max_outstanding: int, qos: int,
                 event_root: str) -> None:
        self.link = link
        self.lock = lock
        self.max_outstanding = max_outstanding
        self.qos = qos
        self.event_root = event_root
        self.ready = False  # online, state and births re-published: events go out at once
        self.buffer: DropOldestBuffer[Buffered] = DropOldestBuffer(buffer_size, "event", logger)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, buffer: bool = False,
                properties: Properties | None = None, now: bool = False) -> None:
        """Publish; with ``buffer``, keep it while offline (else drop it: it is published again on connect);
        ``now``: written from this thread if it can be (:meth:`MqttLink.publish`).

        Raises:
            CarrierError: ``buffer`` and the link is down although the node is ready.
        """
        if not self.ready and buffer:
            with self.lock:
                if not self.ready:
                    self.buffer.append((topic, payload, qos, retain, properties))
                    return
        link = self.link
        if not link.connected:
            if not buffer:
                return
            raise CarrierError("not connected to the broker")
        if link.outstanding() >= self.max_outstanding and threading.current_thread() is not link.network_thread:
            link.wait_writable(self.max_outstanding, 30.0)
        try:
            link.publish(topic, payload, qos, retain, properties, now)
        except ValueError as exc:
            logger.error("cannot publish on %r: %s", topic, exc)

    def apply(self, change: Changes) -> None:
        """Subscribe and unsubscribe what changed (nothing while offline: all is subscribed on connect)."""
        subscribe, unsubscribe = change
        if not self.link.connected:
            return
        if subscribe:
            self.subscribe(subscribe)
        if unsubscribe:
            self.link.unsubscribe(unsubscribe)

    def subscribe(self, filters: list[tuple[str, int | None]]) -> None:
        """Subscribe ``[(filter, subscription identifier)]``.

        No Local on events only: our own events need not come back, but our retained
        births and our replies (the sync marker) must.
        """
        events = [(f, sid) for f, sid in filters if f.startswith(self.event_root)]
        self.link.subscribe(events, self.qos, no_local=True)
        self.link.subscribe([(f, sid) for f, sid in filters if not f.startswith(self.event_root)], self.qos)

    def take_buffered(self) -> list[Any]:
        """The publishes kept while offline, oldest first (the buffer is empty afterwards)."""
        return self.buffer.take()
