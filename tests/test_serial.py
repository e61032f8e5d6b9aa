"""The serial carriers over a real pty pair (socat) and pyserial URLs; one ServerRouter over TCP and serial."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netutil import Recorder, wait_until

import sig
from sig.carrier.serial import CarrierSerialClient, CarrierSerialServer, SerialStream
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

CONNECT, DISCONNECT = sig.EVENT_CONNECT, sig.EVENT_DISCONNECT


class Line:
    """A pty pair joined by socat: ``a`` and ``b`` are the two ends of one serial line."""

    def __init__(self, directory: str) -> None:
        self.a, self.b = os.path.join(directory, "a"), os.path.join(directory, "b")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        socat = shutil.which("socat")
        if socat is None:
            pytest.skip("socat is not installed (apt-get install -y socat): needed for a pty pair")
        self.proc = subprocess.Popen(
            [socat, "-d", "-d", "pty,raw,echo=0,link=%s" % self.a, "pty,raw,echo=0,link=%s" % self.b],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        assert wait_until(lambda: os.path.exists(self.a) and os.path.exists(self.b), 5.0), "socat made no ptys"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5.0)
            self.proc = None


@pytest.fixture
def line() -> Iterator[Line]:
    with tempfile.TemporaryDirectory(prefix="sig-serial-") as directory:
        pair = Line(directory)
        try:
            pair.start()
            yield pair
        finally:
            pair.stop()


class Pair:
    """A ServerRouter on end ``a`` of a line and a ClientRouter on end ``b``."""

    def __init__(self, line: Line, **client_settings: object) -> None:
        self.line = line
        self.server_line = CarrierSerialServer(line.a, 115200, ping_interval=1.0)
        self.server = sig.ServerRouter(self.server_line, request_timeout=5.0)
        self.carrier = CarrierSerialClient(reconnect_min=0.05, reconnect_max=0.2, **client_settings)  # type: ignore
        self.client = sig.ClientRouter(self.carrier, request_timeout=5.0)

    def start(self, connect: bool = True) -> Pair:
        self.server_line.start()
        if connect:
            assert self.carrier.connect(self.line.b, 115200)
        return self

    def close(self) -> None:
        self.carrier.disconnect()
        self.server_line.stop()


@pytest.fixture
def pair(line: Line) -> Iterator[Pair]:
    p = Pair(line)
    try:
        yield p.start()
    finally:
        p.close()


def test_stream_over_loop_url_and_close_wakes_recv() -> None:
    stream = SerialStream.open("loop://", 115200)
    try:
        stream.sendall(b'{"a":1}\n' * 300)  # loop:// holds 4096 bytes
        got = b""
        while len(got) < 2400:
            got += stream.recv(65536)
        assert got == b'{"a":1}\n' * 300
        results: list[bytes] = []
        reader = threading.Thread(target=lambda: results.append(stream.recv(10)))
        reader.start()
        time.sleep(0.1)
        started = time.monotonic()
        stream.close()
        reader.join(2.0)
        assert results == [b""] and time.monotonic() - started < 1.0
        with pytest.raises(OSError):
            stream.sendall(b"x")
    finally:
        stream.close()


def test_events_connect_requests_both_ways(pair: Pair) -> None:
    rec, local = Recorder(), Recorder()
    pair.client.addRemoteListener(rec.listener("remote"), "timer", None)
    pair.server.addListener(local.listener("server"), "device", None)
    timer = pair.server.addSender("timer", ["tick"], requests={"ticks": lambda p: 7})
    timer.getSignal("tick").trigger("server data")
    assert rec.wait_for(2) == [
        ("remote", "timer", CONNECT, {"events": ["tick"], "requests": ["ticks"]}),
        ("remote", "timer", "tick", "server data"),
    ]
    device = pair.client.addRemoteSender("device", ["state"], requests={"get": lambda p: {"on": p}})
    device.getSignal("state").trigger(1)
    assert local.wait_for(2) == [
        ("server", "device", CONNECT, {"events": ["state"], "requests": ["get"]}),
        ("server", "device", "state", 1),
    ]
    assert pair.client.remoteRequest("timer", "ticks") == 7  # client -> server sender
    assert pair.server.request("device", "get", True) == {"on": True}  # server -> client sender
    assert pair.client.remoteRequest("device", "get", 2) == {"on": 2}  # through the server and back
    with pytest.raises(NameError):
        pair.client.remoteRequest("ghost", "x")


def test_large_payload_and_order_and_flushing_disconnect(pair: Pair) -> None:
    rec, local = Recorder(), Recorder()
    payload = {"text": "x" * 100_000, "list": list(range(1000))}
    pair.client.addRemoteListener(rec.listener("l"), "big", "blob")
    big = pair.server.addSender("big", ["blob"], requests={"get": lambda p: payload})
    big.getSignal("blob").trigger(payload)
    assert rec.wait_for(1, timeout=10.0)[0][3] == payload
    assert pair.client.remoteRequest("big", "get") == payload
    pair.server.addListener(local.listener("s"), "bulk", None)
    signal = pair.client.addRemoteSender("bulk", ["n"]).getSignal("n")
    signal.trigger(payload)  # a large one upstream too
    count = 2000
    for i in range(count):
        signal.trigger(i)
    pair.carrier.disconnect()  # sends everything queued first, then says bye
    calls = local.wait_for(count + 3, timeout=20.0)  # #connect, payload, 2000 numbers, #disconnect
    assert calls[0][2] == CONNECT and calls[1][3] == payload
    assert [c[3] for c in calls[2 : count + 2]] == list(range(count))
    assert calls[count + 2][2] == DISCONNECT  # at once: the bye, no ping timeout
    assert not pair.carrier.isConnected()


def test_new_client_on_the_line_after_a_clean_disconnect_or_a_crash(pair: Pair) -> None:
    rec = Recorder()
    pair.server.addListener(rec.listener("s"), "dev", None)
    pair.client.addRemoteSender("dev", ["e"])
    rec.wait_for(1)
    pair.carrier.disconnect()
    assert rec.wait_for(2)[1][2] == DISCONNECT
    for crash in (False, True):  # a second client; then one that vanishes (no bye) and a third one
        carrier = CarrierSerialClient(reconnect_min=0.05, reconnect_max=0.2)
        client = sig.ClientRouter(carrier)
        try:
            assert carrier.connect(pair.line.b, 115200, auto_reconnect=False)
            client.addRemoteSender("dev", ["e"])  # no "already connected": the old session is gone
            client.getSender("dev").getSignal("e").trigger(crash)
            assert ("s", "dev", "e", crash) in rec.wait_for(4 if not crash else 7)
            if crash:
                conn = carrier._conn
                assert conn is not None
                conn.close("simulated crash")  # the port closes; the server hears nothing
        finally:
            if not crash:
                carrier.disconnect()
    carrier = CarrierSerialClient()
    client = sig.ClientRouter(carrier)
    try:
        assert carrier.connect(pair.line.b, 115200, auto_reconnect=False)
        client.addRemoteSender("dev", ["e"])  # its get_version ended the crashed client's session
        rec.wait_for(9)
        calls = rec.settle(0.2)
        assert [c[2] for c in calls] == [CONNECT, DISCONNECT, CONNECT, "e", DISCONNECT, CONNECT, "e",
                                         DISCONNECT, CONNECT]
    finally:
        carrier.disconnect()


def test_server_restart_makes_the_client_reconnect(line: Line) -> None:
    p = Pair(line, ping_interval=0.3).start()
    server_line = p.server_line
    try:
        rec = Recorder()
        p.client.addRemoteListener(rec.listener("l"), "timer", "tick")
        p.client.addRemoteSender("device", ["e"], requests={"id": lambda params: "device-1"})
        server_line.stop()  # the server goes away and comes back: the client hears nothing of it
        server_line = CarrierSerialServer(line.a, 115200)
        server = sig.ServerRouter(server_line, request_timeout=5.0)
        server_line.start()
        # the client's watchdog pings the silent line: the new server hears a client it has no
        # session of and asks it to reconnect; it does, and registers everything again
        assert wait_until(lambda: "device" in server.senders and server.getSender("device").isConnected(), 10.0)
        assert server.request("device", "id") == "device-1"
        timer = server.addSender("timer", ["tick"])
        assert wait_until(lambda: len(timer.getEvent("tick").listeners) == 1, 5.0)
        timer.getSignal("tick").trigger(1)
        assert rec.wait_for(1) == [("l", "timer", "tick", 1)]
    finally:
        p.carrier.disconnect()
        server_line.stop()
        p.server_line.stop()


def test_client_notices_a_vanished_server(line: Line) -> None:
    p = Pair(line, ping_interval=0.3).start()
    lost = threading.Event()
    p.carrier.on_disconnected = lost.set
    try:
        p.client.addRemoteSender("device", ["e"])
        p.server_line.stop()  # no word on the line: only the silence tells
        assert lost.wait(3.0)
        assert not p.carrier.isConnected()
    finally:
        p.close()


def test_vanished_client_found_by_ping_while_the_server_keeps_sending(line: Line) -> None:
    server_line = CarrierSerialServer(line.a, 115200, ping_interval=0.3)
    server = sig.ServerRouter(server_line)
    gone = threading.Event()
    server.addListener(lambda info, data: gone.set(), "dev", DISCONNECT)
    server_line.start()
    carrier = CarrierSerialClient()
    client = sig.ClientRouter(carrier)
    stop = threading.Event()
    try:
        assert carrier.connect(line.b, 115200, auto_reconnect=False)
        client.addRemoteSender("dev", ["e"])
        client.addRemoteListener(lambda info, data: None, "timer", "tick")
        timer = server.addSender("timer", ["tick"])

        def tick() -> None:
            while not stop.wait(0.02):
                timer.getSignal("tick").trigger(0)

        threading.Thread(target=tick, daemon=True).start()
        time.sleep(0.2)
        conn = carrier._conn
        assert conn is not None
        conn.close("simulated crash")  # no bye: only the server's ping can tell
        assert gone.wait(5.0)
    finally:
        stop.set()
        carrier.disconnect()
        server_line.stop()


def test_connect_failures_and_a_line_that_appears_later(tmp_path: Path) -> None:
    carrier = CarrierSerialClient(reconnect_min=0.05, reconnect_max=0.2)
    client = sig.ClientRouter(carrier)
    up = threading.Event()
    carrier.on_connected = up.set
    missing = str(tmp_path / "b")
    with pytest.raises(sig.CarrierError):
        CarrierSerialServer(str(tmp_path / "nope")).start()
    with pytest.raises(ValueError):
        CarrierSerialServer().start()
    line = Line(str(tmp_path))
    server_line = CarrierSerialServer(line.a)
    try:
        started = time.monotonic()
        assert carrier.connect(missing, 115200) is False
        assert time.monotonic() - started < 1.0
        rec = Recorder()
        client.addRemoteListener(rec.listener("l"), "late", "e")  # kept until connected
        line.start()
        server = sig.ServerRouter(server_line)
        server_line.start()
        assert up.wait(10.0)
        assert wait_until(lambda: "late" in server.senders, 5.0)
        server.addSender("late", ["e"]).getSignal("e").trigger("hello")
        assert rec.wait_for(1) == [("l", "late", "e", "hello")]
    finally:
        try:
            carrier.disconnect()
            server_line.stop()
        finally:
            line.stop()


def test_nobody_on_the_line(line: Line) -> None:
    carrier = CarrierSerialClient(handshake_timeout=0.3)
    sig.ClientRouter(carrier)
    try:
        started = time.monotonic()
        assert carrier.connect(line.b, 115200, auto_reconnect=False) is False
        assert time.monotonic() - started < 2.0
        assert not carrier.isConnected()
    finally:
        carrier.disconnect()


def test_socket_url_client_against_a_tcp_server() -> None:
    tcp = CarrierTCPServer()
    server = sig.ServerRouter(tcp)
    tcp.start("127.0.0.1", 0)
    carrier = CarrierSerialClient()
    client = sig.ClientRouter(carrier)
    try:
        assert carrier.connect("socket://127.0.0.1:%d" % tcp.port)
        client.addRemoteSender("s", ["e"], requests={"big": lambda p: "y" * 50_000})
        assert server.request("s", "big") == "y" * 50_000
    finally:
        carrier.disconnect()
        tcp.stop()


def test_server_on_a_socket_url(tmp_path: Path) -> None:
    """A serial server behind a TCP-to-serial bridge (socat here, ser2net in real life)."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (apt-get install -y socat): needed for a pty")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tty = str(tmp_path / "tty")
    bridge = subprocess.Popen(
        [socat, "tcp-listen:%d,bind=127.0.0.1,reuseaddr" % port, "pty,raw,echo=0,link=%s" % tty],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server_line = CarrierSerialServer("socket://127.0.0.1:%d" % port)
    server = sig.ServerRouter(server_line)
    carrier = CarrierSerialClient()
    client = sig.ClientRouter(carrier)
    try:
        def started() -> bool:
            try:
                server_line.start()
            except sig.CarrierError:
                return False
            return True

        assert wait_until(started, 5.0, 0.05)
        assert wait_until(lambda: os.path.exists(tty), 5.0)
        server.addSender("relay", ["e"], requests={"where": lambda p: "behind a bridge"})
        assert carrier.connect(tty, 115200, auto_reconnect=False)
        assert client.remoteRequest("relay", "where") == "behind a bridge"
    finally:
        try:
            carrier.disconnect()
            server_line.stop()
        finally:
            bridge.kill()
            bridge.wait(5.0)


def test_missing_pyserial_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "serial", None)
    with pytest.raises(ImportError, match=r"sig\[serial\]"):
        CarrierSerialClient()
    with pytest.raises(ImportError, match=r"sig\[serial\]"):
        CarrierSerialServer("/dev/null")


def test_one_server_router_over_tcp_and_serial(line: Line) -> None:
    tcp, serial_line = CarrierTCPServer(), CarrierSerialServer(line.a, 115200)
    server = sig.ServerRouter(tcp, request_timeout=5.0)
    server.attach(serial_line)
    tcp.start("127.0.0.1", 0)
    serial_line.start()
    tcp_carrier, serial_carrier = CarrierTCPClient(), CarrierSerialClient()
    tcp_client, serial_client = sig.ClientRouter(tcp_carrier), sig.ClientRouter(serial_carrier)
    tcp_rec, serial_rec = Recorder(), Recorder()
    try:
        assert tcp_carrier.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        assert serial_carrier.connect(line.b, 115200, auto_reconnect=False)
        tcp_client.addRemoteListener(tcp_rec.listener("tcp"), "board", None)
        serial_client.addRemoteListener(serial_rec.listener("serial"), "pc", None)
        board = serial_client.addRemoteSender("board", ["temp"], requests={"read": lambda p: 21.5})
        pc = tcp_client.addRemoteSender("pc", ["cmd"], requests={"hostname": lambda p: "pc-1"})
        board.getSignal("temp").trigger(21.5)
        pc.getSignal("cmd").trigger("reboot")
        assert tcp_rec.wait_for(2) == [
            ("tcp", "board", CONNECT, {"events": ["temp"], "requests": ["read"]}),
            ("tcp", "board", "temp", 21.5),
        ]
        assert serial_rec.wait_for(2) == [
            ("serial", "pc", CONNECT, {"events": ["cmd"], "requests": ["hostname"]}),
            ("serial", "pc", "cmd", "reboot"),
        ]
        assert tcp_client.remoteRequest("board", "read") == 21.5
        assert serial_client.remoteRequest("pc", "hostname") == "pc-1"
        serial_carrier.disconnect()
        assert tcp_rec.wait_for(3)[2] == ("tcp", "board", DISCONNECT, {"events": ["temp"], "requests": ["read"]})
        # the line is served again; the client registers its sender and listener again by itself
        assert serial_carrier.connect(line.b, 115200, auto_reconnect=False)
        assert tcp_rec.wait_for(4)[3][:3] == ("tcp", "board", CONNECT)
        assert serial_client.remoteRequest("pc", "hostname") == "pc-1"
        pc.getSignal("cmd").trigger("again")
        assert serial_rec.wait_for(3)[2] == ("serial", "pc", "cmd", "again")
        tcp_carrier.disconnect()
        assert serial_rec.wait_for(4)[3] == ("serial", "pc", DISCONNECT, {"events": ["cmd"], "requests": ["hostname"]})
    finally:
        tcp_carrier.disconnect()
        serial_carrier.disconnect()
        tcp.stop()
        serial_line.stop()
