"""Each documented setting of CarrierMQTTClient, CarrierMQTTServer and CarrierTCPClient takes effect.

One test per setting not shown elsewhere, observed from the outside: Mosquitto's own log
(the CONNECT it got: client id, protocol, clean start, keepalive, user), ``mosquitto_sub``
(QoS, retain flag, message expiry, node-state period), a frozen broker (backpressure), a
silent listener (connect timeouts) and the times of reconnection attempts. Settings already
shown by another test are listed in the lead's table (issue 11), not repeated here.

Both MQTT carriers are tried where the setting goes through a different path: a ClientRouter
over ``CarrierMQTTClient`` ("client") and a ServerRouter with ``CarrierMQTTServer`` ("server").
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mqttutil import Mosquitto, mosquitto_pub, mosquitto_sub, retained_lines
from netutil import Recorder, wait_until

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer
from sig_mqtt import CarrierMQTTClient, CarrierMQTTServer

KINDS = ["client", "server"]


class Node:
    """One MQTT node of either kind: ``router``, ``carrier`` and a way to host a sender."""

    def __init__(self, kind: str, url: str | None = None, **settings: Any) -> None:
        self.kind = kind
        carrier_class: Any = CarrierMQTTClient if kind == "client" else CarrierMQTTServer
        self.carrier = carrier_class(**settings) if url is None else carrier_class.from_url(url, **settings)
        self.router: Any
        if kind == "client":
            self.router = sig.ClientRouter(self.carrier)
        else:
            self.router = sig.ServerRouter()
            self.router.attach(self.carrier)

    @property
    def nid(self) -> str:
        return str(self.carrier.client_id)

    def connect(self, port: int | None = None, host: str | None = "127.0.0.1", **options: Any) -> bool:
        """Connect (``port`` None: the URL's address)."""
        if port is None:
            host = None
        if self.kind == "client":
            return bool(self.carrier.connect(host, port, **options))
        return bool(self.carrier.start(host, port, **options))

    def disconnect(self) -> None:
        if self.kind == "client":
            self.carrier.disconnect()
        else:
            self.carrier.stop()

    def sender(self, name: str, events: list[str], requests: Any = None) -> sig.Sender:
        if self.kind == "client":
            return self.router.addRemoteSender(name, events, requests=requests)  # type: ignore[no-any-return]
        return self.router.addSender(name, events, requests=requests)  # type: ignore[no-any-return]

    def listen(self, listener: Any, sender: str, event: str | None = None) -> None:
        if self.kind == "client":
            self.router.addRemoteListener(listener, sender, event)
        else:
            self.router.addListener(listener, sender, event)

    @property
    def dropped(self) -> int:
        """Events dropped from the buffer while offline (the ClientRouter's, or the server node's)."""
        if self.kind == "client":
            return int(self.router.dropped_signals)
        return int(self.carrier.node.dropped_events)


@pytest.fixture
def nodes() -> Iterator[Callable[..., Node]]:
    """``make(kind, **settings) -> Node`` (not connected); all are disconnected after the test."""
    made: list[Node] = []

    def make(kind: str, url: str | None = None, **settings: Any) -> Node:
        if url is None:
            settings.setdefault("prefix", prefix_)
        made.append(Node(kind, url, **settings))
        return made[-1]

    prefix_ = "s%s/sig" % uuid.uuid4().hex[:8]
    make.prefix = prefix_  # type: ignore[attr-defined]
    yield make
    for made_node in made:
        made_node.disconnect()


def times_of(caplog: pytest.LogCaptureFixture, text: str, since: float) -> list[float]:
    """When the ``sig`` log records holding ``text`` were made, in seconds after ``since``."""
    return [r.created - since for r in caplog.records if text in r.getMessage() and r.created >= since]


def assert_backoff(times: list[float]) -> None:
    """Reconnection attempts made at ``times`` with ``reconnect_min=0.1, reconnect_max=0.6``: the delay
    doubles from 0.1 s (gaps 0.2, 0.4) up to 0.6 s (then 0.6 each); the defaults give other gaps."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 4, gaps
    assert 0.1 < gaps[0] < 0.35 and 0.3 < gaps[1] < 0.55, gaps
    assert all(0.45 < gap < 0.8 for gap in gaps[-2:]), gaps


# -- what the broker sees in the CONNECT ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("protocol", "session_expiry", "expected"), [
    (5, None, "p5, c1, k7, u'alice'"),
    (4, None, "p2, c1, k7, u'alice'"),
    (5, 60, "p5, c0, k7, u'alice'"),
    (4, 60, "p2, c0, k7, u'alice'"),
])
def test_connect_carries_client_id_protocol_session_keepalive_and_user(
        mosquitto_factory: Any, nodes: Any, kind: str, protocol: int, session_expiry: int | None,
        expected: str) -> None:
    broker = mosquitto_factory(password_file={"alice": "wonder"})
    nid = "cid-%s" % uuid.uuid4().hex[:6]
    node = nodes(kind, client_id=nid, protocol=protocol, keepalive=7, username="alice", password="wonder",
                 session_expiry=session_expiry)
    assert node.connect(broker.port, auto_reconnect=False), node.carrier.last_error
    assert wait_until(lambda: broker.connections(nid) != [])
    assert broker.connections(nid) == [expected]
    wrong = nodes(kind, username="alice", password="wrong", protocol=protocol)
    assert wrong.connect(broker.port, auto_reconnect=False) is False
    assert "refused" in (wrong.carrier.last_error or "")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("credentials", ["alice:wonder@", "alice@"])
def test_url_gives_tls_credentials_address_and_prefix(mosquitto_factory: Any, nodes: Any, kind: str,
                                                      credentials: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mqtts://`` is ``tls=True`` (the system CAs: here the test CA, through ``SSL_CERT_FILE``); a URL
    without a password takes ``$SIG_MQTT_PASSWORD``."""
    broker = mosquitto_factory(tls=True, password_file={"alice": "wonder"})
    monkeypatch.setenv("SSL_CERT_FILE", broker.ca_file)
    monkeypatch.setenv("SIG_MQTT_PASSWORD", "wonder" if credentials == "alice@" else "wrong")
    prefix = "url%s/deep/sig" % uuid.uuid4().hex[:6]
    url = "mqtts://%slocalhost:%d/%s" % (credentials, broker.port, prefix)
    node = nodes(kind, url, client_id="u-%s" % uuid.uuid4().hex[:6])
    assert node.connect(auto_reconnect=False), node.carrier.last_error
    assert broker.connections(node.nid)[0].endswith("u'alice'")
    topic = "%s/node/%s" % (prefix, node.nid)
    lines = mosquitto_sub(broker.port, topic, 1, 5.0, *broker.client_args, "-u", "alice", "-P", "wonder")
    assert lines and json.loads(lines[0].split(" ", 1)[1])["online"] is True


# -- what listeners and mosquitto_sub see ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("qos", [0, 2])
def test_qos_of_events(mosquitto: Mosquitto, nodes: Any, kind: str, qos: int) -> None:
    node = nodes(kind, qos=qos)
    assert node.connect(mosquitto.port)
    signal_ = node.sender("q", ["e"]).getSignal("e")
    with mosquitto_sub.background(mosquitto.port, "%s/event/#" % nodes.prefix, "-q", "2", "-F", "%t %q %p") as sub:
        signal_.trigger(1)
        lines = sub.wait_for(1)
    assert lines == ["%s/event/q/e %d 1" % (nodes.prefix, qos)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("retain", "kept"), [(True, ["changed", "moved"]), ({"changed"}, ["changed"]),
                                              (False, [])])
def test_retain_says_which_events_the_broker_keeps(mosquitto: Mosquitto, nodes: Any, kind: str, retain: Any,
                                                   kept: list[str]) -> None:
    node = nodes(kind, retain=retain)
    assert node.connect(mosquitto.port)
    thermo = node.sender("thermo", ["changed", "moved"])
    thermo.getSignal("changed").trigger(21.5)
    thermo.getSignal("moved").trigger("x")
    topics = "%s/event/thermo/#" % nodes.prefix
    assert node.carrier.node.round_trip(), "no round trip through the broker"  # the broker has both
    lines = retained_lines(mosquitto.port, topics, fmt="%t %r")
    assert lines == ["%s/event/thermo/%s 1" % (nodes.prefix, event) for event in kept]


@pytest.mark.parametrize("kind", KINDS)
def test_heartbeat_is_the_period_of_the_node_state(mosquitto: Mosquitto, nodes: Any, kind: str) -> None:
    node = nodes(kind, heartbeat=0.4)
    assert node.connect(mosquitto.port)
    topic = "%s/node/%s" % (nodes.prefix, node.nid)
    with mosquitto_sub.background(mosquitto.port, topic, "-V", "5", "-F", "%U %E %p") as sub:
        lines = sub.wait_for(6, timeout=6)
    assert len(lines) == 6, lines
    stamps = [float(line.split(" ", 2)[0]) for line in lines[1:]]  # the 1st is the retained one
    periods = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.2 < period < 1.0 for period in periods), periods
    assert 0.3 < sum(periods) / len(periods) < 0.6, periods
    for line in lines[1:]:
        _, expiry, payload = line.split(" ", 2)
        assert json.loads(payload)["heartbeat"] == 0.4 and json.loads(payload)["online"] is True
        assert 1 <= int(expiry) <= 2  # MQTT 5 Message Expiry: 3 heartbeats, rounded up


# -- a listener that was away -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("protocol", [5, 4])
def test_session_expiry_keeps_qos1_events_for_a_node_away(mosquitto: Mosquitto, nodes: Any, kind: str,
                                                          protocol: int) -> None:
    node = nodes(kind, client_id="away-%s" % uuid.uuid4().hex[:6], protocol=protocol, session_expiry=60)
    rec = Recorder()
    assert node.connect(mosquitto.port)
    node.listen(rec.listener(), "pump", "count")
    assert node.carrier.node.round_trip()  # subscribed: the broker answered what came after
    topic = "%s/event/pump/count" % nodes.prefix
    mosquitto_pub(mosquitto.port, topic, "0", "-q", "1")
    rec.wait_for(1)
    node.disconnect()
    for n in range(1, 4):
        mosquitto_pub(mosquitto.port, topic, str(n), "-q", "1")
    assert node.connect(mosquitto.port)
    assert [c[3] for c in rec.wait_for(4)] == [0, 1, 2, 3]


# -- while offline ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_buffer_size_keeps_the_newest_events_while_offline(mosquitto: Mosquitto, nodes: Any, kind: str) -> None:
    """Offline here is a clean disconnect; the buffer is the same while the broker is unreachable
    (test_reliability_mqtt fills it with the default size while Mosquitto is down)."""
    node = nodes(kind, buffer_size=3)
    assert node.connect(mosquitto.port)
    signal_ = node.sender("pump", ["count"]).getSignal("count")
    with mosquitto_sub.background(mosquitto.port, "%s/event/pump/count" % nodes.prefix) as sub:
        signal_.trigger(0)
        assert sub.wait_for(1)
        node.disconnect()
        for n in range(1, 11):
            signal_.trigger(n)
        assert node.connect(mosquitto.port)
        signal_.trigger("end")
        lines = sub.wait_for(5)
    assert [line.split(" ", 1)[1] for line in lines] == ["0", "8", "9", "10", '"end"']
    assert node.dropped == 7


@pytest.mark.parametrize("kind", KINDS)
def test_max_outstanding_makes_a_publisher_wait_for_the_broker(mosquitto: Mosquitto, nodes: Any,
                                                               kind: str) -> None:
    node = nodes(kind, max_outstanding=4)
    assert node.connect(mosquitto.port)
    signal_ = node.sender("flood", ["e"]).getSignal("e")
    done: list[int] = []

    def publish() -> None:
        for n in range(20):
            signal_.trigger(n)
            done.append(n)

    with mosquitto_sub.background(mosquitto.port, "%s/event/flood/e" % nodes.prefix) as sub:
        assert node.carrier.node.round_trip()  # everything before is acknowledged
        assert mosquitto.pid is not None
        os.kill(mosquitto.pid, signal.SIGSTOP)  # the broker reads nothing, acknowledges nothing
        try:
            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            assert wait_until(lambda: len(done) >= 1, 5)
            publisher.join(0.5)  # with 4 QoS 1 publishes unacknowledged (its own, or a heartbeat's) it waits
            assert publisher.is_alive() and 1 <= len(done) <= 4, done
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
        publisher.join(10)
        assert not publisher.is_alive()
        lines = sub.wait_for(20)
    assert [line.split(" ", 1)[1] for line in lines] == [str(n) for n in range(20)]


# -- what a node knows -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("follow_all", [True, False])
def test_follow_all_knows_the_senders_nobody_listens_to(mosquitto: Mosquitto, nodes: Any,
                                                        follow_all: bool) -> None:
    """A server carrier follows all by default (its TCP clients may ask for anything); a client carrier only
    what its listeners need, unless told (``isSenderConnected`` would ask the broker: not used here)."""
    watcher, other = nodes("client", follow_all=follow_all), nodes("client")
    assert watcher.connect(mosquitto.port) and other.connect(mosquitto.port)
    other.sender("far", ["e"])
    assert other.carrier.node.round_trip()  # its birth is on the broker
    assert watcher.carrier.node.round_trip()  # and it reached the watcher, if subscribed
    assert ("far" in watcher.carrier.network.senders) is follow_all


def test_request_workers_bounds_the_requests_answered_at_once(mosquitto: Mosquitto, nodes: Any) -> None:
    responder, requester = nodes("client", request_workers=1), nodes("client")
    assert responder.connect(mosquitto.port) and requester.connect(mosquitto.port)
    running: list[int] = []
    most: list[int] = [0]

    def nap(params: Any) -> str:
        running.append(1)
        most[0] = max(most[0], len(running))
        time.sleep(0.3)
        running.pop()
        return "rested"

    responder.sender("sleepy", ["e"], requests={"nap": nap})
    assert wait_until(lambda: requester.carrier.isSenderConnected("sleepy"))
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(requester.router.remoteRequest("sleepy", "nap")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == ["rested"] * 3
    assert most[0] == 1  # one worker: one at a time (8 by default)


# -- requests -----------------------------------------------------------------------------------------------------


def test_request_timeout_of_the_server_carrier(mosquitto: Mosquitto, nodes: Any) -> None:
    """The client carrier's is test_mqtt_carrier::test_carrier_request_timeout_governs_the_client_router."""
    server = nodes("server", request_timeout=1.0)
    responder = nodes("client")
    assert server.connect(mosquitto.port) and responder.connect(mosquitto.port)
    responder.sender("slow", ["e"], requests={"nap": lambda p: time.sleep(p) or "late", "now": lambda p: "now"})
    assert wait_until(lambda: "slow" in server.router.senders)
    assert server.router.request("slow", "now") == "now"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        server.router.request("slow", "nap", 3)
    took = time.monotonic() - started
    assert 0.8 < took < 2.5, took
    assert server.router.request("slow", "now") == "now"  # the late reply answers nothing else


# -- connecting -------------------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", KINDS)
def test_mqtt_connect_timeout_bounds_connect(silent_port: int, nodes: Any, kind: str) -> None:
    """connect() waits for one MQTT 5 attempt, the 3.1.1 fallback and ``connack_timeout``: 12 s by default."""
    node = nodes(kind, connect_timeout=0.5)
    started = time.monotonic()
    assert node.connect(silent_port, auto_reconnect=False) is False
    took = time.monotonic() - started
    assert 2.5 < took < 5.0, took  # 2 x 0.5 + 2


def test_connack_timeout_is_how_long_mqtt_5_waits_before_trying_311(embedded_broker: Any, nodes: Any) -> None:
    """amqtt answers no MQTT 5 CONNECT (with a Will) at all: the node tries 3.1.1 after ``connack_timeout``
    (2 s by default)."""
    node = nodes("client", connack_timeout=0.3)
    started = time.monotonic()
    assert node.connect(embedded_broker.port, auto_reconnect=False)
    took = time.monotonic() - started
    assert node.carrier.node.link.protocol == 4
    assert took < 1.8, took


@pytest.mark.parametrize("kind", KINDS)
def test_mqtt_reconnect_min_and_max_space_the_attempts(mosquitto: Mosquitto, nodes: Any, kind: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sig.mqtt.link")
    node = nodes(kind, reconnect_min=0.1, reconnect_max=0.6)
    assert node.connect(mosquitto.port)
    since = time.time()
    mosquitto.stop()
    assert wait_until(lambda: len(times_of(caplog, "retrying", since)) >= 5, 6)
    assert_backoff(times_of(caplog, "retrying", since))
    mosquitto.restart()
    assert wait_until(lambda: node.carrier.isConnected(), 3)


@pytest.fixture
def tcp_server() -> Iterator[CarrierTCPServer]:
    tcp = CarrierTCPServer()
    sig.ServerRouter(tcp)
    tcp.start("127.0.0.1", 0)
    yield tcp
    tcp.stop()


def test_tcp_reconnect_min_and_max_space_the_attempts(tcp_server: CarrierTCPServer,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sig.carrier.stream")
    carrier = CarrierTCPClient(reconnect_min=0.1, reconnect_max=0.6)
    sig.ClientRouter(carrier)
    assert tcp_server.port is not None
    assert carrier.connect("127.0.0.1", tcp_server.port)
    # The port stays ours, bound but not listening (every attempt is refused): a freed port can be
    # taken by another process of a busy machine, and one attempt that connects resets the back-off.
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        since = time.time()
        tcp_server.stop()
        blocker.bind(("127.0.0.1", tcp_server.port))
        ours = "connecting failed (127.0.0.1:%d)" % tcp_server.port  # not another test's leftover client
        assert wait_until(lambda: len(times_of(caplog, ours, since)) >= 5, 6)
        assert_backoff(times_of(caplog, ours, since))
    finally:
        carrier.disconnect()
        blocker.close()


@pytest.mark.parametrize(("setting", "tls"), [("connect_timeout", True), ("handshake_timeout", False)])
def test_tcp_timeouts_bound_connect_to_a_silent_server(silent_port: int, setting: str, tls: bool) -> None:
    """TLS: the TLS handshake runs within ``connect_timeout``; then sig's handshake within ``handshake_timeout``
    (both 5 s by default)."""
    context = ssl.create_default_context() if tls else None
    carrier = CarrierTCPClient(ssl_context=context, **{setting: 0.5})  # type: ignore[arg-type]
    sig.ClientRouter(carrier)
    started = time.monotonic()
    try:
        assert carrier.connect("127.0.0.1", silent_port, auto_reconnect=False) is False
    finally:
        carrier.disconnect()
    took = time.monotonic() - started
    assert 0.4 < took < 2.0, took
