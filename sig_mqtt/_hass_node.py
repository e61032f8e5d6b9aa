"""The I/O shell of Home Assistant discovery: watch a node's router, publish what the catalog says.

:class:`HassAnnouncer` joins one :class:`~sig_mqtt._node.MqttNode` and its router to a
:class:`~sig_mqtt._hass_catalog.Catalog`: ``#connect`` / ``#disconnect`` and event values from a
broadcast listener, retained discovery configs and Home Assistant's birth
(``homeassistant/status`` = ``online``) from the broker, the replies to requests pressed in Home
Assistant from ``P/hass/reply/S/M``. A node announces its own senders (``local_only``, an MQTT
client node) or every sender its router knows (a server node: ``sig-bridge``).

Disconnected or removed? A sender whose TCP client's connection was lost is in the ServerRouter's
``lost_senders`` while its ``#disconnect`` runs; another node's sender whose node went offline
still has its birth in the node's presence. Those stay in Home Assistant, unavailable; any other
``#disconnect`` is a removal and deletes the sender's entities.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from sig import EVENT_CONNECT, EVENT_DISCONNECT, Router

from ._hass_catalog import Catalog
from ._node import MqttNode
from .hass import Discovery, Entity, HassSettings

__all__ = ["HassAnnouncer", "attach_hass"]

logger = logging.getLogger("sig.mqtt.hass")

#: seconds between scans for senders a router learned of silently (retained births)
SCAN_INTERVAL = 1.0


def settings_of(option: Any) -> HassSettings | None:
    """``ha_discovery=`` of the carriers: False/None (off), True, a discovery prefix, a mapping or settings."""
    if option is None or option is False:
        return None
    if option is True:
        return HassSettings()
    if isinstance(option, HassSettings):
        return option
    if isinstance(option, str):
        return HassSettings(discovery_prefix=option)
    if isinstance(option, dict):
        return HassSettings(**option)
    raise TypeError("ha_discovery must be a bool, a discovery prefix, a dict or HassSettings, not %r" % (option,))


def attach_hass(node: MqttNode, router: Router, option: Any, local_only: bool) -> HassAnnouncer | None:
    """Start announcing ``node``'s senders when ``option`` asks for it (see :func:`settings_of`)."""
    settings = settings_of(option)
    if settings is None:
        return None
    return HassAnnouncer(node, router, settings, local_only=local_only)


class HassAnnouncer:
    """Publishes Home Assistant discovery for a node's senders (see the module docstring).

    Args:
        node: the MQTT node that publishes.
        router: its router.
        settings: discovery prefix and hints.
        local_only: announce only the node's own senders (not those of other nodes it hears).
        node_name: the node's device name in Home Assistant.
    """

    def __init__(self, node: MqttNode, router: Router, settings: HassSettings, local_only: bool = False,
                 node_name: str | None = None) -> None:
        self.node = node
        self.router = router
        self.local_only = local_only
        self.discovery = Discovery(node.topics, node.nid, settings, node_name)
        self.catalog = Catalog(self.discovery)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._scanner: threading.Thread | None = None
        if local_only:
            # Our own senders' events reach the router anyway: listening to all of them here must
            # not subscribe this node to every event of the broker (the node follows its router's
            # listeners), so the node does not see this one.
            router.unwatchListeners(node.router_side.listeners_changed)
            try:
                router.addListener(self._on_event)
            finally:
                router.watchListeners(node.router_side.listeners_changed)
        else:
            router.addListener(self._on_event)  # a bridge hears every sender's events: first values
        prefix = settings.discovery_prefix
        node.subscribe_raw(self.discovery.status_topic, self._on_status)
        node.subscribe_raw("%s/+/+/+/config" % prefix, self._on_config)
        node.subscribe_raw(self.discovery.reply_filter, self._on_reply)
        previous: Callable[[], None] | None = node.on_up

        def on_up() -> None:
            if previous is not None:
                previous()
            self._online()

        node.on_up = on_up
        if node.ready:
            self._online()

    # -- life -------------------------------------------------------------------------

    def _online(self) -> None:
        """The node is (back) online: our node device, every config again, and the scanner."""
        self.scan()
        self._republish("node online")
        if self._scanner is None:
            self._scanner = threading.Thread(target=self._scan_loop, name="sig-hass-scan", daemon=True)
            self._scanner.start()

    def close(self) -> None:
        """Stop the scanner and listening (the configs stay on the broker)."""
        self._stop.set()
        try:
            self.router.removeListener(self._on_event)
        except Exception:
            pass

    def _scan_loop(self) -> None:
        while not self._stop.wait(SCAN_INTERVAL):
            if self.node.ready:
                try:
                    self.scan()
                except Exception:
                    logger.exception("scan of the senders failed")

    def scan(self) -> None:
        """Announce the connected senders that the router added without a ``#connect`` (retained births)."""
        for objsender in self.router.getSenders():
            name = objsender.getName()
            if objsender.isConnected() and name not in self.catalog.senders:
                self._connected(name, objsender.describe())

    def announced(self) -> list[Any]:
        """The senders that have entities in Home Assistant now."""
        with self._lock:
            return self.catalog.announced()

    # -- the router's side ------------------------------------------------------------------

    def _on_event(self, info: dict[str, Any], data: Any) -> None:
        sender, event = info.get("sender"), info.get("event")
        if event == EVENT_CONNECT:
            self._connected(sender, data)
        elif event == EVENT_DISCONNECT:
            self._disconnected(sender)
        else:
            with self._lock:
                if sender not in self.catalog.senders:
                    objsender = self.router.senders.get(sender)
                    if objsender is not None and objsender.isConnected():
                        self._connected(sender, objsender.describe())
                self._publish(self.catalog.value(sender, event, data))

    def _host(self, sender: Any) -> str | None:
        if self.local_only and not self.node.hosts(sender):
            return None
        return self.node.node_of(sender)  # ours, or the other node's that hosts it

    def _connected(self, sender: Any, description: Any) -> None:
        host = self._host(sender)
        if host is None or not isinstance(description, dict):
            return
        events = list(description.get("events") or [])
        requests = description.get("requests")
        with self._lock:
            entities = self.catalog.connect(sender, host, events, requests)
            self._publish(entities)
        if self.discovery.settings.ignored(sender):
            logger.info("[HA] sender %r not announced (ignore = true)", sender)
            return
        decided = self.catalog.senders[sender].decided
        waiting = [e for e in events if decided.get(e) is None and self.discovery.event_platform(sender, e) is None
                   and not self.discovery.settings.event_hints(sender, e).get("ignore")]
        names = sorted("%s %s" % (e.topic.split("/")[-4], e.payload["object_id"]) for e in entities if e.payload)
        logger.info("[HA] announced sender %r (node %s) as device %r: %s%s", sender, host,
                    self.discovery.device(sender)["name"], ", ".join(names) or "no entity yet",
                    "; waiting for the first value of %s" % ", ".join(map(repr, waiting)) if waiting else "")

    def _disconnected(self, sender: Any) -> None:
        with self._lock:
            if sender not in self.catalog.senders:
                return
            if sender in getattr(self.router, "lost_senders", ()):
                removed = False  # its TCP client's connection was lost
            elif self.node.hosts(sender) or self.catalog.senders[sender].host == self.node.nid:
                removed = True
            else:  # another node's: removed when its birth is gone, not when its node went offline
                removed = not self.node.presence.births.get(sender)
            entities = self.catalog.disconnect(sender, removed)
            self._publish(entities)
        if removed and entities:
            logger.info("[HA] sender %r removed: %d entities deleted", sender, len(entities))

    # -- the broker's side --------------------------------------------------------------------

    def _on_status(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload.strip().lower() == b"online":
            self._republish("Home Assistant online")

    def _on_config(self, topic: str, payload: bytes, retained: bool) -> None:
        with self._lock:
            self._publish(self.catalog.retained(topic, payload, retained))

    def _on_reply(self, topic: str, payload: bytes, retained: bool) -> None:
        names = self.discovery.parse_reply_topic(topic)
        if names is None:
            return
        sender, method = names
        try:
            reply = json.loads(payload)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            logger.warning("[HA] unreadable reply of %r to %r: %.100r", sender, method, payload)
        elif reply.get("status") == 0:
            logger.info("[HA] request %r to %r from Home Assistant: replied %.200r", method, sender,
                        reply.get("response"))
        else:
            logger.error("[HA] request %r to %r from Home Assistant failed (status %s): %s", method, sender,
                         reply.get("status"), reply.get("exception"))

    def _republish(self, why: str) -> None:
        node = self.discovery.node()
        with self._lock:
            configs = [(node.topic, node.encode()), *self.catalog.rebirth()]
            for topic, payload in configs:
                self.node.publish_raw(topic, payload, 1, True)
        logger.info("[HA] %s: published %d discovery configs", why, len(configs))

    def _publish(self, entities: list[Entity]) -> None:
        for entity in entities:
            self.node.publish_raw(entity.topic, entity.encode(), 1, True)
