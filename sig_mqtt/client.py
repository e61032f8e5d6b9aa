"""``CarrierMQTTClient``: a :class:`sig.ClientRouter` over an MQTT broker, no pysig server needed.

    carrier = CarrierMQTTClient(client_id="kitchen", prefix="sig")
    router = sig.ClientRouter(carrier)
    carrier.connect("localhost", 1883)
    router.addRemoteSender("thermo", ["changed"])
    router.addRemoteListener(print_event, "door", None)

Or from a URL: ``CarrierMQTTClient.from_url("mqtt://user:pass@host:1883/sig")``
then ``carrier.connect()``.

Inside, the carrier keeps a private :class:`sig.ServerRouter`, ``carrier.network``,
that plays the pysig server: the ClientRouter registers there exactly as over
TCP, and an :class:`~sig_mqtt._node.MqttNode` joins that router to the broker.
``carrier.network`` is this node's view of the whole network: every sender
connected anywhere is there (``carrier.isSenderConnected("door")``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sig import Carrier, ClientId, ServerRouter, Status, log_failed_post, make_reply

from ._failover import broker_list
from ._hass_node import attach_hass
from ._node import MqttNode
from ._subacks import SubscriptionRefusedError
from ._url import url_settings

__all__ = ["CarrierMQTTClient"]

logger = logging.getLogger("sig.mqtt.client")


def _run_signal(carrier: Carrier, clientid: ClientId, message: dict[str, Any]) -> None:
    """Run a notification on the other end of the in-process link, on this thread.

    A ``signal`` goes straight to the method (the hot path: no reply is built);
    anything else through the carrier's RPC handling. Failures are logged.
    """
    methods = carrier.methods
    method = methods.get("signal") if methods is not None and message.get("method") == "signal" else None
    params = message.get("params")
    if method is not None and isinstance(params, dict):
        try:
            method(clientid, params)
        except Exception as exc:
            logger.warning("signal not delivered: %s", exc)
        return
    reply = carrier.handleRX(clientid, message)
    if reply is not None and reply.get("status") != Status.OK:
        future: Future[Any] = Future()
        future.set_result(reply)
        log_failed_post(future)


class _NetworkEnd(Carrier):
    """The private server's side of the in-process link to the ClientRouter."""

    def __init__(self, outer: CarrierMQTTClient) -> None:
        super().__init__()
        self.outer = outer

    def call(self, clientid: ClientId, message: dict[str, Any], timeout: float | None = None) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(self.outer.handleRX(clientid, message))
        return future

    def post(self, clientid: ClientId, message: dict[str, Any]) -> None:
        _run_signal(self.outer, clientid, message)


class CarrierMQTTClient(Carrier):
    """Connects a :class:`sig.ClientRouter` to an MQTT broker.

    Args:
        client_id: the node id and MQTT client id (default: random per process;
            give a stable one to use ``session_expiry``).
        prefix: root of sig's topic tree (default ``sig``).
        protocol: 5 (default; falls back to 3.1.1 when the broker refuses it) or 4.
        qos: QoS of events (default 1).
        username, password: broker credentials.
        tls: ``None``, True (system CAs), a CA file or an :class:`ssl.SSLContext`.
        keepalive: MQTT keepalive in seconds.
        session_expiry: seconds the broker keeps our session, so QoS 1 events
            published while we are away reach us when we come back.
        request_timeout: default seconds a request waits (the ClientRouter built on
            this carrier takes it as its own default).
        heartbeat: seconds between node-state refreshes (others take us as
            offline after 1.5 heartbeats without one: the state and births say it).
        buffer_size: events kept while the broker is unreachable (the ClientRouter built on
            this carrier, which keeps them, takes it as its own default).
        ha_discovery: announce this node's senders to Home Assistant (MQTT discovery): True, a
            discovery prefix, or :class:`sig_mqtt.hass.HassSettings` with hints.
        settings: more node / link settings (``connect_timeout``,
            ``reconnect_min``, ``reconnect_max``, ``max_outstanding``, ``retain`` = the
            events the broker keeps as last values for late listeners, ``portable_ids`` =
            also escape ``.``, space, ``*`` and ``>`` in topics for NATS and RabbitMQ, ...).

    ``router.addRemoteSender(name, events, requests=..., shared=True)`` on several nodes hosts one
    load-balanced sender (each request answered by one host; needs MQTT shared subscriptions,
    see :mod:`sig_mqtt._shared`). Without ``shared``, a name has one owner: a node that registers
    a name another node hosts, or loses the race for it, gets a ``NameError`` (:mod:`sig_mqtt._claims`).
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
        self.client_id = client_id or "sig-" + uuid.uuid4().hex[:12]
        self._link_id = "mqtt:" + self.client_id  # our end of the in-process link to ``network``
        self.on_connected: Callable[[], Any] | None = None
        self.on_disconnected: Callable[[], Any] | None = None
        self.auto_reconnect = False
        self.address: tuple[str, int] | None = None
        self.brokers: list[tuple[str, int]] = []  # the members of a cluster, ``address`` first
        self.request_timeout = request_timeout
        self.buffer_size = buffer_size
        self.network = ServerRouter(request_timeout=request_timeout)
        self._end = _NetworkEnd(self)
        self.network.attach(self._end)
        self.node = MqttNode(
            self.network, self.client_id, prefix=prefix, protocol=protocol, qos=qos, username=username,
            password=password, tls=tls, keepalive=keepalive, session_expiry=session_expiry,
            request_timeout=request_timeout, heartbeat=heartbeat, buffer_size=buffer_size,
            on_up=self._up, on_down=self._down, **settings,
        )
        self._linked = False
        self.hass = attach_hass(self.node, self.network, ha_discovery, local_only=True)

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> CarrierMQTTClient:
        """Build from ``mqtt[s]://[user[:pass]@]host[:port][/prefix]``; :meth:`connect` then needs no address."""
        settings, brokers = url_settings(url, settings)
        carrier = cls(**settings)
        carrier.address, carrier.brokers = brokers[0], brokers
        return carrier

    # -- connection ------------------------------------------------------------------

    def connect(self, host: Any = None, port: int | None = None, auto_reconnect: bool = True) -> bool:
        """Connect to the broker (default: the URL's address, else 127.0.0.1:1883).

        ``host`` may also be a list ``[(host, port), ...]``: the members of a clustered
        broker; the node moves to the next one when its member dies (with back-off).

        Returns:
            True when online; False at once when the broker cannot be reached
            (with ``auto_reconnect`` the carrier keeps trying in the background
            and calls ``on_connected`` when it succeeds).
        """
        self.brokers = broker_list(host, port, self.brokers or ([self.address] if self.address else []))
        self.address = self.brokers[0]
        self.auto_reconnect = auto_reconnect
        return self.node.start(*self.address, auto_reconnect=auto_reconnect, brokers=self.brokers)

    def disconnect(self) -> None:
        """Leave cleanly: our senders get ``#disconnect`` everywhere; stop reconnecting."""
        self.auto_reconnect = False
        self.node.stop()
        self._down()

    def isConnected(self) -> bool:
        """Tell whether the carrier is online now."""
        return self.node.ready and self._linked

    def isSenderConnected(self, sender: Any) -> bool:
        """Tell whether ``sender`` is connected anywhere on the network.

        The first call for a name this node does not follow yet subscribes to its
        presence and waits one round trip through the broker.
        """
        self._watch(sender)
        objsender = self.network.senders.get(sender)
        return objsender is not None and objsender.isConnected()

    def _watch(self, sender: Any) -> None:
        try:
            self.node.watch(sender)
        except (TypeError, ValueError):
            pass  # not an identifier: the request fails with a clear error later

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until what this node published so far went through the broker and came back.

        Births, events and subscriptions sent before the call are then in effect
        (retained births stored, listeners subscribed). False when offline or on timeout.
        """
        return self.node.round_trip(timeout)

    def subscribe_raw(self, topic_filter: str, handler: Callable[[str, bytes, bool], None]) -> None:
        """Hand messages of a topic filter outside sig's tree to ``handler(topic, payload, retained)``
        (on the node's dispatcher thread)."""
        self.node.subscribe_raw(topic_filter, handler)

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed, if it did."""
        return self.node.link.last_error

    # -- the ClientRouter's messages ------------------------------------------------------

    def call(self, clientid: ClientId, message: dict[str, Any], timeout: float | None = None) -> Future[Any]:
        """Run a ClientRouter message on the private server (requests to other nodes cross the broker)."""
        future: Future[Any] = Future()
        params = message.get("params")
        if message.get("method") == "add_sender" and isinstance(params, dict):
            future.set_result(self._add_sender(message, params))
            return future
        if message.get("method") == "request" and isinstance(params, dict):
            sender = params.get("sender")
            if not self.node.hosts(sender) and self.network.senders.get(sender) is None:
                self._watch(sender)  # a sender we never heard of: ask the broker who hosts it
            if self.node.presence.owner(sender) is not None and not self.node.hosts(sender):
                try:
                    response = self.node.request(sender, params.get("method"), params.get("params"), timeout)
                except Exception as exc:
                    future.set_result(make_reply(message.get("id"), Status.METHOD_FAILED, exc=exc))
                else:
                    future.set_result(make_reply(message.get("id"), Status.OK, response))
                return future
        if message.get("method") == "add_listener":
            future.set_result(self._add_listener(message))
            return future
        future.set_result(self._end.handleRX(self._link_id, message))
        return future

    def _add_sender(self, message: dict[str, Any], params: dict[str, Any]) -> Any:
        """Claim the name for this node (see ._claims; a shared sender: see ._shared), then register it."""
        sender = params.get("sender")
        try:
            self.node.claim(sender, {"events": params.get("events"), "requests": params.get("requests")},
                            shared=params.get("shared") is True)
        except Exception as exc:
            return make_reply(message.get("id"), Status.METHOD_FAILED, exc=exc)
        params = {key: value for key, value in params.items() if key != "shared"}  # ours, not the router's
        reply = self._end.handleRX(self._link_id, dict(message, params=params))
        if not isinstance(reply, dict) or reply.get("status") != Status.OK:
            self.node.claims.unclaim(sender)
        return reply

    def _add_listener(self, message: dict[str, Any]) -> Any:
        """Register a listener; fail (and take it back) when the broker refused a subscription it needs."""
        subacks = self.node.link.subacks
        before = subacks.mark()
        reply = self._end.handleRX(self._link_id, message)  # the watcher waits for the SUBACKs
        refused = subacks.refusals(before, subacks.mark())
        response = reply.get("response") if isinstance(reply, dict) else None
        if not refused or not isinstance(reply, dict) or reply.get("status") != Status.OK or not isinstance(
                response, dict):
            return reply
        self._end.handleRX(self._link_id, {"method": "remove_listener", "params": response})
        error = SubscriptionRefusedError(refused)
        logger.error("[MQTT] listener on (%r, %r) not registered: %s", (message.get("params") or {}).get("sender"),
                     (message.get("params") or {}).get("event"), error)
        return make_reply(message.get("id"), Status.METHOD_FAILED, exc=error)

    def post(self, clientid: ClientId, message: dict[str, Any]) -> None:
        """Run a ClientRouter notification (a signal) on the private server."""
        _run_signal(self._end, self._link_id, message)

    # -- node state (dispatcher thread) ------------------------------------------------------

    def _up(self) -> None:
        self._linked = True
        self._end.handle_client_connected(self._link_id)
        self.handle_client_connected("mqtt")
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                logger.exception("on_connected failed")
        self.handle_client_ready("mqtt")

    def _down(self) -> None:
        if not self._linked:
            return
        self._linked = False
        self.handle_client_disconnected("mqtt")
        self._end.handle_client_disconnected(self._link_id)
        if self.on_disconnected is not None:
            try:
                self.on_disconnected()
            except Exception:
                logger.exception("on_disconnected failed")

    @property
    def mirror(self) -> ServerRouter:
        """Deprecated name of :attr:`network` (kept for one release)."""
        return self.network

    is_connected = isConnected
    is_sender_connected = isSenderConnected
