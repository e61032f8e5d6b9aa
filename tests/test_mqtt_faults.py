"""sig over MQTT when things go wrong: a killed node, a broker restart, stale state, TLS and passwords.

All on private Mosquitto processes (free ports, temporary configs), killed by PID afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import pytest
from mqttutil import mosquitto_pub, mosquitto_sub
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NODE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, %(root)r)
    import sig
    from sig_mqtt import CarrierMQTTClient
    carrier = CarrierMQTTClient(client_id=%(nid)r, prefix=%(prefix)r, protocol=%(protocol)d, keepalive=%(keepalive)d)
    router = sig.ClientRouter(carrier)
    assert carrier.connect("127.0.0.1", %(port)d)
    for name in %(senders)r:
        router.addRemoteSender(name, ["tick"])
    print("ready", flush=True)
    time.sleep(60)
    """
)


def start_node(port: int, prefix: str, senders: list[str], nid: str | None = None, protocol: int = 5,
               keepalive: int = 2) -> subprocess.Popen[str]:
    script = NODE_SCRIPT % {"root": ROOT, "nid": nid or "n" + uuid.uuid4().hex[:6], "prefix": prefix,
                            "protocol": protocol, "keepalive": keepalive, "port": port, "senders": senders}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    assert line.strip() == "ready", line
    return proc


@pytest.fixture
def prefix() -> str:
    return "f%s/sig" % uuid.uuid4().hex[:8]


def node(carriers: list[CarrierMQTTClient], port: int, **settings: Any) -> sig.ClientRouter:
    settings.setdefault("reconnect_max", 0.5)
    carrier = CarrierMQTTClient(**settings)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port), carrier.last_error
    return router


@pytest.mark.parametrize("protocol", [5, 4])
def test_killed_node_disconnects_all_its_senders(mosquitto: Any, prefix: str, carriers: list[Any],
                                                 protocol: int) -> None:
    listener = node(carriers, mosquitto.port, prefix=prefix, protocol=protocol)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), None, "#disconnect")
    listener.addRemoteListener(rec.listener(), None, "#connect")
    proc = start_node(mosquitto.port, prefix, ["s1", "s2"], protocol=protocol, keepalive=2)
    try:
        rec.wait_for(2)
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        calls = rec.wait_for(4, timeout=10)
        took = time.monotonic() - killed
    finally:
        proc.kill()
        proc.wait()
    assert sorted((c[1], c[2]) for c in calls) == [("s1", "#connect"), ("s1", "#disconnect"),
                                                   ("s2", "#connect"), ("s2", "#disconnect")]
    print("#disconnect after SIGKILL in %.2f s (keepalive 2 s)" % took)
    assert took < 1.5 * 2 + 1.0


def test_stale_births_of_a_crashed_node_are_removed(mosquitto: Any, prefix: str, carriers: list[Any]) -> None:
    proc = start_node(mosquitto.port, prefix, ["old", "kept"], nid="stable")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    router = node(carriers, mosquitto.port, prefix=prefix, client_id="stable")
    router.addRemoteSender("kept", ["tick"])
    topic = "%s/node/stable/sender/+" % prefix

    def births() -> list[str]:
        return [line.split(" ")[0].rsplit("/", 1)[1] for line in mosquitto_sub(mosquitto.port, topic, 0, 0.5)]

    assert wait_until(lambda: births() == ["kept"], timeout=5)


def test_broker_restart_mid_stream(mosquitto_factory: Any, prefix: str, carriers: list[Any]) -> None:
    broker = mosquitto_factory(persistence=False)
    # Without a persistent session a listener misses what is published before it is back:
    # the sender comes back later (slower backoff), so what it buffered reaches the listener.
    listener = node(carriers, broker.port, prefix=prefix, reconnect_min=0.1, reconnect_max=0.2)
    sender = node(carriers, broker.port, prefix=prefix, reconnect_min=1.5, reconnect_max=1.5)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "pump", "count")
    pump = sender.addRemoteSender("pump", ["count"], requests={"ping": lambda p: "pong"})
    signal_ = pump.getSignal("count")
    for i in range(10):
        signal_.trigger(i)
    rec.wait_for(10)
    broker.stop()
    assert wait_until(lambda: not sender.carrier.isConnected())  # type: ignore[attr-defined]
    for i in range(10, 20):
        signal_.trigger(i)  # buffered while the broker is down
    broker.restart()
    assert wait_until(lambda: sender.carrier.isConnected() and listener.carrier.isConnected(),  # type: ignore
                      timeout=10)
    for i in range(20, 30):
        signal_.trigger(i)
    assert wait_until(lambda: len({c[3] for c in rec.calls}) >= 30, timeout=10), rec.calls[-5:]
    # QoS 1 is at least once: a PUBACK lost in the restart may bring one event twice
    assert list(dict.fromkeys(c[3] for c in rec.calls)) == list(range(30))
    # births came back: the sender is connected and answers again
    assert wait_until(lambda: listener.carrier.isSenderConnected("pump"))  # type: ignore[attr-defined]
    assert listener.remoteRequest("pump", "ping") == "pong"


def test_persistent_session_gets_missed_qos1_events(mosquitto_factory: Any, prefix: str,
                                                    carriers: list[Any]) -> None:
    broker = mosquitto_factory(persistence=True)
    sender = node(carriers, broker.port, prefix=prefix)
    pump = sender.addRemoteSender("pump", ["count"])
    rec = Recorder()
    carrier = CarrierMQTTClient(client_id="durable-%s" % uuid.uuid4().hex[:6], prefix=prefix,
                                session_expiry=300, reconnect_max=0.5)
    listener = sig.ClientRouter(carrier)
    assert carrier.connect("127.0.0.1", broker.port)
    listener.addRemoteListener(rec.listener(), "pump", "count")
    pump.getSignal("count").trigger(0)
    rec.wait_for(1)
    carrier.disconnect()  # away for a while; the broker keeps the session
    for i in range(1, 6):
        pump.getSignal("count").trigger(i)
    assert sender.carrier.sync()  # type: ignore[attr-defined]  # the broker queued them for the session
    assert carrier.connect("127.0.0.1", broker.port)
    try:
        calls = rec.wait_for(6)
    finally:
        carrier.disconnect()
    assert [c[3] for c in calls] == list(range(6))


def test_stale_retained_state_is_offline(mosquitto: Any, prefix: str, carriers: list[Any]) -> None:
    old = int((time.time() - 3600) * 1000)
    fresh = int(time.time() * 1000)
    for nid, ts in (("ghost", old), ("alive", fresh)):
        mosquitto_pub(mosquitto.port, "%s/node/%s" % (prefix, nid),
                      json.dumps({"online": True, "session": "s", "ts": ts, "proto": 5, "heartbeat": 30}), "-r")
        mosquitto_pub(mosquitto.port, "%s/node/%s/sender/%s-sender" % (prefix, nid, nid),
                      json.dumps({"events": ["e"], "requests": None, "session": "s"}), "-r")
    router = node(carriers, mosquitto.port, prefix=prefix)
    router.addRemoteListener(lambda i, d: None)
    carrier: Any = router.carrier
    assert wait_until(lambda: carrier.isSenderConnected("alive-sender"))
    assert not carrier.isSenderConnected("ghost-sender")


def test_tls_and_password(mosquitto_factory: Any, prefix: str, carriers: list[Any]) -> None:
    broker = mosquitto_factory(tls=True, password_file={"alice": "wonder"})
    ca = broker.ca_file
    bad = CarrierMQTTClient(prefix=prefix, tls=ca, username="alice", password="wrong")
    assert bad.connect("localhost", broker.port, auto_reconnect=False) is False
    assert "refused" in (bad.last_error or "") or "Not authorized" in (bad.last_error or "")
    a = node(carriers, broker.port, prefix=prefix, tls=ca, username="alice", password="wonder")
    b = node(carriers, broker.port, prefix=prefix, tls=ca, username="alice", password="wonder")
    rec = Recorder()
    b.addRemoteListener(rec.listener(), "secure", "e")
    a.addRemoteSender("secure", ["e"], requests={"q": lambda p: p * 2}).getSignal("e").trigger("x")
    assert rec.wait_for(1)[0][3] == "x"
    assert wait_until(lambda: b.carrier.isSenderConnected("secure"))  # type: ignore[attr-defined]
    assert b.remoteRequest("secure", "q", 21) == 42


def test_oversized_and_malformed_messages_are_dropped(mosquitto: Any, prefix: str, carriers: list[Any]) -> None:
    router = node(carriers, mosquitto.port, prefix=prefix, max_payload=1000)
    rec = Recorder()
    router.addRemoteListener(rec.listener(), "dev", None)
    mosquitto_pub(mosquitto.port, "%s/event/dev/big" % prefix, "x" * 5000)
    mosquitto_pub(mosquitto.port, "%s/node/weird" % prefix, "not json", "-r")
    mosquitto_pub(mosquitto.port, "%s/node/weird/sender/dev" % prefix, "[1, 2]", "-r")
    mosquitto_pub(mosquitto.port, "%s/request/dev/x" % prefix, "\xff garbage")
    mosquitto_pub(mosquitto.port, "%s/reply/nobody" % prefix, "{")
    mosquitto_pub(mosquitto.port, "%s/event/dev/small" % prefix, '{"ok": true}')
    calls = rec.wait_for(1)
    assert rec.settle(0.3) == calls == [("", "dev", "small", {"ok": True})]
    assert router.carrier.node.dropped_oversized == 1  # type: ignore[attr-defined]


def test_a_node_that_stops_its_heartbeat_goes_offline(mosquitto: Any, prefix: str, carriers: list[Any]) -> None:
    router = node(carriers, mosquitto.port, prefix=prefix)
    rec = Recorder()
    router.addRemoteListener(rec.listener(), "quiet")
    state = {"online": True, "session": "s1", "ts": int(time.time() * 1000), "proto": 4, "heartbeat": 0.5}
    started = time.monotonic()
    mosquitto_pub(mosquitto.port, "%s/node/silent" % prefix, json.dumps(state))
    mosquitto_pub(mosquitto.port, "%s/node/silent/sender/quiet" % prefix,
                  json.dumps({"events": ["e"], "requests": None, "session": "s1"}))
    calls = rec.wait_for(2, timeout=5)  # #connect, then #disconnect after 1.5 heartbeats of silence
    took = time.monotonic() - started
    assert [c[2] for c in calls] == ["#connect", "#disconnect"]
    print("silent node taken as offline after %.2f s (heartbeat 0.5 s)" % took)
    assert 0.75 <= took < 2.0  # 0.75 s after its state arrived


def test_tls_with_a_client_certificate(mosquitto_factory: Any, prefix: str, carriers: list[Any]) -> None:
    import ssl

    broker = mosquitto_factory(tls=True, require_certificate=True)
    pki = broker.pki
    anonymous = CarrierMQTTClient(prefix=prefix, tls=broker.ca_file)
    assert anonymous.connect("localhost", broker.port, auto_reconnect=False) is False  # no certificate: refused
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    a = node(carriers, broker.port, prefix=prefix, tls=context)
    b = node(carriers, broker.port, prefix=prefix, tls=context)
    rec = Recorder()
    b.addRemoteListener(rec.listener(), "cert", "e")
    a.addRemoteSender("cert", ["e"]).getSignal("e").trigger(1)
    assert rec.wait_for(1)[0][3] == 1
