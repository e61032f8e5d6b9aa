"""An MQTT node: one router's presence on a broker.

The node joins a :class:`sig.Router` (in practice a ServerRouter) to the MQTT
topic tree:

* the router's own senders (its clients' too) get births under ``P/node/NID``,
  their events go to ``P/event/S/E``, their requests are answered;
* other nodes' senders appear in the router (``#connect`` / ``#disconnect``
  from births and node states), their events reach the router's listeners,
  requests to them cross the broker;
* subscriptions follow the router's listeners (the broker filters).

Threads: paho's network thread only sorts messages; events, births and node
states run in order on the node's dispatcher thread; requests run on a small
pool, so a listener may request (even its own senders) without deadlock.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sig import (
    EVENT_CONNECT,
    EVENT_DISCONNECT,
    CarrierError,
    InvalidArgumentError,
    Router,
    SigError,
    UnknownSenderError,
    WorkerPool,
)

from ._batch import JobQueue
from ._claims import Claimer
from ._dedup import Dedup
from ._foreign import ForeignSenders
from ._link import MqttLink, Will, properties
from ._nodecore import NodeCore
from ._outlet import Outlet
from ._payload import Birth, NodeState, decode_data, decode_json_object, encode_json, now_ms
from ._presence import Presence
from ._raw import RawHandler, RawTopics
from ._rebirth import rebirths_for
from ._resubscribe import resubscriber_for
from ._routerside import RouterSide
from ._rpc import Rpc
from ._shared import SharedProbe
from ._sync import RoundTrips
from ._topics import Parsed, Topics

__all__ = ["MqttNode", "RawHandler"]

logger = logging.getLogger("sig.mqtt.node")

_BUILTIN = (EVENT_CONNECT, EVENT_DISCONNECT)


class MqttNode:
    """Joins ``router`` to a broker as node ``nid`` (see the module docstring).

    Args:
        router: the router whose senders and listeners the node serves.
        nid: the node id, also the MQTT client id.
        prefix: root of sig's topic tree.
        qos: QoS of events, births, requests and replies.
        heartbeat: seconds between node-state refreshes (others: offline after 1.5, see ._presence).
        buffer_size: events kept while the broker is unreachable (oldest dropped).
        max_outstanding: publishes in flight before a publisher waits (backpressure).
        request_timeout: default seconds a request to another node waits.
        follow_all: know every sender of every node (births and node states of
            the whole tree), not only those the router's listeners need.
        retain: which events the broker keeps as last values for late listeners
            (who get them once, with ``info["retained"] = True``): False (none, the
            default), True (all), or a collection of event names and
            ``(sender, event)`` pairs.
        max_payload: larger messages on sig's topics are dropped with a warning
            (1 MiB by default, as the TCP frame limit).
        subscribe_timeout: seconds a listener registration waits for the broker's
            SUBACK (clustered brokers take up to ~1 s), and a sender's claim for its
            round trip and competing claims (see :mod:`._claims`).
        shared_probe_timeout: seconds the first shared sender's probe of the broker waits
            (see :mod:`._shared`).
        portable_ids: identifiers also escape ``.``, space, ``*`` and ``>`` in topics,
            for NATS and RabbitMQ (see :mod:`._topics`; every node must agree).
        on_up, on_down: called (on the dispatcher thread) when the node is
            online and has re-published its state, and when it lost the broker.
        link_settings: keyword arguments of :class:`~sig_mqtt._link.MqttLink`.
    """

    def __init__(
        self,
        router: Router,
        nid: str,
        *,
        prefix: str = "sig",
        qos: int = 1,
        heartbeat: float = 30.0,
        buffer_size: int = 10000,
        max_outstanding: int = 1000,
        request_timeout: float = 10.0,
        request_workers: int = 8,
        follow_all: bool = False,
        retain: Any = False,
        max_payload: int = 1 << 20,
        subscribe_timeout: float = 5.0,
        portable_ids: bool = False,
        shared_probe_timeout: float = 2.0,
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
        **link_settings: Any,
    ) -> None:
        if qos not in (0, 1, 2):
            raise InvalidArgumentError("qos must be 0, 1 or 2, not %r" % (qos,))
        self.router = router
        self.nid = nid
        self.topics = Topics(prefix, portable_ids)
        self.qos = qos
        self.heartbeat = heartbeat
        self.max_outstanding = max_outstanding
        self.request_timeout = request_timeout
        self.subscribe_timeout = subscribe_timeout
        self.on_up = on_up
        self.on_down = on_down
        self.session = uuid.uuid4().hex
        self.core = NodeCore(self.topics, nid, self.session, identifiers=link_settings.get("protocol", 5) == 5,
                             heartbeat=heartbeat, max_payload=max_payload, retain=retain, follow_all=follow_all)
        self._leaving = False
        self.dedup = Dedup()  # broker redeliveries of events (paho's network thread only)
        self.presence = Presence(nid, heartbeat)
        self.reply_topic = self.topics.reply(nid)
        self._lock = threading.RLock()
        self._foreign = ForeignSenders(router, self.core.local, self.request, self.presence)
        self._jobs = JobQueue()  # one dispatcher wake-up per batch read by paho's thread
        self._request_workers = request_workers
        self._requests = WorkerPool(request_workers, "sig-mqtt-request")
        self._dispatcher: threading.Thread | None = None
        self._round_trips = RoundTrips(lambda token: self.outlet.publish(self.reply_topic, encode_json({"sync": token}),
                                                                          1, False))
        self.rpc = Rpc(self.reply_topic, self._send, lambda: self.link.protocol)
        self.rebirths = rebirths_for(self, link_settings.pop("rebirth_jitter", 1.0))
        self.link = MqttLink(
            nid,
            on_connect=self._link_up,
            on_disconnect=self._link_down,
            on_message=self._message,
            batch=self._jobs,
            will=Will(self.topics.node(nid), NodeState(False, self.session, proto=5).encode()),
            **link_settings,
        )
        self.outlet = Outlet(self.link, self._lock, buffer_size, max_outstanding, qos, self.topics.event_root)
        self.router_side = RouterSide(router, self.core, self.outlet, self.link, self._lock, self._foreign, qos,
                                      subscribe_timeout, lambda: self._dispatcher)
        self.router_side.attach()
        self.link.subacks.on_refused = resubscriber_for(self).refused
        self.claims = Claimer(self, subscribe_timeout)
        self.shared = SharedProbe(self, shared_probe_timeout)
        self.raw = RawTopics(first=self.shared.arrived)

    @property
    def ready(self) -> bool:
        """Online, with our state and births published again: events go out at once."""
        return self.outlet.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self.outlet.ready = value

    @property
    def dropped_events(self) -> int:
        """Events dropped (oldest first) because the buffer was full while the broker was away."""
        return self.outlet.buffer.dropped

    @property
    def dropped_oversized(self) -> int:
        """Messages on sig's topics dropped for being larger than ``max_payload``."""
        return self.core.dropped_oversized

    def hosts(self, sender: Any) -> bool:
        """Tell whether ``sender`` is one of this node's own (its router's) senders."""
        return sender in self.core.local

    def node_of(self, sender: Any) -> str | None:
        """The node that hosts ``sender`` as far as our router knows: ours, another's, or None."""
        return self.nid if sender in self.core.local else self._foreign.nodes.get(sender)

    # -- life ----------------------------------------------------------------------

    def start(self, host: str, port: int, auto_reconnect: bool = True,
              brokers: list[tuple[str, int]] | None = None) -> bool:
        """Connect to the broker (or the first of ``brokers``); True once online (see :meth:`MqttLink.start`)."""
        self._leaving = False
        if self._requests.closed:  # connecting again after stop()
            self._requests = WorkerPool(self._request_workers, "sig-mqtt-request")
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name="sig-mqtt-dispatch", daemon=True)
            self._dispatcher.start()
        logger.info("[MQTT] node %s connecting to %s:%s (prefix %s)", self.nid, host, port, self.topics.prefix)
        if not self.link.start(host, port, auto_reconnect, brokers):
            return False
        # on_up runs on the dispatcher: wait for it, so that connect() returns a usable node.
        done = threading.Event()
        self._jobs.put(done.set)
        done.wait(self.link.connect_timeout)
        return self.link.connected

    def stop(self, timeout: float = 2.0) -> None:
        """Leave cleanly: remove our births, say offline, disconnect (no Will)."""
        self._leaving = True
        if self.link.connected and self.ready:
            for sender in list(self.core.local):
                self.outlet.publish(self.topics.birth(self.nid, sender), b"", 1, True)
            self.outlet.publish(self.topics.node(self.nid), self._state(False), 1, True)
            self.link.wait_writable(1, timeout)
        self.ready = False
        self.link.stop()
        self._jobs.put(None)
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher is not threading.current_thread():
            dispatcher.join(timeout)
        self._dispatcher = None
        self._requests.shutdown()

    def close(self) -> None:
        """Detach from the router (after :meth:`stop`)."""
        self.router_side.detach()

    # -- foreign topics (the bridge) ---------------------------------------------

    def subscribe_raw(self, topic_filter: str, handler: RawHandler) -> None:
        """Hand messages on ``topic_filter`` (outside sig's tree) to ``handler`` on the dispatcher."""
        with self._lock:
            self.raw.add(topic_filter, handler)
            self.outlet.apply(self.core.add_filter(topic_filter))

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish any topic (buffered like events while the broker is unreachable)."""
        self.outlet.publish(topic, payload, qos, retain, buffer=True)

    # -- requests to other nodes ----------------------------------------------------

    def request(self, sender: Any, method: Any, params: Any = None, timeout: float | None = None) -> Any:
        """Send a request to another node's sender and return its response.

        Raises:
            UnknownSenderError: no node hosts ``sender`` now (a ``NameError``).
            RequestTimeout: no reply in time.
            RemoteError: the far side failed.
            CarrierError: the broker is unreachable.
        """
        nid = self.presence.owner(sender)
        if nid is None:
            raise UnknownSenderError("sender %r is not connected" % (sender,))
        if not self.ready:
            raise CarrierError("not connected to the broker: request to %r not sent" % (sender,))
        birth = self.presence.birth(sender)  # a shared sender: any of its hosts may answer
        hosts = list(self.presence.births.get(sender, {})) if birth is not None and birth.shared else [nid]
        v5 = self.link.protocol == 5 and all(self.presence.proto(host) == 5 for host in hosts)
        timeout = self.request_timeout if timeout is None else timeout
        return self.rpc.call(self.topics.request(sender, method), params, timeout, v5,
                             "request %r to %r" % (method, sender))

    def watch(self, sender: Any, timeout: float = 2.0) -> None:
        """Follow the presence of ``sender`` from now on (its births and node states).

        The first time, waits one round trip through the broker so that retained
        births have arrived; then :attr:`presence` knows whether it is connected.
        """
        with self._lock:
            change = self.core.watch(sender)
            if change is None:
                return
            self.outlet.apply(change)
            self.rebirths.request()  # births may not come retained (see ._rebirth)
        self.round_trip(timeout)

    def round_trip(self, timeout: float = 2.0) -> bool:
        """Wait until a message we publish now comes back (what the broker had queued for us came first).

        Returns at once (False) on the dispatcher thread or while offline.
        """
        if not self.ready or threading.current_thread() is self._dispatcher:
            return False
        if self._round_trips.wait(timeout):
            return True
        logger.debug("no round trip through the broker in %.1f s", timeout)
        return False

    def claim(self, sender: Any, description: Any = None, shared: bool = False) -> None:
        """Make ``sender`` ours before it is registered (:mod:`._claims`; ``shared``: several nodes may
        host it, :mod:`._shared`); follows that name's presence from now on (see :meth:`watch`).

        Raises:
            SenderConnectedError: another node hosts it or won it (a ``NameError``).
            SharedSubscriptionsUnsupported: ``shared`` on a broker without shared subscriptions.
        """
        self.claims.claim(sender, description, shared)

    # -- publishing ------------------------------------------------------------------------

    def _state(self, online: bool) -> bytes:
        return self.core.state(online, now_ms(), self.link.protocol)

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, buffer: bool = False,
              properties: Properties | None = None, now: bool = False) -> None:
        self.outlet.publish(topic, payload, qos, retain, buffer, properties, now)

    def _publish_state(self, online: bool) -> None:
        props = None
        if self.link.protocol == 5 and online:
            props = properties(PacketTypes.PUBLISH, MessageExpiryInterval=max(1, math.ceil(3 * self.heartbeat)))
        self.outlet.publish(self.topics.node(self.nid), self._state(online), 1, True, properties=props)

    # -- connection state (dispatcher thread) --------------------------------------------

    def _link_up(self, protocol: int, session_present: bool) -> None:
        self._jobs.put(functools.partial(self._online, protocol, session_present))

    def _link_down(self, reason: str) -> None:
        self._jobs.put(functools.partial(self._offline, reason))

    def _online(self, protocol: int, session_present: bool) -> None:
        logger.info("[MQTT] node %s online (MQTT %s, session %s)", self.nid, "5" if protocol == 5 else "3.1.1",
                    "resumed" if session_present else "new")
        with self._lock:
            self.outlet.subscribe(self.core.resubscribe(protocol == 5))
            self._publish_state(True)
            if self.core.follows_presence():
                self.rebirths.request(connected=True)
            for sender in list(self.core.local):
                self.router_side.publish_birth(sender)
            self._round_trips.mark_connect()
            self.ready = True
            buffered = self.outlet.take_buffered()
        self.presence.refresh(time.monotonic())
        self.core.next_heartbeat = time.monotonic() + self.heartbeat
        for topic, payload, qos, retain, props in buffered:
            self.outlet.publish(topic, payload, qos, retain, buffer=True, properties=props)
        if buffered:
            logger.info("[MQTT] sent %d buffered message(s)", len(buffered))
        if self.on_up is not None:
            try:
                self.on_up()
            except Exception:
                logger.exception("on_up failed")

    def _offline(self, reason: str) -> None:
        if not self.ready:
            return
        logger.warning("[MQTT] node %s lost the broker: %s", self.nid, reason)
        self.ready = False
        self.rpc.fail_all(CarrierError("lost the broker before the reply came"))
        if self.on_down is not None:
            try:
                self.on_down()
            except Exception:
                logger.exception("on_down failed")

    # -- receiving ----------------------------------------------------------------------

    def _message(self, message: paho.MQTTMessage) -> None:
        """paho's network thread: sort the message, never block."""
        topic = message.topic
        payload = message.payload
        if type(payload) is not bytes:
            payload = bytes(payload)
        props = message.properties
        ids = getattr(props, "SubscriptionIdentifier", None) if props is not None else None
        what = self.core.classify(topic, len(payload), ids)
        kind, parsed = what.kind, what.parsed
        if kind == "tree" and parsed is not None:
            if props is not None and parsed.kind == "event" and not (message.retain or self.dedup.fresh_props(props)):
                return  # a redelivery of an event dispatched already (see ._dedup)
            self._jobs.put(functools.partial(self._tree_message, parsed, payload, bool(message.retain)))
        elif kind == "request" and parsed is not None:
            self._requests.submit(self._answer, parsed, message)
        elif kind == "reply":
            self._reply(message)
        elif kind == "raw":
            self._jobs.put(functools.partial(self.raw.dispatch, topic, payload, bool(message.retain)))
        elif kind == "oversized":
            logger.warning("dropped a %d-byte message on %s: larger than max_payload (%d)", len(payload), topic,
                           self.core.max_payload)
        # "copy": another copy of the same message is dispatched

    def _dispatch_loop(self) -> None:
        while True:
            timeout = self.core.wait(time.monotonic(), self.ready, self.presence.deadline)
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                job = self._tick
            if job is None:
                return
            try:
                job()
                if job is not self._tick and self.ready and time.monotonic() >= min(self.core.next_heartbeat,
                                                                                    self.presence.deadline):
                    self._tick()  # steady traffic never lets the queue time out: the beat is due anyway
            except Exception:
                logger.exception("MQTT dispatcher job failed")

    def _tick(self) -> None:
        if not self.ready:
            return
        if self.core.heartbeat_due(time.monotonic()):
            self._publish_state(True)
        if self._jobs.empty():  # a state still queued was heard in time (judged once it has run)
            self._foreign.apply(self.presence.expire(time.monotonic()))

    def _tree_message(self, parsed: Parsed, payload: bytes, retained: bool) -> None:
        kind = parsed.kind
        if kind == "event":
            self._event(parsed.sender, parsed.name, payload, retained)
        elif kind == "birth":
            self._birth(str(parsed.nid), parsed.sender, payload, retained)
        elif kind == "node":
            self._node_state(str(parsed.nid), payload, retained)
        elif kind == "rebirth":
            self.rebirths.asked()  # answered after a random delay (see ._rebirth)

    def _event(self, sender: Any, event: Any, payload: bytes, retained: bool) -> None:
        if self.core.is_echo(sender, event):
            return  # our own event back (3.1.1 has no No Local), or not an event
        data, extra = decode_data(payload)
        if retained:
            extra = dict(extra or (), retained=True)
        try:
            self.router.dispatch(sender, event, data, extra)
        except SigError as exc:
            logger.warning("event on %r:%r not dispatched: %s", sender, event, exc)

    def _birth(self, nid: str, sender: Any, payload: bytes, retained: bool) -> None:
        birth = Birth.decode(payload) if payload else None
        if payload and birth is None:
            logger.warning("unreadable birth of %r on node %s: %.100r", sender, nid, payload)
            return
        if nid == self.nid:
            self.core.own_births[sender] = birth
            return
        if self.claims.note(nid, sender, birth):  # a pending claim is not a connected sender
            self._foreign.apply(self.presence.sender_birth(nid, sender, birth, retained))
        self.claims.changed(sender)

    def _node_state(self, nid: str, payload: bytes, retained: bool) -> None:
        state = NodeState.decode(payload) if payload else None
        if payload and state is None:
            logger.warning("unreadable state of node %s: %.100r", nid, payload)
        if nid == self.nid:
            # Our Will (a takeover fires it), or the Will of another client with our id: we are
            # the live one, so the node is online again (one that backs off is not ready).
            if state is not None and not state.online and self.ready and not self._leaving:
                logger.warning("[MQTT] the broker says node %s is offline (%s): online again", nid,
                               "our own Will" if state.session == self.session else
                               "the Will of another client with the same id")
                self._publish_state(True)
            return
        self._foreign.apply(self.presence.node_state(nid, state, retained, time.monotonic(), time.time()))
        self.claims.changed()

    # -- requests and replies --------------------------------------------------------------

    def _reply(self, message: paho.MQTTMessage) -> None:
        body = decode_json_object(bytes(message.payload))
        if body is None:
            logger.warning("unreadable reply on %s: %.100r", message.topic, message.payload)
        elif "sync" in body:
            self._jobs.put(functools.partial(self._synced, body.get("sync")))
        else:
            self.rpc.resolve(body, message.properties)

    def _synced(self, token: Any) -> None:
        """A marker came back; the connect's: our subscriptions' retained messages are in, drop stale births."""
        if not self._round_trips.arrived(token):
            return
        for sender in self.core.stale_own_births():
            logger.info("[MQTT] removing stale birth of %r", sender)
            self.outlet.publish(self.topics.birth(self.nid, sender), b"", 1, True)

    def _answer(self, parsed: Parsed, message: paho.MQTTMessage) -> None:
        """Request pool: run a request to one of our senders and publish the reply."""
        if parsed.sender not in self.core.local:
            return  # a widened 3.1.1 subscription brought another node's request
        self.rpc.answer(functools.partial(self.router.request, parsed.sender, parsed.name), message,
                        "request %r to %r" % (parsed.name, parsed.sender))
