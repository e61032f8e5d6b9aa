"""The ``sig-bridge`` service: one ServerRouter on pysig TCP and on an MQTT broker at once.

* pysig TCP clients (sig or pysig 0.7.3) connect on ``listen``;
* the router is one MQTT node (:class:`~sig_mqtt.server.CarrierMQTTServer`): its
  clients' senders appear on MQTT, other nodes' senders appear to its clients;
* rules map foreign topics (Zigbee2MQTT, plain devices) to pysig events and
  pysig events to plain topics (Home Assistant, Node-RED);
* with no broker given it joins the one answering on ``broker_listen``
  (127.0.0.1:1883), or starts an embedded one there.
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sig
from sig.carrier.tcpserver import CarrierTCPServer
from sig_mqtt import CarrierMQTTServer, EmbeddedBroker, encode_data

from .rules import Rules

__all__ = ["Bridge", "BridgeSettings", "BridgeError", "default_node_id"]

logger = logging.getLogger("sig.bridge")


def default_node_id(port: int, hostname: str | None = None) -> str:
    """The node id of a bridge given none: ``sig-bridge-<hostname>-<listen port>``.

    Unique per host and listen port (two bridges on one broker do not take each
    other's session) and stable across restarts (persistent sessions and retained
    births line up). Characters other than letters, digits, ``-`` and ``_`` become
    ``-``, so the id is one plain topic level on every broker.
    """
    host = hostname if hostname is not None else socket.gethostname()
    host = re.sub(r"[^A-Za-z0-9_-]+", "-", host).strip("-") or "host"
    return "sig-bridge-%s-%d" % (host, port)


class BridgeError(sig.SigError):
    """A failure to start that the command reports as one line."""


@dataclass
class BridgeSettings:
    """What the bridge needs; the CLI builds it from options and the TOML file."""

    listen: tuple[str, int] = ("127.0.0.1", 3000)
    mqtt_url: str | None = None
    broker_listen: tuple[str, int] = ("127.0.0.1", 1883)
    embedded: bool = False
    prefix: str = "sig"
    node_id: str | None = None  # None: default_node_id(listen port)
    password: str | None = None
    heartbeat: float = 30.0
    rules: Rules | None = None
    access: dict[str, Any] | None = None
    mqtt_settings: dict[str, Any] = field(default_factory=dict)
    ha_discovery: Any = None  # a sig_mqtt.hass.HassSettings: announce every sender to Home Assistant


class Bridge:
    """The running service: :meth:`start`, then :meth:`stop`."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        access = None
        if settings.access is not None and (settings.access.get("users") or settings.access.get("acl")
                                            or not settings.access.get("anonymous", True)):
            access = sig.AccessControl.from_dict(settings.access)
        self.router = sig.ServerRouter(access=access)
        self.tcp = CarrierTCPServer()
        self.mqtt: CarrierMQTTServer | None = None
        self.broker: EmbeddedBroker | None = None
        self.broker_address: tuple[str, int] | None = None
        self.brokers: list[tuple[str, int]] = []  # from an --mqtt URL with several hosts
        self._outbound: list[Any] = []

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker (if embedded), the TCP server and the MQTT node.

        An unreachable broker does not stop the bridge: it keeps trying.

        Raises:
            BridgeError: a port is busy, or a setting is unusable.
        """
        settings = self.settings
        mqtt = self._make_mqtt()
        self.router.attach(self.tcp)
        try:
            self.tcp.start(*settings.listen)
        except sig.CarrierError as exc:
            self.stop()
            raise BridgeError(str(exc)) from None
        if settings.node_id is None:  # known once the TCP port is (``--listen HOST:0``)
            mqtt.client_id = default_node_id(self.tcp.port or settings.listen[1])
        self.router.attach(mqtt)
        self.mqtt = mqtt
        self._install_rules()
        assert self.broker_address is not None
        host, port = self.broker_address
        logger.info("[BRIDGE] pysig TCP on %s:%s, MQTT node %s on %s:%s (prefix %s)", self.tcp.host, self.tcp.port,
                    mqtt.client_id, host, port, settings.prefix)
        cluster = len(self.brokers) > 1
        if not mqtt.start(self.brokers if cluster else host, None if cluster else port, auto_reconnect=True):
            logger.warning("[BRIDGE] broker %s:%s not reachable yet (%s): retrying in the background", host, port,
                           mqtt.last_error or "no answer")

    def stop(self) -> None:
        """Leave the broker cleanly, close the TCP server, stop an embedded broker."""
        if self.mqtt is not None:
            self.mqtt.stop()
        self.tcp.stop()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        logger.info("[BRIDGE] stopped")

    # -- broker -------------------------------------------------------------------------

    def _make_mqtt(self) -> CarrierMQTTServer:
        settings = self.settings
        options: dict[str, Any] = dict(
            client_id=settings.node_id, prefix=settings.prefix, heartbeat=settings.heartbeat,
            ha_discovery=settings.ha_discovery, **settings.mqtt_settings,
        )
        if settings.mqtt_url:
            if settings.password is not None and urlsplit(settings.mqtt_url).password is None:
                options["password"] = settings.password  # --password-file wins over $SIG_MQTT_PASSWORD
            try:
                carrier = CarrierMQTTServer.from_url(settings.mqtt_url, **options)
            except (ValueError, TypeError) as exc:
                raise BridgeError("bad --mqtt URL: %s" % exc) from None
            assert carrier.address is not None
            self.broker_address = carrier.address
            self.brokers = list(carrier.brokers)  # several: the members of a clustered broker
            logger.info("[BRIDGE] using the broker at %s:%s", *carrier.address)
            return carrier
        host, port = settings.broker_listen
        if not settings.embedded and _answers(host, port):
            logger.info("[BRIDGE] a broker already answers at %s:%s: joining it", host, port)
            self.broker_address = (host, port)
        else:
            try:
                self.broker = EmbeddedBroker(host, port).start()
            except (OSError, sig.SigError) as exc:
                raise BridgeError("cannot start the embedded broker on %s:%s: %s" % (host, port, exc)) from None
            self.broker_address = (host, self.broker.port)
            logger.info("[BRIDGE] started an embedded MQTT broker on %s:%s", host, self.broker.port)
            options.setdefault("protocol", 4)  # amqtt speaks MQTT 3.1.1 only
        return CarrierMQTTServer(**options)

    # -- rules -----------------------------------------------------------------------------

    def _install_rules(self) -> None:
        rules = self.settings.rules
        if rules is None or self.mqtt is None:
            return
        for topic_filter in rules.inbound_filters():
            self.mqtt.subscribe_raw(topic_filter, self._inbound)
        for sender, event in rules.outbound_subscriptions():
            self.router.addListener(self._outbound_event, sender, event)

    def _inbound(self, topic: str, payload: bytes, retained: bool) -> None:
        """A foreign topic a rule maps: a pysig event (or #connect / #disconnect) of the router."""
        assert self.settings.rules is not None and self.mqtt is not None
        for item in self.settings.rules.inbound(topic, payload, retained):
            if item.kind == "event" and item.event is not None:
                info = dict(item.info)
                info["topic"] = topic
                self.router.dispatch(item.sender, item.event, item.data, info)
                if item.republish and self.mqtt.node is not None:
                    self.mqtt.publish_raw(self.mqtt.node.topics.event(item.sender, item.event),
                                          encode_data(item.data))
            elif item.kind == "connect":
                self._device_up(item.sender, item.events)
            elif item.kind == "disconnect":
                self._device_down(item.sender)

    def _device_up(self, sender: Any, events: list[Any]) -> None:
        objsender = self.router.senders.get(sender)
        if objsender is not None and objsender.isConnected():
            return
        try:
            self.router.addSender(sender, events or ["#availability"])
        except sig.SigError as exc:
            logger.warning("[BRIDGE] device %r not connected: %s", sender, exc)

    def _device_down(self, sender: Any) -> None:
        objsender = self.router.senders.get(sender)
        if objsender is None or not objsender.isConnected():
            return
        self.router.lost_senders.add(sender)  # offline, not removed: Home Assistant keeps its entities
        try:
            self.router.removeSender(sender)
        except sig.SigError as exc:
            logger.warning("[BRIDGE] device %r not disconnected: %s", sender, exc)
        finally:
            self.router.lost_senders.discard(sender)

    def _outbound_event(self, info: dict[str, Any], data: Any) -> None:
        """An event an outbound rule maps to a plain topic."""
        assert self.settings.rules is not None and self.mqtt is not None
        origin_inbound = "topic" in info  # brought in by an inbound rule: never sent back
        for message in self.settings.rules.outbound(info["sender"], info["event"], data,
                                                    origin_inbound=origin_inbound):
            self.mqtt.publish_raw(message.topic, message.payload, message.qos, message.retain)


def _answers(host: str, port: int) -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
