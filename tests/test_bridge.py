"""sig-bridge end to end: the bridge as a subprocess, private Mosquitto brokers, real clients on both sides."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bridgeutil import ROOT
from mqttutil import free_port, mosquitto_pub, mosquitto_sub
from netutil import Recorder, wait_until

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig_mqtt import CarrierMQTTClient


@pytest.fixture
def prefix() -> str:
    return "b%s/sig" % uuid.uuid4().hex[:8]


def mqtt_node(port: int, prefix: str, made: list[Any], **settings: Any) -> sig.ClientRouter:
    carrier = CarrierMQTTClient(prefix=prefix, reconnect_max=0.5, **settings)
    made.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port)
    return router


@pytest.fixture
def nodes() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for carrier in made:
        carrier.disconnect()


def test_tcp_client_events_seen_by_mosquitto_sub(mosquitto: Any, bridges: Any, prefix: str) -> None:
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--prefix", prefix, "--node-id", "b1")
    client = bridge.client()
    sub = mosquitto_sub.background(mosquitto.port, "%s/#" % prefix)
    try:
        thermo = client.addRemoteSender("thermo", ["changed"])
        thermo.getSignal("changed").trigger({"t": 19.5})
        assert wait_until(lambda: any("/event/thermo/changed" in line for line in sub.lines()))
    finally:
        sub.stop()
    lines = dict(line.split(" ", 1) for line in sub.lines())
    assert json.loads(lines["%s/event/thermo/changed" % prefix]) == {"t": 19.5}
    assert json.loads(lines["%s/node/b1/sender/thermo" % prefix])["events"] == ["changed"]
    assert json.loads(lines["%s/node/b1" % prefix])["online"] is True
    client.carrier.disconnect()  # type: ignore[attr-defined]


def test_rules_both_ways(mosquitto: Any, bridges: Any, prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(textwrap.dedent(
        """
        [[inbound]]
        topic = "z2m%(tag)s/+"
        sender = "{1}"
        event = "#temperature"
        field = "temperature"

        [[inbound]]
        topic = "z2m%(tag)s/+/availability"
        sender = "{1}"
        availability = true

        [[outbound]]
        sender = "thermo"
        event = "changed"
        topic = "ha%(tag)s/{sender}/state"
        retain = true
        """ % {"tag": prefix.split("/")[0]}
    ))
    tag = prefix.split("/")[0]
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--prefix", prefix, "--config", str(config))
    client = bridge.client()
    rec = Recorder()
    client.addRemoteListener(rec.listener(), "kitchen", None)
    mosquitto_pub(mosquitto.port, "z2m%s/kitchen/availability" % tag, "online")
    mosquitto_pub(mosquitto.port, "z2m%s/kitchen" % tag, json.dumps({"temperature": 21.5, "humidity": 40}))
    calls = rec.wait_for(2)
    assert calls[0][2] == "#connect"
    assert calls[1][1:] == ("kitchen", "#temperature", 21.5)
    thermo = client.addRemoteSender("thermo", ["changed"])
    thermo.getSignal("changed").trigger(22)
    assert wait_until(lambda: mosquitto_sub(mosquitto.port, "ha%s/thermo/state" % tag, 1, 1.0) != [])
    assert mosquitto_sub(mosquitto.port, "ha%s/thermo/state" % tag, 1, 1.0)[0].endswith(" 22")


def test_requests_cross_both_ways(mosquitto: Any, bridges: Any, prefix: str, nodes: list[Any]) -> None:
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--prefix", prefix)
    tcp = bridge.client()
    presence = Recorder()
    tcp.addRemoteListener(presence.listener(), None, "#connect")
    tcp.addRemoteListener(presence.listener(), None, "#disconnect")
    mq = mqtt_node(mosquitto.port, prefix, nodes)
    mq.addRemoteSender("calc", ["e"], requests={"add": lambda p: p[0] + p[1]})
    mq.addRemoteSender("brief", ["e"])
    mq.removeRemoteSender("brief")
    calls = presence.wait_for(3)
    assert [(c[1], c[2]) for c in calls[:3]] == [("calc", "#connect"), ("brief", "#connect"),
                                                 ("brief", "#disconnect")]
    tcp.addRemoteSender("lamp", ["on"], requests={"state": lambda p: "lit"})
    assert wait_until(lambda: nodes[0].isSenderConnected("lamp"))
    assert mq.remoteRequest("lamp", "state") == "lit"
    deadline = time.monotonic() + 5
    while True:
        try:
            assert tcp.remoteRequest("calc", "add", [20, 22]) == 42
            break
        except NameError:
            assert time.monotonic() < deadline, "calc never appeared to the TCP client"
            time.sleep(0.1)
    with pytest.raises(LookupError):
        tcp.remoteRequest("calc", "nope")
    tcp.carrier.disconnect()  # type: ignore[attr-defined]


def test_two_sites_exchange_each_event_once(mosquitto: Any, bridges: Any, prefix: str) -> None:
    url = "mqtt://127.0.0.1:%d" % mosquitto.port
    site_a = bridges("--mqtt", url, "--prefix", prefix, "--node-id", "site-a")
    site_b = bridges("--mqtt", url, "--prefix", prefix, "--node-id", "site-b")
    a, b = site_a.client(), site_b.client()
    rec_a, rec_b = Recorder(), Recorder()
    a.addRemoteListener(rec_a.listener("a"), "pump", "count")
    b.addRemoteListener(rec_b.listener("b"), "pump", "count")
    pump = a.addRemoteSender("pump", ["count"])
    for i in range(20):
        pump.getSignal("count").trigger(i)
    assert [c[3] for c in rec_b.wait_for(20)] == list(range(20))
    rec_a.wait_for(20)
    assert [c[3] for c in rec_a.settle(0.3)] == list(range(20))  # and no second copy
    assert [c[3] for c in rec_b.settle()] == list(range(20))
    for router in (a, b):
        router.carrier.disconnect()  # type: ignore[attr-defined]


def test_broker_restart_under_the_bridge(mosquitto_factory: Any, bridges: Any, prefix: str,
                                         nodes: list[Any]) -> None:
    broker = mosquitto_factory(persistence=False)
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % broker.port, "--prefix", prefix)
    tcp = bridge.client()
    pump = tcp.addRemoteSender("pump", ["count"])
    listener = mqtt_node(broker.port, prefix, nodes)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "pump", "count")
    pump.getSignal("count").trigger(0)
    rec.wait_for(1)
    broker.stop()
    time.sleep(0.5)
    broker.restart()
    assert wait_until(lambda: nodes[0].isSenderConnected("pump"), timeout=15), bridge.text()
    pump.getSignal("count").trigger(1)
    assert [c[3] for c in rec.wait_for(2, timeout=10)] == [0, 1]
    tcp.carrier.disconnect()  # type: ignore[attr-defined]


def test_embedded_broker_by_default(bridges: Any, prefix: str, nodes: list[Any]) -> None:
    broker_port = free_port()
    bridge = bridges("--broker-listen", "127.0.0.1:%d" % broker_port, "--prefix", prefix)
    assert "embedded" in bridge.text()
    tcp = bridge.client()
    listener = mqtt_node(broker_port, prefix, nodes, protocol=4)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "t", "e")
    tcp.addRemoteSender("t", ["e"]).getSignal("e").trigger("hello")
    assert rec.wait_for(1)[0][3] == "hello"
    tcp.carrier.disconnect()  # type: ignore[attr-defined]


def test_errors_are_one_line(bridges: Any, tmp_path: Path, mosquitto: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[bridge]\nprefix = "x"\n\n[[inbound]]\ntopic = "a/+"\nsender = "{1}"\nevnt = "e"\n')
    done = subprocess.run([sys.executable, "-m", "bridge", "--config", str(bad)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "bad.toml:7" in done.stderr, done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--listen",
             "127.0.0.1:%d" % port], cwd=ROOT, capture_output=True, text=True, timeout=30,
            env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot listen on 127.0.0.1:%d" % port in last and "Traceback" not in done.stderr


def test_unreachable_broker_is_retried_and_sigterm_exits_0(bridges: Any, prefix: str) -> None:
    port = free_port()
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % port, "--prefix", prefix, ready=False)
    assert wait_until(lambda: "not reachable" in bridge.text(), timeout=10), bridge.text()
    assert wait_until(lambda: bridge.text().count("retrying") >= 3, timeout=10), bridge.text()  # one per attempt
    assert bridge.proc.poll() is None
    started = time.monotonic()
    assert bridge.stop() == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in bridge.text()


def test_access_control_from_the_config(mosquitto: Any, bridges: Any, prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(textwrap.dedent(
        """
        [auth]
        anonymous = false

        [[auth.users]]
        name = "kitchen"
        password = "s3cret"

        [[acl]]
        user = "kitchen"
        senders = ["kitchen.*"]
        listen = ["*"]
        request = ["*"]
        """
    ))
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--prefix", prefix, "--config", str(config))
    anonymous = CarrierTCPClient()
    sig.ClientRouter(anonymous)
    assert anonymous.connect("127.0.0.1", bridge.tcp_port, auto_reconnect=False) is False
    carrier = CarrierTCPClient(username="kitchen", password="s3cret")
    router = sig.ClientRouter(carrier)
    assert carrier.connect("127.0.0.1", bridge.tcp_port, auto_reconnect=False)
    try:
        router.addRemoteSender("kitchen.light", ["on"])
        with pytest.raises(PermissionError):
            router.addRemoteSender("garage.door", ["open"])
    finally:
        carrier.disconnect()
    assert "s3cret" not in bridge.text()
