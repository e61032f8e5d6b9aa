"""TLS for the TCP carriers: CarrierTCPServer(ssl_context=...) and CarrierTCPClient(ssl_context=...).

A CA, a server certificate for 127.0.0.1 / localhost and a client certificate are made
in the test: with the ``cryptography`` package when it is installed, else with the
``openssl`` command line (the test is skipped when neither is there).
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from certs import Pki, make_pki
from netutil import Recorder, wait_until

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

pytestmark = pytest.mark.timeout(60)


# -- a CA and certificates, made here (tests/certs.py) --------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_context(pki: Pki, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=pki.ca)
    return context


def client_context(pki: Pki, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


# -- fixtures --------------------------------------------------------------------------------


class TlsNet:
    """A ServerRouter on a TLS CarrierTCPServer, and a factory of TLS (or other) clients."""

    def __init__(self, pki: Pki, require_client_cert: bool = False) -> None:
        self.pki = pki
        self.tcp = CarrierTCPServer(ssl_context=server_context(pki, require_client_cert))
        self.server = sig.ServerRouter(self.tcp, request_timeout=5.0)
        self.tcp.start("127.0.0.1", 0)
        assert self.tcp.port
        self.port: int = self.tcp.port
        self.carriers: list[CarrierTCPClient] = []
        self.sockets: list[socket.socket] = []

    def carrier(self, context: ssl.SSLContext | str | None = "trusted", **settings: Any) -> CarrierTCPClient:
        if context == "trusted":
            context = client_context(self.pki)
        carrier = CarrierTCPClient(ssl_context=context, **settings)  # type: ignore[arg-type]
        self.carriers.append(carrier)
        return carrier

    def client(self, context: ssl.SSLContext | str | None = "trusted", host: str = "127.0.0.1") -> sig.ClientRouter:
        carrier = self.carrier(context)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect(host, self.port, auto_reconnect=False)
        return router

    def raw(self, tls: bool = True) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5.0)
        if tls:
            try:
                sock = client_context(self.pki).wrap_socket(sock, server_hostname="localhost")
            except BaseException:
                sock.close()
                raise
        self.sockets.append(sock)
        return sock

    def check(self) -> None:
        """A fresh TLS client gets a signal and a request through the server."""
        rec = Recorder()
        listener, device = self.client(), self.client()
        listener.addRemoteListener(rec.listener(), "check", "ping")
        sender = device.addRemoteSender("check", ["ping"], requests={"echo": lambda params: params})
        sender.getSignal("ping").trigger("pong")
        assert rec.wait_for(1) == [("", "check", "ping", "pong")]
        assert listener.remoteRequest("check", "echo", {"x": [1, "é"]}) == {"x": [1, "é"]}
        listener.carrier.disconnect()  # type: ignore[attr-defined]
        device.carrier.disconnect()  # type: ignore[attr-defined]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for carrier in self.carriers:
            carrier.disconnect()
        self.tcp.stop()


@pytest.fixture
def tls_net(pki: Pki) -> Iterator[TlsNet]:
    net = TlsNet(pki)
    try:
        yield net
    finally:
        net.close()


def tls_version(router: sig.ClientRouter) -> str | None:
    """The TLS version of a client's connection (None: not TLS)."""
    conn = getattr(router.carrier, "_conn", None)
    sock = getattr(getattr(conn, "stream", None), "sock", None)
    return sock.version() if isinstance(sock, ssl.SSLSocket) else None


def _line(sock: socket.socket, timeout: float = 5.0) -> dict[str, Any]:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "closed by the server"
        data += chunk
    return json.loads(data.split(b"\n")[0])  # type: ignore[no-any-return]


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Read until the server closes ``sock``; False if it is still open after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


# -- tests -------------------------------------------------------------------------------------


def test_the_certificates_were_made(pki: Pki) -> None:
    assert pki.tool in ("cryptography", "openssl")
    for path in (pki.ca, pki.server_cert, pki.server_key, pki.client_cert, pki.client_key):
        assert path.read_bytes().startswith(b"-----BEGIN ")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_events_and_requests_over_tls(tls_net: TlsNet, host: str) -> None:
    rec = Recorder()
    listener, device = tls_net.client(host=host), tls_net.client(host=host)
    assert tls_version(listener) in ("TLSv1.2", "TLSv1.3")
    listener.addRemoteListener(rec.listener("all"), "lamp")
    listener.addRemoteListener(rec.listener("connects"), None, sig.EVENT_CONNECT)
    lamp = device.addRemoteSender("lamp", ["on", "level"], requests={"state": lambda params: {"on": True}})
    lamp.getSignal("on").trigger(True)
    for level in range(200):
        lamp.getSignal("level").trigger({"level": level, "pad": "é" * 100})
    calls = rec.wait_for(203)
    assert calls[0][:3] == ("all", "lamp", sig.EVENT_CONNECT)
    assert ("all", "lamp", "on", True) in calls
    assert [c[3]["level"] for c in calls if c[2] == "level"] == list(range(200))
    assert listener.remoteRequest("lamp", "state") == {"on": True}
    tls_net.server.addSender("clock", ["tick"], requests={"now": lambda params: "noon"})
    assert device.remoteRequest("clock", "now") == "noon"
    with pytest.raises(NameError):
        listener.remoteRequest("nobody", "state")
    device.carrier.disconnect()  # type: ignore[attr-defined]
    assert wait_until(lambda: rec.calls[-1][:3] == ("all", "lamp", sig.EVENT_DISCONNECT)), rec.calls[-3:]
    assert [c[1] for c in rec.calls if c[0] == "connects"] == ["lamp", "clock"]


def test_full_duplex_load_over_tls(tls_net: TlsNet) -> None:
    """Reads and writes of one TLS socket on different threads at once: nothing lost, no error."""
    rec = Recorder()
    a, b = tls_net.client(), tls_net.client()
    a.addRemoteListener(rec.listener("a"), "b-sender")
    b.addRemoteListener(rec.listener("b"), "a-sender")
    sa = a.addRemoteSender("a-sender", ["x"], requests={"echo": lambda params: params})
    sb = b.addRemoteSender("b-sender", ["x"], requests={"echo": lambda params: params})
    errors: list[BaseException] = []
    COUNT = 2000

    def run(router: sig.ClientRouter, sender: sig.Sender, other: str) -> None:
        try:
            for i in range(COUNT):
                sender.getSignal("x").trigger({"i": i, "pad": "z" * (i % 3000)})
                if i % 20 == 0:
                    assert router.remoteRequest(other, "echo", i) == i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a, sa, "b-sender")),
               threading.Thread(target=run, args=(b, sb, "a-sender"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert not errors, errors
    calls = rec.wait_for(2 * COUNT + 2, timeout=20.0)  # and the #connect of each
    for tag, sender in (("a", "b-sender"), ("b", "a-sender")):
        assert [c[3]["i"] for c in calls if c[0] == tag and c[2] == "x"] == list(range(COUNT)), sender


def test_client_without_the_ca_is_refused_quickly(tls_net: TlsNet, caplog: pytest.LogCaptureFixture) -> None:
    good = tls_net.client()
    rec = Recorder()
    good.addRemoteListener(rec.listener(), "dev")
    caplog.set_level("INFO", logger="sig")
    stranger = tls_net.carrier(ssl.create_default_context())  # system CAs only
    started = time.monotonic()
    assert stranger.connect("127.0.0.1", tls_net.port, auto_reconnect=False) is False
    assert time.monotonic() - started < 3.0
    assert not stranger.isConnected()
    assert wait_until(lambda: any(r.name.startswith("sig") and "dropped" in r.getMessage() for r in caplog.records))
    # the server and its other client go on
    good.addRemoteSender("dev", ["e"]).getSignal("e").trigger(1)
    assert rec.wait_for(2)[-1] == ("", "dev", "e", 1)
    tls_net.check()


def test_wrong_server_name_is_refused(tls_net: TlsNet) -> None:
    carrier = tls_net.carrier(client_context(tls_net.pki), server_hostname="other.example")
    assert carrier.connect("127.0.0.1", tls_net.port, auto_reconnect=False) is False
    tls_net.check()


def test_untrusted_client_keeps_retrying_in_the_background(tls_net: TlsNet) -> None:
    stranger = tls_net.carrier(ssl.create_default_context())
    assert stranger.connect("127.0.0.1", tls_net.port, auto_reconnect=True) is False
    time.sleep(0.5)  # a few refused attempts
    assert not stranger.isConnected()
    tls_net.check()
    stranger.disconnect()


def test_plain_tcp_client_against_tls_server_is_dropped(tls_net: TlsNet) -> None:
    good = tls_net.client()
    plain = tls_net.carrier(None, connect_timeout=2.0, handshake_timeout=2.0)
    started = time.monotonic()
    assert plain.connect("127.0.0.1", tls_net.port, auto_reconnect=False) is False
    assert time.monotonic() - started < 3.0
    # raw plain-text junk, and a connection that never starts its handshake
    junk = tls_net.raw(tls=False)
    junk.sendall(b'{"id": 1, "method": "get_version"}\n' * 10)
    assert closed_by_server(junk)  # after a TLS alert at most
    silent = tls_net.raw(tls=False)
    tls_net.check()  # while `silent` holds a connection that never starts its handshake
    assert good.carrier.isConnected()
    silent.close()
    assert wait_until(lambda: len(tls_net.tcp.clients()) == 1)


def test_tls_client_against_plain_server_fails_and_server_survives(pki: Pki) -> None:
    tcp = CarrierTCPServer()
    server = sig.ServerRouter(tcp)
    tcp.start("127.0.0.1", 0)
    carriers: list[CarrierTCPClient] = []
    try:
        tls = CarrierTCPClient(ssl_context=client_context(pki), connect_timeout=2.0)
        carriers.append(tls)
        started = time.monotonic()
        assert tls.connect("127.0.0.1", tcp.port, auto_reconnect=False) is False  # type: ignore[arg-type]
        assert time.monotonic() - started < 3.0
        plain = CarrierTCPClient()
        carriers.append(plain)
        client = sig.ClientRouter(plain)
        assert plain.connect("127.0.0.1", tcp.port, auto_reconnect=False)  # type: ignore[arg-type]
        server.addSender("s", None, requests={"m": lambda params: 1})
        assert client.remoteRequest("s", "m") == 1
    finally:
        for carrier in carriers:
            carrier.disconnect()
        tcp.stop()


def test_bad_frames_over_tls_get_error_replies(tls_net: TlsNet) -> None:
    sock = tls_net.raw()
    sock.sendall(b"{nope\n")
    reply = _line(sock)
    assert reply["status"] == -3 and reply["id"] is None
    sock.sendall(b'{"id": 4, "method": "nope"}\n')
    assert _line(sock)["status"] == -1
    sock.sendall(b'{"id": 5, "method": "get_version"}\n')
    assert _line(sock) == {"id": 5, "status": 0, "response": "1.01"}
    tls_net.check()


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_abrupt_tls_disconnect_fires_disconnect(tls_net: TlsNet, rst: bool) -> None:
    rec = Recorder()
    watcher = tls_net.client()
    watcher.addRemoteListener(rec.listener(), None, sig.EVENT_DISCONNECT)
    tls_sock = tls_net.raw()
    tls_sock.sendall(b'{"id": 1, "method": "add_sender", "params": {"sender": "dev", "events": ["e"]}}\n')
    assert _line(tls_sock)["status"] == 0
    if rst:
        tls_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls_sock.close()  # without unwrap(): no TLS close_notify
    assert rec.wait_for(1) == [("", "dev", sig.EVENT_DISCONNECT, {"events": ["e"], "requests": None})]
    with pytest.raises(NameError):
        watcher.remoteRequest("dev", "m")
    tls_net.check()


def test_mutual_tls(pki: Pki) -> None:
    net = TlsNet(pki, require_client_cert=True)
    try:
        client = net.client(client_context(pki, with_cert=True))
        client.addRemoteSender("s", ["e"], requests={"m": lambda params: "ok"})
        assert client.remoteRequest("s", "m") == "ok"
        anonymous = net.carrier(client_context(pki), connect_timeout=2.0, handshake_timeout=2.0)
        started = time.monotonic()
        assert anonymous.connect("127.0.0.1", net.port, auto_reconnect=False) is False
        assert time.monotonic() - started < 3.0
        assert client.remoteRequest("s", "m") == "ok"
    finally:
        net.close()
