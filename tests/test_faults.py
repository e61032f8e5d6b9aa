"""Bad input and faults against the TCP carriers: the server answers, logs, and keeps serving.

Every network test runs a ServerRouter on a CarrierTCPServer (127.0.0.1, port 0) with a
healthy sig ClientRouter beside it (a sender with a request handler, and a listener on
that sender). A raw socket client then misbehaves in one way per test; afterwards the
healthy client must still get a request and a signal through.

The FrameDecoder tests at the end open no socket.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from netutil import Recorder, own_tcp_ports, wait_until

import sig
from sig._codec import BadFrame, FrameDecoder, Status
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

pytestmark = pytest.mark.timeout(60)

MAX_FRAME = 4096
MAX_QUEUE = 100
CAPS = ["ndjson", "pipeline", "ping"]


# -- helpers ---------------------------------------------------------------------------


class RawClient:
    """A client on a bare socket: sends whatever bytes it is given, reads NDJSON lines."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5.0)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self._ids = iter(range(1000, 10**9))
        self.closed = False

    def send(self, data: bytes | dict[str, Any]) -> None:
        if isinstance(data, dict):
            data = (json.dumps(data) + "\n").encode()
        self.sock.sendall(data)

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """Return the next message the server sent (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "no complete message from the server in %.1f s (have %r)" % (timeout, self.buffer[:200])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert chunk, "the server closed the connection (have %r)" % self.buffer[:200]
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        assert isinstance(message, dict)
        return message

    def reply(self, message_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Return the reply with ``message_id``, skipping other traffic (e.g. pings)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if "status" in message and message.get("id") == message_id:
                return message

    def call(self, method: str, params: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send a call with a fresh id and return its reply."""
        message_id = next(self._ids)
        self.send({"id": message_id, "method": method, "params": params if params is not None else {}})
        return self.reply(message_id, timeout)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Read (and drop) until the server closes the connection; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                continue
            except OSError:
                return True
        return False

    def close(self, rst: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if rst:  # SO_LINGER 0: close() sends a RST instead of a FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class Rig:
    """A ServerRouter on TCP, a healthy sig client, and factories of raw and sig clients."""

    def __init__(self, request_timeout: float = 5.0, **server_settings: Any) -> None:
        settings: dict[str, Any] = {"max_frame": MAX_FRAME, "max_queue": MAX_QUEUE}
        settings.update(server_settings)
        self.tcp = CarrierTCPServer(**settings)
        self.server = sig.ServerRouter(self.tcp, request_timeout=request_timeout)
        self.tcp.start("127.0.0.1", 0)
        assert self.tcp.port
        self.port: int = self.tcp.port
        self.raws: list[RawClient] = []
        self.carriers: list[CarrierTCPClient] = []
        self.rec = Recorder()
        self.healthy = self.client()
        self.healthy.addRemoteSender("healthy", ["tick"], requests={"echo": lambda params: params})
        self.healthy.addRemoteListener(self.rec.listener("healthy"), "healthy", "tick")
        self._round = 0

    def client(self, **carrier_settings: Any) -> sig.ClientRouter:
        carrier = CarrierTCPClient(**carrier_settings)
        self.carriers.append(carrier)
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.port, auto_reconnect=False)
        return router

    def raw(self, **kwargs: Any) -> RawClient:
        raw = RawClient(self.port, **kwargs)
        self.raws.append(raw)
        return raw

    def check_healthy(self) -> None:
        """A request and a signal round trip through the server, for the healthy client."""
        self._round += 1
        n = self._round
        assert self.healthy.carrier.isConnected()
        assert self.healthy.remoteRequest("healthy", "echo", {"n": n}, timeout=5.0) == {"n": n}
        assert self.server.request("healthy", "echo", [n]) == [n]
        self.healthy.getSender("healthy").getSignal("tick").trigger(n)
        assert wait_until(lambda: ("healthy", "healthy", "tick", n) in self.rec.calls), self.rec.calls[-5:]

    def server_clients(self) -> int:
        """The server's clients from this process (a stranger on a reused port is not counted)."""
        ours = own_tcp_ports()
        clients = self.tcp.clients()
        if ours is None:
            return len(clients)
        return sum(1 for clientid in clients if int(clientid.rsplit("#", 1)[0].rsplit(":", 1)[1]) in ours)

    def holds(self, address: str) -> bool:
        """Whether the server has a connection from ``address`` (a stranger on a reused port is not counted)."""
        return any(clientid.startswith(address + "#") for clientid in self.tcp.clients())

    def close(self) -> None:
        for raw in self.raws:
            raw.close()
        for carrier in self.carriers:
            carrier.disconnect()
        self.tcp.stop()


@pytest.fixture
def siglog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at INFO for the "sig" loggers (propagation forced on for the test)."""
    sig_logger = logging.getLogger("sig")
    propagate = sig_logger.propagate
    sig_logger.propagate = True
    caplog.set_level(logging.INFO, logger="sig")
    try:
        yield caplog
    finally:
        sig_logger.propagate = propagate


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def make_rig() -> Iterator[Any]:
    made: list[Rig] = []

    def make(**settings: Any) -> Rig:
        r = Rig(**settings)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.close()


def logged(caplog: pytest.LogCaptureFixture, fragment: str, level: int = logging.WARNING) -> bool:
    """Tell whether a "sig..." logger logged ``fragment`` at ``level`` or above."""
    return any(
        rec.name.startswith("sig") and rec.levelno >= level and fragment in rec.getMessage() for rec in caplog.records
    )


def wait_logged(caplog: pytest.LogCaptureFixture, fragment: str, level: int = logging.WARNING) -> None:
    assert wait_until(lambda: logged(caplog, fragment, level)), [
        (r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("sig")
    ][-10:]


def connected(router: sig.Router, sender: Any) -> bool:
    objsender = router.senders.get(sender)
    return objsender is not None and objsender.isConnected()


def assert_still_usable(raw: RawClient) -> None:
    """The raw connection itself still works after the bad frame."""
    reply = raw.call("get_version")
    assert reply["status"] == Status.OK and reply["response"] == "1.01"


# -- bad frames -----------------------------------------------------------------------------

BAD_FRAMES = [
    # (bytes sent, id of the reply, status, fragment of the exception, error family)
    (b'{"id": 11, "method": "get_version", oops}\n', 11, Status.NO_METHOD, "malformed JSON", "ValueError"),
    (b'{"id": "abc", "method": ]\n', "abc", Status.NO_METHOD, "malformed JSON", "ValueError"),
    (b"{nope\n", None, Status.NO_METHOD, "malformed JSON", "ValueError"),
    (b"}}}\n", None, Status.NO_METHOD, "malformed JSON", "ValueError"),
    (b"hello world\n", None, Status.NO_METHOD, "malformed JSON", "ValueError"),
    (b"[1,2]\n", None, Status.NO_METHOD, "JSON object", "ValueError"),
    (b'[{"id": 9, "method": "get_version"}]\n', None, Status.NO_METHOD, "JSON object", "ValueError"),
    (b"42\n", None, Status.NO_METHOD, "JSON object", "ValueError"),
    (b'"text"\n', None, Status.NO_METHOD, "JSON object", "ValueError"),
    (b"null\n", None, Status.NO_METHOD, "JSON object", "ValueError"),
    (b"true\n", None, Status.NO_METHOD, "JSON object", "ValueError"),
    (b'{"id":5}\n', 5, Status.NO_METHOD, "no method", "ValueError"),
    (b'{"id":5,"method":null,"params":{}}\n', 5, Status.NO_METHOD, "no method", "ValueError"),
    (b'{"id":6,"method":"nope"}\n', 6, Status.UNKNOWN_METHOD, "unknown method", "LookupError"),
    (b'{"id":6,"method":42}\n', 6, Status.UNKNOWN_METHOD, "unknown method", "LookupError"),
    (b'{"id":6,"method":["get_version"]}\n', 6, Status.UNKNOWN_METHOD, "unknown method", "LookupError"),
    (b'{"id":[6],"method":"nope"}\n', [6], Status.UNKNOWN_METHOD, "unknown method", "LookupError"),
]


@pytest.mark.parametrize(("data", "reply_id", "status", "fragment", "family"), BAD_FRAMES,
                         ids=[case[0][:24].decode(errors="replace") for case in BAD_FRAMES])
def test_bad_frame_gets_error_reply_and_log(rig: Rig, siglog: Any, data: bytes, reply_id: Any, status: int,
                                            fragment: str, family: str) -> None:
    raw = rig.raw()
    raw.send(data)
    reply = raw.recv()
    assert reply["id"] == reply_id
    assert reply["status"] == status
    assert fragment in reply["exception"]
    assert reply["error"] == family
    wait_logged(siglog, "")
    assert_still_usable(raw)
    rig.check_healthy()


def test_truncated_line_then_valid_frame(rig: Rig, siglog: Any) -> None:
    """An unterminated line is reported once the next line shows it can never complete."""
    raw = rig.raw()
    raw.send(b'{"id": 3, "meth\n')
    time.sleep(0.1)
    raw.send(b'{"id": 4, "method": "get_version"}\n')
    first, second = raw.recv(), raw.recv()
    assert (first["id"], first["status"]) == (3, Status.NO_METHOD)
    assert "malformed JSON" in first["exception"]
    assert (second["id"], second["status"], second["response"]) == (4, Status.OK, "1.01")
    wait_logged(siglog, "bad frame")
    rig.check_healthy()


def test_reply_to_nothing_is_logged_and_ignored(rig: Rig, siglog: Any) -> None:
    raw = rig.raw()
    raw.send(b'{"id": 99, "status": 0, "response": null}\n')
    wait_logged(siglog, "reply to no pending message")
    assert_still_usable(raw)
    rig.check_healthy()


# -- wrongly typed or missing fields, per RPC method -------------------------------------------

BAD_PARAMS = [
    # (method, params as JSON text, a word the exception text must contain)
    ("add_sender", '{"sender": true, "events": ["e"]}', "sender"),
    ("add_sender", '{"sender": true}', "sender"),
    ("add_sender", "{}", "sender"),
    ("add_sender", '{"sender": null, "events": ["e"]}', "sender"),
    ("add_sender", '{"sender": [1], "events": ["e"]}', "sender"),
    ("add_sender", '{"sender": {"a": 1}, "events": ["e"]}', "sender"),
    ("add_sender", '{"sender": NaN, "events": ["e"]}', "sender"),
    ("add_sender", '{"sender": 1e400, "events": ["e"]}', "sender"),
    ("add_sender", '{"sender": "x"}', "x"),
    ("add_sender", '{"sender": "x", "events": {"e": 1}}', "events"),
    ("add_sender", '{"sender": "x", "events": true}', "events"),
    ("add_sender", '{"sender": "x", "events": [null]}', "event"),
    ("add_sender", '{"sender": "x", "events": [true]}', "event"),
    ("add_sender", '{"sender": "x", "events": [[1]]}', "event"),
    ("add_sender", '{"sender": "x", "events": ["e"], "requests": "m"}', "requests"),
    ("add_sender", '{"sender": "x", "events": ["e"], "requests": {"m": 1}}', "requests"),
    ("add_sender", '{"sender": "x", "events": ["e"], "requests": [true]}', "method"),
    ("add_sender", '{"sender": "x", "events": ["e"], "requests": [{"a": 1}]}', "method"),
    ("add_sender", '{"sender": "x", "events": ["e"], "requests": [[1]]}', "method"),
    ("remove_sender", "{}", "sender"),
    ("remove_sender", '{"sender": [1]}', "sender"),
    ("remove_sender", '{"sender": false}', "sender"),
    ("add_listener", '{"sender": {}}', "sender"),
    ("add_listener", '{"event": true}', "event"),
    ("add_listener", '{"sender": "a", "event": NaN}', "event"),
    ("remove_listener", "{}", "listener_id"),
    ("remove_listener", '{"listener_id": "1"}', "listener_id"),
    ("remove_listener", '{"listener_id": 1.5}', "listener_id"),
    ("remove_listener", '{"listener_id": true}', "listener_id"),
    ("signal", "{}", "info"),
    ("signal", '{"info": "x"}', "info"),
    ("signal", '{"info": {"sender": true, "event": "e"}}', "sender"),
    ("signal", '{"info": {"sender": "s"}}', "event"),
    ("request", "{}", "sender"),
    ("request", '{"sender": null, "method": "m"}', "sender"),
    ("request", '{"sender": "healthy"}', "method"),
    ("request", '{"sender": "healthy", "method": [1]}', "method"),
    ("get_version", '"x"', "params"),
    ("get_version", "5", "params"),
    ("list_senders", "[1]", "params"),
    ("add_sender", '"healthy"', "params"),
    ("signal", "[]", "params"),
    ("request", "true", "params"),
]


@pytest.mark.parametrize(("method", "params", "word"), BAD_PARAMS,
                         ids=["%s-%s" % (m, p) for m, p, _ in BAD_PARAMS])
def test_wrong_or_missing_fields_get_method_failed(rig: Rig, siglog: Any, method: str, params: str,
                                                   word: str) -> None:
    raw = rig.raw()
    raw.send(b'{"id": 21, "method": "%s", "params": %s}\n' % (method.encode(), params.encode()))
    reply = raw.reply(21)
    assert reply["status"] == Status.METHOD_FAILED, reply
    assert reply["error"] in ("TypeError", "ValueError"), reply
    assert word in reply["exception"], reply
    assert "unhashable" not in reply["exception"], reply
    wait_logged(siglog, method)
    assert not connected(rig.server, "x")
    assert_still_usable(raw)
    rig.check_healthy()


NAME_ERRORS = [
    # (method, params, family, status): well-formed calls that are refused
    ("remove_sender", {"sender": "nobody"}, "NameError"),
    ("remove_sender", {"sender": "healthy"}, "NameError"),  # another client's sender
    ("add_sender", {"sender": "healthy", "events": ["e"]}, "NameError"),  # taken
    ("signal", {"info": {"sender": "healthy", "event": "tick"}, "data": "forged"}, "NameError"),
    ("signal", {"info": {"sender": "nobody", "event": "tick"}}, "NameError"),
    ("request", {"sender": "nobody", "method": "echo"}, "NameError"),
    ("request", {"sender": "healthy", "method": "no_such_method"}, "LookupError"),
    ("remove_listener", {"listener_id": 987654}, "LookupError"),
]


@pytest.mark.parametrize(("method", "params", "family"), NAME_ERRORS,
                         ids=["%s-%s" % (m, json.dumps(p)) for m, p, _ in NAME_ERRORS])
def test_refused_calls_name_their_error_family(rig: Rig, method: str, params: dict[str, Any], family: str) -> None:
    raw = rig.raw()
    reply = raw.call(method, params)
    assert reply["status"] == Status.METHOD_FAILED, reply
    assert reply["error"] == family, reply
    assert reply["exception"]
    assert rig.server.getSender("healthy").isConnected()  # a stranger cannot remove or take it
    assert ("healthy", "healthy", "tick", "forged") not in rig.rec.calls
    rig.check_healthy()


def test_null_params_mean_no_params(rig: Rig) -> None:
    raw = rig.raw()
    raw.send(b'{"id": 1, "method": "list_senders", "params": null}\n')
    reply = raw.reply(1)
    assert reply["status"] == Status.OK
    assert {"sender": "healthy", "connected": True} in reply["response"]
    raw.send(b'{"id": 2, "method": "get_version"}\n')  # no params at all
    assert raw.reply(2)["response"] == "1.01"


# -- oversized frames, non-UTF-8 bytes ---------------------------------------------------------------


def _big_frame(size: int, message_id: int = 77) -> bytes:
    head = b'{"id": %d, "method": "get_version", "params": {"pad": "' % message_id
    return head + b"x" * (size - len(head) - 4) + b'"}}\n'


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([_big_frame(MAX_FRAME + 1000)], id="one-write"),
        pytest.param([_big_frame(MAX_FRAME + 1000)[:3000], _big_frame(MAX_FRAME + 1000)[3000:]], id="two-writes"),
        pytest.param([_big_frame(60000)], id="60KB"),
        pytest.param([_big_frame(300000)], id="300KB"),
        pytest.param([_big_frame(20000)[:-1], b"\n"], id="newline-later"),
    ],
)
def test_oversized_frame_error_reply_then_next_frame_works(rig: Rig, siglog: Any, chunks: list[bytes]) -> None:
    raw = rig.raw()
    for chunk in chunks:
        raw.send(chunk)
        time.sleep(0.05)
    reply = raw.recv()
    assert (reply["id"], reply["status"]) == (77, Status.NO_METHOD), reply
    assert "larger than %d" % MAX_FRAME in reply["exception"]
    wait_logged(siglog, "larger than")
    raw.send(b'{"id": 78, "method": "get_version"}\n')
    assert raw.reply(78)["response"] == "1.01"
    assert raw.buffer == b""  # exactly one error reply, one answer
    rig.check_healthy()


def test_frame_just_under_the_limit_is_accepted(rig: Rig) -> None:
    raw = rig.raw()
    raw.send(_big_frame(MAX_FRAME - 10))
    assert raw.reply(77)["status"] == Status.OK


def test_default_limit_is_one_mebibyte(make_rig: Any, siglog: Any) -> None:
    r = make_rig(max_frame=sig._codec.DEFAULT_MAX_FRAME)
    raw = r.raw()
    raw.send(_big_frame(900 * 1024))
    assert raw.reply(77, timeout=10.0)["status"] == Status.OK
    raw.send(_big_frame(1024 * 1024 + 100))
    reply = raw.reply(77, timeout=10.0)
    assert reply["status"] == Status.NO_METHOD and "larger than 1048576" in reply["exception"]
    assert_still_usable(raw)
    r.check_healthy()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xfe\xfd\n", id="invalid-bytes"),
        pytest.param(b'{"id": 3, "method": "\xc3"}\n', id="truncated-sequence"),
        pytest.param(b'{"id": 3, "method": "\xed\xa0\x80"}\n', id="surrogate"),
        pytest.param(b'{"id": 3, "method": "get_version", "params": {"a": "\xc0\xaf"}}\n', id="overlong"),
    ],
)
def test_non_utf8_bytes_get_error_reply(rig: Rig, siglog: Any, data: bytes) -> None:
    raw = rig.raw()
    raw.send(data)
    reply = raw.recv()
    assert reply["status"] == Status.NO_METHOD and "UTF-8" in reply["exception"], reply
    wait_logged(siglog, "UTF-8")
    assert_still_usable(raw)
    rig.check_healthy()


def test_non_utf8_line_does_not_swallow_the_next_frame(rig: Rig) -> None:
    """A valid frame that arrives in the same read as a bad line is still answered."""
    raw = rig.raw()
    raw.send(b'\xff\xfe junk\n{"id": 8, "method": "get_version"}\n')
    assert raw.reply(8)["response"] == "1.01"


def test_lone_surrogate_escape_is_carried(rig: Rig) -> None:
    r"""``"\ud800"`` is valid JSON text; it must not break encoding of replies or events."""
    rec = Recorder()
    rig.healthy.addRemoteListener(rec.listener(), None, sig.EVENT_CONNECT)
    raw = rig.raw()
    raw.send(b'{"id": 1, "method": "add_sender", "params": {"sender": "odd\\ud800", "events": ["e"]}}\n')
    assert raw.reply(1)["status"] == Status.OK
    assert rec.wait_for(1)[0][1] == "odd\ud800"
    raw.send(b'{"id": "\\udfff", "method": "nope"}\n')
    assert raw.reply("\udfff")["status"] == Status.UNKNOWN_METHOD
    rig.check_healthy()


def test_random_garbage_never_takes_the_server_down(rig: Rig) -> None:
    rnd = random.Random(1234)
    raws = [rig.raw() for _ in range(8)]
    for raw in raws:
        for _ in range(20):
            raw.send(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 600))) + rnd.choice([b"", b"\n"]))
    rig.check_healthy()
    for raw in raws:
        raw.close(rst=rnd.random() < 0.5)
    assert wait_until(lambda: rig.server_clients() == 1)
    rig.check_healthy()


# -- stalls, slow readers, abrupt disconnects ------------------------------------------------------


@pytest.mark.parametrize("then", ["completes", "closes", "resets"])
def test_half_a_frame_then_stall(rig: Rig, siglog: Any, then: str) -> None:
    raw = rig.raw()
    raw.send(b'{"id": 1, "method": "get_ver')
    address = "%s:%s" % raw.sock.getsockname()[:2]
    assert wait_until(lambda: rig.holds(address)), (address, rig.tcp.clients())
    for _ in range(3):
        rig.check_healthy()  # the stalled client blocks nobody
    if then == "completes":
        raw.send(b'sion"}\n')
        assert raw.reply(1)["response"] == "1.01"
        return
    raw.close(rst=then == "resets")
    assert wait_until(lambda: not rig.holds(address)), (address, rig.tcp.clients())
    wait_logged(siglog, "client disconnected", logging.INFO)
    rig.check_healthy()


@pytest.mark.parametrize("pipelined", [False, True], ids=["pysig-0.7.3-peer", "sig-peer"])
def test_client_that_stops_reading_is_dropped_not_waited_for(rig: Rig, siglog: Any, pipelined: bool) -> None:
    rec = Recorder()
    rig.healthy.addRemoteListener(rec.listener("healthy"), "flood", "burst")
    slow = rig.raw(rcvbuf=4096)
    if pipelined:
        slow.call("get_version", {"capabilities": ["ndjson", "pipeline"]})  # no "ping": it is busy, not gone
    assert slow.call("add_listener", {"sender": "flood"})["status"] == Status.OK
    flooder = rig.client()
    flood = flooder.addRemoteSender("flood", ["burst"]).getSignal("burst")
    payload = "p" * 2000
    sent = 0
    deadline = time.monotonic() + 60.0
    # Bursts the size of the queue, each one delivered to the healthy client before the next, until the
    # server drops the slow client: once its kernel buffers are full (the server's send buffer grows
    # up to tcp_wmem's 4 MB meanwhile, which on a loaded machine took more than 20,000 events once).
    while rig.server_clients() == 3 and time.monotonic() < deadline:
        for _ in range(MAX_QUEUE // 2):
            flood.trigger({"n": sent, "pad": payload})
            sent += 1
        rec.wait_for(sent, timeout=10.0)
    assert rig.server_clients() == 2, "the slow client was never dropped (%d events sent)" % sent
    wait_logged(siglog, "peer is not reading", logging.INFO)
    # A few more after the drop; then the healthy client has every event, in order.
    for _ in range(10):
        flood.trigger({"n": sent, "pad": payload})
        sent += 1
    calls = rec.wait_for(sent, timeout=10.0)
    assert [call[3]["n"] for call in calls] == list(range(sent))
    assert flooder.carrier.isConnected()
    assert slow.wait_closed(10.0)
    rig.check_healthy()


@pytest.mark.parametrize("how", ["close", "rst", "rst-mid-frame"])
def test_abrupt_disconnect_fires_disconnect_everywhere(rig: Rig, siglog: Any, how: str) -> None:
    on_server, on_client = Recorder(), Recorder()
    rig.server.addListener(on_server.listener("server"), None, sig.EVENT_DISCONNECT)
    rig.healthy.addRemoteListener(on_client.listener("client"), None, sig.EVENT_DISCONNECT)
    raw = rig.raw()
    for name in ("dev1", "dev2"):
        reply = raw.call("add_sender", {"sender": name, "events": ["e"], "requests": ["ask"]})
        assert reply["status"] == Status.OK, reply
    assert raw.call("add_listener", {"sender": "healthy"})["status"] == Status.OK
    if how == "rst-mid-frame":
        raw.send(b'{"id": 5, "method": "sig')
    raw.close(rst=how.startswith("rst"))
    expected = {"events": ["e"], "requests": ["ask"]}
    assert sorted(c[1:] for c in on_server.wait_for(2)) == [
        ("dev1", sig.EVENT_DISCONNECT, expected), ("dev2", sig.EVENT_DISCONNECT, expected)]
    assert sorted(c[1:] for c in on_client.wait_for(2)) == sorted(c[1:] for c in on_server.calls)
    assert wait_until(lambda: rig.server_clients() == 1)
    assert not connected(rig.server, "dev1") and not connected(rig.server, "dev2")
    # Requests to the vanished client's senders fail at once with a NameError.
    started = time.monotonic()
    with pytest.raises(NameError) as remote:
        rig.healthy.remoteRequest("dev1", "ask", timeout=5.0)
    assert isinstance(remote.value, sig.RemoteNameError) and "dev1" in str(remote.value)
    with pytest.raises(sig.UnknownSenderError):
        rig.server.request("dev2", "ask")
    assert time.monotonic() - started < 2.0
    # Its listener is gone from the server: signals of "healthy" reach one listener only.
    tick = rig.server.getSender("healthy").getEvent("tick")
    assert tick is not None and len(tick.listeners) == 1
    wait_logged(siglog, "gone: removed 2 sender(s), 1 listener(s)", logging.INFO)
    rig.check_healthy()


def test_request_in_flight_when_the_client_vanishes_fails_fast(rig: Rig) -> None:
    raw = rig.raw()
    assert raw.call("add_sender", {"sender": "dev", "events": ["e"], "requests": ["ask"]})["status"] == Status.OK
    outcome: dict[str, Any] = {}

    def ask() -> None:
        started = time.monotonic()
        try:
            outcome["result"] = rig.healthy.remoteRequest("dev", "ask", {"q": 1}, timeout=10.0)
        except Exception as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        forwarded = raw.recv()
        assert forwarded["method"] == "request" and forwarded["params"]["sender"] == "dev"
        raw.close(rst=True)
    finally:
        asker.join(15.0)
    assert not asker.is_alive()
    assert "result" not in outcome
    error = outcome["error"]
    assert isinstance(error, sig.RemoteError) and isinstance(error, NameError), repr(error)
    assert "dev" in str(error)
    assert outcome["elapsed"] < 3.0  # not the server's request_timeout, nor the client's
    rig.check_healthy()


def test_request_to_a_client_that_never_answers_times_out(make_rig: Any, siglog: Any) -> None:
    r = make_rig(request_timeout=0.5)
    raw = r.raw()
    assert raw.call("get_version", {"capabilities": ["ndjson", "pipeline"]})["status"] == Status.OK
    assert raw.call("add_sender", {"sender": "mute", "events": ["e"], "requests": ["ask"]})["status"] == Status.OK
    started = time.monotonic()
    with pytest.raises(sig.RequestTimeout) as timeout:
        r.server.request("mute", "ask", 1)
    elapsed = time.monotonic() - started
    assert isinstance(timeout.value, TimeoutError)
    assert 0.4 <= elapsed < 3.0, elapsed
    forwarded = raw.recv()
    assert forwarded["method"] == "request" and forwarded["params"]["params"] == 1
    # Through a client: the server's timeout comes back as a failure naming TimeoutError.
    started = time.monotonic()
    with pytest.raises(sig.RemoteError) as remote:
        r.healthy.remoteRequest("mute", "ask", 2, timeout=5.0)
    assert remote.value.error_type == "TimeoutError"
    assert 0.4 <= time.monotonic() - started < 3.0
    # A late answer finds nothing waiting for it: logged, ignored.
    raw.send({"id": forwarded["id"], "status": 0, "response": "late"})
    wait_logged(siglog, "reply to no pending message")
    assert r.server.getSender("mute").isConnected()
    r.check_healthy()


def test_unanswered_pings_close_a_vanished_peer(make_rig: Any, siglog: Any) -> None:
    r = make_rig(ping_interval=0.2)
    raw = r.raw()
    reply = raw.call("get_version", {"capabilities": CAPS})
    assert reply["status"] == Status.OK and "ping" in reply["response"]["capabilities"]
    assert raw.call("add_sender", {"sender": "ghost", "events": ["e"]})["status"] == Status.OK
    ping = raw.recv(timeout=3.0)
    assert ping["method"] == "ping" and "id" in ping
    started = time.monotonic()
    assert raw.wait_closed(5.0), "a peer that never answers pings was not closed"
    assert time.monotonic() - started < 3.0
    assert wait_until(lambda: not connected(r.server, "ghost"))
    wait_logged(siglog, "no answer to ping", logging.INFO)
    r.check_healthy()  # the sig client answers its pings and stays
    assert r.healthy.carrier.isConnected()


def test_answered_pings_keep_the_peer(make_rig: Any) -> None:
    r = make_rig(ping_interval=0.1)
    raw = r.raw()
    assert raw.call("get_version", {"capabilities": CAPS})["status"] == Status.OK
    pings = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        message = raw.recv(timeout=2.0)
        assert message["method"] == "ping"
        raw.send({"id": message["id"], "status": 0, "response": {"pong": True}})
        pings += 1
    assert pings >= 3
    assert r.server_clients() == 2
    assert_still_usable(raw)


def test_client_closes_a_server_that_stops_answering_pings() -> None:
    """The same detection on the client side, against a fake server that goes silent."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        conn.settimeout(5.0)
        data = b""
        while b"\n" not in data:
            data += conn.recv(4096)
        hello = json.loads(data.split(b"\n")[0])
        answer = {"id": hello["id"], "status": 0, "response": {"version": "x", "capabilities": CAPS}}
        conn.sendall((json.dumps(answer) + "\n").encode())

    thread = threading.Thread(target=serve)
    thread.start()
    carrier = CarrierTCPClient(ping_interval=0.2)
    gone = threading.Event()
    carrier.on_disconnected = gone.set
    sig.ClientRouter(carrier)
    try:
        assert carrier.connect("127.0.0.1", listener.getsockname()[1], auto_reconnect=False)
        assert gone.wait(5.0), "the client kept a silent server"
        assert not carrier.isConnected()
        assert carrier.server_version == "x"
    finally:
        carrier.disconnect()
        thread.join(5.0)
        for conn in accepted:
            conn.close()
        listener.close()


def test_many_bad_clients_at_once(rig: Rig) -> None:
    bad = [b"{nope\n", b"[1]\n", b'{"id":1}\n', b'{"id":1,"method":"x"}\n', b"\xff\n", _big_frame(MAX_FRAME * 3)]
    raws = [rig.raw() for _ in range(24)]
    errors: list[BaseException] = []

    def misbehave(raw: RawClient, index: int) -> None:
        try:
            for _ in range(5):
                raw.send(bad[index % len(bad)])
                assert raw.recv()["status"] != Status.OK
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=misbehave, args=(raw, i)) for i, raw in enumerate(raws)]
    for thread in threads:
        thread.start()
    rig.check_healthy()
    for thread in threads:
        thread.join(20.0)
    assert not errors, errors[:3]
    for i, raw in enumerate(raws):
        raw.close(rst=i % 2 == 0)
    assert wait_until(lambda: rig.server_clients() == 1)
    rig.check_healthy()


# -- FrameDecoder, without sockets ------------------------------------------------------------------

STREAM_MESSAGES: list[dict[str, Any]] = [
    {"id": 1, "method": "get_version", "params": {"capabilities": ["ndjson"]}},
    {"id": 2, "method": "signal", "params": {"info": {"sender": "été", "event": "€"}, "data": "😀 {} \" \\n ]"}},
    {"id": 3, "status": 0, "response": [1, 2.5, None, True, {"k": "}"}]},
    {},
    {"id": "x", "method": "request", "params": {"sender": "s", "method": "m", "params": "\u0000\u2028"}},
]


def _stream() -> bytes:
    """NDJSON frames, then the same frames back to back as pysig 0.7.3 sends them."""
    ndjson = b"".join(json.dumps(m, ensure_ascii=False).encode() + b"\n" for m in STREAM_MESSAGES)
    pysig = b"".join(json.dumps(m, ensure_ascii=False).encode() for m in STREAM_MESSAGES)
    return ndjson + pysig


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def test_decoder_split_at_every_byte_boundary() -> None:
    data = _stream()
    expected = STREAM_MESSAGES * 2
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        assert _feed_all(decoder, [data[:cut], data[cut:]]) == expected, cut
        assert decoder.pending == 0


def test_decoder_one_byte_at_a_time() -> None:
    data = _stream()
    decoder = FrameDecoder()
    assert _feed_all(decoder, [data[i : i + 1] for i in range(len(data))]) == STREAM_MESSAGES * 2


@pytest.mark.parametrize("char", ["é", "€", "😀", "\u2028"])
def test_decoder_utf8_multibyte_split(char: str) -> None:
    frame = json.dumps({"id": 1, "method": "m", "params": {"v": char * 3}}, ensure_ascii=False).encode() + b"\n"
    start = frame.index(char.encode())
    for cut in range(start, start + len(char.encode()) * 3 + 1):
        decoder = FrameDecoder()
        assert decoder.feed(frame[:cut]) == []
        assert decoder.feed(frame[cut:]) == [{"id": 1, "method": "m", "params": {"v": char * 3}}]


def test_decoder_back_to_back_objects() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b'{"a":1}{"b":2} {"c":3}\r\n\t{"d":4}') == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]
    assert decoder.feed(b'{"e":') == []
    assert decoder.feed(b'5}{"f":6}\n') == [{"e": 5}, {"f": 6}]
    assert decoder.feed(b"\n\n   \n") == []
    assert decoder.pending == 0


def test_decoder_pretty_printed_object() -> None:
    decoder = FrameDecoder()
    text = json.dumps({"id": 1, "method": "get_version", "params": {}}, indent=2).encode()
    half = len(text) // 2
    assert decoder.feed(text[:half]) == []
    assert decoder.feed(text[half:] + b"\n") == [{"id": 1, "method": "get_version", "params": {}}]


@pytest.mark.parametrize("chunk", [1000, 4096, 65536])
def test_decoder_100kb_payloads(chunk: int) -> None:
    messages = [{"id": i, "method": "signal", "params": {"data": ("%d" % i) * 100_000}} for i in range(1, 4)]
    data = b"".join(json.dumps(m).encode() + b"\n" for m in messages) + json.dumps(messages[0]).encode()
    decoder = FrameDecoder()
    assert _feed_all(decoder, [data[i : i + chunk] for i in range(0, len(data), chunk)]) == [*messages, messages[0]]


@pytest.mark.parametrize("chunk", [100, 999, 5000, 100_000])
def test_decoder_oversized_then_resync(chunk: int) -> None:
    big = json.dumps({"id": 42, "method": "m", "params": {"pad": "y" * 5000}}).encode() + b"\n"
    data = b'{"id": 1}\n' + big + b'{"id": 2}\n' + b'{"id": 43, "pad": "' + b"z" * 3000 + b'"}{"id": 3}\n'
    decoder = FrameDecoder(max_frame=1000)
    out = _feed_all(decoder, [data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert out[0] == {"id": 1} and out[2] == {"id": 2}
    assert isinstance(out[1], BadFrame) and out[1].id == 42 and "larger than 1000" in out[1].reason
    assert isinstance(out[3], BadFrame) and out[3].id == 43
    # {"id": 3} shares the oversized frame's line: skipped with it, or kept when that frame was whole
    assert out[4:] in ([], [{"id": 3}]), out[4:]
    assert decoder.feed(b'{"id": 4}\n') == [{"id": 4}]


def test_decoder_oversized_complete_frame_in_one_read() -> None:
    decoder = FrameDecoder(max_frame=100)
    out = decoder.feed(b'{"id": 7, "pad": "' + b"x" * 200 + b'"}\n{"id": 8}\n')
    assert isinstance(out[0], BadFrame) and out[0].id == 7 and "larger than 100" in out[0].reason
    assert out[1:] == [{"id": 8}]


def test_decoder_oversized_without_newline_is_skipped_to_the_next_one() -> None:
    decoder = FrameDecoder(max_frame=100)
    out = decoder.feed(b'{"id": "big", "pad": "' + b"x" * 150)
    assert len(out) == 1 and isinstance(out[0], BadFrame) and out[0].id == "big"
    assert decoder.feed(b"x" * 10_000) == []
    assert decoder.pending == 0  # nothing is kept while skipping
    assert decoder.feed(b'x"}\n{"id": 9}\n') == [{"id": 9}]


def test_decoder_garbage_lines() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(b'garbage\n{"id": 1}\n}}}\n{"id": 2, "method": oops}\n[1, 2]\n42\n"s"\nnull\n{"id": 3}\n')
    kinds = [type(x).__name__ if isinstance(x, BadFrame) else x for x in out]
    assert kinds == ["BadFrame", {"id": 1}, "BadFrame", "BadFrame", "BadFrame", "BadFrame", "BadFrame", "BadFrame",
                     {"id": 3}]
    bad = [x for x in out if isinstance(x, BadFrame)]
    assert bad[2].id == 2 and "malformed JSON" in bad[2].reason
    assert "JSON object" in bad[3].reason and bad[3].id is None


def test_decoder_non_utf8_then_resync() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(b'{"id": 1}\n\xff\xfe bad\n{"id": 2}\n')
    assert out[0] == {"id": 1} and isinstance(out[1], BadFrame) and "UTF-8" in out[1].reason
    assert out[2:] == [{"id": 2}]
    out = decoder.feed(b'{"id": 3, "v": "\xc3')  # may still become valid
    assert out == []
    out = decoder.feed(b'\xa9"}\n{"id": 4, "v": "\xc3')
    assert out == [{"id": 3, "v": "é"}]
    out = decoder.feed(b'("}\n{"id": 5}\n')  # \xc3 ( is not UTF-8
    assert isinstance(out[0], BadFrame) and out[1:] == [{"id": 5}]
    out = decoder.feed(b"\xff no newline yet")
    assert len(out) == 1 and isinstance(out[0], BadFrame)
    assert decoder.feed(b' still the bad line\n{"id": 6}\n') == [{"id": 6}]


def test_decoder_incomplete_frames_wait() -> None:
    decoder = FrameDecoder()
    for part in (b'{"id": 1, "method": "m", "params": {"s": "a}', b'b\\"', b'", "n": [1, {"x": 2}', b"]}"):
        assert decoder.feed(part) == []
        assert decoder.pending > 0
    assert decoder.feed(b"}") == [{"id": 1, "method": "m", "params": {"s": "a}b\"", "n": [1, {"x": 2}]}}]
    assert decoder.pending == 0
