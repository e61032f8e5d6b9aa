"""The MQTT test infrastructure itself, with real clients.

``sig_mqtt.broker.EmbeddedBroker`` (amqtt) with paho, and the private Mosquitto of
tests/mqttutil.py with Mosquitto's own command-line clients: MQTT 5 and 3.1.1, password
auth, ACLs, TLS, persistence across a clean restart and across a crash.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqttutil import Mosquitto, free_port, mosquitto_pub, mosquitto_rr, mosquitto_sub, password_hash
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sig_mqtt.broker import EmbeddedBroker

pytestmark = pytest.mark.timeout(30)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Paho:
    """A paho client with its network thread, recording what it receives."""

    def __init__(self, port: int, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311, *, client_id: str = "",
                 will: tuple[str, str] | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.messages: list[mqtt.MQTTMessage] = []
        self.changed = threading.Condition()
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos)
        assert self.subscribed.wait(5), "no SUBACK for %s" % topic

    def wait_for(self, accept: Callable[[mqtt.MQTTMessage], bool], timeout: float = 5.0) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for message in self.messages:
                    if accept(message):
                        return message
                left = deadline - time.monotonic()
                assert left > 0, "no such message; got %r" % [(m.topic, m.payload) for m in self.messages]
                self.changed.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def crash(self) -> None:
        """Drop the connection without DISCONNECT, so the broker sends the Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert sock is not None
        sock.close()


def topic_is(topic: str) -> Callable[[mqtt.MQTTMessage], bool]:
    return lambda message: message.topic == topic


@pytest.fixture
def clients() -> Iterator[Callable[..., Paho]]:
    made: list[Paho] = []

    def make(*args: Any, **kwargs: Any) -> Paho:
        made.append(Paho(*args, **kwargs))
        return made[-1]

    yield make
    for client in made:
        try:
            client.close()
        except Exception:
            pass


# -- the embedded broker (amqtt) ---------------------------------------------------------


def test_embedded_broker_starts_on_a_free_port_and_stops() -> None:
    broker = EmbeddedBroker()
    assert broker.start() is broker
    try:
        assert broker.port > 0 and broker.host == "127.0.0.1"
        assert broker.url == "mqtt://127.0.0.1:%d" % broker.port
        assert _accepts(broker.port)
    finally:
        started = time.monotonic()
        broker.stop()
        broker.stop()  # idempotent
        assert time.monotonic() - started < 6
    assert not _accepts(broker.port)


def test_embedded_broker_as_context_manager_with_a_given_port() -> None:
    port = free_port()
    with EmbeddedBroker("127.0.0.1", port) as broker:
        assert broker.port == port and _accepts(port)
    assert not _accepts(port)


def test_embedded_broker_on_a_busy_port_raises_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(OSError, match="127.0.0.1:%d: Address already in use" % port):
            EmbeddedBroker("127.0.0.1", port).start()
        assert time.monotonic() - started < 10


def test_embedded_broker_restarts_after_stop() -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port).start()
    broker.stop()
    assert not broker.is_running
    with broker:
        assert broker.is_running and broker.port == port and _accepts(port)
    assert not _accepts(port)


def test_embedded_broker_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        broker = EmbeddedBroker("::1").start()
    except OSError as exc:
        pytest.skip("no IPv6 loopback: %s" % exc)
    with broker:
        assert broker.url == "mqtt://[::1]:%d" % broker.port
        with socket.create_connection(("::1", broker.port), timeout=2):
            pass


def test_embedded_broker_without_anonymous_wants_a_user_name() -> None:
    with EmbeddedBroker(allow_anonymous=False) as broker:
        for user, expected in ((None, "Not authorized"), ("someone", "Success")):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
            if user is not None:
                client.username_pw_set(user, "any")
            answers: list[str] = []
            answered = threading.Event()

            def on_connect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any, answers: list[str] = answers,
                           answered: threading.Event = answered) -> None:
                answers.append(str(reason))
                answered.set()

            client.on_connect = on_connect
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            try:
                assert answered.wait(5) and answers[0] == expected
            finally:
                client.disconnect()
                client.loop_stop()


def test_embedded_broker_stops_with_clients_connected(clients: Callable[..., Paho]) -> None:
    broker = EmbeddedBroker().start()
    client = clients(broker.port)
    client.subscribe("infra/stop/#")
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 6
    assert not _accepts(broker.port)


def test_paho_311_publish_subscribe_through_the_embedded_broker(
        embedded_broker: EmbeddedBroker, clients: Callable[..., Paho]) -> None:
    listener = clients(embedded_broker.port)
    listener.subscribe("infra/ps/#")
    talker = clients(embedded_broker.port)
    for qos in (0, 1, 2):
        talker.client.publish("infra/ps/q%d" % qos, b"payload %d" % qos, qos=qos).wait_for_publish(5)
    for qos in (0, 1, 2):
        message = listener.wait_for(topic_is("infra/ps/q%d" % qos))
        assert message.payload == b"payload %d" % qos and not message.retain


def test_retained_and_will_on_the_embedded_broker(embedded_broker: EmbeddedBroker,
                                                 clients: Callable[..., Paho]) -> None:
    talker = clients(embedded_broker.port, will=("infra/rw/state", "offline"))
    talker.client.publish("infra/rw/state", b"online", qos=1, retain=True).wait_for_publish(5)
    late = clients(embedded_broker.port)
    late.subscribe("infra/rw/#")
    first = late.wait_for(lambda m: m.topic == "infra/rw/state")
    assert first.payload == b"online" and first.retain
    talker.crash()
    will = late.wait_for(lambda m: m.payload == b"offline")
    assert will.topic == "infra/rw/state" and not will.retain  # live: RETAIN 0 to existing subscribers
    later = clients(embedded_broker.port)
    later.subscribe("infra/rw/state")
    assert later.wait_for(lambda m: m.retain).payload == b"offline"
    # clear the retained message (a zero-length retained publish)
    talker2 = clients(embedded_broker.port)
    talker2.client.publish("infra/rw/state", b"", qos=1, retain=True).wait_for_publish(5)
    late.wait_for(lambda m: m.payload == b"")


def test_embedded_broker_refuses_mqtt5(embedded_broker: EmbeddedBroker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    refused = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: refused.set() if reason.is_failure else None
    client.on_disconnect = lambda *args: refused.set()
    client.connect("127.0.0.1", embedded_broker.port)
    client.loop_start()
    try:
        assert refused.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()


# -- a private Mosquitto ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["mqttv5", "mqttv311"])
def test_mosquitto_publish_subscribe(mosquitto: Mosquitto, version: str) -> None:
    assert mosquitto.port != 1883 and mosquitto.url == "mqtt://127.0.0.1:%d" % mosquitto.port
    with mosquitto_sub.background(mosquitto.port, "infra/#", "-V", version, "-q", "1") as sub:
        mosquitto_pub(mosquitto.port, "infra/a", "one", "-V", version, "-q", "1")
        mosquitto_pub(mosquitto.port, "infra/b c", '{"x": 1}', "-V", version)
        assert sub.wait_for(2) == ["infra/a one", 'infra/b c {"x": 1}']
    assert ("(p5," if version == "mqttv5" else "(p2,") in mosquitto.log_text()  # the log is readable (p2: 3.1.1)


def test_mosquitto_sub_once_returns_retained_lines_and_stops_at_count(mosquitto: Mosquitto) -> None:
    mosquitto_pub(mosquitto.port, "infra/r/1", "a", "-r")
    mosquitto_pub(mosquitto.port, "infra/r/2", "b", "-r")
    assert sorted(mosquitto_sub(mosquitto.port, "infra/r/#", 2, 5)) == ["infra/r/1 a", "infra/r/2 b"]
    started = time.monotonic()
    assert mosquitto_sub(mosquitto.port, "infra/none/#", 1, 0.3) == []
    assert time.monotonic() - started < 3


def test_mosquitto_rr_gets_the_reply(mosquitto: Mosquitto, clients: Callable[..., Paho]) -> None:
    responder = clients(mosquitto.port, MQTTProtocolVersion.MQTTv5)

    def answer(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(message.properties, "CorrelationData", None)
        if correlation is not None:
            props.CorrelationData = correlation
        response_topic = str(message.properties.ResponseTopic)  # type: ignore[union-attr]
        client.publish(response_topic, b"re: " + message.payload, qos=1, properties=props)

    responder.client.on_message = answer
    responder.subscribe("infra/rr/req")
    assert mosquitto_rr(mosquitto.port, "infra/rr/req", "infra/rr/reply", "ping", 5) == "re: ping"


def test_mosquitto_password_file_refuses_a_wrong_password(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(password_file={"alice": "s3cret", "bob": "other"})
    mosquitto_pub(broker.port, "infra/pw", "ok", "-u", "alice", "-P", "s3cret")
    with pytest.raises(AssertionError, match=r"[Nn]ot authori[sz]ed|refused"):
        mosquitto_pub(broker.port, "infra/pw", "no", "-u", "alice", "-P", "wrong")
    with pytest.raises(AssertionError):
        mosquitto_pub(broker.port, "infra/pw", "anonymous")


def test_hand_made_password_hashes_are_accepted(mosquitto_factory: Callable[..., Mosquitto],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "mosquitto_passwd" else real_which(name))
    broker = mosquitto_factory(password_file={"carol": "pa ss:word"})
    assert (broker.dir / "passwd").read_text().startswith("carol:$7$101$")
    assert password_hash("x") != password_hash("x")  # salted
    mosquitto_pub(broker.port, "infra/pw", "ok", "-u", "carol", "-P", "pa ss:word")
    with pytest.raises(AssertionError):
        mosquitto_pub(broker.port, "infra/pw", "no", "-u", "carol", "-P", "pa ss:wordX")


def test_mosquitto_acl_denies_a_topic(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    acl = "user alice\ntopic readwrite allowed/#\n\nuser admin\ntopic readwrite #\n"
    broker = mosquitto_factory(password_file={"alice": "a", "admin": "b"}, acl=acl)
    with mosquitto_sub.background(broker.port, "#", "-u", "admin", "-P", "b") as spy:
        mosquitto_pub(broker.port, "denied/x", "secret", "-u", "alice", "-P", "a")
        mosquitto_pub(broker.port, "allowed/x", "fine", "-u", "alice", "-P", "a")
        assert spy.wait_for(1) == ["allowed/x fine"]
        time.sleep(0.2)
        assert spy.lines() == ["allowed/x fine"]
    # alice cannot read it either: on MQTT 5 the SUBACK says "not authorized" (135)
    with mosquitto_sub.background(broker.port, "denied/#", "-u", "alice", "-P", "a") as sub:
        mosquitto_pub(broker.port, "denied/y", "secret", "-u", "admin", "-P", "b")
        time.sleep(0.3)
        assert sub.lines() == []


def test_mosquitto_tls_with_the_generated_ca(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(tls=True)
    assert broker.url.startswith("mqtts://127.0.0.1:") and broker.ca_file
    with mosquitto_sub.background(broker.port, "infra/tls", *broker.client_args) as sub:
        mosquitto_pub(broker.port, "infra/tls", "secure", *broker.client_args)
        assert sub.wait_for(1) == ["infra/tls secure"]
    with pytest.raises(AssertionError):  # plain TCP to the TLS listener
        mosquitto_pub(broker.port, "infra/tls", "plain", "-q", "1")


def test_mosquitto_tls_client_certificates(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(tls=True, require_certificate=True)
    assert broker.pki is not None and "--cert" in broker.client_args
    mosquitto_pub(broker.port, "infra/tls", "with cert", *broker.client_args)
    with pytest.raises(AssertionError):
        mosquitto_pub(broker.port, "infra/tls", "without", "--cafile", str(broker.pki.ca))


def test_paho_tls_against_mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(tls=True)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set(ca_certs=broker.ca_file)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_restart_on_the_same_port_keeps_retained_with_persistence(
        mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(persistence=True)
    port, pid = broker.port, broker.pid
    mosquitto_pub(broker.port, "infra/keep", "kept", "-r", "-q", "1")
    broker.restart()
    assert broker.port == port and broker.pid != pid
    assert mosquitto_sub(broker.port, "infra/keep", 1, 5) == ["infra/keep kept"]


def test_mosquitto_without_persistence_forgets_retained_on_restart(mosquitto: Mosquitto) -> None:
    mosquitto_pub(mosquitto.port, "infra/keep", "lost", "-r", "-q", "1")
    mosquitto.restart()
    assert mosquitto_sub(mosquitto.port, "infra/keep", 1, 0.5) == []


def test_mosquitto_kill_then_restart(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(persistence=True)
    mosquitto_pub(broker.port, "infra/crash", "saved", "-r", "-q", "1")
    broker.wait_for_autosave()
    with mosquitto_sub.background(broker.port, "infra/#"):
        broker.kill()
        assert broker.pid is None and not _accepts(broker.port)
        time.sleep(0.2)  # the subscriber lost its broker (mosquitto_sub keeps trying to reconnect)
    broker.restart()
    assert mosquitto_sub(broker.port, "infra/crash", 1, 5) == ["infra/crash saved"]


def test_mosquitto_start_failure_reports_the_log(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)mosquitto did not start.*no_such_option"):
        mosquitto_factory(extra=["no_such_option 1"])


def test_two_private_brokers_are_independent(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    one, two = mosquitto_factory(), mosquitto_factory()
    assert one.port != two.port
    mosquitto_pub(one.port, "infra/which", "one", "-r")
    assert mosquitto_sub(two.port, "infra/which", 1, 0.3) == []
    assert mosquitto_sub(one.port, "infra/which", 1, 5) == ["infra/which one"]


def test_mosquitto_factory_can_leave_it_stopped(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    port = free_port()
    broker = mosquitto_factory(start=False, port=port)
    assert broker.port == port and broker.pid is None and not _accepts(port)
    broker.start()
    assert broker.pid is not None and _accepts(port)
