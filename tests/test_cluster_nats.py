"""sig on a private 3-node NATS cluster (JetStream + MQTT 3.1.1 gateway), started once for the module.

Member ports, data directories and ``stream_replicas: 3`` as in CLUSTERS.md; each server
in its own session, killed by PID. The tests that kill a member come after the others, and
each of them starts the members an earlier one killed first. Nodes use MQTT 3.1.1 (NATS
refuses MQTT 5; the fallback works but costs each connect half a second on this loaded machine).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clusterutil import (
    NatsCluster,
    booted,
    disconnects_after_member_death,
    member_node,
    second_registration_yields,
    sees,
)
from mqttutil import retained_lines
from netutil import Recorder, wait_until

import sig

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsCluster]:
    with booted(NatsCluster(), "NATS cluster healthy") as cluster:
        yield cluster


def test_portable_ids_carry_a_sender_named_with_a_dot_and_a_space_across_members(
        nats: NatsCluster, carriers: list[Any]) -> None:
    prefix = "p%s/sig" % uuid.uuid4().hex[:6]
    hosting, sender_router = member_node(carriers, nats.member(0), prefix, portable_ids=True)
    odd = sender_router.addRemoteSender("a.b c", ["t.x *>"], requests={"get.it now": lambda params: [params, "ok"]})
    listening, listener = member_node(carriers, nats.member(2), prefix, portable_ids=True)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "a.b c", "t.x *>")
    assert wait_until(lambda: listening.isSenderConnected("a.b c"), 10.0)
    for value in range(3):
        odd.getSignal("t.x *>").trigger(value)
    assert sorted(call[3] for call in rec.wait_for(3, 10.0)) == [0, 1, 2]
    assert listener.remoteRequest("a.b c", "get.it now", "p.q") == ["p.q", "ok"]
    assert hosting.isConnected() and listening.isConnected()
    assert hosting.node.link.drops.streak == 0  # NATS never dropped the publisher


def test_qos2_on_nats_is_granted_as_qos1_logged_once_per_filter(nats: NatsCluster, carriers: list[Any],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    prefix = "q%s/sig" % uuid.uuid4().hex[:6]
    with caplog.at_level(logging.WARNING, logger="sig.mqtt"):
        hosting, sender_router = member_node(carriers, nats.member(0), prefix, qos=2)
        thermo = sender_router.addRemoteSender("thermo", ["changed"])
        listening, listener = member_node(carriers, nats.member(1), prefix, qos=2)
        rec = Recorder()
        listener.addRemoteListener(rec.listener(), "thermo", "changed")
        assert wait_until(lambda: listening.isSenderConnected("thermo"), 10.0)
        thermo.getSignal("changed").trigger(1)
        assert rec.wait_for(1, 10.0)[0][1:] == ("thermo", "changed", 1)
        thermo.getSignal("changed").trigger(2)  # at QoS 1: a QoS 2 PUBLISH would make NATS drop the node
        assert rec.wait_for(2, 10.0)[1][1:] == ("thermo", "changed", 2)
    messages = [record.getMessage() for record in caplog.records]
    downgraded = [message for message in messages if "granted QoS 1 instead of 2" in message]
    assert sum(message.endswith("/event/thermo/changed") for message in downgraded) == 1, downgraded  # once
    assert sum("grants QoS 1 at most" in message for message in messages) == 2  # once per node
    assert hosting.node.link.subacks.max_qos == listening.node.link.subacks.max_qos == 1
    assert hosting.isConnected() and listening.isConnected()
    assert not any("lost the broker" in message for message in messages)


def test_a_shared_sender_is_refused_clearly_and_the_name_stays_free(nats: NatsCluster, carriers: list[Any]) -> None:
    """NATS accepts ``$share/...`` subscriptions and delivers nothing: the probe says so at registration."""
    prefix = "s%s/sig" % uuid.uuid4().hex[:6]
    hosting, router = member_node(carriers, nats.member(0), prefix)
    started = time.monotonic()
    with pytest.raises(sig.SigError, match="shared subscriptions are not supported by this broker"):
        router.addRemoteSender("pool", ["done"], requests={"work": lambda params: 1}, shared=True)
    refused = time.monotonic() - started
    assert hosting.isConnected() and "pool" not in router.senders
    router.addRemoteSender("pool", ["done"], requests={"work": lambda params: 1})  # as a plain sender
    requesting, requester = member_node(carriers, nats.member(1), prefix)
    assert wait_until(lambda: requesting.isSenderConnected("pool"), 10.0)
    assert requester.remoteRequest("pool", "work") == 1
    print("\nNATS: shared sender refused after %.2f s" % refused)


def test_a_name_held_on_one_member_stays_with_its_first_owner(nats: NatsCluster, carriers: list[Any]) -> None:
    outcome = second_registration_yields(carriers, [nats.member(index) for index in range(3)],
                                         "o%s/sig" % uuid.uuid4().hex[:6])
    print("\nNATS: a second registration of a held name on another member: " + outcome)


def test_member_killed_under_a_node_it_fails_over_and_events_still_cross(
        nats: NatsCluster, carriers: list[Any]) -> None:
    prefix = "n%s/sig" % uuid.uuid4().hex[:6]
    hosting, sender_router = member_node(carriers, [nats.member(0), nats.member(1)], prefix, heartbeat=2.0)
    thermo = sender_router.addRemoteSender("thermo", ["changed"], requests={"read": lambda params: 21})
    _, listener = member_node(carriers, nats.member(2), prefix)
    rec = Recorder()
    listener.addRemoteListener(rec.listener("event"), "thermo", "changed")
    assert wait_until(lambda: listener.carrier.isSenderConnected("thermo"), 10.0)
    # NATS may take longer than the listener's SUBACK wait to route its subscription (r30, loaded: "no
    # SUBACK in 5.0 s", then the one event sent went nowhere): send until the first one crosses
    started = time.monotonic()
    while not rec.calls and time.monotonic() - started < 30.0:
        thermo.getSignal("changed").trigger(1)
        rec.settle(0.5)
    rec.wait_for(1, 1.0)

    killed = time.monotonic()
    nats.kill(0)
    assert wait_until(lambda: hosting.isConnected() and hosting.node.link.address == nats.member(1), 20.0), (
        hosting.last_error)
    moved = time.monotonic() - killed
    value = 2
    # events sent while (or right after) the node moves still cross: QoS 1, buffered while offline
    while not any(call[3] == 2 for call in rec.calls) and time.monotonic() - killed < 60.0:
        thermo.getSignal("changed").trigger(value)
        rec.settle(0.5)
    crossed = time.monotonic() - killed
    assert any(call[3] == 2 for call in rec.calls), rec.calls
    # the member's death may stall JetStream for a moment: a SUBACK refused then is tried again
    answered = None
    while answered is None and time.monotonic() - killed < 40.0:
        try:
            answered = listener.remoteRequest("thermo", "read", None, timeout=2.0)
        except sig.SigError:
            time.sleep(0.2)
    served = time.monotonic() - killed
    assert answered == 21
    assert wait_until(lambda: listener.carrier.isSenderConnected("thermo"), 15.0)
    print("\nNATS: node online on member n1 %.2f s after n0 was killed; first event across %.2f s, first request "
          "answered %.2f s after the kill" % (moved, crossed, served))


# -- presence across members (each test starts the members an earlier one killed) -----------------

HEARTBEAT = 2.0


def test_a_late_joiner_on_another_member_sees_senders_already_online(nats: NatsCluster, carriers: list[Any]) -> None:
    nats.start()
    prefix = "l%s/sig" % uuid.uuid4().hex[:6]
    hosting, sender_router = member_node(carriers, nats.member(0), prefix)
    sender_router.addRemoteSender("thermo", ["changed"], requests={"read": lambda params: 21})
    assert hosting.sync()  # the birth is the broker's
    birth = "%s/node/%s/sender/thermo" % (prefix, hosting.client_id)
    # NATS's fact (unlike RabbitMQ): retained births replicate and reach wildcard subscriptions on other members
    assert [line.split(" ")[0] for line in retained_lines(nats.mqtt_ports[2], "%s/node/+/sender/+" % prefix)] == [
        birth]
    started = time.monotonic()
    late, late_router = member_node(carriers, nats.member(2), prefix)
    assert wait_until(sees(late, "thermo"), 10.0)
    seen = time.monotonic() - started
    assert late_router.remoteRequest("thermo", "read", None) == 21
    print("\nNATS: a late joiner on another member sees the sender %.2f s after it started" % seen)


def test_a_member_dying_with_a_sender_node_disconnects_it_within_one_and_a_half_heartbeats(
        nats: NatsCluster, carriers: list[Any]) -> None:
    nats.start()
    prefix = "d%s/sig" % uuid.uuid4().hex[:6]
    took = disconnects_after_member_death(nats, functools.partial(member_node, carriers), prefix, HEARTBEAT)
    print("\nNATS: #disconnect on the two other members %.2f s and %.2f s after the member died with its "
          "sender node (heartbeat %.0f s)" % (*took, HEARTBEAT))
    assert max(took) < 1.5 * HEARTBEAT + 0.5  # the last state came before the kill (+ a loaded machine's slack)


@pytest.mark.timeout(240)
def test_a_node_that_fails_over_within_half_a_heartbeat_is_not_disconnected(
        nats: NatsCluster, carriers: list[Any]) -> None:
    nats.start()
    prefix = "h%s/sig" % uuid.uuid4().hex[:6]
    # NATS took 4.5-8.7 s to accept the node on the next member, and up to 17.7 s to deliver its state
    # to another member (JetStream settling): a heartbeat long enough for that (the default 30 s covers 15 s)
    heartbeat = 120.0
    hosting, sender_router = member_node(carriers, [nats.member(0), nats.member(1)], prefix, heartbeat=heartbeat)
    sender_router.addRemoteSender("thermo", ["changed"])
    listening, listener = member_node(carriers, nats.member(2), prefix)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "thermo", "#disconnect")
    assert wait_until(lambda: listening.isSenderConnected("thermo"), 10.0)
    killed = time.monotonic()
    nats.kill(0)
    assert wait_until(lambda: hosting.isConnected() and hosting.node.link.address == nats.member(1), heartbeat / 2), (
        hosting.last_error)
    moved = time.monotonic() - killed
    node = listening.node.presence.nodes[hosting.client_id]
    assert wait_until(lambda: node.seen > killed, heartbeat / 2 - moved)  # its state, from n1
    heard = time.monotonic() - killed
    assert rec.calls == [] and listening.isSenderConnected("thermo")
    print("\nNATS: node online on the next member %.2f s after the kill, its state heard on another member "
          "%.2f s after the kill: no #disconnect (heartbeat %.0f s)" % (moved, heard, heartbeat))
