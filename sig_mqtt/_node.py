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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sig import (
    EVENT_CONNECT,
    EVENT_DISCONNECT,
    CarrierError,
    DropOldestBuffer,
    InvalidArgumentError,
    Router,
    SenderConnectedError,
    SigError,
    UnknownSenderError,
)

from ._batch import JobQueue
from ._filters import FilterSet, demand_filters
from ._link import MqttLink, Will, properties
from ._payload import Birth, NodeState, decode_data, decode_json_object, encode_data, encode_json, now_ms
from ._presence import Change, Presence
from ._rpc import Rpc
from ._topics import Parsed, Topics, filter_matches

__all__ = ["MqttNode", "RawHandler"]

logger = logging.getLogger("sig.mqtt.node")

#: ``handler(topic, payload, retained)`` for foreign topics (the bridge's rules).
RawHandler = Callable[[str, bytes, bool], None]

_BUILTIN = (EVENT_CONNECT, EVENT_DISCONNECT)


class MqttNode:
    """Joins ``router`` to a broker as node ``nid`` (see the module docstring).

    Args:
        router: the router whose senders and listeners the node serves.
        nid: the node id, also the MQTT client id.
        prefix: root of sig's topic tree.
        qos: QoS of events, births, requests and replies.
        heartbeat: seconds between node-state refreshes (staleness after 3).
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
            SUBACK (clustered brokers take up to ~1 s).
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
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
        **link_settings: Any,
    ) -> None:
        if qos not in (0, 1, 2):
            raise InvalidArgumentError("qos must be 0, 1 or 2, not %r" % (qos,))
        self.router = router
        self.nid = nid
        self.topics = Topics(prefix)
        self.qos = qos
        self.heartbeat = heartbeat
        self.buffer_size = buffer_size
        self.max_outstanding = max_outstanding
        self.request_timeout = request_timeout
        self.retain = retain if isinstance(retain, bool) else frozenset(retain)
        self.max_payload = max_payload
        self.subscribe_timeout = subscribe_timeout
        self.dropped_oversized = 0
        self.on_up = on_up
        self.on_down = on_down
        self.session = uuid.uuid4().hex
        self.ready = False
        self._leaving = False
        self.presence = Presence(nid, heartbeat)
        self.reply_topic = self.topics.reply(nid)
        self._lock = threading.RLock()
        self._local: dict[Any, dict[str, Any]] = {}  # our senders -> their #connect data
        self._foreign: dict[Any, str] = {}  # other nodes' senders in the router -> their node
        self._own_births: dict[Any, Birth | None] = {}
        self._filters = FilterSet(identifiers=link_settings.get("protocol", 5) == 5)
        self._demand: dict[tuple[Any, Any], int] = {}
        self._raw: list[tuple[str, RawHandler]] = []
        self._buffer: DropOldestBuffer[tuple[str, bytes, int, bool, Properties | None]] = DropOldestBuffer(
            buffer_size, "event", logger)
        self._jobs = JobQueue()  # issue 13: one dispatcher wake-up per batch read by paho's thread
        self._request_workers = request_workers
        self._requests = ThreadPoolExecutor(request_workers, thread_name_prefix="sig-mqtt-request")
        self._dispatcher: threading.Thread | None = None
        self._sync_token: str | None = None
        self._waiting: dict[str, threading.Event] = {}
        self._watched: set[Any] = set()
        self._next_heartbeat = 0.0
        self.rpc = Rpc(self.reply_topic, self._publish, lambda: self.link.protocol)
        self.link = MqttLink(
            nid,
            on_connect=self._link_up,
            on_disconnect=self._link_down,
            on_message=self._message,
            batch=self._jobs,  # issue 13
            will=Will(self.topics.node(nid), NodeState(False, self.session, proto=5).encode()),
            **link_settings,
        )
        own = [self.reply_topic, self.topics.rebirth, self.topics.birth_filter(None, nid)]
        if follow_all:  # every sender of every node, listened to or not (a bridge's view)
            own += [self.topics.birth_filter(), self.topics.node_filter]
        for topic_filter in own:
            self._filters.add(topic_filter)
        router.addListener(self._outbound)  # every event of every sender; not counted as demand
        for objsender in router.getSenders():
            if objsender.isConnected():
                self._sender_up(objsender.getName(), objsender.describe())
        self._seed_demand()
        router.watchListeners(self._listeners_changed)

    @property
    def dropped_events(self) -> int:
        """Events dropped (oldest first) because the buffer was full while the broker was away."""
        return self._buffer.dropped

    # -- life ----------------------------------------------------------------------

    def start(self, host: str, port: int, auto_reconnect: bool = True) -> bool:
        """Connect to the broker; True once online (see :meth:`MqttLink.start`)."""
        self._leaving = False
        if self._requests._shutdown:  # connecting again after stop()
            self._requests = ThreadPoolExecutor(self._request_workers, thread_name_prefix="sig-mqtt-request")
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name="sig-mqtt-dispatch", daemon=True)
            self._dispatcher.start()
        logger.info("[MQTT] node %s connecting to %s:%s (prefix %s)", self.nid, host, port, self.topics.prefix)
        if not self.link.start(host, port, auto_reconnect):
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
            for sender in list(self._local):
                self._publish(self.topics.birth(self.nid, sender), b"", 1, True)
            self._publish(self.topics.node(self.nid), self._state(False), 1, True)
            self.link.wait_writable(1, timeout)
        self.ready = False
        self.link.stop()
        self._jobs.put(None)
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher is not threading.current_thread():
            dispatcher.join(timeout)
        self._dispatcher = None
        self._requests.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Detach from the router (after :meth:`stop`)."""
        self.router.unwatchListeners(self._listeners_changed)
        try:
            self.router.removeListener(self._outbound)
        except SigError:
            pass

    # -- foreign topics (the bridge) ---------------------------------------------

    def subscribe_raw(self, topic_filter: str, handler: RawHandler) -> None:
        """Hand messages on ``topic_filter`` (outside sig's tree) to ``handler`` on the dispatcher."""
        with self._lock:
            self._raw.append((topic_filter, handler))
            self._apply_filters(self._filters.add(topic_filter))

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish any topic (buffered like events while the broker is unreachable)."""
        self._publish(topic, payload, qos, retain, buffer=True)

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
        v5 = self.link.protocol == 5 and self.presence.proto(nid) == 5
        timeout = self.request_timeout if timeout is None else timeout
        return self.rpc.call(self.topics.request(sender, method), params, timeout, v5,
                             "request %r to %r" % (method, sender))

    def watch(self, sender: Any, timeout: float = 2.0) -> None:
        """Follow the presence of ``sender`` from now on (its births and node states).

        The first time, waits one round trip through the broker so that retained
        births have arrived; then :attr:`presence` knows whether it is connected.
        """
        with self._lock:
            if sender in self._watched:
                return
            self._watched.add(sender)
            for topic_filter in (self.topics.birth_filter(sender), self.topics.node_filter):
                self._apply_filters(self._filters.add(topic_filter))
        self.round_trip(timeout)

    def round_trip(self, timeout: float = 2.0) -> bool:
        """Wait until a message we publish now comes back (what the broker had queued for us came first).

        Returns at once (False) on the dispatcher thread or while offline.
        """
        if not self.ready or threading.current_thread() is self._dispatcher:
            return False
        token = uuid.uuid4().hex
        event = self._waiting[token] = threading.Event()
        self._publish(self.reply_topic, encode_json({"sync": token}), 1, False)
        if event.wait(timeout):
            return True
        self._waiting.pop(token, None)
        logger.debug("no round trip through the broker in %.1f s", timeout)
        return False

    def claim(self, sender: Any, timeout: float = 2.0) -> None:
        """Check that no other node hosts ``sender`` before we register it.

        Follows that name's presence from now on (see :meth:`watch`; the filters
        stay, so a later claim by another node is seen and logged too).

        Raises:
            SenderConnectedError: another node hosts it (a ``NameError``).
        """
        self.watch(sender, timeout)
        owner = self.presence.owner(sender)
        if owner is not None:
            raise SenderConnectedError("sender %r is already connected on node %s" % (sender, owner))

    # -- the router's side -------------------------------------------------------------

    def _outbound(self, info: dict[str, Any], data: Any) -> None:
        """Router broadcast listener: publish what our senders do."""
        sender = info["sender"]
        event = info["event"]
        if event in _BUILTIN:
            if sender in self._foreign:
                return
            if event == EVENT_CONNECT:
                self._sender_up(sender, data)
            else:
                self._sender_down(sender)
            return
        if sender not in self._local:
            return  # another node's event, or a plain device's
        try:
            payload = encode_data(data)
        except (TypeError, ValueError) as exc:
            logger.error("event %r:%r not published: its data is not JSON (%s)", sender, event, exc)
            return
        retain = self.retain
        if retain is not False:
            retain = retain is True or event in retain or (sender, event) in retain
        self._publish(self.topics.event(sender, event), payload, self.qos, retain, buffer=True)

    def _sender_up(self, sender: Any, description: Any) -> None:
        description = description if isinstance(description, dict) else {"events": [], "requests": None}
        with self._lock:
            self._local[sender] = description
            self._apply_filters(self._filters.add(self.topics.request_filter(sender)))
        if self.ready:
            self._publish_birth(sender, description)

    def _sender_down(self, sender: Any) -> None:
        with self._lock:
            if self._local.pop(sender, None) is None:
                return
            self._apply_filters(self._filters.remove(self.topics.request_filter(sender)))
        if self.ready:
            self._publish(self.topics.birth(self.nid, sender), b"", 1, True)

    def _publish_birth(self, sender: Any, description: dict[str, Any]) -> None:
        events = list(description.get("events") or [])
        retain = self.retain  # what the birth lists as retained (docs/convention.md 6.3)
        retained = [e for e in events if retain is True or (retain and (e in retain or (sender, e) in retain))]
        birth = Birth(events, description.get("requests"), self.session, retained or None)
        try:
            payload = birth.encode()
        except (TypeError, ValueError) as exc:
            logger.error("birth of %r not published: %s", sender, exc)
            return
        self._publish(self.topics.birth(self.nid, sender), payload, 1, True)

    def _seed_demand(self) -> None:
        for name, objsender in list(self.router.senders.items()):
            for event, objevent in objsender.getEvents().items():
                count = sum(1 for listener in objevent.listeners if listener != self._outbound)
                for _ in range(count):
                    self._listeners_changed(name, event, True)

    def _listeners_changed(self, sender: Any, event: Any, added: bool) -> None:
        """Router watcher: subscribe what the router's listeners need.

        A new subscription is waited for (its SUBACK, at most ``subscribe_timeout``
        seconds): once ``addListener`` returns, the listener hears what is published.
        """
        key = (sender, event)
        mark = None
        with self._lock:
            count = self._demand.get(key, 0) + (1 if added else -1)
            if count > 0:
                self._demand[key] = count
            else:
                self._demand.pop(key, None)
            if (count == 1 and added) or (count == 0 and not added):
                for topic_filter in demand_filters(self.topics, sender, event):
                    change = self._filters.add(topic_filter) if added else self._filters.remove(topic_filter)
                    self._apply_filters(change)
                if added and self.link.connected:
                    mark = self.link.subacks.mark()
        if mark is not None and threading.current_thread() is not self._dispatcher:
            if not self.link.wait_subscribed(mark, self.subscribe_timeout):
                logger.warning("[MQTT] no SUBACK in %.1f s for the listener on (%r, %r): it may miss the first "
                               "events", self.subscribe_timeout, sender, event)

    def _apply_filters(self, change: tuple[list[tuple[str, int | None]], list[str]]) -> None:
        subscribe, unsubscribe = change
        if not self.link.connected:
            return  # all of them are subscribed again on connect
        if subscribe:
            self._subscribe(subscribe)
        if unsubscribe:
            self.link.unsubscribe(unsubscribe)

    def _subscribe(self, filters: list[tuple[str, int | None]]) -> None:
        # No Local on events only: our own events need not come back, but our
        # retained births and our replies (the sync marker) must.
        events = self.topics.event_root
        own = [(f, sid) for f, sid in filters if f.startswith(events)]
        self.link.subscribe(own, self.qos, no_local=True)
        self.link.subscribe([(f, sid) for f, sid in filters if not f.startswith(events)], self.qos)

    # -- publishing ------------------------------------------------------------------------

    def _state(self, online: bool) -> bytes:
        return NodeState(online, self.session, now_ms(), self.link.protocol, self.heartbeat).encode()

    def _publish_state(self, online: bool) -> None:
        props = None
        if self.link.protocol == 5 and online:
            props = properties(PacketTypes.PUBLISH, MessageExpiryInterval=max(1, math.ceil(3 * self.heartbeat)))
        self._publish(self.topics.node(self.nid), self._state(online), 1, True, properties=props)

    def _publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        buffer: bool = False,
        properties: Properties | None = None,
    ) -> None:
        if not self.ready and buffer:
            with self._lock:
                if not self.ready:
                    self._buffer.append((topic, payload, qos, retain, properties))
                    return
        if not self.link.connected:
            if not buffer:
                return  # state and births are published again on connect
            raise CarrierError("not connected to the broker")
        if self.link.outstanding() >= self.max_outstanding and threading.current_thread() is not (
            self.link.network_thread
        ):
            self.link.wait_writable(self.max_outstanding, 30.0)
        try:
            self.link.publish(topic, payload, qos, retain, properties)
        except ValueError as exc:
            logger.error("cannot publish on %r: %s", topic, exc)

    # -- connection state (dispatcher thread) --------------------------------------------

    def _link_up(self, protocol: int, session_present: bool) -> None:
        self._jobs.put(functools.partial(self._online, protocol, session_present))

    def _link_down(self, reason: str) -> None:
        self._jobs.put(functools.partial(self._offline, reason))

    def _online(self, protocol: int, session_present: bool) -> None:
        logger.info("[MQTT] node %s online (MQTT %s, session %s)", self.nid, "5" if protocol == 5 else "3.1.1",
                    "resumed" if session_present else "new")
        with self._lock:
            if self._filters.identifiers != (protocol == 5):
                self._filters.set_identifiers(protocol == 5)
            self._subscribe(list(self._filters.subscribed.items()))
            self._publish_state(True)
            for sender, description in list(self._local.items()):
                self._publish_birth(sender, description)
            self._sync_token = uuid.uuid4().hex
            self._publish(self.reply_topic, encode_json({"sync": self._sync_token}), 1, False)
            self.ready = True
            buffered = self._buffer.take()
        self.presence.refresh(time.time())
        self._next_heartbeat = time.monotonic() + self.heartbeat
        for topic, payload, qos, retain, props in buffered:
            self._publish(topic, payload, qos, retain, buffer=True, properties=props)
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
        if ids and not self._filters.accept(topic, ids):
            return  # another copy of the same message is dispatched
        parsed = self.topics.parse(topic)
        if len(payload) > self.max_payload:
            self.dropped_oversized += 1
            logger.warning("dropped a %d-byte message on %s: larger than max_payload (%d)", len(payload), topic,
                           self.max_payload)
            return
        if parsed is None:
            self._jobs.put(functools.partial(self._raw_message, topic, payload, bool(message.retain)))
        elif parsed.kind == "reply":
            self._reply(message)
        elif parsed.kind == "request":
            self._requests.submit(self._answer, parsed, message)
        else:
            self._jobs.put(functools.partial(self._tree_message, parsed, payload, bool(message.retain)))

    def _dispatch_loop(self) -> None:
        while True:
            timeout = max(0.05, min(1.0, self._next_heartbeat - time.monotonic())) if self.ready else 1.0
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                job = self._tick
            if job is None:
                return
            try:
                job()
            except Exception:
                logger.exception("MQTT dispatcher job failed")

    def _tick(self) -> None:
        if not self.ready:
            return
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat
            self._publish_state(True)
        self._apply(self.presence.expire(time.time()))

    def _tree_message(self, parsed: Parsed, payload: bytes, retained: bool) -> None:
        kind = parsed.kind
        if kind == "event":
            self._event(parsed.sender, parsed.name, payload, retained)
        elif kind == "birth":
            self._birth(str(parsed.nid), parsed.sender, payload, retained)
        elif kind == "node":
            self._node_state(str(parsed.nid), payload, retained)
        elif kind == "rebirth":
            logger.info("[MQTT] rebirth asked: publishing state and %d birth(s)", len(self._local))
            self._publish_state(True)
            for sender, description in list(self._local.items()):
                self._publish_birth(sender, description)

    def _event(self, sender: Any, event: Any, payload: bytes, retained: bool) -> None:
        if sender in self._local or event in _BUILTIN:
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
            self._own_births[sender] = birth
            return
        self._apply(self.presence.sender_birth(nid, sender, birth, retained))

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
        self._apply(self.presence.node_state(nid, state, retained, time.time()))

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            sender = change.sender
            if change.kind == "connect":
                if sender in self._local:
                    logger.warning("sender %r of node %s clashes with ours: ignored", sender, change.nid)
                    continue
                requests = None
                if change.birth.requests is not None:
                    forward = functools.partial(self._forward_request, sender)
                    requests = {m: (forward if m is None else functools.partial(forward, m))
                                for m in change.birth.requests}
                self._foreign[sender] = change.nid
                try:
                    self.router.addSender(sender, change.birth.events, requests=requests, announce=change.announce)
                except SenderConnectedError:
                    self._foreign.pop(sender, None)
                    logger.warning("sender %r of node %s is connected here already: ignored", sender, change.nid)
                except (SigError, TypeError, ValueError) as exc:
                    self._foreign.pop(sender, None)
                    logger.warning("sender %r of node %s not added: %s", sender, change.nid, exc)
            elif self._foreign.get(sender) == change.nid:
                try:
                    self.router.removeSender(sender)
                except SigError:
                    pass
                self._foreign.pop(sender, None)

    def _forward_request(self, sender: Any, method: Any, params: Any) -> Any:
        return self.request(sender, method, params)

    def _raw_message(self, topic: str, payload: bytes, retained: bool) -> None:
        for topic_filter, handler in list(self._raw):
            if filter_matches(topic_filter, topic):
                try:
                    handler(topic, payload, retained)
                except Exception:
                    logger.exception("handler of %s failed on %s", topic_filter, topic)

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
        """Our subscriptions' retained messages have arrived: delete our stale births."""
        waiting = self._waiting.pop(token, None) if isinstance(token, str) else None
        if waiting is not None:
            waiting.set()
            return
        if token != self._sync_token:
            return
        for sender, birth in list(self._own_births.items()):
            if birth is not None and (sender not in self._local or birth.session != self.session):
                logger.info("[MQTT] removing stale birth of %r", sender)
                self._publish(self.topics.birth(self.nid, sender), b"", 1, True)
        self._own_births.clear()

    def _answer(self, parsed: Parsed, message: paho.MQTTMessage) -> None:
        """Request pool: run a request to one of our senders and publish the reply."""
        if parsed.sender not in self._local:
            return  # a widened 3.1.1 subscription brought another node's request
        self.rpc.answer(functools.partial(self.router.request, parsed.sender, parsed.name), message,
                        "request %r to %r" % (parsed.name, parsed.sender))
