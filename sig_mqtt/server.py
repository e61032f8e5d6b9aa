"""``CarrierMQTTServer``: attaches a :class:`sig.ServerRouter` to an MQTT broker as one node.

    server = sig.ServerRouter(CarrierTCPServer())       # pysig TCP clients
    mqtt = CarrierMQTTServer(client_id="home", prefix="sig")
    server.attach(mqtt)
    mqtt.start("127.0.0.1", 1883)

The router's senders (its own and its TCP clients') appear on MQTT; other
nodes' senders appear in the router, so its TCP clients hear their events and
``#connect`` / ``#disconnect`` and can request them. Several routers on one
broker exchange each event once: nothing echoes, nothing loops.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sig import Carrier, Router, StateError

from ._failover import broker_list
from ._hass_node import attach_hass
from ._node import MqttNode, RawHandler
from ._url import url_settings

__all__ = ["CarrierMQTTServer"]

logger = logging.getLogger("sig.mqtt.server")


class CarrierMQTTServer(Carrier):
    """An MQTT carrier for a :class:`sig.ServerRouter` (attach it, then :meth:`start`).

    Args:
        client_id: the node id and MQTT client id (default: random per process).
        prefix: root of sig's topic tree.
        protocol: 5 (falls back to 3.1.1 when the broker refuses it) or 4.
        qos: QoS of events.
        username, password: broker credentials.
        tls: ``None``, True (system CAs), a CA file or an :class:`ssl.SSLContext`.
        keepalive: MQTT keepalive in seconds.
        session_expiry: seconds the broker keeps our session and queues QoS 1
            messages for us while we are away (needs a stable ``client_id``).
        request_timeout: seconds a request to another node waits.
        heartbeat: seconds between node-state refreshes.
        buffer_size: events kept while the broker is unreachable.
        ha_discovery: announce every sender the router knows to Home Assistant (MQTT discovery):
            True, a discovery prefix, or :class:`sig_mqtt.hass.HassSettings` with hints.
        settings: more :class:`~sig_mqtt._node.MqttNode` / link settings
            (``connect_timeout``, ``reconnect_min``, ``reconnect_max``, ...).
    """

    def __init__(
        self,
        client_id: str | None = None,
        prefix: str = "sig",
        protocol: int = 5,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        tls: Any = None,
        keepalive: int = 30,
        session_expiry: int | None = None,
        request_timeout: float = 10.0,
        heartbeat: float = 30.0,
        buffer_size: int = 10000,
        ha_discovery: Any = False,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.ha_discovery = ha_discovery
        self.client_id = client_id or "sig-" + uuid.uuid4().hex[:12]
        self.node_settings: dict[str, Any] = dict(
            prefix=prefix, protocol=protocol, qos=qos, username=username, password=password, tls=tls,
            keepalive=keepalive, session_expiry=session_expiry, request_timeout=request_timeout,
            heartbeat=heartbeat, buffer_size=buffer_size, **settings,
        )
        # A server's clients may request or listen to any sender: know them all.
        self.node_settings.setdefault("follow_all", True)
        self.node: MqttNode | None = None
        self.address: tuple[str, int] | None = None
        self.brokers: list[tuple[str, int]] = []  # the members of a cluster, ``address`` first

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> CarrierMQTTServer:
        """Build from ``mqtt[s]://[user[:pass]@]host[:port][/prefix]``; :meth:`start` then needs no address."""
        settings, brokers = url_settings(url, settings)
        carrier = cls(**settings)
        carrier.address, carrier.brokers = brokers[0], brokers
        return carrier

    def bind_router(self, router: Router) -> None:
        """Called by ``ServerRouter.attach``: become that router's node."""
        if self.node is not None:
            raise StateError("this MQTT carrier is attached to a router already")
        self.node = MqttNode(router, self.client_id, **self.node_settings)
        self.hass = attach_hass(self.node, router, self.ha_discovery, local_only=False)

    def start(self, host: Any = None, port: int | None = None, auto_reconnect: bool = True) -> bool:
        """Connect to the broker (default: the URL's address, else 127.0.0.1:1883).

        ``host`` may also be a list ``[(host, port), ...]``: the members of a clustered broker.

        Returns:
            True once online; False when the broker cannot be reached now (with
            ``auto_reconnect`` the carrier keeps trying in the background).
        """
        if self.node is None:
            raise StateError("attach the carrier to a ServerRouter first (server.attach(carrier))")
        self.brokers = broker_list(host, port, self.brokers or ([self.address] if self.address else []))
        self.address = self.brokers[0]
        return self.node.start(*self.address, auto_reconnect=auto_reconnect, brokers=self.brokers)

    def stop(self) -> None:
        """Leave the broker cleanly (our senders get ``#disconnect`` everywhere)."""
        if self.node is not None:
            self.node.stop()

    def isConnected(self) -> bool:
        """Tell whether the node is online now."""
        return self.node is not None and self.node.ready

    def subscribe_raw(self, topic_filter: str, handler: RawHandler) -> None:
        """Hand messages of a foreign topic filter to ``handler(topic, payload, retained)``."""
        assert self.node is not None, "attach the carrier first"
        self.node.subscribe_raw(topic_filter, handler)

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish on any topic (buffered while the broker is unreachable)."""
        assert self.node is not None, "attach the carrier first"
        self.node.publish_raw(topic, payload, qos, retain)

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until what this node published so far went through the broker and came back.

        Births, events and subscriptions sent before the call are then in effect
        (retained births stored, listeners subscribed). False when offline or on timeout.
        """
        return self.node is not None and self.node.round_trip(timeout)

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed, if it did."""
        return self.node.link.last_error if self.node is not None else None

    is_connected = isConnected
