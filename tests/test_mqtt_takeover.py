"""Two clients with one client id: a session takeover is named as such and the loser backs off.

Real parts: a private Mosquitto (MQTT 5 and 3.1.1), sig's MQTT carriers, sig-bridge subprocesses.
The decision itself (:class:`sig_mqtt._takeover.DropGuard`) is tested without a broker first.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from bridgeutil import BridgeProc
from mqttutil import mosquitto_sub
from netutil import Recorder, wait_until

import sig
from bridge.service import default_node_id
from sig_mqtt import CarrierMQTTClient
from sig_mqtt._takeover import SESSION_TAKEN_OVER, DropGuard

# -- the decision, without a broker -------------------------------------------------------------


def test_an_ordinary_drop_is_not_a_takeover() -> None:
    guard = DropGuard(window=3.0, limit=3, backoff=10.0)
    guard.connected(100.0)
    verdict = guard.dropped(200.0, 0x80)
    assert (verdict.takeover, verdict.suspected, verdict.streak, verdict.delay) == (False, False, 0, None)
    assert verdict.message("n1") is None


def test_mqtt5_takeover_is_named_at_once_and_backs_off_after_the_limit() -> None:
    guard = DropGuard(window=3.0, limit=3, backoff=10.0, backoff_max=300.0)
    guard.connected(0.0)
    first = guard.dropped(60.0, SESSION_TAKEN_OVER)
    assert first.takeover and first.streak == 1 and first.delay is None
    message = first.message("kitchen")
    assert message is not None and "'kitchen'" in message and "session taken over" in message
    assert "--node-id" in message and "client_id" in message
    delays = []
    for t in range(1, 6):
        guard.connected(60.0 + t)
        delays.append(guard.dropped(60.2 + t, SESSION_TAKEN_OVER).delay)
    assert delays == [None, 10.0, 20.0, 40.0, 80.0]
    assert guard.takeovers == 6


def test_the_311_pattern_is_drops_right_after_connack() -> None:
    guard = DropGuard(window=3.0, limit=3, backoff=10.0)
    verdicts = []
    for t in range(4):
        guard.connected(10.0 * t)
        verdicts.append(guard.dropped(10.0 * t + 0.3, None))
    assert [v.suspected for v in verdicts] == [False, False, True, True]
    assert [v.delay for v in verdicts] == [None, None, 10.0, 20.0]
    message = verdicts[2].message("b1")
    assert message is not None and "3 times in a row" in message and "waiting 10 s" in message
    assert "cluster member" not in message
    clustered = verdicts[2].message("b1", clustered=True)  # several brokers: a second likely cause
    assert clustered is not None and "cluster member that cannot resume our session" in clustered
    guard.connected(100.0)  # a connection that lasts ends the streak
    verdict = guard.dropped(110.0, None)
    assert (verdict.streak, verdict.delay, verdict.message("b1")) == (0, None, None)


def test_backoff_is_capped_and_jittered() -> None:
    guard = DropGuard(window=3.0, limit=1, backoff=10.0, backoff_max=40.0)
    delays = []
    for t in range(5):
        guard.connected(float(t))
        delays.append(guard.dropped(t + 0.1, None, jitter=0.999).delay)
    assert delays == pytest.approx([12.5, 25.0, 49.99, 49.99, 49.99], rel=1e-3)
    with pytest.raises(ValueError):
        DropGuard(limit=0)


def test_default_node_id_is_per_host_and_port_and_stable() -> None:
    assert default_node_id(3000, "kitchen-pi") == "sig-bridge-kitchen-pi-3000"
    assert default_node_id(3001, "kitchen-pi") != default_node_id(3000, "kitchen-pi")
    assert default_node_id(3000, "pi.local") == "sig-bridge-pi-local-3000"  # one plain level on NATS too
    assert default_node_id(3000, "a/b+#c") == "sig-bridge-a-b-c-3000"
    assert default_node_id(3000) == default_node_id(3000)


# -- one client id twice on a real broker --------------------------------------------------------


class LogLines(logging.Handler):
    """Collects the messages of one logger (thread-safe)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._lock2 = threading.Lock()
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.lines.append(record.getMessage())

    def matching(self, pattern: str) -> list[str]:
        with self._lock2:
            return [line for line in self.lines if re.search(pattern, line)]

    def __enter__(self) -> LogLines:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


@pytest.fixture
def made(carriers: list[Any]) -> list[Any]:
    """The carriers a test made (mqttutil's ``carriers``: disconnected at its end)."""
    return carriers


@pytest.mark.parametrize("protocol", [5, 4])
def test_same_client_id_twice_backs_off_instead_of_fighting(
    mosquitto: Any, made: list[CarrierMQTTClient], protocol: int
) -> None:
    prefix = "to%s/sig" % uuid.uuid4().hex[:6]
    nid = "twin-%s" % uuid.uuid4().hex[:6]

    def node() -> sig.ClientRouter:
        carrier = CarrierMQTTClient(client_id=nid, prefix=prefix, protocol=protocol, reconnect_min=0.1,
                                    reconnect_max=0.5, drop_backoff=30.0)
        made.append(carrier)
        router = sig.ClientRouter(carrier)
        assert carrier.connect("127.0.0.1", mosquitto.port)
        return router

    with LogLines("sig.mqtt.link") as log:
        first = node()
        first.addRemoteSender("lamp", ["on"])
        second = node()  # the same id: the broker hands it the session
        # Mosquitto 2.0.11 closes the socket on a takeover without an MQTT 5 DISCONNECT 0x8E, so on
        # both protocols it shows as the pattern; a broker that sends 0x8E gets the first message.
        what = "session taken over|right after CONNACK"
        assert wait_until(lambda: bool(log.matching("waiting \\d+ s before trying again")), 15.0), log.lines
        named = log.matching(what)
        assert named and all(repr(nid) in line and "--node-id" in line for line in named), log.lines
        # One of them now waits 30 s or more; the other keeps the session undisturbed.
        carriers = [r.carrier for r in (first, second)]

        def one_holds() -> bool:  # the link, not the node: a node learns of its drop a moment later
            links = [c.node.link.connected for c in carriers]  # type: ignore[attr-defined]
            return links.count(True) == 1 and carriers[links.index(True)].isConnected()

        assert wait_until(one_holds, 10.0), log.lines
        holder = (first, second)[[c.node.link.connected for c in carriers].index(True)]  # type: ignore[attr-defined]
        drops_before = len(log.matching(what))
        listener = CarrierMQTTClient(prefix=prefix, protocol=protocol)
        made.append(listener)
        observer = sig.ClientRouter(listener)
        assert listener.connect("127.0.0.1", mosquitto.port)
        rec = Recorder()
        observer.addRemoteListener(rec.listener(), "beacon", "tick")
        beacon = holder.addRemoteSender("beacon", ["tick"])
        if not wait_until(lambda: listener.isSenderConnected("beacon"), 10.0):
            retained = mosquitto_sub(mosquitto.port, "%s/node/#" % prefix, 0, 1.0)
            presence = listener.node.presence
            pytest.fail("beacon not seen: holder ready %s; observer's view %r %r; retained %r; log %r" % (
                holder.carrier.isConnected(), {n: (v.state, v.stale, v.senders) for n, v in presence.nodes.items()},
                presence.births, retained, log.lines))
        for i in range(20):
            beacon.getSignal("tick").trigger(i)
            time.sleep(0.1)
        assert [call[3] for call in rec.wait_for(20)] == list(range(20))
        assert holder.carrier.isConnected()
        assert len(log.matching(what)) == drops_before, log.lines


# -- two bridges with default settings on one broker -------------------------------------------


def test_two_default_bridges_on_one_broker_each_get_their_own_node_id(mosquitto: Any, tmp_path: Path) -> None:
    prefix = "tb%s/sig" % uuid.uuid4().hex[:6]
    url = "mqtt://127.0.0.1:%d" % mosquitto.port
    a = BridgeProc("--mqtt", url, "--prefix", prefix, tmp=tmp_path)
    b = BridgeProc("--mqtt", url, "--prefix", prefix, tmp=tmp_path)
    routers: list[sig.ClientRouter] = []
    try:
        a.wait_ready()
        b.wait_ready()
        host = socket.gethostname()
        for bridge in (a, b):
            assert "MQTT node %s " % default_node_id(bridge.tcp_port, host) in bridge.text(), bridge.text()
        sender_side, listener_side = a.client(), b.client()
        routers += [sender_side, listener_side]
        rec = Recorder()
        listener_side.addRemoteListener(rec.listener(), "porch", None)  # #connect, then the events
        porch = sender_side.addRemoteSender("porch", ["motion"])
        assert wait_until(lambda: len(rec.calls) >= 1, 10.0)  # #connect crossed the broker
        for i in range(10):
            porch.getSignal("motion").trigger(i)
        calls = rec.wait_for(11)
        assert [c[3] for c in calls if c[2] == "motion"] == list(range(10))
        for bridge in (a, b):
            assert "taken over" not in bridge.text() and "lost the broker" not in bridge.text(), bridge.text()
    finally:
        for router in routers:
            router.carrier.disconnect()  # type: ignore[attr-defined]
        assert a.stop() == 0
        assert b.stop() == 0
