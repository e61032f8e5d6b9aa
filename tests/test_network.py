"""pysig semantics across the network: ServerRouter + ClientRouters, over LocalCarrier and TCP."""

from __future__ import annotations

import threading
import time

import pytest
from netutil import Recorder, wait_until

import sig
from sig.carrier.local import LocalCarrier
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

CONNECT, DISCONNECT = sig.EVENT_CONNECT, sig.EVENT_DISCONNECT


def test_all_subscription_kinds_in_pysig_order(net) -> None:
    rec = Recorder()
    listener_client, sender_client = net.client(), net.client()
    listener_client.addRemoteListener(rec.listener("router"))
    listener_client.addRemoteListener(rec.listener("sender"), "temp")
    listener_client.addRemoteListener(rec.listener("channel"), None, "#changed")
    listener_client.addRemoteListener(rec.listener("plain"), None, "cold")
    listener_client.addRemoteListener(rec.listener("temp#changed"), "temp", "#changed")
    listener_client.addRemoteListener(rec.listener("specific"), "temp", "cold")
    temp = sender_client.addRemoteSender("temp", ["#changed", "cold"])
    humidity = sender_client.addRemoteSender("humidity", ["#changed"])
    temp.getSignal("#changed").trigger(21.5)
    humidity.getSignal("#changed").trigger(40)
    temp.getSignal("cold").trigger(None)
    connect_temp = {"events": ["#changed", "cold"], "requests": None}
    connect_hum = {"events": ["#changed"], "requests": None}
    assert rec.wait_for(12) == [
        ("router", "temp", CONNECT, connect_temp),
        ("sender", "temp", CONNECT, connect_temp),
        ("router", "humidity", CONNECT, connect_hum),
        ("router", "temp", "#changed", 21.5),
        ("sender", "temp", "#changed", 21.5),
        ("channel", "temp", "#changed", 21.5),
        ("temp#changed", "temp", "#changed", 21.5),
        ("router", "humidity", "#changed", 40),
        ("channel", "humidity", "#changed", 40),
        ("router", "temp", "cold", None),
        ("sender", "temp", "cold", None),
        ("specific", "temp", "cold", None),
    ]
    assert len(rec.settle()) == 12  # (None, "cold") never fires


def test_connect_channel_and_vanishing_client(net) -> None:
    rec = Recorder()
    watcher, device = net.client(), net.client()
    watcher.addRemoteListener(rec.listener("connects"), None, CONNECT)
    watcher.addRemoteListener(rec.listener("disconnects"), None, DISCONNECT)
    watcher.addRemoteListener(rec.listener("lamp"), "lamp", "on")  # before the sender exists
    lamp = device.addRemoteSender("lamp", ["on"], requests={"state": lambda p: "on"})
    device.addRemoteListener(rec.listener("device-own"), "lamp", "on")
    lamp.getSignal("on").trigger(1)
    rec.wait_for(3)
    assert net.server.getSender("lamp").isConnected()
    net.drop(device)
    calls = rec.wait_for(4)
    watcher_calls = [c for c in calls if c[0] != "device-own"]  # two clients: no order between them
    assert watcher_calls == [
        ("connects", "lamp", CONNECT, {"events": ["on"], "requests": ["state"]}),
        ("lamp", "lamp", "on", 1),
        ("disconnects", "lamp", DISCONNECT, {"events": ["on"], "requests": ["state"]}),
    ]
    assert ("device-own", "lamp", "on", 1) in calls
    assert wait_until(lambda: not net.server.getSender("lamp").isConnected())
    # The vanished client's listeners are gone from the server; the watcher's stays.
    assert len(net.server.getSender("lamp").getEvent("on").listeners) == 1
    with pytest.raises(NameError):
        watcher.remoteRequest("lamp", "state")


def test_requests_across_clients_and_to_server_senders(net) -> None:
    asker, device = net.client(), net.client()

    def fail(params):
        raise RuntimeError("sensor offline")

    device.addRemoteSender(
        "weather", ["changed"], requests={"temperature": lambda p: 21.5, "fail": fail, None: lambda m, p: [m, p]}
    )
    net.server.addSender("timer", ["tick"], requests={"get_ticks": lambda p: 7})
    assert asker.remoteRequest("weather", "temperature") == 21.5
    assert asker.remoteRequest("weather", "anything", {"x": 1}) == ["anything", {"x": 1}]
    assert asker.remoteRequest("timer", "get_ticks") == 7
    assert net.server.request("weather", "temperature") == 21.5
    with pytest.raises(sig.RemoteError, match="sensor offline") as failed:
        asker.remoteRequest("weather", "fail")
    assert failed.value.status == -2 and failed.value.exception == "sensor offline"
    assert str(failed.value).count("failed on the far side") == 1
    with pytest.raises(LookupError, match="no handler for method 'nope'"):
        asker.remoteRequest("timer", "nope")
    with pytest.raises(NameError, match="'ghost' is not connected"):
        asker.remoteRequest("ghost", "x")
    with pytest.raises(sig.SigError):
        asker.remoteRequest("timer", "nope")


def test_server_sender_heard_remotely_and_local_registrations_stay_local(net) -> None:
    rec, local = Recorder(), Recorder()
    client = net.client()
    client.addRemoteListener(rec.listener("remote"), "timer", "tick")
    client.addListener(local.listener("local"), "timer", "tick")
    mine = client.addSender("mine", ["e"])  # local only
    timer = net.server.addSender("timer", ["tick"])
    timer.getSignal("tick").trigger("server data")
    assert rec.wait_for(1) == [("remote", "timer", "tick", "server data")]
    assert local.settle(0.1) == []
    assert [s.getName() for s in net.server.getSenders() if s.isConnected()] == ["timer"]
    mine.getSignal("e").trigger(1)
    with pytest.raises(NameError):
        net.server.getSender("mine")


def test_remove_remote_sender_and_listener(net) -> None:
    rec = Recorder()
    listener_client, sender_client = net.client(), net.client()
    listen = rec.listener("l")
    listener_client.addRemoteListener(listen, "s", None)
    sender = sender_client.addRemoteSender("s", ["e"])
    sender.getSignal("e").trigger(1)
    rec.wait_for(2)
    sender_client.removeRemoteSender("s")
    rec.wait_for(3)
    assert rec.calls[2][2] == DISCONNECT
    listener_client.removeRemoteListener(listen, "s", None)
    with pytest.raises(LookupError):
        listener_client.removeRemoteListener(listen, "s", None)
    with pytest.raises(NameError):
        sender_client.removeRemoteSender("s")
    sender = sender_client.addRemoteSender("s", ["e"])  # re-adding works, nobody listens now
    sender.getSignal("e").trigger(2)
    assert len(rec.settle(0.2)) == 3


def test_sender_name_taken_by_another_client(net) -> None:
    first, second = net.client(), net.client()
    first.addRemoteSender("lamp", ["on"])
    with pytest.raises(NameError, match="already connected"):
        second.addRemoteSender("lamp", ["on"])
    with pytest.raises(NameError):
        second.getSender("lamp")  # rolled back locally
    with pytest.raises(sig.SenderConnectedError):
        first.addRemoteSender("lamp", ["on"])


def test_client_listens_and_requests_its_own_sender_without_deadlock(tcp_net) -> None:
    client = tcp_net.client()
    answers: list[object] = []
    done = threading.Event()

    def listener(info, data):
        answers.append(client.remoteRequest("echo", "say", data))  # waits for a reply inside a listener
        done.set()

    sender = client.addRemoteSender("echo", ["e"], requests={"say": lambda p: "said %s" % p})
    client.addRemoteListener(listener, "echo", "e")
    sender.getSignal("e").trigger("hi")
    assert done.wait(5.0)
    assert answers == ["said hi"]
    assert client.remoteRequest("echo", "say", 1) == "said 1"


def test_pipelined_signals_keep_order_and_survive_clean_disconnect(tcp_net) -> None:
    rec = Recorder()
    listener_client, sender_client = tcp_net.client(), tcp_net.client()
    listener_client.addRemoteListener(rec.listener("l"), "bulk", "n")
    signal = sender_client.addRemoteSender("bulk", ["n"]).getSignal("n")
    count = 5000
    for i in range(count):
        signal.trigger(i)
    sender_client.carrier.disconnect()  # flushes what is queued
    calls = rec.wait_for(count, timeout=20.0)
    assert [c[3] for c in calls[:count]] == list(range(count))


def test_large_payload_crosses(tcp_net) -> None:
    rec = Recorder()
    a, b = tcp_net.client(), tcp_net.client()
    a.addRemoteListener(rec.listener("l"), "big", "blob")
    payload = {"text": "x" * 100_000, "list": list(range(1000))}
    b.addRemoteSender("big", ["blob"], requests={"get": lambda p: payload}).getSignal("blob").trigger(payload)
    assert rec.wait_for(1)[0][3] == payload
    assert a.remoteRequest("big", "get") == payload


def test_connect_to_closed_port_returns_false_at_once() -> None:
    server = CarrierTCPServer()
    server.start("127.0.0.1", 0)
    port = server.port
    server.stop()
    carrier = CarrierTCPClient()
    router = sig.ClientRouter(carrier)
    started = time.monotonic()
    assert carrier.connect("127.0.0.1", port, auto_reconnect=False) is False
    assert time.monotonic() - started < 1.0
    assert not carrier.isConnected()
    with pytest.raises(sig.CarrierError):
        router.addRemoteListener(lambda i, d: None, "x", "y")
    with pytest.raises(ConnectionError):
        router.remoteRequest("x", "y")


def test_auto_reconnect_restores_registrations_and_buffers_signals() -> None:
    tcp = CarrierTCPServer()
    server = sig.ServerRouter(tcp)
    tcp.start("127.0.0.1", 0)
    port = tcp.port
    connected = threading.Event()
    carrier = CarrierTCPClient(reconnect_min=0.05, reconnect_max=0.2)
    client = sig.ClientRouter(carrier)
    carrier.on_connected = connected.set
    rec = Recorder()
    watcher_carrier = CarrierTCPClient(reconnect_min=0.05, reconnect_max=0.2)
    watcher = sig.ClientRouter(watcher_carrier)
    try:
        assert carrier.connect("127.0.0.1", port)
        assert watcher_carrier.connect("127.0.0.1", port)
        assert connected.wait(2.0)
        client.addRemoteSender("meter", ["kwh"], requests={"read": lambda p: 42})
        watcher.addRemoteListener(rec.listener("w"), "meter", "kwh")
        signal = client.getSender("meter").getSignal("kwh")
        signal.trigger(1)
        rec.wait_for(1)

        tcp.stop()  # the server goes away: both clients lose it
        assert wait_until(lambda: not carrier.isConnected() and not watcher_carrier.isConnected())
        connected.clear()
        signal.trigger(2)  # buffered while disconnected
        signal.trigger(3)
        tcp = CarrierTCPServer()
        server = sig.ServerRouter(tcp)
        local = Recorder()  # in place before any client is back
        server.addListener(local.listener("server"), "meter", "kwh")
        tcp.start("127.0.0.1", port)
        assert connected.wait(5.0)
        assert [c[3] for c in local.wait_for(2)] == [2, 3]  # the buffered signals, in order
        assert wait_until(lambda: len(server.getSender("meter").getEvent("kwh").listeners) == 2)
        assert watcher.remoteRequest("meter", "read") == 42  # the watcher is back too
        signal.trigger(4)
        assert [c[3] for c in local.wait_for(3)] == [2, 3, 4]
        assert wait_until(lambda: rec.calls[-1][3] == 4)
        heard = [c[3] for c in rec.settle(0.2)]  # the watcher may be back in time for 2 and 3
        assert heard[0] == 1 and heard[-1] == 4 and heard == sorted(set(heard))  # in order, none twice
    finally:
        carrier.disconnect()
        watcher_carrier.disconnect()
        tcp.stop()


def test_registrations_made_in_on_connected_are_not_doubled() -> None:
    tcp = CarrierTCPServer()
    server = sig.ServerRouter(tcp)
    tcp.start("127.0.0.1", 0)
    port = tcp.port
    carrier = CarrierTCPClient(reconnect_min=0.05, reconnect_max=0.2)
    client = sig.ClientRouter(carrier)
    rec = Recorder()
    listen = rec.listener("l")
    connections = []

    def register_on_connect():  # the documented pattern: register in on_connected
        connections.append(1)
        client.addRemoteListener(listen, "timer", "tick")
        client.addRemoteSender("mysender", ["tick", "tac"])

    carrier.on_connected = register_on_connect
    try:
        assert carrier.connect("127.0.0.1", port)
        timer = server.addSender("timer", ["tick"])
        timer.getSignal("tick").trigger(1)
        rec.wait_for(1)
        tcp.stop()
        assert wait_until(lambda: not carrier.isConnected())
        tcp = CarrierTCPServer()
        server = sig.ServerRouter(tcp)
        tcp.start("127.0.0.1", port)
        assert wait_until(lambda: len(connections) == 2 and carrier.isConnected(), 5.0)
        assert wait_until(lambda: "mysender" in server.senders)
        timer = server.addSender("timer", ["tick"])
        timer.getSignal("tick").trigger(2)
        rec.wait_for(2)
        assert len(rec.settle(0.2)) == 2
        assert len(server.getSender("timer").getEvent("tick").listeners) == 1
    finally:
        carrier.disconnect()
        tcp.stop()


def test_connect_while_server_down_then_comes_up() -> None:
    probe = CarrierTCPServer()
    probe.start("127.0.0.1", 0)
    port = probe.port
    probe.stop()
    carrier = CarrierTCPClient(reconnect_min=0.05, reconnect_max=0.2)
    client = sig.ClientRouter(carrier)
    up = threading.Event()
    carrier.on_connected = up.set
    tcp = CarrierTCPServer()
    try:
        started = time.monotonic()
        assert carrier.connect("127.0.0.1", port) is False
        assert time.monotonic() - started < 1.0
        rec = Recorder()
        client.addRemoteListener(rec.listener("l"), "late", "e")  # kept until connected
        server = sig.ServerRouter(tcp)
        tcp.start("127.0.0.1", port)
        assert up.wait(5.0)
        assert wait_until(lambda: "late" in server.senders)
        server.addSender("late", ["e"]).getSignal("e").trigger("hello")
        assert rec.wait_for(1) == [("l", "late", "e", "hello")]
    finally:
        carrier.disconnect()
        tcp.stop()


def test_request_to_a_slow_client_times_out_as_timeout_error() -> None:
    tcp = CarrierTCPServer()
    server = sig.ServerRouter(tcp, request_timeout=0.3)
    tcp.start("127.0.0.1", 0)
    slow_carrier, asker_carrier = CarrierTCPClient(), CarrierTCPClient()
    slow, asker = sig.ClientRouter(slow_carrier), sig.ClientRouter(asker_carrier)
    release = threading.Event()
    try:
        assert slow_carrier.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        assert asker_carrier.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        slow.addRemoteSender("slow", ["e"], requests={"wait": lambda p: release.wait(5.0)})
        with pytest.raises(TimeoutError) as timed_out:
            asker.remoteRequest("slow", "wait")
        assert isinstance(timed_out.value, sig.RemoteTimeoutError) and timed_out.value.status == -2
        with pytest.raises(sig.RequestTimeout):
            server.request("slow", "wait")
    finally:
        release.set()
        slow_carrier.disconnect()
        asker_carrier.disconnect()
        tcp.stop()


def test_sender_still_held_by_the_previous_connection_is_registered_again_later() -> None:
    server_end, client_end = LocalCarrier(), LocalCarrier()
    server = sig.ServerRouter(server_end)
    client = sig.ClientRouter(client_end)
    client_end.connect(server_end)
    rec = Recorder()
    server.addListener(rec.listener("s"), "dev", "e")
    signal = client.addRemoteSender("dev", ["e"]).getSignal("e")
    signal.trigger(1)
    # The client sees its connection drop and come back, but the server has not noticed yet
    # (half-open TCP): "dev" is still registered for the old connection.
    client._disconnected(client_end.clientid)
    signal.trigger(2)  # buffered
    client._connected(client_end.clientid)
    client._ready(client_end.clientid)
    signal.trigger(3)  # still buffered: the server refused "dev" so far
    assert [c[3] for c in rec.calls] == [1]
    server_end.handle_client_disconnected(client_end.clientid)  # the server finally drops the old one
    assert wait_until(lambda: server.getSender("dev").isConnected(), 5.0)
    assert [c[3] for c in rec.wait_for(3)] == [1, 2, 3]
    signal.trigger(4)
    assert [c[3] for c in rec.wait_for(4)] == [1, 2, 3, 4]
