"""Fuzz (hypothesis) of sig's MQTT side: the topic decoder and a real node's inbound handling.

* ``Topics.parse`` and ``decode_level`` on arbitrary text and on topics built from sig's own
  tokens (10,000 cases each): never raise, never take long, give only what the docs promise.
* A real node (a ClientRouter over ``CarrierMQTTClient``, online on a private Mosquitto, with a
  sender that answers requests and a listener of everything): 10,000 messages on its event,
  birth, node-state, request, reply and rebirth topics (and outside its tree) with arbitrary
  payloads (random bytes, and JSON shaped like births, node states, request envelopes, replies),
  with and without MQTT 5 properties, handed to ``carrier.node._message`` as paho would. Nothing
  raises or is logged as an exception, the node never loses the broker, and afterwards another
  node's events reach it, it answers requests and its own requests work.
* A few hundred random messages through the broker itself (a raw paho client), then the same check.

What a fuzz case found (and is fixed now) is a test of its own at
the end of this file, and out of the strategies above (see ``SAFE_INT`` and ``reply_topics``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqttutil import Mosquitto
from netutil import Recorder, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_fuzz import format_checker  # noqa: F401 (a fixture, used by trouble)

import sig
from sig_mqtt import CarrierMQTTClient
from sig_mqtt._topics import Parsed, Topics, decode_level, encode_level

pytestmark = pytest.mark.timeout(120)

CASES = 10_000
BATCH = 10  # cases per hypothesis example: 1,000 examples of 10 (hypothesis' own cost is per example)
PREFIX = "fz/sig"
KINDS = {"node", "birth", "event", "request", "reply", "rebirth"}
#: JSON integers the node survives today (see test_huge_integers_in_a_node_state_are_read_without_error)
SAFE_INT = 2**62

# -- the topic decoder ----------------------------------------------------------------------------------

TOKENS = ["event", "node", "sender", "request", "reply", "cmd", "rebirth", "!e", "!i:", "!i:42", "!i:-7", "!i:٣",
          "!i:1_0", "!i: 5", "!f:1.5", "!f:nan", "!f:-inf", "!f:1e999", "!f:", "!x", "!", "%", "%2", "%2F", "%23",
          "%23connect", "%FF", "%C3%28", "%F0%9F%98", "%%", "$SYS", "+", "#", "", "fz", "sig", "a%2Fb"]
level = st.one_of(st.sampled_from(TOKENS), st.text(max_size=12),
                  st.builds(lambda tag, body: tag + body, st.sampled_from(["!i:", "!f:", "%"]),
                            st.text(alphabet="0123456789abcdefABCDEF%-+.e_inINFa", max_size=20)),
                  st.builds(lambda n: "!i:" + "9" * n, st.integers(4000, 6000)))  # past int's digit limit
topics = st.one_of(st.text(max_size=80),
                   st.lists(level, min_size=1, max_size=7).map("/".join),
                   st.lists(level, min_size=0, max_size=5).map(lambda levels: "/".join([PREFIX, *levels])))


def _timed(call: Any, *args: Any) -> Any:
    started = time.perf_counter()
    result = call(*args)
    took = time.perf_counter() - started
    assert took < 2.0, "%s took %.3f s on %.80r" % (call.__name__, took, args)
    return result


@pytest.mark.fuzz
@settings(max_examples=CASES // BATCH, deadline=None)
@given(texts=st.lists(st.one_of(st.text(), level), min_size=BATCH, max_size=BATCH))
def test_decode_level_never_raises(texts: list[str]) -> None:
    for text in texts:
        value = _timed(decode_level, text)
        assert type(value) in (str, int, float)
        if type(value) is str and not text.startswith("!") and "%" not in text:
            assert value == text  # a plain level is itself


@pytest.mark.fuzz
@settings(max_examples=CASES // BATCH, deadline=None)
@given(batch=st.lists(topics, min_size=BATCH, max_size=BATCH), prefix=st.sampled_from([PREFIX, "sig", "a/b/c"]))
def test_topic_parse_never_raises(batch: list[str], prefix: str) -> None:
    tree = Topics(prefix)
    for topic in batch:
        parsed = _timed(tree.parse, topic)
        if parsed is None:
            continue
        assert isinstance(parsed, Parsed) and parsed.kind in KINDS
        assert topic.startswith(prefix + "/")
        for ident in (parsed.sender, parsed.name):
            assert ident is None or type(ident) in (str, int, float)
        if parsed.kind in ("node", "birth", "reply"):
            assert type(parsed.nid) in (str, int, float)


@settings(max_examples=500, deadline=None)
@given(ident=st.one_of(st.text().filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s)),
                       st.integers(), st.floats(allow_nan=False)),
       kind=st.sampled_from(["event", "request"]))
def test_what_sig_publishes_parses_back(ident: Any, kind: str) -> None:
    tree = Topics(PREFIX)
    topic = tree.event(ident, ident) if kind == "event" else tree.request(ident, ident)
    parsed = tree.parse(topic)
    assert parsed is not None and parsed.kind == kind
    assert parsed.sender == ident and parsed.name == ident
    assert decode_level(encode_level(ident)) == ident


# -- a real node's inbound messages -----------------------------------------------------------------------


class Trouble(logging.Handler):
    """Keeps sig's log records that carry an exception, and the node's 'lost the broker' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if record.exc_info or "lost the broker" in record.msg:
            self.records.append(record)

    def summary(self) -> list[str]:
        return ["%s: %s %s" % (r.name, r.getMessage(), r.exc_info[1] if r.exc_info else "") for r in self.records[:5]]


class Site:
    """A private Mosquitto with the fuzzed node on it, and a good peer node to check it afterwards."""

    def __init__(self) -> None:
        self.broker = Mosquitto().start()
        self.carriers: list[CarrierMQTTClient] = []
        self.heard = Recorder()
        self.target = self.node("target")
        self.carrier = self.carriers[0]
        self.target.addRemoteSender("svc", ["e"], requests={"echo": lambda p: p})
        self.target.addRemoteListener(self.heard.listener("all"))
        self.target.addRemoteListener(self.heard.listener("chan"), None, "#chan")

    def node(self, nid: str) -> sig.ClientRouter:
        carrier = CarrierMQTTClient(client_id="%s-%s" % (nid, uuid.uuid4().hex[:6]), prefix=PREFIX,
                                    reconnect_max=0.5)
        self.carriers.append(carrier)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.broker.port), carrier.last_error
        return router

    def drain(self) -> None:
        """Wait until the node's dispatcher and request pool have handled what they were given."""
        node = self.carrier.node
        done = threading.Event()
        node._jobs.put(done.set)
        assert done.wait(30), "the node's dispatcher is stuck"
        assert wait_until(lambda: node._requests.waiting == 0, 30)
        node.round_trip(5.0)

    def check_serves_a_good_client(self) -> None:
        """Another node's events reach the target, it answers requests, and its requests work."""
        node = self.carrier.node
        assert node._dispatcher is not None and node._dispatcher.is_alive()
        assert self.carrier.isConnected()
        peer = self.node("peer")
        rec = Recorder()
        self.target.addRemoteListener(rec.listener(), "good", "ok")
        peer.addRemoteSender("good", ["ok"], requests={"add": lambda p: p[0] + p[1]}).getSignal("ok").trigger(
            {"n": 1})
        assert rec.wait_for(1, timeout=10)[0][1:] == ("good", "ok", {"n": 1})
        assert wait_until(lambda: self.carriers[-1].isSenderConnected("svc"))
        assert peer.remoteRequest("svc", "echo", [1, "two"]) == [1, "two"]
        assert wait_until(lambda: self.carrier.isSenderConnected("good"))
        assert self.target.remoteRequest("good", "add", [20, 22]) == 42
        self.carriers[-1].disconnect()
        self.carriers.pop()

    def close(self) -> None:
        for carrier in self.carriers:
            carrier.disconnect()
        self.broker.close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    made = Site()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def trouble(request: pytest.FixtureRequest) -> Iterator[Trouble]:
    """A :class:`Trouble` on sig's logger, beside test_fuzz's checker (every record formats, none propagates)."""
    request.getfixturevalue("format_checker")
    handler = Trouble()
    sig_logger = logging.getLogger("sig")
    sig_logger.addHandler(handler)
    try:
        yield handler
    finally:
        sig_logger.removeHandler(handler)


# payload shapes: random bytes, any JSON, and JSON shaped like what each topic carries
ints = st.integers(-SAFE_INT, SAFE_INT)
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), st.text(max_size=10))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=10)
hashables = st.one_of(st.none(), st.booleans(), ints, st.floats(), st.text(max_size=10))
# Mosquitto drops a client that publishes on an empty topic or one with a control character or a
# noncharacter: see test_a_request_naming_a_bad_reply_topic_does_not_knock_the_responder_off
reply_topics = st.one_of(st.just(PREFIX + "/reply/nobody"),
                         st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn")), min_size=1, max_size=30))
births = st.fixed_dictionaries({}, optional={
    "events": st.one_of(st.lists(json_values, max_size=4), json_values),
    "requests": st.one_of(st.none(), st.lists(hashables, max_size=4), json_values),
    "session": st.one_of(st.text(max_size=8), json_values)})
states = st.fixed_dictionaries({}, optional={
    "online": st.one_of(st.booleans(), json_values), "session": st.one_of(st.text(max_size=8), json_values),
    "ts": st.one_of(ints, st.floats(), json_values), "proto": st.one_of(st.sampled_from([4, 5]), json_values),
    "heartbeat": st.one_of(st.floats(), ints, json_values)})
envelopes = st.fixed_dictionaries({}, optional={
    "id": hashables, "reply_to": st.one_of(reply_topics, st.none(), ints, st.lists(ints, max_size=2)),
    "params": json_values})
replies = st.fixed_dictionaries({}, optional={
    "id": hashables, "status": st.one_of(st.integers(-5, 1), json_values), "response": json_values,
    "exception": json_values, "sync": st.one_of(st.text(max_size=8), json_values)})


def _json(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda value: json.dumps(value).encode())


payloads = st.one_of(st.binary(max_size=300), _json(json_values), _json(births), _json(states), _json(envelopes),
                     _json(replies), st.just(b""))
name = st.one_of(level, st.sampled_from(["svc", "echo", "%23chan", "%23connect", "target", "!i:1", "!f:nan"]))
tree_topics = st.one_of(
    st.builds("{}/event/{}/{}".format, st.just(PREFIX), name, name),
    st.builds("{}/node/{}".format, st.just(PREFIX), name),
    st.builds("{}/node/{}/sender/{}".format, st.just(PREFIX), name, name),
    st.builds("{}/request/svc/{}".format, st.just(PREFIX), name),
    st.builds("{}/request/{}/{}".format, st.just(PREFIX), name, name),
    st.builds("{}/reply/{}".format, st.just(PREFIX), name),
    st.just(PREFIX + "/cmd/rebirth"),
    topics,
)


@st.composite
def messages(draw: st.DrawFn) -> paho.MQTTMessage:
    topic = draw(tree_topics)
    message = paho.MQTTMessage(topic=topic.encode("utf-8", "surrogatepass"))
    message.payload = draw(payloads)
    message.retain = draw(st.booleans())
    message.qos = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if draw(st.booleans()):
            props.ResponseTopic = draw(reply_topics)
        if draw(st.booleans()):
            props.CorrelationData = draw(st.binary(max_size=20))
        for sid in draw(st.lists(st.integers(1, 20), max_size=3)):
            props.SubscriptionIdentifier = sid
        message.properties = props
    return message


@pytest.mark.fuzz
@settings(max_examples=CASES // BATCH, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(batch=st.lists(messages(), min_size=BATCH, max_size=BATCH))
def test_node_survives_any_inbound_message(site: Site, trouble: Trouble, batch: list[paho.MQTTMessage]) -> None:
    for message in batch:
        site.carrier.node._message(message)  # paho's network thread would call this
    assert not trouble.records, trouble.summary()


def test_node_serves_a_good_client_after_the_fuzz(site: Site, trouble: Trouble) -> None:
    site.drain()
    assert not trouble.records, trouble.summary()
    site.check_serves_a_good_client()
    assert not trouble.records, trouble.summary()


def test_random_messages_through_the_broker_then_a_good_client(site: Site, trouble: Trouble) -> None:
    """300 random messages published by a raw paho client on the node's topics."""
    rng = random.Random(7)
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", site.broker.port)
    publisher.loop_start()
    try:
        sent = []
        for _ in range(300):
            topic = rng.choice(["%s/event/%s/%s" % (PREFIX, rng.choice(["x", "svc", "!i:3", "%23chan"]),
                                                    rng.choice(["e", "%23chan", "%23connect"])),
                                "%s/node/n%d" % (PREFIX, rng.randrange(5)),
                                "%s/node/n%d/sender/s%d" % (PREFIX, rng.randrange(5), rng.randrange(5)),
                                "%s/request/svc/%s" % (PREFIX, rng.choice(["echo", "nope"])),
                                "%s/reply/%s" % (PREFIX, site.carrier.client_id), PREFIX + "/cmd/rebirth"])
            payload = rng.choice([rng.randbytes(rng.randrange(200)), b"", b"{", b"null", b"[1,2]",
                                  json.dumps({"online": rng.random() < 0.5, "session": "s", "ts": 1}).encode(),
                                  json.dumps({"events": ["e"], "requests": ["q"], "session": "s"}).encode(),
                                  json.dumps({"id": rng.randrange(9), "reply_to": PREFIX + "/reply/x",
                                              "params": 1}).encode(),
                                  json.dumps({"status": 0, "id": "nope"}).encode()])
            props = None
            if rng.random() < 0.3:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ResponseTopic = PREFIX + "/reply/rr"
                if rng.random() < 0.5:
                    props.CorrelationData = rng.randbytes(8)
            sent.append(publisher.publish(topic, payload, qos=1, retain=rng.random() < 0.2, properties=props))
        for info in sent:
            info.wait_for_publish(10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    site.drain()
    assert not trouble.records, trouble.summary()
    site.check_serves_a_good_client()


# -- what the fuzz found (bugs in sig_mqtt, fixed there) -------------------------------------------------------


@pytest.mark.parametrize("field", ["heartbeat", "ts"])
def test_huge_integers_in_a_node_state_are_read_without_error(site: Site, trouble: Trouble, field: str) -> None:
    state = {"online": True, "session": "s", "ts": 1, field: 10**400}
    site.carrier.node._message(_retained("%s/node/huge-%s" % (PREFIX, field), json.dumps(state).encode()))
    site.drain()
    assert not trouble.records, trouble.summary()


def _retained(topic: str, payload: bytes) -> paho.MQTTMessage:
    message = paho.MQTTMessage(topic=topic.encode())
    message.payload = payload
    message.retain = True
    return message


def test_a_birth_with_an_unhashable_request_name_is_refused_cleanly(site: Site, trouble: Trouble) -> None:
    for topic, body in (("%s/node/odd" % PREFIX, {"online": True, "session": "s1"}),
                        ("%s/node/odd/sender/odd-sender" % PREFIX, {"events": ["e"], "requests": [["x"]],
                                                                     "session": "s1"})):
        message = paho.MQTTMessage(topic=topic.encode())
        message.payload = json.dumps(body).encode()
        site.carrier.node._message(message)
    site.drain()
    assert not trouble.records, trouble.summary()
    # presence and the router agree: either both know the sender or neither does
    node = site.carrier.node
    assert (node.presence.owner("odd-sender") is None) == (site.carrier.network.senders.get("odd-sender") is None)


def test_a_request_with_an_unhashable_id_gets_an_error_reply(site: Site) -> None:
    got = threading.Event()
    listener = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    subscribed = threading.Event()
    listener.on_message = lambda client, userdata, message: got.set()
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect("127.0.0.1", site.broker.port)
    listener.subscribe(PREFIX + "/reply/fuzz-requester", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        message = paho.MQTTMessage(topic=("%s/request/svc/echo" % PREFIX).encode())
        message.payload = json.dumps({"id": [1], "reply_to": PREFIX + "/reply/fuzz-requester", "params": 1}).encode()
        site.carrier.node._message(message)
        answered = got.wait(3)
    finally:
        listener.disconnect()
        listener.loop_stop()
    assert answered


@pytest.mark.parametrize("bad", ["a\x00b", "a\x01b", "a\ufffeb", ""])
def test_a_request_naming_a_bad_reply_topic_does_not_knock_the_responder_off(bad: str) -> None:
    with Mosquitto() as broker:
        carrier = CarrierMQTTClient(prefix=PREFIX, reconnect_max=0.5)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", broker.port)
        try:
            router.addRemoteSender("svc", ["e"], requests={"echo": lambda p: p})
            for _ in range(2):  # the same request twice, as a QoS 1 redelivery
                message = paho.MQTTMessage(topic=("%s/request/svc/echo" % PREFIX).encode())
                message.payload = json.dumps({"id": 1, "reply_to": bad, "params": 1}).encode()
                carrier.node._message(message)
                time.sleep(0.5)
            time.sleep(1.5)
            assert "disconnected due to" not in broker.log_text()
            assert carrier.isConnected()
        finally:
            carrier.disconnect()
