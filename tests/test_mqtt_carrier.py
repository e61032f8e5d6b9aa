"""sig over MQTT with real brokers: the embedded amqtt (3.1.1), a private Mosquitto with MQTT 5 and 3.1.1.

Every test uses its own topic prefix, so retained messages of one test never reach another.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mqttutil import mosquitto_pub, mosquitto_rr, mosquitto_sub
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient, connect_url


class Mq:
    """A broker and a factory of ClientRouters on it, all with one fresh prefix."""

    def __init__(self, kind: str, port: int, protocol: int) -> None:
        self.kind = kind
        self.port = port
        self.protocol = protocol
        self.prefix = "t%s/sig" % uuid.uuid4().hex[:8]
        self.carriers: list[CarrierMQTTClient] = []

    def carrier(self, **settings: Any) -> CarrierMQTTClient:
        settings.setdefault("protocol", self.protocol)
        settings.setdefault("prefix", self.prefix)
        settings.setdefault("request_timeout", 5.0)
        carrier = CarrierMQTTClient(**settings)
        self.carriers.append(carrier)
        return carrier

    def node(self, **settings: Any) -> sig.ClientRouter:
        carrier = self.carrier(**settings)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.port, auto_reconnect=True), carrier.last_error
        return router

    def close(self) -> None:
        for carrier in self.carriers:
            carrier.disconnect()


@pytest.fixture(params=["amqtt", "mosquitto5", "mosquitto4"])
def mq(request: pytest.FixtureRequest) -> Iterator[Mq]:
    if request.param == "amqtt":
        port = request.getfixturevalue("embedded_broker").port
        m = Mq("amqtt", port, 4)
    else:
        port = request.getfixturevalue("mosquitto").port
        m = Mq(request.param, port, 5 if request.param == "mosquitto5" else 4)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def mosq5(mosquitto: Any) -> Iterator[Mq]:
    m = Mq("mosquitto5", mosquitto.port, 5)
    try:
        yield m
    finally:
        m.close()


def events(rec: Recorder) -> list[tuple[Any, ...]]:
    return [c for c in rec.settle(0.3)]


# -- subscriptions ------------------------------------------------------------------


def test_every_subscription_kind_called_once(mq: Mq) -> None:
    listener, sender = mq.node(), mq.node()
    rec = Recorder()
    listener.addRemoteListener(rec.listener("router"))
    listener.addRemoteListener(rec.listener("sender"), "thermo")
    listener.addRemoteListener(rec.listener("channel"), None, "#temp")
    listener.addRemoteListener(rec.listener("specific"), "thermo", "#temp")
    listener.addRemoteListener(rec.listener("plain"), None, "changed")  # never fires, as in pysig
    listener.addRemoteListener(rec.listener("other"), "other", None)
    thermo = sender.addRemoteSender("thermo", ["changed", "#temp"])
    rec.wait_for(2)  # #connect to router and sender broadcasts
    thermo.getSignal("#temp").trigger(21.5)
    thermo.getSignal("changed").trigger({"on": True})
    calls = rec.wait_for(7)
    calls = rec.settle(0.3)  # no second copy of any of them
    describe = {"events": ["changed", "#temp"], "requests": None}
    assert calls == [
        ("router", "thermo", "#connect", describe),
        ("sender", "thermo", "#connect", describe),
        ("router", "thermo", "#temp", 21.5),
        ("sender", "thermo", "#temp", 21.5),
        ("channel", "thermo", "#temp", 21.5),
        ("specific", "thermo", "#temp", 21.5),
        ("router", "thermo", "changed", {"on": True}),
        ("sender", "thermo", "changed", {"on": True}),
    ]


def test_identifiers_that_need_escaping(mq: Mq) -> None:
    listener, sender = mq.node(), mq.node()
    rec = Recorder()
    for name, event in (("a/b", "#x+y"), ("", 42), ("$dollar", 1.5), ("é ü", "!bang")):
        listener.addRemoteListener(rec.listener(repr(name)), name, event)
    for name, event in (("a/b", "#x+y"), ("", 42), ("$dollar", 1.5), ("é ü", "!bang")):
        sender.addRemoteSender(name, [event]).getSignal(event).trigger([name, event])
    calls = rec.wait_for(4)
    assert sorted((c[1], c[2], tuple(c[3])) for c in calls) == sorted(
        [("a/b", "#x+y", ("a/b", "#x+y")), ("", 42, ("", 42)), ("$dollar", 1.5, ("$dollar", 1.5)),
         ("é ü", "!bang", ("é ü", "!bang"))]
    )


def test_listener_that_raises_does_not_stop_the_others(mq: Mq) -> None:
    listener, sender = mq.node(), mq.node()
    rec = Recorder()

    def boom(info: dict[str, Any], data: Any) -> None:
        raise RuntimeError("listener bug")

    listener.addRemoteListener(boom, "s", "e")
    listener.addRemoteListener(rec.listener("ok"), "s", "e")
    s = sender.addRemoteSender("s", ["e"])
    for i in range(3):
        s.getSignal("e").trigger(i)
    assert [c[3] for c in rec.wait_for(3)] == [0, 1, 2]


# -- #connect / #disconnect -------------------------------------------------------------


def test_connect_disconnect_and_late_joiner(mq: Mq) -> None:
    early, sender = mq.node(), mq.node()
    rec = Recorder()
    early.addRemoteListener(rec.listener("early"), None, "#connect")
    early.addRemoteListener(rec.listener("early"), None, "#disconnect")
    sender.addRemoteSender("door", ["open"], requests={"state": lambda p: "shut"})
    rec.wait_for(1)
    late_carrier = mq.carrier()
    late = sig.ClientRouter(late_carrier)
    assert late_carrier.connect("127.0.0.1", mq.port)
    late.addRemoteListener(rec.listener("late"), "door")
    assert wait_until(lambda: late_carrier.isSenderConnected("door"))
    assert late_carrier.sync()  # every retained birth it was sent is processed now
    assert [c for c in rec.calls if c[0] == "late"] == []  # no false #connect
    sender.removeRemoteSender("door")
    calls = rec.wait_for(3)
    describe = {"events": ["open"], "requests": ["state"]}
    assert ("early", "door", "#connect", describe) in calls
    assert ("early", "door", "#disconnect", describe) in calls
    assert ("late", "door", "#disconnect", describe) in calls
    assert wait_until(lambda: not late_carrier.isSenderConnected("door"))


def test_clean_disconnect_disconnects_every_sender(mq: Mq) -> None:
    listener = mq.node()
    carrier = mq.carrier()
    sender = sig.ClientRouter(carrier)
    assert carrier.connect("127.0.0.1", mq.port)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), None, "#disconnect")
    sender.addRemoteSender("a", ["x"])
    sender.addRemoteSender("b", ["y"])
    assert wait_until(lambda: listener.carrier.isSenderConnected("a") and listener.carrier.isSenderConnected("b"))  # type: ignore[attr-defined]
    carrier.disconnect()
    calls = rec.wait_for(2)
    assert sorted(c[1] for c in calls) == ["a", "b"]


def test_sender_name_taken_on_another_node(mq: Mq) -> None:
    first, second = mq.node(), mq.node()
    first.addRemoteSender("unique", ["e"])
    assert first.carrier.sync()  # type: ignore[attr-defined]  # its retained birth is on the broker
    with pytest.raises(NameError):
        second.addRemoteSender("unique", ["e"])  # second listens to nothing: it asks the broker
    second.addRemoteSender("free", ["e"])


# -- requests ----------------------------------------------------------------------------


def test_requests(mq: Mq) -> None:
    requester, responder = mq.node(), mq.node()
    calls: list[Any] = []

    def slow(params: Any) -> Any:
        time.sleep(params)
        return "late"

    def default(method: Any, params: Any) -> Any:
        calls.append(method)
        return {"method": method, "params": params}

    responder.addRemoteSender("calc", ["e"], requests={"add": lambda p: p[0] + p[1], "slow": slow, None: default})
    assert wait_until(lambda: requester.carrier.isSenderConnected("calc"))  # type: ignore[attr-defined]
    assert requester.remoteRequest("calc", "add", [2, 3]) == 5
    assert requester.remoteRequest("calc", 7, None) == {"method": 7, "params": None}
    responder.addRemoteSender("strict", ["e"], requests={"only": lambda p: 1})
    assert wait_until(lambda: requester.carrier.isSenderConnected("strict"))  # type: ignore[attr-defined]
    with pytest.raises(LookupError) as info:
        requester.remoteRequest("strict", "other")
    assert isinstance(info.value, sig.RemoteError)
    with pytest.raises(NameError):
        requester.remoteRequest("nobody", "x")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        requester.remoteRequest("calc", "slow", 2.0, timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_carrier_request_timeout_governs_the_client_router(mq: Mq) -> None:
    """``CarrierMQTTClient(request_timeout=1.0)`` is the default of the ClientRouter built on it.

    A late reply (the handler takes 3 s) never answers the next request.
    """
    responder = mq.node()
    carrier = mq.carrier(request_timeout=1.0)
    requester = sig.ClientRouter(carrier)  # no request_timeout of its own: the carrier's
    assert carrier.connect("127.0.0.1", mq.port), carrier.last_error
    assert requester.request_timeout == 1.0
    release = threading.Event()

    def slow(params: Any) -> Any:
        release.wait(3.0)
        return "late %s" % params

    responder.addRemoteSender("slowpoke", ["e"], requests={"slow": slow, "fast": lambda p: "fast %s" % p})
    assert wait_until(lambda: carrier.isSenderConnected("slowpoke"))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        requester.remoteRequest("slowpoke", "slow", 1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5, elapsed
    release.set()  # the late reply goes out now
    assert requester.remoteRequest("slowpoke", "fast", 2) == "fast 2"
    assert requester.remoteRequest("slowpoke", "fast", 3) == "fast 3"
    # An explicit ClientRouter setting still wins over the carrier's.
    assert sig.ClientRouter(mq.carrier(request_timeout=1.0), request_timeout=7.0).request_timeout == 7.0


def test_request_inside_a_listener_and_to_own_sender(mq: Mq) -> None:
    node = mq.node()
    other = mq.node()
    node.addRemoteSender("self", ["ping"], requests={"echo": lambda p: p})
    answers: list[Any] = []
    done = threading.Event()

    def on_ping(info: dict[str, Any], data: Any) -> None:
        answers.append(node.remoteRequest("self", "echo", data))
        answers.append(node.remoteRequest("peer", "echo", data))
        done.set()

    other.addRemoteSender("peer", ["x"], requests={"echo": lambda p: ["peer", p]})
    node.addRemoteListener(on_ping, "peer", "x")
    assert wait_until(lambda: node.carrier.isSenderConnected("peer"))  # type: ignore[attr-defined]
    other.getSender("peer").getSignal("x").trigger(5)
    assert done.wait(5)
    assert answers == [5, ["peer", 5]]


def test_mosquitto_rr_gets_an_answer(mosq5: Mq) -> None:
    node = mosq5.node()
    node.addRemoteSender("calc", ["e"], requests={"add": lambda p: p["a"] + p["b"]})
    assert node.carrier.sync()  # type: ignore[attr-defined]  # its request filter is subscribed
    out = mosquitto_rr(mosq5.port, "%s/request/calc/add" % mosq5.prefix, "%s/rr-reply" % mosq5.prefix,
                       json.dumps({"a": 2, "b": 40}), 5.0, "-V", "5")
    assert json.loads(out) == {"status": 0, "response": 42}


def test_a_redelivered_request_runs_once(mosq5: Mq) -> None:
    node = mosq5.node()
    runs: list[Any] = []
    node.addRemoteSender("count", ["e"], requests={"inc": lambda p: runs.append(p) or len(runs)})
    assert node.carrier.sync()  # type: ignore[attr-defined]
    envelope = json.dumps({"id": "req-1", "reply_to": "%s/reply/outsider" % mosq5.prefix, "params": 1})
    replies = mosquitto_sub.background(mosq5.port, "%s/reply/outsider" % mosq5.prefix)
    try:
        for _ in range(2):
            mosquitto_pub(mosq5.port, "%s/request/count/inc" % mosq5.prefix, envelope, "-q", "1")
        assert wait_until(lambda: len(replies.lines()) >= 2)
    finally:
        replies.stop()
    assert runs == [1]
    assert [json.loads(line.split(" ", 1)[1]) for line in replies.lines()[:2]] == [
        {"id": "req-1", "status": 0, "response": 1}
    ] * 2


# -- plain MQTT clients ---------------------------------------------------------------------


def test_outside_clients_see_plain_topics(mq: Mq) -> None:
    node = mq.node(client_id="plainnode")
    topic_root = mq.prefix
    sub = mosquitto_sub.background(mq.port, "%s/#" % topic_root)
    try:
        thermo = node.addRemoteSender("thermo", ["changed"])
        thermo.getSignal("changed").trigger({"t": 21.5})
        assert wait_until(lambda: any("/event/" in line for line in sub.lines()))
    finally:
        sub.stop()
    lines = dict(line.split(" ", 1) for line in sub.lines())
    assert json.loads(lines["%s/event/thermo/changed" % topic_root]) == {"t": 21.5}
    assert json.loads(lines["%s/node/plainnode/sender/thermo" % topic_root])["events"] == ["changed"]
    assert json.loads(lines["%s/node/plainnode" % topic_root])["online"] is True


def test_plain_device_payloads_reach_listeners(mq: Mq) -> None:
    node = mq.node()
    rec = Recorder()
    node.addRemoteListener(rec.listener(), "sensor1", "temperature")
    for payload in ('{"value": 21.5}', "21.5", "hot"):
        mosquitto_pub(mq.port, "%s/event/sensor1/temperature" % mq.prefix, payload)
    calls = rec.wait_for(3)
    assert [c[3] for c in calls] == [{"value": 21.5}, 21.5, "hot"]


def test_a_listener_hears_what_is_published_right_after_it_was_added(mq: Mq) -> None:
    """``addRemoteListener`` returns once the broker acknowledged the subscription (no settle time)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    node = mq.node()
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    publisher.connect("127.0.0.1", mq.port)
    publisher.loop_start()
    try:
        rec = Recorder()
        for i in range(20):
            node.addRemoteListener(rec.listener(str(i)), "dev%d" % i, "value")
            publisher.publish("%s/event/dev%d/value" % (mq.prefix, i), str(i), qos=1).wait_for_publish(5)
        calls = rec.wait_for(20)
        assert sorted(c[3] for c in calls) == list(range(20))
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_rebirth_command_republishes_births(mq: Mq) -> None:
    node = mq.node(client_id="reborn")
    node.addRemoteSender("lamp", ["on"])
    assert node.carrier.sync()  # type: ignore[attr-defined]  # its retained birth is on the broker
    sub = mosquitto_sub.background(mq.port, "%s/node/reborn/sender/+" % mq.prefix)
    try:
        assert wait_until(lambda: len(sub.lines()) >= 1)  # the retained birth
        mosquitto_pub(mq.port, "%s/cmd/rebirth" % mq.prefix, "")
        assert wait_until(lambda: len(sub.lines()) >= 2)
    finally:
        sub.stop()


# -- connection ------------------------------------------------------------------------------


def test_mqtt5_falls_back_to_311_on_amqtt(embedded_broker: Any) -> None:
    carrier = CarrierMQTTClient(prefix="fb%s" % uuid.uuid4().hex[:6])  # protocol 5 by default
    router = sig.ClientRouter(carrier)
    try:
        assert carrier.connect("127.0.0.1", embedded_broker.port)
        assert carrier.node.link.protocol == 4
        router.addRemoteSender("x", ["e"])
    finally:
        carrier.disconnect()


def test_unreachable_broker_returns_false_at_once() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    carrier = CarrierMQTTClient()
    started = time.monotonic()
    assert carrier.connect("127.0.0.1", port, auto_reconnect=False) is False
    assert time.monotonic() - started < 2.0
    assert carrier.last_error
    with pytest.raises(sig.CarrierError):
        connect_url("mqtt://127.0.0.1:%d" % port, auto_reconnect=False)


def test_connect_url(mosquitto: Any) -> None:
    prefix = "u%s/sig" % uuid.uuid4().hex[:6]
    a = connect_url("mqtt://127.0.0.1:%d/%s" % (mosquitto.port, prefix), auto_reconnect=False)
    b = connect_url("mqtt://127.0.0.1:%d/%s" % (mosquitto.port, prefix), auto_reconnect=False)
    try:
        rec = Recorder()
        b.addRemoteListener(rec.listener(), "u", "e")
        a.addRemoteSender("u", ["e"]).getSignal("e").trigger(1)
        assert rec.wait_for(1)[0][3] == 1
    finally:
        a.carrier.disconnect()  # type: ignore[attr-defined]
        b.carrier.disconnect()  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", [5, 4])
def test_retained_last_value_reaches_a_late_listener_once(mosquitto: Any, protocol: int) -> None:
    m = Mq("mosquitto", mosquitto.port, protocol)
    try:
        sender = m.node(retain={("thermo", "changed")})
        thermo = sender.addRemoteSender("thermo", ["changed", "moved"])
        thermo.getSignal("changed").trigger(21.5)
        thermo.getSignal("moved").trigger("not kept")
        assert sender.carrier.sync()  # type: ignore[attr-defined]  # the retained value is stored
        late = m.node()
        heard: list[tuple[dict[str, Any], Any]] = []
        late.addRemoteListener(lambda info, data: heard.append((info, data)), "thermo", None)
        assert wait_until(lambda: len(heard) >= 1)
        thermo.getSignal("changed").trigger(22.0)
        assert wait_until(lambda: len(heard) >= 2)
        assert late.carrier.sync()  # type: ignore[attr-defined]  # anything more would have come by now
        assert [(info.get("retained", False), info["event"], data) for info, data in heard] == [
            (True, "changed", 21.5), (False, "changed", 22.0)]
    finally:
        m.close()


@pytest.mark.parametrize(("settings", "error"), [
    ({"protocol": 3}, ValueError),
    ({"qos": 3}, ValueError),
    ({"prefix": "$sys"}, ValueError),
    ({"prefix": "a/+/b"}, ValueError),
    ({"tls": 42}, TypeError),
])
def test_bad_settings_are_refused_at_once(settings: dict[str, Any], error: type) -> None:
    with pytest.raises(error) as info:
        CarrierMQTTClient(**settings)
    assert str(info.value)
