"""The pysig 0.7.3 wire, from frames captured between sig and pysig 0.7.3 peers.

pysig 0.7.3 (Python 2) sends each message as ``json.dumps(message)``: default separators,
no newline, one ``sendall`` per message, and waits for the reply before its next call. It
reads with ``recv(4096)`` and takes each read as exactly one JSON document, so two frames
in one read are both lost. Its client never sends ``get_version``; its server answers
``get_version`` with the string ``"1.01"``.

The frames below were captured with a logging TCP proxy between sig and pysig 0.7.3 (run
under Python 3 after a 2to3 conversion; under Python 2 the keys of a frame come in hash
order, which no JSON reader minds). No pysig code is used here: a fake 0.7.3 client and a
fake 0.7.3 server, on bare sockets, send those frames and read the way 0.7.3 reads.

- a fake 0.7.3 client against sig's ServerRouter on CarrierTCPServer: the replies, the
  forwarded signals and requests, each arriving alone in one ``recv`` (lock-step: sig sends
  nothing more before the fake has answered a message);
- a fake 0.7.3 server against sig's ClientRouter on CarrierTCPClient: the client sees
  "1.01" and stays lock-step, sending one message at a time, each in its own write;
- two JSON objects back to back in one TCP segment, as 0.7.3 peers may send them.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from netutil import Recorder

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

pytestmark = pytest.mark.timeout(60)

#: How long a fake peer waits before answering a message, to see whether sig sends
#: anything else meanwhile (it must not: the 0.7.3 peer has not read on yet).
HOLD = 0.02

# -- frames a pysig 0.7.3 client sends (captured; the ids are those of the capture) ----------

GET_VERSION = b'{"method": "get_version", "params": {}, "id": 1}'
ADD_LISTENER_SRV_BEAT = b'{"method": "add_listener", "params": {"sender": "srv", "event": "beat"}, "id": 3}'
ADD_LISTENER_NEW_ANY = b'{"method": "add_listener", "params": {"sender": "new", "event": null}, "id": 2}'
ADD_SENDER_OLD = (
    b'{"method": "add_sender", "params": {"sender": "old", "events": ["tick"], "requests": ["ping", "boom"]}, "id": 4}'
)
SIGNAL_OLD_TICK = (
    b'{"method": "signal", "params": {"info": {"sender": "old", "event": "tick"}, "data": {"n": 1}}, "id": 5}'
)
REQUEST_NEW_ADD = (
    b'{"method": "request", "params": {"sender": "new", "method": "add", "params": {"a": 2, "b": 3}}, "id": 6}'
)
REQUEST_SRV_ECHO = b'{"method": "request", "params": {"sender": "srv", "method": "echo", "params": [1]}, "id": 7}'
REQUEST_NOBODY = b'{"method": "request", "params": {"sender": "nobody", "method": "x", "params": null}, "id": 8}'
LIST_SENDERS = b'{"method": "list_senders", "params": {"list_events": true}, "id": 9}'
REMOVE_LISTENER = b'{"method": "remove_listener", "params": {"listener_id": %d}, "id": 10}'
REMOVE_SENDER_OLD = b'{"method": "remove_sender", "params": {"sender": "old"}, "id": 11}'
# its replies to what the server sends it: a listener ran, a request ran, a request raised
REPLY_OK_NULL = b'{"id": %d, "status": 0, "response": null}'
REPLY_PONG = b'{"id": %d, "status": 0, "response": {"pong": "x"}}'
REPLY_RAISED = b'{"id": %d, "status": -2, "exception": "division by zero"}'

# -- frames a pysig 0.7.3 server sends (captured) -------------------------------------------

SRV_VERSION = '{"id": %d, "status": 0, "response": "1.01"}'
SRV_LISTENER_ID = '{"id": %d, "status": 0, "response": {"listener_id": 140347526490704}}'
SRV_OK_NULL = '{"id": %d, "status": 0, "response": null}'
SRV_NOT_FOUND = '{"id": %d, "status": -2, "exception": "method nomethod not found"}'
SRV_SIGNAL = (
    '{"method": "signal", "params": {"listener_id": 140347526490704, "info": {"sender": "srv", "event": "beat"}, '
    '"data": %s}, "id": %d}'
)
SRV_REQUEST_ADD = (
    '{"method": "request", "params": {"sender": "new", "method": "add", "params": {"a": 2, "b": 3}}, "id": %d}'
)


def one_document(data: bytes) -> dict[str, Any]:
    """Parse one ``recv`` the way pysig 0.7.3 does: the whole read is one JSON document."""
    assert data, "the peer closed the connection"
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise AssertionError("a 0.7.3 peer would drop this read (%s): %r" % (exc, data[:300])) from None
    assert isinstance(message, dict), data
    return message


def quiet(sock: socket.socket, seconds: float) -> bool:
    """Wait ``seconds``; True if nothing arrived on ``sock`` meanwhile."""
    readable, _, _ = select.select([sock], [], [], seconds)
    return not readable


# -- a fake pysig 0.7.3 client ----------------------------------------------------------------


class Fake073Client:
    """A 0.7.3 client on a bare socket: one frame per ``sendall``, one document per ``recv(4096)``.

    It answers what the server sends it the way 0.7.3 does (a listener ran: status 0), after
    checking that nothing else arrives before its answer.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.received: list[dict[str, Any]] = []  # messages (not replies) the server sent
        self.answers: dict[tuple[str, str], bytes] = {}  # (method, request method) -> reply frame
        self.violations: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def read(self, timeout: float = 5.0) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        return one_document(self.sock.recv(4096))

    def answer(self, message: dict[str, Any]) -> None:
        """Reply to a message from the server, after making sure it sent nothing else meanwhile."""
        if not quiet(self.sock, HOLD):
            self.violations.append("server sent more before %s %s was answered" % (message["method"], message["id"]))
        self.received.append(message)
        key = (message["method"], message["params"].get("method"))
        frame = self.answers.get(key, REPLY_OK_NULL)
        self.sock.sendall(frame % message["id"])

    def call(self, frame: bytes, timeout: float = 5.0) -> dict[str, Any]:
        """Send one captured frame and return the reply to it, answering the server meanwhile."""
        sent_id = json.loads(frame)["id"]
        self.sock.sendall(frame)
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.01, deadline - time.monotonic()))
            if "method" in message:
                self.answer(message)
                continue
            assert message.get("id") == sent_id, message
            return message

    def serve(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Answer the next ``count`` messages from the server; return them."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            message = self.read(max(0.01, deadline - time.monotonic()))
            assert "method" in message, "a reply to nothing: %r" % (message,)
            self.answer(message)
            got.append(message)
        return got

    def nothing_more(self, seconds: float = 0.2) -> bool:
        return quiet(self.sock, seconds)


@pytest.fixture
def server() -> Iterator[tuple[sig.ServerRouter, int]]:
    tcp = CarrierTCPServer()
    router = sig.ServerRouter(tcp, request_timeout=5.0)
    router.addSender("srv", ["beat"], requests={"echo": lambda params: {"echo": params}})
    tcp.start("127.0.0.1", 0)
    assert tcp.port
    try:
        yield router, tcp.port
    finally:
        tcp.stop()


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """Things to close after the test: fake clients and sig client carriers."""
    opened: list[Any] = []
    try:
        yield opened
    finally:
        for thing in reversed(opened):
            if isinstance(thing, CarrierTCPClient):
                thing.disconnect()
            else:
                thing.close()


def sig_client(port: int, clients: list[Any]) -> sig.ClientRouter:
    carrier = CarrierTCPClient()
    clients.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port, auto_reconnect=False)
    return router


def test_073_client_calls_get_pysig_replies(server: tuple[sig.ServerRouter, int], clients: list[Any]) -> None:
    router, port = server
    old = Fake073Client(port)
    clients.append(old)
    assert old.call(GET_VERSION) == {"id": 1, "status": 0, "response": "1.01"}
    reply = old.call(ADD_LISTENER_SRV_BEAT)
    assert reply["status"] == 0 and isinstance(reply["response"]["listener_id"], int), reply
    listener_id = reply["response"]["listener_id"]
    assert old.call(ADD_SENDER_OLD) == {"id": 4, "status": 0, "response": None}
    assert router.getSender("old").isConnected()
    assert old.call(SIGNAL_OLD_TICK) == {"id": 5, "status": 0, "response": None}
    assert old.call(REQUEST_SRV_ECHO) == {"id": 7, "status": 0, "response": {"echo": [1]}}
    reply = old.call(REQUEST_NOBODY)
    assert reply["id"] == 8 and reply["status"] == -2 and "not connected" in reply["exception"], reply
    reply = old.call(LIST_SENDERS)
    listed = {entry["sender"]: entry for entry in reply["response"]}
    assert listed["old"]["connected"] and {"event": "tick"} in listed["old"]["events"], reply
    assert listed["srv"]["connected"], reply

    # an event of the server's own sender reaches the 0.7.3 listener, alone in its read
    router.getSender("srv").getSignal("beat").trigger([1, 2])
    (signal,) = old.serve(1)
    assert signal["method"] == "signal" and isinstance(signal["id"], int), signal
    assert signal["params"] == {"listener_id": listener_id, "info": {"sender": "srv", "event": "beat"}, "data": [1, 2]}

    assert old.call(REMOVE_LISTENER % listener_id) == {"id": 10, "status": 0, "response": None}
    router.getSender("srv").getSignal("beat").trigger("not heard")
    assert old.nothing_more()
    assert old.call(REMOVE_SENDER_OLD) == {"id": 11, "status": 0, "response": None}
    assert "old" not in [objsender.getName() for objsender in router.getSenders() if objsender.isConnected()]

    unknown = old.call(b'{"method": "no_such_method", "params": {}, "id": 12}')
    assert unknown["id"] == 12 and unknown["status"] == -1, unknown
    no_method = old.call(b'{"params": {}, "id": 13}')
    assert no_method["id"] == 13 and no_method["status"] == -3, no_method
    assert not old.violations


def test_073_client_and_sig_client_hear_and_request_each_other(
    server: tuple[sig.ServerRouter, int], clients: list[Any]
) -> None:
    _, port = server
    old = Fake073Client(port)
    clients.append(old)
    old.answers[("request", "ping")] = REPLY_PONG
    old.answers[("request", "boom")] = REPLY_RAISED
    assert old.call(ADD_LISTENER_NEW_ANY)["status"] == 0

    new = sig_client(port, clients)
    heard = Recorder()
    new.addRemoteListener(heard.listener("new"), "old", None)
    tock = new.addRemoteSender("new", ["tock"], requests={"add": lambda p: p["a"] + p["b"]}).getSignal("tock")

    # the sig client's #connect and events reach the 0.7.3 client
    (connect,) = old.serve(1)
    assert connect["params"]["info"] == {"sender": "new", "event": "#connect"}
    assert connect["params"]["data"] == {"events": ["tock"], "requests": ["add"]}
    tock.trigger({"n": 2})
    (event,) = old.serve(1)
    assert event["params"]["info"] == {"sender": "new", "event": "tock"} and event["params"]["data"] == {"n": 2}

    # the 0.7.3 client requests the sig client's sender through the server
    assert old.call(REQUEST_NEW_ADD) == {"id": 6, "status": 0, "response": 5}

    # the 0.7.3 client's sender and events reach the sig client
    assert old.call(ADD_SENDER_OLD)["status"] == 0
    assert old.call(SIGNAL_OLD_TICK)["status"] == 0
    assert heard.wait_for(2) == [
        ("new", "old", "#connect", {"events": ["tick"], "requests": ["ping", "boom"]}),
        ("new", "old", "tick", {"n": 1}),
    ]

    # the sig client requests the 0.7.3 client's sender: the server forwards, the fake answers
    result: dict[str, Any] = {}

    def ask(method: str) -> None:
        try:
            result[method] = new.remoteRequest("old", method, "x")
        except Exception as exc:
            result[method] = exc

    for method in ("ping", "boom"):
        asker = threading.Thread(target=ask, args=(method,))
        asker.start()
        (request,) = old.serve(1)
        asker.join(5.0)
        assert request["method"] == "request"
        assert request["params"] == {"sender": "old", "method": method, "params": "x"}
    assert result["ping"] == {"pong": "x"}
    assert isinstance(result["boom"], sig.RemoteError) and "division by zero" in str(result["boom"])

    # the 0.7.3 client leaves: the sig client hears its sender go
    old.close()
    assert heard.wait_for(3)[2] == ("new", "old", "#disconnect", {"events": ["tick"], "requests": ["ping", "boom"]})
    assert not old.violations


def test_073_client_gets_one_message_at_a_time_under_load(
    server: tuple[sig.ServerRouter, int], clients: list[Any]
) -> None:
    """A busy sig sender, a 0.7.3 listener that also calls the server: never two frames in one read."""
    _, port = server
    old = Fake073Client(port)
    clients.append(old)
    assert old.call(ADD_LISTENER_NEW_ANY)["status"] == 0
    new = sig_client(port, clients)
    tock = new.addRemoteSender("new", ["tock"]).getSignal("tock")
    count = 60
    (connect,) = old.serve(1)
    assert connect["params"]["info"]["event"] == "#connect"
    for n in range(count):
        tock.trigger(n)  # pipelined to the server at once; the server paces them to the 0.7.3 peer
    replies = 0
    deadline = time.monotonic() + 30.0
    while len(old.received) < count + 1 and time.monotonic() < deadline:
        # its own calls, in between: their replies come alone too
        assert old.call(REQUEST_SRV_ECHO) == {"id": 7, "status": 0, "response": {"echo": [1]}}
        replies += 1
    data = [m["params"]["data"] for m in old.received[1:]]
    assert data == list(range(count))
    assert replies > 1
    assert not old.violations
    assert old.nothing_more()


def test_back_to_back_objects_in_one_segment_are_all_handled(
    server: tuple[sig.ServerRouter, int], clients: list[Any]
) -> None:
    _, port = server
    new = sig_client(port, clients)
    heard = Recorder()
    new.addRemoteListener(heard.listener("new"), "old", "tick")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    clients.append(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # two calls, then a registration and a signal of it: no separator, one sendall each time
    sock.sendall(GET_VERSION + LIST_SENDERS)
    sock.sendall(ADD_SENDER_OLD + SIGNAL_OLD_TICK)
    decoder = json.JSONDecoder()
    buffer, replies = "", {}
    deadline = time.monotonic() + 10.0
    while len(replies) < 4 and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        buffer += chunk.decode()
        while buffer.strip():
            message, end = decoder.raw_decode(buffer.lstrip())
            buffer = buffer.lstrip()[end:]
            replies[message["id"]] = message
    assert sorted(replies) == [1, 4, 5, 9]
    assert replies[1]["response"] == "1.01"
    assert {entry["sender"] for entry in replies[9]["response"]} >= {"srv"}
    assert replies[4]["status"] == 0 and replies[5]["status"] == 0
    assert heard.wait_for(1) == [("new", "old", "tick", {"n": 1})]


# -- a fake pysig 0.7.3 server ---------------------------------------------------------------


class Fake073Server:
    """A 0.7.3 server for one client, on a bare socket, in its own thread.

    It reads one document per ``recv(4096)``, answers as 0.7.3 does (``get_version``:
    "1.01"; ``add_listener``: a listener id; ``request`` to its own sender ``srv``), and
    checks that the client sends nothing else before an answer. :meth:`push` sends a
    message of its own (a signal or a request) and waits for the client's reply.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.messages: list[dict[str, Any]] = []  # what the client sent, in order
        self.violations: list[str] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self._pushes: list[tuple[int, str]] = []
        self._lock = threading.Condition()
        self._next_id = 1
        self._stop = threading.Event()
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="fake-073-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5.0)
        self.listener.close()
        if self.conn is not None:
            self.conn.close()

    def push(self, frame: str, timeout: float = 5.0) -> dict[str, Any]:
        """Send ``frame % id`` to the client (when no call of the client is being answered); return its reply."""
        with self._lock:
            push_id = self._next_id
            self._next_id += 1
            self._pushes.append((push_id, frame % push_id))
            assert self._lock.wait_for(lambda: push_id in self.replies, timeout), "no reply to push %d" % push_id
            return self.replies[push_id]

    def sent(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("method") == method]

    def _run(self) -> None:
        self.listener.settimeout(5.0)
        try:
            self.conn, _ = self.listener.accept()
        except OSError:
            return
        conn = self.conn
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not self._stop.is_set():
            with self._lock:
                pushes, self._pushes = self._pushes, []
            for _, frame in pushes:
                conn.sendall(frame.encode())
            if not select.select([conn], [], [], 0.005)[0]:
                continue
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            try:
                message = one_document(data)
            except AssertionError as exc:
                self.violations.append(str(exc))
                continue
            if "method" not in message:
                with self._lock:
                    self.replies[message["id"]] = message
                    self._lock.notify_all()
                continue
            with self._lock:
                self.messages.append(message)
            if not quiet(conn, HOLD):
                self.violations.append("client sent more before %s %s was answered" % (message["method"],
                                                                                      message["id"]))
            conn.sendall(self._answer(message).encode())

    def _answer(self, message: dict[str, Any]) -> str:
        method, params, message_id = message["method"], message.get("params") or {}, message["id"]
        if method == "get_version":
            return SRV_VERSION % message_id
        if method == "add_listener":
            return SRV_LISTENER_ID % message_id
        if method == "request":
            if params.get("method") == "echo":
                return json.dumps({"id": message_id, "status": 0, "response": {"echo": params.get("params")}})
            return SRV_NOT_FOUND % message_id
        return SRV_OK_NULL % message_id


def test_sig_client_stays_lock_step_with_a_073_server(clients: list[Any]) -> None:
    fake = Fake073Server()
    clients.append(fake)
    carrier = CarrierTCPClient()
    clients.append(carrier)
    client = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", fake.port, auto_reconnect=False)
    assert carrier.server_version == "1.01"
    (hello,) = fake.sent("get_version")
    assert hello["params"] == {"capabilities": ["ndjson", "pipeline", "ping"]}

    heard = Recorder()
    client.addRemoteListener(heard.listener("sig"), "srv", "beat")
    assert fake.sent("add_listener")[0]["params"] == {"sender": "srv", "event": "beat"}
    tock = client.addRemoteSender("new", ["tock"], requests={"add": lambda p: p["a"] + p["b"]}).getSignal("tock")
    assert fake.sent("add_sender")[0]["params"] == {"sender": "new", "events": ["tock"], "requests": ["add"]}

    # signals: each one a message with an id that waits for its reply (0.7.3 replies to all)
    for n in range(20):
        tock.trigger(n)
    deadline = time.monotonic() + 10.0
    while len(fake.sent("signal")) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    signals = fake.sent("signal")
    assert [s["params"] for s in signals] == [
        {"info": {"sender": "new", "event": "tock"}, "data": n} for n in range(20)
    ]
    assert len({s["id"] for s in signals}) == 20

    # requests to the server's sender, and its failure as 0.7.3 reports it
    assert client.remoteRequest("srv", "echo", [1]) == {"echo": [1]}
    with pytest.raises(sig.RemoteError, match="method nomethod not found"):
        client.remoteRequest("srv", "nomethod")

    # the server forwards an event to the listener, and a request to the sender
    assert fake.push(SRV_SIGNAL.replace("%s", '"b"'))["status"] == 0
    assert heard.wait_for(1) == [("sig", "srv", "beat", "b")]
    reply = fake.push(SRV_REQUEST_ADD)
    assert reply["status"] == 0 and reply["response"] == 5, reply

    # both at once: the server's events while the client's own signals wait for replies
    for n in range(20, 40):
        tock.trigger(n)
    for n in range(5):
        assert fake.push(SRV_SIGNAL.replace("%s", str(n)))["status"] == 0
    assert [call[3] for call in heard.wait_for(6)[1:]] == list(range(5))
    deadline = time.monotonic() + 10.0
    while len(fake.sent("signal")) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s["params"]["data"] for s in fake.sent("signal")] == list(range(40))
    carrier.disconnect()
    assert not fake.violations
