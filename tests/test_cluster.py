"""Several brokers: a node fails over to the next one when its broker dies (private Mosquittos).

Two independent Mosquitto processes stand in for two members of a cluster: a node given
both moves to the second when the first is killed (by PID), re-publishes its births
there, and a node that was on the second all along sees its senders come online and
hears their events. The figures printed are the measured failover times.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from clusterutil import cluster_node
from mqttutil import free_port
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient

pytestmark = pytest.mark.cluster


def _node(carriers: list[Any], brokers: Any, prefix: str,
          **settings: Any) -> tuple[CarrierMQTTClient, sig.ClientRouter]:
    settings.setdefault("reconnect_min", 0.1)
    settings.setdefault("reconnect_max", 1.0)
    return cluster_node(carriers, brokers, prefix, **settings)


@pytest.mark.parametrize("protocol", [5, 4])
def test_node_fails_over_to_the_second_mosquitto_and_events_cross(
        mosquitto_factory: Any, carriers: list[Any], protocol: int) -> None:
    first, second = mosquitto_factory(), mosquitto_factory()
    prefix = "c%s/sig" % uuid.uuid4().hex[:8]
    brokers = [(first.host, first.port), (second.host, second.port)]
    hosting, sender_router = _node(carriers, brokers, prefix, protocol=protocol, heartbeat=2.0)
    thermo = sender_router.addRemoteSender("thermo", ["changed"], requests={"read": lambda params: 21})
    assert hosting.node.link.address == brokers[0]
    _, listener = _node(carriers, brokers[1], prefix, protocol=protocol)
    rec = Recorder()
    listener.addRemoteListener(rec.listener("connect"), "thermo", "#connect")
    listener.addRemoteListener(rec.listener("event"), "thermo", "changed")
    assert not listener.carrier.isSenderConnected("thermo")  # on another broker for now

    killed = time.monotonic()
    first.kill()
    assert wait_until(lambda: hosting.isConnected() and hosting.node.link.address == brokers[1], 10.0)
    moved = time.monotonic() - killed
    assert wait_until(lambda: listener.carrier.isSenderConnected("thermo"), 10.0)
    seen = time.monotonic() - killed
    rec.wait_for(1)
    thermo.getSignal("changed").trigger(22.5)
    calls = rec.wait_for(2)
    assert ("event", "thermo", "changed", 22.5) in calls
    assert listener.remoteRequest("thermo", "read", None) == 21
    print("\nMQTT %d: node online on the second Mosquitto %.2f s after the first was killed; its sender "
          "seen there after %.2f s" % (protocol, moved, seen))


def test_connect_skips_a_dead_first_broker(mosquitto: Any, carriers: list[Any]) -> None:
    dead = ("127.0.0.1", free_port())
    started = time.monotonic()
    carrier, _ = _node(carriers, [dead, (mosquitto.host, mosquitto.port)], "c%s/sig" % uuid.uuid4().hex[:8])
    assert carrier.node.link.address == (mosquitto.host, mosquitto.port)
    assert carrier.brokers == [dead, (mosquitto.host, mosquitto.port)]
    print("\nconnect() online on the second address %.2f s after a refused first" % (time.monotonic() - started))


def test_connect_fails_when_every_broker_is_dead(carriers: list[Any]) -> None:
    carrier = CarrierMQTTClient(prefix="x", reconnect_min=0.05, reconnect_max=0.1)
    carriers.append(carrier)
    started = time.monotonic()
    assert not carrier.connect([("127.0.0.1", free_port()), ("127.0.0.1", free_port())], auto_reconnect=True)
    assert time.monotonic() - started < 5.0
    assert "cannot reach" in (carrier.last_error or "")


def test_url_with_two_hosts_fails_over(mosquitto_factory: Any, carriers: list[Any]) -> None:
    first, second = mosquitto_factory(), mosquitto_factory()
    carrier = CarrierMQTTClient.from_url("mqtt://127.0.0.1:%d,127.0.0.1:%d/u%s" % (
        first.port, second.port, uuid.uuid4().hex[:6]), reconnect_min=0.1)
    carriers.append(carrier)
    assert carrier.connect()
    assert carrier.node.link.address == ("127.0.0.1", first.port)
    first.kill()
    assert wait_until(lambda: carrier.isConnected() and carrier.node.link.address == ("127.0.0.1", second.port), 10.0)


def test_sig_bridge_with_repeated_mqtt_fails_over(mosquitto_factory: Any, bridges: Any, carriers: list[Any]) -> None:
    first, second = mosquitto_factory(), mosquitto_factory()
    prefix = "g%s/sig" % uuid.uuid4().hex[:6]
    bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d/%s" % (first.port, prefix), "--mqtt",
                     "mqtt://127.0.0.1:%d" % second.port, "--node-id", "gw1")
    client = bridge.client()
    try:
        door = client.addRemoteSender("door", ["open"])
        _, listener = _node(carriers, (second.host, second.port), prefix)
        rec = Recorder()
        listener.addRemoteListener(rec.listener(), "door", "open")
        assert not listener.carrier.isSenderConnected("door")
        killed = time.monotonic()
        first.kill()
        assert wait_until(lambda: listener.carrier.isSenderConnected("door"), 15.0), bridge.text()[-2000:]
        moved = time.monotonic() - killed
        door.getSignal("open").trigger(True)
        assert rec.wait_for(1, 10.0) == [("", "door", "open", True)]
        assert "127.0.0.1:%d" % second.port in bridge.text()
        print("\nsig-bridge: its sender seen on the second Mosquitto %.2f s after the first was killed" % moved)
    finally:
        client.carrier.disconnect()


def test_a_member_that_refuses_the_connection_is_passed_over(mosquitto_factory: Any, carriers: list[Any]) -> None:
    refusing = mosquitto_factory(password_file={"someone": "secret"})  # anonymous clients are refused
    open_broker = mosquitto_factory()
    carrier = CarrierMQTTClient(prefix="c%s/sig" % uuid.uuid4().hex[:6], reconnect_min=0.1)
    carriers.append(carrier)
    carrier.connect([(refusing.host, refusing.port), (open_broker.host, open_broker.port)])
    assert wait_until(lambda: carrier.isConnected(), 10.0)
    assert carrier.node.link.address == (open_broker.host, open_broker.port)


def test_a_late_joiner_sees_senders_already_online_from_retained_births(
        mosquitto: Any, carriers: list[Any]) -> None:
    prefix = "j%s/sig" % uuid.uuid4().hex[:6]
    _, sender_router = _node(carriers, (mosquitto.host, mosquitto.port), prefix)
    sender_router.addRemoteSender("thermo", ["changed"], requests={"read": lambda params: 21})
    started = time.monotonic()
    late, late_router = _node(carriers, (mosquitto.host, mosquitto.port), prefix)
    assert late.isSenderConnected("thermo")  # the first call subscribes; the retained birth comes first
    seen = time.monotonic() - started
    assert late_router.remoteRequest("thermo", "read", None) == 21
    print("\nMosquitto: a late joiner sees the sender %.3f s after it started (retained births)" % seen)
