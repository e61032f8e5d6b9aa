"""Load-balanced senders (sig_mqtt._shared): several nodes host one sender, each request is answered once.

On a private Mosquitto (MQTT 5 and 3.1.1: ``$share`` round-robins): 3 hosts share 30
requests, each answered exactly once; ``#connect`` when the first host appears,
``#disconnect`` when the last goes (two hosts killed, the sender stays). A shared and a
plain claim on one name conflict. amqtt (no shared subscriptions) gives a clear error at
registration, and a TCP server refuses a shared sender.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from mqttutil import retained_lines
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient, SharedSubscriptionsUnsupported
from sig_mqtt._shared import share_group, shared_request_filter
from sig_mqtt._topics import Topics


def _node(carriers: list[Any], port: int, prefix: str, protocol: int) -> tuple[CarrierMQTTClient, sig.ClientRouter]:
    carrier = CarrierMQTTClient(client_id="h-" + uuid.uuid4().hex[:8], prefix=prefix, protocol=protocol,
                                request_timeout=5.0, heartbeat=30.0)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port, auto_reconnect=False), carrier.last_error
    return carrier, router


def _held_shared_births(port: int, topic_filter: str) -> int:
    births = retained_lines(port, topic_filter)
    return sum('"shared":true' in line and '"pending"' not in line for line in births)


def test_the_group_is_one_per_sender_and_prefix() -> None:
    topics = Topics("site/sig")
    group = share_group("site/sig", "pool")
    assert shared_request_filter(topics, "pool") == "$share/%s/site/sig/request/pool/+" % group
    groups = {share_group("site/sig", "pool"), share_group("site/sig", "other"), share_group("sig", "pool")}
    assert len(groups) == 3 and all(g.startswith("sig-") and "/" not in g and "+" not in g for g in groups)
    assert shared_request_filter(Topics("sig"), "a/b").endswith("/sig/request/a%2Fb/+")


@pytest.mark.parametrize("protocol", [5, 4])
def test_three_hosts_share_the_requests_and_the_sender_lives_until_the_last_goes(
        mosquitto: Any, carriers: list[Any], protocol: int) -> None:
    prefix = "s%s/sig" % uuid.uuid4().hex[:8]
    _, requester = _node(carriers, mosquitto.port, prefix, protocol)
    watching, listener = _node(carriers, mosquitto.port, prefix, protocol)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "pool", "#connect")
    listener.addRemoteListener(rec.listener(), "pool", "#disconnect")
    answered: Counter[int] = Counter()
    hosts = []
    for index in range(3):
        carrier, router = _node(carriers, mosquitto.port, prefix, protocol)

        def work(params: Any, index: int = index) -> list[Any]:
            answered[index] += 1
            return [index, params]

        router.addRemoteSender("pool", ["done"], requests={"work": work}, shared=True)
        hosts.append(carrier)
        if index == 0:
            assert rec.wait_for(1, 5.0)[0][2] == "#connect"
    # The births say shared (the last one may still be on its way); #connect came once, for the first host.
    assert wait_until(lambda: _held_shared_births(mosquitto.port, prefix + "/node/+/sender/pool") == 3, 5.0)
    replies = [requester.remoteRequest("pool", "work", n) for n in range(30)]
    assert sorted(reply[1] for reply in replies) == list(range(30))  # every request answered
    assert sum(answered.values()) == 30 and set(answered) == {0, 1, 2}, answered  # once each, by every host
    assert all(reply[0] in (0, 1, 2) for reply in replies)
    print("\nMQTT %s: 30 requests over 3 hosts: %s" % (protocol, dict(sorted(answered.items()))))

    # Kill two hosts (their Wills fire): the sender stays connected and answered.
    for carrier in hosts[:2]:
        carrier.node.link.drop()
    assert wait_until(lambda: all(watching.node.presence.nodes[c.client_id].state is not None
                                  and not watching.node.presence.nodes[c.client_id].state.online  # type: ignore
                                  for c in hosts[:2]), 5.0)
    assert watching.isSenderConnected("pool")
    answered.clear()
    assert [requester.remoteRequest("pool", "work", n)[0] for n in range(3)] == [2, 2, 2]
    assert [call[2] for call in rec.settle(0.3)] == ["#connect"]  # no #disconnect yet
    hosts[2].node.link.drop()
    rec.wait_for(2, 5.0)
    assert [call[2] for call in rec.calls] == ["#connect", "#disconnect"]
    assert not watching.isSenderConnected("pool")
    assert wait_until(lambda: not requester.carrier.isSenderConnected("pool"), 5.0)  # type: ignore[attr-defined]
    with pytest.raises(NameError):
        requester.remoteRequest("pool", "work", 0)


@pytest.mark.parametrize("first_shared", [True, False])
def test_a_shared_and_a_plain_claim_on_one_name_conflict(mosquitto: Any, carriers: list[Any],
                                                         first_shared: bool) -> None:
    prefix = "s%s/sig" % uuid.uuid4().hex[:8]
    _, first = _node(carriers, mosquitto.port, prefix, 5)
    _, second = _node(carriers, mosquitto.port, prefix, 5)
    _, third = _node(carriers, mosquitto.port, prefix, 5)
    first.addRemoteSender("pool", ["done"], requests={"work": lambda params: 1}, shared=first_shared)
    # The first's held birth may still be on its way to the others when its registration returns: a node
    # that has not seen it yet claims the name as in a race, and loses it with another message (r19).
    assert wait_until(lambda: all(r.carrier.isSenderConnected("pool") for r in (second, third)), 5.0)  # type: ignore[attr-defined]
    with pytest.raises(NameError, match="already connected"):
        second.addRemoteSender("pool", ["done"], requests={"work": lambda params: 2}, shared=not first_shared)
    if first_shared:
        third.addRemoteSender("pool", ["done"], requests={"work": lambda params: 3}, shared=True)  # shares
    else:
        with pytest.raises(NameError):
            third.addRemoteSender("pool", ["done"], requests={"work": lambda params: 3})


def test_a_broker_without_shared_subscriptions_refuses_a_shared_sender_clearly(
        embedded_broker: Any, carriers: list[Any]) -> None:
    prefix = "s%s/sig" % uuid.uuid4().hex[:8]
    carrier, router = _node(carriers, embedded_broker.port, prefix, 4)
    with pytest.raises(sig.SigError, match="shared subscriptions are not supported by this broker"):
        router.addRemoteSender("pool", ["done"], requests={"work": lambda params: 1}, shared=True)
    assert "pool" not in router.senders and not carrier.node.hosts("pool")
    with pytest.raises(SharedSubscriptionsUnsupported):  # the node's own error, a SigError and NotImplementedError
        carrier.node.claim("pool2", {"events": ["done"], "requests": None}, shared=True)
    # nothing was claimed: the name is free, as a plain sender
    router.addRemoteSender("pool", ["done"], requests={"work": lambda params: 1})
    _, other = _node(carriers, embedded_broker.port, prefix, 4)
    assert other.remoteRequest("pool", "work") == 1


def test_a_tcp_server_refuses_a_shared_sender(tcp_net: Any) -> None:
    client = tcp_net.client()
    with pytest.raises(sig.SigError, match="cannot host shared"):
        client.addRemoteSender("pool", ["done"], shared=True)
    assert "pool" not in tcp_net.server.senders
    client.addRemoteSender("pool", ["done"])  # the name is free
    assert tcp_net.server.getSender("pool").isConnected()


def test_a_shared_sender_is_registered_again_as_shared_after_a_reconnect(mosquitto: Any, carriers: list[Any]) -> None:
    prefix = "s%s/sig" % uuid.uuid4().hex[:8]
    hosts = []
    for index in range(2):
        carrier = CarrierMQTTClient(client_id="h%d-%s" % (index, uuid.uuid4().hex[:6]), prefix=prefix,
                                    reconnect_min=0.1, reconnect_max=0.5, request_timeout=5.0)
        carriers.append(carrier)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", mosquitto.port)
        router.addRemoteSender("pool", ["done"], requests={"work": lambda params, index=index: index}, shared=True)
        hosts.append(carrier)
    mosquitto.restart()  # no persistence: every birth is gone, every node reconnects and registers again
    assert wait_until(lambda: all(carrier.isConnected() for carrier in hosts), 10.0)
    assert wait_until(lambda: _held_shared_births(mosquitto.port, prefix + "/node/+/sender/pool") == 2, 10.0)
    _, requester = _node(carriers, mosquitto.port, prefix, 5)
    assert {requester.remoteRequest("pool", "work") for _ in range(6)} == {0, 1}
