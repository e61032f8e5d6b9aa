"""The I/O half of ``sig conformance``: one paho client that watches a node and provokes it.

It subscribes to the node's state, births and events, publishes a rebirth, sends test
requests (full profile), waits for a heartbeat, and last connects once with the node's
client id so that the broker drops the node and publishes its Last Will. Every wait has a
deadline; what it saw goes into an :class:`Evidence` that :func:`evaluate` judges.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sig_mqtt import BrokerURL, decode_level, encode_level

from ._checks import DEFAULT_HEARTBEAT, node_state
from ._evidence import Evidence, Message, Sent, parse_json

__all__ = ["probe", "NOTICE"]

logger = logging.getLogger("sig.conformance")

#: what the probe does to the device, said before it starts
NOTICE = ("publishes an empty %s/cmd/rebirth (every node answers it), test requests to the sender under test "
          "(full profile: its first declared method with params null, and an undeclared method), and connects "
          "once with the node's client id so that the broker drops the node and publishes its Will; it waits up to 1.5 "
          "heartbeats of the node for its state")

_UNKNOWN_METHOD = "sig-conformance-no-such-method"


class _Client:
    """A paho client that reports connection state and never reconnects by itself."""

    def __init__(self, url: BrokerURL, client_id: str, protocol: int,
                 on_message: Callable[[paho.MQTTMessage], None] | None = None,
                 will: tuple[str, bytes] | None = None) -> None:
        self.protocol = protocol
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5 if protocol == 5 else paho.MQTTv311,
                                  reconnect_on_failure=False)
        if url.username is not None:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set_context(ssl.create_default_context())
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=False)
        if on_message is not None:
            self.client.on_message = lambda client, userdata, message: on_message(message)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.refused.set()
        self.url = url

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        (self.refused if reason.is_failure else self.connected).set()

    def start(self, timeout: float) -> bool:
        try:
            self.client.connect_async(self.url.host, self.url.port, keepalive=30)
            self.client.loop_start()
        except (OSError, ValueError) as exc:
            logger.debug("connect: %s", exc)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.refused.is_set():
            if self.connected.wait(0.02):
                return True
        self.stop()
        return False

    def stop(self) -> None:
        try:
            self.client.disconnect()
        except Exception as exc:  # a dead socket
            logger.debug("disconnect: %s", exc)
        self.client.loop_stop()


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class _Probe:
    def __init__(self, url: BrokerURL, prefix: str, timeout: float) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.cid = "sig-conformance-" + uuid.uuid4().hex[:8]
        self.evidence = Evidence(prefix, reply_topic="%s/reply/%s" % (prefix, encode_level(self.cid)))
        self.client: _Client | None = None
        self.followed: set[str] = set()

    # -- connection ----------------------------------------------------------------------

    def connect(self) -> bool:
        for protocol in (5, 4):  # amqtt is 3.1.1 only (and never answers an MQTT 5 CONNECT with a Will)
            client = _Client(self.url, self.cid, protocol, self._message)
            if client.start(self.timeout if protocol == 4 else min(self.timeout, 2.0)):
                self.client = client
                self.evidence.retain_as_published = protocol == 5
                self.subscribe(self.evidence.reply_topic)
                return True
        return False

    def _message(self, message: paho.MQTTMessage) -> None:
        props = message.properties
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self.evidence.add(Message(message.topic, bytes(message.payload), bool(message.retain), time.monotonic(),
                                  bytes(correlation) if correlation is not None else None))

    def subscribe(self, *filters: str) -> None:
        assert self.client is not None
        for topic_filter in filters:
            if self.client.protocol == 5:
                self.client.client.subscribe(topic_filter, options=SubscribeOptions(qos=1, retainAsPublished=True))
            else:
                self.client.client.subscribe(topic_filter, 1)

    def publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> None:
        assert self.client is not None
        self.client.client.publish(topic, payload, 1, False, properties)

    def round_trip(self) -> bool:
        """Wait until a marker we publish now comes back: the broker's stored messages came first."""
        token = uuid.uuid4().hex
        self.publish(self.evidence.reply_topic, json.dumps({"sync": token}).encode())
        return _wait(lambda: any(m.topic == self.evidence.reply_topic and token.encode() in m.payload
                                 for m in self.evidence.seen()), self.timeout)

    # -- steps -----------------------------------------------------------------------------

    def find_node(self, node: str | None, sender: str | None) -> bool:
        evidence = self.evidence
        if sender is not None:
            evidence.sender = encode_level(sender)
        if node is not None:
            evidence.node = encode_level(node)
            return True
        births = "%s/node/+/sender/%s" % (self.prefix, evidence.sender)
        self.subscribe(births)
        self.round_trip()
        root = self.prefix + "/node/"
        suffix = "/sender/" + str(evidence.sender)

        def hosting() -> list[str]:
            return [m.topic[len(root):-len(suffix)] for m in evidence.seen()
                    if m.topic.startswith(root) and m.topic.endswith(suffix) and m.payload]

        if not _wait(lambda: bool(hosting()), self.timeout):
            evidence.skips["node"] = "no node publishes a birth of sender %r (%s)" % (sender, births)
            return False
        # A node that died leaves its births behind (its Will only says offline): prefer an online one.
        candidates = list(dict.fromkeys(hosting()))
        self.subscribe(*("%s%s" % (root, level) for level in candidates))
        self.round_trip()

        def online(level: str) -> bool:
            return any(isinstance(parse_json(m.payload), dict) and parse_json(m.payload).get("online") is True
                       for m in evidence.on(root + level))

        evidence.node = next((level for level in reversed(candidates) if online(level)), candidates[-1])
        assert self.client is not None
        self.client.client.unsubscribe([births] + ["%s%s" % (root, level) for level in candidates])
        return True

    def snapshot(self) -> None:
        evidence = self.evidence
        self.subscribe(evidence.node_topic, evidence.node_topic + "/sender/+")
        self.round_trip()
        evidence.snapshot_end = time.monotonic()
        if node_state(evidence) is None:  # starting up, perhaps
            _wait(lambda: node_state(evidence) is not None, self.timeout)
        _wait(lambda: bool(evidence.birth_levels()), self.timeout)
        self.follow_events()

    def follow_events(self) -> None:
        """Subscribe to the events of every sender whose birth was seen (their retained ones come first)."""
        for level in self.evidence.birth_levels():
            if level not in self.followed:
                self.followed.add(level)
                self.subscribe("%s/event/%s/#" % (self.prefix, level))
        self.round_trip()

    def rebirth(self) -> None:
        evidence = self.evidence
        root = evidence.node_topic + "/sender/"

        def answered() -> bool:  # births first seen in the answer (not retained before) count too
            wanted = [evidence.node_topic] + [root + level for level in evidence.birth_levels()]
            return all(evidence.on(topic, since=start) for topic in wanted)

        start = time.monotonic()
        self.publish("%s/cmd/rebirth" % self.prefix, b"")
        if _wait(answered, self.timeout):
            # births first learned from the answer came right after its state: in by a round trip
            self.round_trip()
            _wait(answered, self.timeout)
        evidence.rebirth = (start, time.monotonic())
        self.follow_events()

    def requests(self, full: bool) -> None:
        evidence = self.evidence
        if not full:
            for rule in ("request-envelope", "request-v5", "request-status"):
                evidence.skips[rule] = "not sent in the minimal profile"
            return
        target = None
        for level in evidence.birth_levels():
            copies = [m for m in evidence.on(evidence.node_topic + "/sender/" + level) if m.payload]
            body = parse_json(copies[-1].payload) if copies else None
            if isinstance(body, dict) and isinstance(body.get("requests"), list) and body["requests"]:
                target = (level, body["requests"])
                break
        if target is None:
            for rule in ("request-envelope", "request-v5", "request-status"):
                evidence.skips[rule] = "the sender declares no requests"
            return
        level, methods = target
        named = [m for m in methods if m is not None]
        state = node_state(evidence) or {}
        plan: list[tuple[str, Any]] = []
        if named:
            plan.append(("envelope", named[0]))
            if self.client is not None and self.client.protocol == 5 and state.get("proto") == 5:
                plan.append(("v5", named[0]))
            else:
                evidence.skips["request-v5"] = "the node or this probe speaks MQTT 3.1.1"
        else:
            evidence.skips["request-envelope"] = evidence.skips["request-v5"] = "only a default handler is declared"
        if None in methods:
            evidence.skips["request-status"] = "a default handler answers every method"
        else:
            plan.append(("unknown", _UNKNOWN_METHOD))
        for kind, method in plan:
            correlation = uuid.uuid4().hex
            topic = "%s/request/%s/%s" % (self.prefix, level, encode_level(method))
            evidence.requests.append(Sent(kind, topic, correlation, time.monotonic()))
            if kind == "v5":
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ResponseTopic = evidence.reply_topic
                props.CorrelationData = correlation.encode()
                props.MessageExpiryInterval = max(1, int(self.timeout) + 1)
                self.publish(topic, b"null", props)
            else:
                envelope = {"id": correlation, "reply_to": evidence.reply_topic, "params": None}
                self.publish(topic, json.dumps(envelope).encode())

        def answered() -> bool:
            seen = evidence.on(evidence.reply_topic)
            return all(any(s.correlation.encode() in (m.payload + (m.correlation or b"")) for m in seen)
                       for s in evidence.requests)

        _wait(answered, self.timeout)
        evidence.requests_until = time.monotonic()

    def heartbeat(self) -> None:
        evidence = self.evidence
        state = node_state(evidence)
        if state is None:
            evidence.skips["heartbeat"] = "no online node state to start from"
            return
        period = float(state.get("heartbeat", DEFAULT_HEARTBEAT))
        start = time.monotonic()
        logger.info("waiting up to %.1f s for a heartbeat (the node says %g s)", 1.5 * period + 0.5, period)
        _wait(lambda: bool(evidence.on(evidence.node_topic, since=start)), 1.5 * period + 0.5)
        time.sleep(0.05)  # its copies, if any, that were on their way
        evidence.heartbeat = (start, time.monotonic())

    def will(self) -> None:
        evidence = self.evidence
        assert evidence.node is not None
        if not self._takeover_publishes_will():
            evidence.skips["will"] = ("this broker publishes no Will on a session takeover, so the Will cannot "
                                      "be checked here (use Mosquitto)")
            return
        nid = str(decode_level(evidence.node))
        start = time.monotonic()
        thief = _Client(self.url, nid, 4)

        def offline() -> list[Message]:
            return [m for m in evidence.on(evidence.node_topic, since=start)
                    if isinstance(parse_json(m.payload), dict) and parse_json(m.payload).get("online") is False]

        try:
            if thief.start(self.timeout):
                _wait(lambda: bool(offline()), self.timeout)
                if offline() and not evidence.retain_as_published:
                    self.subscribe(evidence.node_topic)  # the broker sends its stored copy again
                    self.round_trip()
        finally:
            thief.stop()
        end = time.monotonic()
        evidence.will = (start, end)
        if offline():
            back = _wait(lambda: any(isinstance(parse_json(m.payload), dict) and parse_json(m.payload).get("online")
                                     is True for m in evidence.on(evidence.node_topic, since=end)), self.timeout)
            evidence.notes["will"] = "online again after it" if back else "not online again within %.0f s" % (
                self.timeout)

    def _takeover_publishes_will(self) -> bool:
        """Does this broker publish a client's Will when another connection takes its client id?"""
        token = uuid.uuid4().hex
        cid = "sig-conformance-will-" + token[:8]
        first = _Client(self.url, cid, 4, will=(self.evidence.reply_topic, json.dumps({"sync": token}).encode()))
        second = _Client(self.url, cid, 4)
        try:
            if not first.start(self.timeout) or not second.start(self.timeout):
                return False
            return _wait(lambda: any(token.encode() in m.payload for m in self.evidence.on(self.evidence.reply_topic)),
                         min(2.0, self.timeout))
        finally:
            first.client.loop_stop()
            second.stop()

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()


def probe(url: BrokerURL, prefix: str, node: str | None, sender: str | None, full: bool,
          timeout: float) -> Evidence:
    """Watch and provoke the node (see the module docstring); return what was seen.

    Raises:
        ConnectionError: the broker cannot be reached.
    """
    checker = _Probe(url, prefix, timeout)
    if not checker.connect():
        raise ConnectionError("cannot connect to the broker at %s" % url)
    try:
        if checker.find_node(node, sender):
            checker.snapshot()
            checker.rebirth()
            checker.requests(full)
            checker.heartbeat()
            checker.will()
    finally:
        checker.close()
    return checker.evidence
