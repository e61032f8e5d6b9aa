"""One MQTT connection (paho-mqtt 2.x), with what paho leaves to its users.

* MQTT 5 first, 3.1.1 when the broker refuses it: paho fixes the protocol per
  client object and never downgrades, and amqtt sends no CONNACK at all to an
  MQTT 5 CONNECT that carries a Will, so a missing CONNACK also means 3.1.1.
* Reconnects in the background with backoff (paho's loop); every callback is
  handed to the owner, which must return at once (paho's network thread runs them).
* Counts publishes not yet written or acknowledged, so a publisher can wait
  (backpressure) instead of growing paho's unbounded queue.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sig import CarrierError, InvalidArgumentError

from ._batch import Batch, BatchingClient, client_class
from ._failover import Failover
from ._packets import Will, make_tls_context, properties
from ._subacks import Subacks
from ._takeover import DropGuard

__all__ = ["MqttLink", "Will", "make_tls_context", "properties"]

logger = logging.getLogger("sig.mqtt.link")

_UNSUPPORTED_PROTOCOL = (1, 132)  # 3.1.1 "unacceptable protocol version", MQTT 5 0x84


class MqttLink:
    """A paho client that connects, falls back to 3.1.1, and reconnects by itself.

    Args:
        client_id: the MQTT client id.
        protocol: 5 or 4 (3.1.1); 5 falls back to 4 when the broker refuses it.
        on_connect: ``on_connect(protocol, session_present)`` after every CONNACK.
        on_disconnect: ``on_disconnect(reason)`` when an established connection ends.
        on_message: ``on_message(message)`` for every PUBLISH received.
        will: the Last Will (retained, QoS 1).
        session_expiry: seconds the broker keeps our session (None: a clean session each time).
        drop_window, drop_limit, drop_backoff, drop_backoff_max: a session takeover
            (another client with our id) or a connection that ends within
            ``drop_window`` s of its CONNACK, ``drop_limit`` times in a row, is logged
            as such and makes the link wait ``drop_backoff`` s (doubling up to
            ``drop_backoff_max``) before it tries again, instead of fighting.
        batch: told when paho's network thread begins and ends reading what its socket
            holds (see :mod:`._batch`), so that what it hands over goes as one batch.
    """

    def __init__(
        self,
        client_id: str,
        *,
        protocol: int = 5,
        on_connect: Callable[[int, bool], None],
        on_disconnect: Callable[[str], None],
        on_message: Callable[[paho.MQTTMessage], None],
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: Any = None,
        keepalive: int = 30,
        session_expiry: int | None = None,
        connect_timeout: float = 5.0,
        connack_timeout: float = 2.0,
        reconnect_min: float = 0.25,
        reconnect_max: float = 5.0,
        max_inflight: int = 100,
        drop_window: float = 3.0,
        drop_limit: int = 3,
        drop_backoff: float = 10.0,
        drop_backoff_max: float = 300.0,
        batch: Batch | None = None,
    ) -> None:
        if protocol not in (4, 5):
            raise InvalidArgumentError("protocol must be 5 (MQTT 5) or 4 (MQTT 3.1.1), not %r" % (protocol,))
        self.client_id = client_id
        self.protocol = protocol
        self.will = will
        self.username = username
        self.password = password
        self.tls = make_tls_context(tls)
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.connect_timeout = connect_timeout
        self.connack_timeout = connack_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.max_inflight = max_inflight
        self.batch = batch
        self.drops = DropGuard(drop_window, drop_limit, drop_backoff, drop_backoff_max)
        self.subacks = Subacks()
        self.failover = Failover([("127.0.0.1", 1883)], reconnect_min, reconnect_max)
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_message = on_message
        self.connected = False
        self.last_error: str | None = None
        self.address: tuple[str, int] | None = None
        self._client: paho.Client | None = None
        self._auto_reconnect = True
        self._stopping = False
        self._socket_opened_at: float | None = None
        self._first = threading.Event()  # the first attempt ended (either way)
        self._fallback = threading.Event()
        self._lock = threading.Lock()
        self._sub_lock = threading.Lock()
        self._outstanding = 0
        self._low_water = -1  # >= 0 while publishers wait for the count to fall that low
        self._waiters = 0
        self._drained = threading.Condition(self._lock)
        self._supervisor: threading.Thread | None = None
        self.network_thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------

    def start(self, host: str, port: int, auto_reconnect: bool = True,
              brokers: list[tuple[str, int]] | None = None) -> bool:
        """Connect; True once the broker accepted us (waits at most ``connect_timeout`` s).

        False at once when the broker cannot be reached or refuses us; with
        ``auto_reconnect`` the link keeps trying in the background. ``brokers``:
        members of a cluster to fail over to (``(host, port)`` first; see :mod:`._failover`).
        """
        self.failover = Failover(brokers or [(host, port)], self.reconnect_min, self.reconnect_max)
        self.address = self.failover.current
        self._auto_reconnect = auto_reconnect
        self._stopping = False
        self._first.clear()
        self._build()
        self._supervisor = threading.Thread(target=self._supervise, name="sig-mqtt-link", daemon=True)
        self._supervisor.start()
        # Long enough for one fallback from MQTT 5 to 3.1.1 and a second attempt.
        deadline = time.monotonic() + 2 * self.connect_timeout + self.connack_timeout
        while time.monotonic() < deadline and not self._stopping:
            if self._first.wait(0.05):
                break
        if not self.connected and not auto_reconnect:
            self.stop()
        return self.connected

    def stop(self, disconnect: bool = True) -> None:
        """Disconnect cleanly (no Will) and stop reconnecting."""
        self._stopping = True
        client = self._client
        if client is None:
            return
        if disconnect:
            try:
                client.disconnect()
            except Exception as exc:  # paho may raise on a dead socket
                logger.debug("disconnect: %s", exc)
        self._stop_loop(client)
        self.connected = False
        self._client = None
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(2.0)

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crash would (the broker sends our Will)."""
        client = self._client
        self._stopping = True
        if client is not None:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
            self._stop_loop(client)
        self.connected = False
        self._client = None

    # -- traffic --------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, properties: Properties | None = None,
        now: bool = False,
    ) -> None:
        """Queue a PUBLISH (paho is thread-safe and does not block here); ``now``: write it from this
        thread if it can be (a request or a reply, that someone waits for)."""
        client = self._client
        if client is None:
            raise CarrierError("MQTT link is stopped")
        with self._lock:
            self._outstanding += 1
        try:
            publish = client.publish_now if now and isinstance(client, BatchingClient) else client.publish
            info = publish(topic, payload, min(qos, self.subacks.max_qos), retain, properties)
        except Exception:
            self._done()
            raise
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self._done()
            raise CarrierError("publish to %s failed: %s" % (topic, paho.error_string(info.rc)))

    def wait_writable(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than ``limit`` publishes are outstanding; False on timeout.

        Once it has to wait, it waits until half of them are done (hysteresis:
        the publisher wakes once per many acknowledgements, not once per each).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._outstanding < limit:
                return True
            low_water = limit // 2
            self._waiters += 1
            self._low_water = max(self._low_water, low_water)
            try:
                while self._outstanding > low_water and self.connected:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._drained.wait(remaining)
            finally:
                self._waiters -= 1
                if not self._waiters:
                    self._low_water = -1
        return True

    def outstanding(self) -> int:
        """Publishes not yet written (QoS 0) or acknowledged (QoS 1, 2)."""
        return self._outstanding

    def subscribe(self, filters: list[tuple[str, int | None]], qos: int, no_local: bool = False) -> None:
        """Subscribe ``[(filter, subscription identifier or None)]`` (see :meth:`wait_subscribed`)."""
        client = self._client
        if client is None or not filters:
            return
        qos = min(qos, self.subacks.max_qos)
        if self.protocol == 5:
            for topic_filter, sid in filters:
                props = None if sid is None else properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sid)
                options = SubscribeOptions(qos=qos, noLocal=no_local)
                with self._sub_lock:  # the SUBACK's callback waits until its mid is known
                    rc, mid = client.subscribe(topic_filter, options=options, properties=props)
                    if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
                        self.subacks.sent(mid, [topic_filter], qos)
        else:
            with self._sub_lock:
                rc, mid = client.subscribe([(topic_filter, qos) for topic_filter, _ in filters])
                if rc == paho.MQTT_ERR_SUCCESS and mid is not None:
                    self.subacks.sent(mid, [topic_filter for topic_filter, _ in filters], qos)

    def wait_subscribed(self, mark: tuple[int, int], timeout: float) -> bool:
        """Wait until the broker acknowledged every SUBSCRIBE sent before ``mark`` (``subacks.mark()``)."""
        if threading.current_thread() is self.network_thread:
            return False  # the SUBACK is read on this very thread
        return self.subacks.wait(mark, timeout)

    def unsubscribe(self, filters: list[str]) -> None:
        """Unsubscribe filters."""
        client = self._client
        if client is not None and filters:
            client.unsubscribe(filters)

    # -- paho client ----------------------------------------------------------------

    def _build(self) -> None:
        protocol = paho.MQTTv5 if self.protocol == 5 else paho.MQTTv311
        persistent = self.session_expiry is not None
        client = client_class()(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=None if protocol == paho.MQTTv5 else not persistent,
            reconnect_on_failure=self._auto_reconnect,
        )
        if isinstance(client, BatchingClient):
            client.batch = self.batch
        client.suppress_exceptions = True  # a bug of ours must not kill the network loop
        client.reconnect_delay_set(self.reconnect_min, self.reconnect_max)  # type: ignore[arg-type]
        client.max_inflight_messages_set(self.max_inflight)
        client.connect_timeout = self.connect_timeout
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        if self.will is not None:
            client.will_set(self.will.topic, self.will.payload, qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        client.on_publish = self._paho_publish
        client.on_subscribe = self._paho_subscribe
        client.on_connect_fail = self._paho_connect_fail
        client.on_socket_open = self._paho_socket_open
        assert self.address is not None
        host, port = self.address
        connect_props = None
        clean_start: Any = paho.MQTT_CLEAN_START_FIRST_ONLY
        if protocol == paho.MQTTv5 and persistent:
            connect_props = properties(PacketTypes.CONNECT, SessionExpiryInterval=int(self.session_expiry or 0))
            clean_start = False
        self._client = client
        self._socket_opened_at = None
        with self._lock:
            self._outstanding = 0
        client.connect_async(host, port, keepalive=self.keepalive, clean_start=clean_start,
                              properties=connect_props)
        client.loop_start()
        self.network_thread = getattr(client, "_thread", None)

    def _stop_loop(self, client: paho.Client) -> None:
        if threading.current_thread() is getattr(client, "_thread", None):
            client._thread_terminate = True  # cannot join ourselves; paho's loop ends by itself
            return
        client.loop_stop()

    def _supervise(self) -> None:
        """Fall back to 3.1.1 when an MQTT 5 CONNECT gets no CONNACK or a refusal."""
        while not self._stopping:
            if self._fallback.wait(0.1):
                self._fallback.clear()
                if self._stopping:
                    return
                old, self._client = self._client, None  # its callbacks are ignored from now on
                if old is not None:
                    self._stop_loop(old)
                    try:
                        old.disconnect()
                    except Exception:
                        pass
                logger.info("broker %s:%s does not take MQTT 5: using MQTT 3.1.1", *(self.address or ("?", 0)))
                self.protocol = 4
                self._build()
                continue
            opened = self._socket_opened_at
            if (
                self.protocol == 5
                and not self.connected
                and opened is not None
                and time.monotonic() - opened > self.connack_timeout
            ):
                self._socket_opened_at = None
                self._fallback.set()

    # -- paho callbacks (paho's network thread: never block) ---------------------------

    def _paho_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if client is self._client:
            self._socket_opened_at = time.monotonic()
        raw = getattr(sock, "setsockopt", None)
        if raw is not None:
            try:  # paho leaves Nagle on: a request's reply would wait up to ~40 ms per hop
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def _paho_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if client is not self._client:
            return
        self._socket_opened_at = None
        if reason.is_failure:
            self.last_error = "broker refused the connection: %s" % reason
            if self.protocol == 5 and reason.value in _UNSUPPORTED_PROTOCOL:
                self._fallback.set()
                return
            logger.error("[MQTT] %s:%s %s", *(self.address or ("?", 0)), self.last_error)
            if not self._auto_reconnect:
                self._stopping = True
                client.disconnect()
            else:
                self._next_broker(client, keep_delay=False)  # a member that refuses us: try the next
            self._first.set()
            return
        self.subacks.reset()
        self.connected = True
        self.last_error = None
        self.drops.connected(time.monotonic())
        self.failover.connected()
        try:
            self._on_connect(self.protocol, bool(flags.session_present))
        finally:
            self._first.set()

    def _paho_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if client is not self._client:
            return
        self.last_error = "cannot reach the broker at %s:%s" % (self.address or ("?", 0))
        if self._auto_reconnect and not self._stopping:
            logger.warning("[MQTT] %s: retrying", self.last_error)
        else:
            logger.debug("[MQTT] %s", self.last_error)
        if not self._auto_reconnect:
            self._stopping = True
            self._first.set()
        elif self._next_broker(client, keep_delay=False):
            self._first.set()  # every broker failed once: connect() stops waiting

    def _paho_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if client is not self._client:
            return
        was_connected, self.connected = self.connected, False
        if self.protocol == 5 and not was_connected and self._socket_opened_at is not None and not self._stopping:
            self._fallback.set()  # closed before CONNACK
            return
        with self._lock:
            self._drained.notify_all()
        self.subacks.reset()
        if was_connected:
            backing_off = self._judge_drop(client, reason)
            if self._auto_reconnect and not self._stopping:
                self._next_broker(client, keep_delay=backing_off)
            self._on_disconnect(str(reason))
        self._first.set()

    def _judge_drop(self, client: paho.Client, reason: Any) -> bool:
        """Log a session takeover as one, and back off after several in a row (see :mod:`._takeover`).

        True when it set a back-off delay.
        """
        code = getattr(reason, "value", None)
        verdict = self.drops.dropped(time.monotonic(), code if isinstance(code, int) else None, random.random())
        message = verdict.message(self.client_id, len(self.failover.addresses) > 1)
        if message is not None:
            self.last_error = message
            logger.warning("[MQTT] %s", message)
        if verdict.delay is not None:
            client.reconnect_delay_set(verdict.delay, verdict.delay)  # type: ignore[arg-type]
            return True
        if verdict.streak == 0:
            client.reconnect_delay_set(self.reconnect_min, self.reconnect_max)  # type: ignore[arg-type]
        return False

    # -- failover hook (see :mod:`._failover`) ---------------------------------------------------

    def _next_broker(self, client: paho.Client, keep_delay: bool) -> bool:
        """Point paho's next reconnect at the next broker; True when every broker failed once in a row."""
        step = self.failover.failed(random.random())
        if step.address != self.address:
            logger.warning("[MQTT] broker %s:%s lost or unreachable: trying %s:%s in %.2f s",
                           *(self.address or ("?", 0)), *step.address, step.delay)
        self.address = step.address
        client._host, client._port = step.address  # paho's setters refuse while the old socket is not closed
        if not keep_delay:
            client.reconnect_delay_set(step.delay, step.delay)  # type: ignore[arg-type]
        return step.round_done

    def _paho_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._on_message(message)
        except Exception:
            logger.exception("handling a message on %s failed", message.topic)

    def _paho_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if client is not self._client:
            return
        with self._sub_lock:
            refused = self.subacks.acked(mid, list(reasons or ()))
        for topic_filter, reason in refused:
            logger.error("[MQTT] the broker refused the subscription to %s: %s (its listeners hear nothing)",
                         topic_filter, reason)
        for topic_filter, asked, granted in self.subacks.take_downgrades():
            logger.warning("[MQTT] the broker granted QoS %d instead of %d to %s", granted, asked, topic_filter)

    def _paho_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._done()

    def _done(self) -> None:
        with self._lock:
            if self._outstanding > 0:
                self._outstanding -= 1
            if self._outstanding <= self._low_water:
                self._drained.notify_all()
