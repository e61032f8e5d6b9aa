"""Fuzz (hypothesis) of the pysig TCP wire: the frame decoder, the RPC dispatcher, a real server.

* ``FrameDecoder``: arbitrary bytes at arbitrary split points (10,000 cases): ``feed`` never
  raises, gives only dicts and ``BadFrame``, and good frames that follow the garbage (and a
  newline) decode again within ``max_frame`` bytes; valid streams split anywhere decode exactly.
* RPC dispatcher: arbitrary messages (the real methods and random ones, params of random
  shapes, with and without ids) through ``Carrier.handleRPC`` with a real ServerRouter's
  methods, access control included (10,000 cases): never raises, always a reply dict with a
  known status and the message's id, every log line formats; a good client works afterwards.
* A real TCP server: hundreds of random frames (garbage bytes, random messages, pysig 0.7.3
  back-to-back objects) through a socket, then a good sig client registers, signals, requests.

The 10,000-case tests are marked ``fuzz`` and run by default (``-m "not fuzz"`` skips them).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netutil import Recorder, wait_until

import sig
from sig._codec import BadFrame, FrameDecoder, Status, encode
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

pytestmark = pytest.mark.timeout(120)

CASES = 10_000
STATUSES = {int(status) for status in Status}
METHODS = ["get_version", "auth", "list_senders", "add_sender", "remove_sender", "add_listener", "remove_listener",
           "signal", "request", "ping"]
PARAM_NAMES = ["sender", "event", "events", "requests", "listener_id", "info", "data", "method", "params",
               "list_events", "capabilities", "user", "password", "token"]


class FormatChecker(logging.Handler):
    """Formats every sig log record; keeps the ones that fail (a bad %-format never raises to the caller)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failures: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        try:
            record.getMessage()
        except Exception as exc:
            self.failures.append("%s: %r %% %r" % (exc, record.msg, record.args))


@pytest.fixture
def format_checker() -> Iterator[FormatChecker]:
    """Every sig log record formatted (and counted), none propagated: 10,000 cases log a lot."""
    sig_logger = logging.getLogger("sig")
    checker = FormatChecker()
    saved = sig_logger.level, sig_logger.propagate
    sig_logger.addHandler(checker)
    sig_logger.setLevel(logging.DEBUG)
    sig_logger.propagate = False
    try:
        yield checker
    finally:
        sig_logger.removeHandler(checker)
        sig_logger.setLevel(saved[0])
        sig_logger.propagate = saved[1]
    assert not checker.failures, checker.failures[:5]


# -- entropy -----------------------------------------------------------------------------------------
#
# Hypothesis draws are what a case costs (a millisecond or more each on a loaded machine), so each
# case draws one byte string and a small deterministic "provider" turns it into garbage, split
# points or messages, as atheris' FuzzedDataProvider does. Hypothesis still explores and shrinks
# the bytes, and 10,000 cases take seconds.

NAMES: list[Any] = ["s1", "s2", "srv", "boom", "guest", "#connect", "#disconnect", "#ch", "", "e", "u", "p", "t0k",
                    "echo", "fail", "m", 0, 1, -1, 2, 1.0, 0.5, -0.0, float("nan"), float("inf"), True, False, None,
                    "\u20ac", "a/b", "\x00", "x" * 300]
SIGNATURES = {
    "get_version": ["capabilities"], "auth": ["user", "password", "token"], "list_senders": ["list_events"],
    "add_sender": ["sender", "events", "requests"], "remove_sender": ["sender"], "add_listener": ["sender", "event"],
    "remove_listener": ["listener_id"], "signal": ["info", "data"], "request": ["sender", "method", "params"],
    "ping": [],
}
PLAUSIBLE: dict[str, list[Any]] = {
    "sender": ["s1", "s2", "srv", "boom", "guest", "nobody", None, 1, 2.0],
    "event": ["e", "tick", "#connect", "#disconnect", "#ch", None, 3],
    "method": ["echo", "fail", "m", "other", None],
    "events": ["e", "tick", "#ch", 1, None],
    "requests": ["m", "echo", None, 2],
    "capabilities": ["ndjson", "pipeline", "ping", "auth", "x"],
    "user": ["u", "x"], "password": ["p", "q"], "token": ["t0k", "nope"], "list_events": [True, False, 1],
}
KEYS = PARAM_NAMES + ["id", "method", "status", "response", "x", ""]
CHARS = "ab01:#/*\"{}[],\\ \n\u00e9\u20ac\U0001f600\x00\ud800"
TOKENS = [b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b"\n", b" ", b"1", b"-", b"e", b'"id"', b'"method"',
          b"null", b"true", b"\xff", b"\xc3", b"\xe2\x82", b"\x00", b'{"id":5,"method":"x"}', b"NaN", b"1e999",
          b"\xf0\x9f\x98", b'"\\u', b"\r\n", b"\t"]


class Provider:
    """Turns a byte string into choices, deterministically (zeros once it is used up)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        return (self.byte() << 8 | self.byte()) % n if n > 256 else self.byte() % n

    def choice(self, seq: Any) -> Any:
        return seq[self.below(len(seq))]

    def text(self) -> str:
        return "".join(self.choice(CHARS) for _ in range(self.below(7)))

    def scalar(self) -> Any:
        kind = self.below(5)
        if kind == 0:
            return self.text()
        if kind == 1:
            return self.byte() - 128 if self.byte() % 2 else (self.byte() << 40) - 2**63
        return self.choice(NAMES)

    def value(self, depth: int = 0) -> Any:
        kind = self.below(8) if depth < 3 else 0
        if kind == 6:
            return [self.value(depth + 1) for _ in range(self.below(4))]
        if kind == 7:
            return {self.choice(KEYS) if self.byte() % 4 else self.text(): self.value(depth + 1)
                    for _ in range(self.below(4))}
        return self.scalar()

    def param(self, name: str) -> Any:
        """A plausible value for a real parameter (now and then anything at all)."""
        if self.byte() % 8 == 0:
            return self.value(1)
        if name in ("sender", "event", "method"):
            return self.choice(PLAUSIBLE[name])
        if name in ("events", "requests", "capabilities"):
            return [self.choice(PLAUSIBLE[name]) for _ in range(self.below(4))]
        if name == "info":
            return {"sender": self.param("sender"), "event": self.param("event")}
        if name == "listener_id":
            return self.below(40)
        if name in PLAUSIBLE:
            return self.choice(PLAUSIBLE[name])
        return self.value(1)

    def message(self) -> Any:
        shape = self.byte()
        if shape % 32 == 0:
            return self.value()  # not even an object
        message: dict[str, Any] = {}
        if shape & 0x20 == 0 or self.byte() % 4:
            message["id"] = self.below(1000) if self.byte() % 4 else self.value(2)
        if shape & 0x40 == 0 or self.byte() % 4:
            message["method"] = self.choice(METHODS) if self.byte() % 8 else self.value(2)
        method = message.get("method")
        if shape & 0x80 == 0 or self.byte() % 4:
            if isinstance(method, str) and method in SIGNATURES and self.byte() % 4:
                message["params"] = {name: self.param(name) for name in SIGNATURES[method] if self.byte() % 6}
                if self.byte() % 8 == 0:
                    message["params"][self.choice(KEYS)] = self.value(1)
            elif self.byte() % 2:
                message["params"] = {self.choice(PARAM_NAMES): self.value(1) for _ in range(self.below(6))}
            else:
                message["params"] = self.value(1)
        if self.byte() % 16 == 0:
            message["status"] = self.below(6) - 4
        return message

    def garbage(self) -> bytes:
        if self.byte() % 2:
            return self.data[self.pos:]  # the rest, as is
        return b"".join(self.choice(TOKENS) for _ in range(self.below(60)))

    def cuts(self, length: int) -> list[int]:
        return sorted({self.below(length + 1) for _ in range(self.below(6))})


entropy = st.binary(max_size=200)


# -- (a) FrameDecoder ------------------------------------------------------------------------------

MAX_FRAME = 256
GOOD_MARK = "good-7f3a"


def good_frame(n: int) -> bytes:
    return encode({"id": n, "method": "signal", "params": {GOOD_MARK: n, "data": "ok"}})


#: Enough good frames that, whatever garbage came first, the decoder has resynchronized.
GOOD_COUNT = 2 * MAX_FRAME // len(good_frame(100)) + 4


def _split(data: bytes, points: list[int]) -> list[bytes]:
    chunks, start = [], 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks


def _feed(decoder: FrameDecoder, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        items = decoder.feed(chunk)
        assert isinstance(items, list)
        for item in items:
            assert isinstance(item, (dict, BadFrame)), item
            if isinstance(item, BadFrame):
                assert isinstance(item.reason, str) and item.reason
        out.extend(items)
    return out


@pytest.mark.fuzz
@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=entropy)
def test_decoder_never_raises_and_resynchronizes(data: bytes) -> None:
    provider = Provider(data)
    cut_seed = provider.byte()
    garbage = provider.garbage()
    decoder = FrameDecoder(MAX_FRAME)
    _feed(decoder, _split(garbage, Provider(bytes([cut_seed]) + data[::-1]).cuts(len(garbage))))
    _feed(decoder, [b"\n"])
    out = _feed(decoder, [good_frame(n) for n in range(GOOD_COUNT)])
    out += _feed(decoder, [b""])
    good = [item["params"][GOOD_MARK] for item in out
            if isinstance(item, dict) and isinstance(item.get("params"), dict) and GOOD_MARK in item["params"]]
    # once one good frame decodes, every later one does: the decoded ones are a suffix
    assert good == list(range(GOOD_COUNT - len(good), GOOD_COUNT)), good
    assert len(good) >= 2, (garbage, out[-5:])
    assert decoder.pending <= MAX_FRAME


def _no_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_no_nan(v) for v in value)
    if isinstance(value, dict):
        return all(_no_nan(v) for v in value.values())
    return True


@settings(max_examples=2000, deadline=None)
@given(data=entropy)
def test_valid_streams_decode_exactly_wherever_split(data: bytes) -> None:
    provider = Provider(data)
    back_to_back = provider.byte() % 2 == 1
    messages = [m for m in (provider.message() for _ in range(1 + provider.below(6)))
                if isinstance(m, dict) and _no_nan(m)]
    if back_to_back:  # as pysig 0.7.3 sends: json.dumps per message, no separator
        stream = b"".join(json.dumps(m).encode() for m in messages)
    else:
        stream = b"".join(encode(m) for m in messages)
    decoder = FrameDecoder(1 << 20)
    out = _feed(decoder, _split(stream, provider.cuts(len(stream))))
    if back_to_back:  # the last object may wait for a newline or the next frame to be known complete
        out += _feed(decoder, [b"\n"])
    assert out == messages


# -- (b) the RPC dispatcher ---------------------------------------------------------------------------

ACCESS = {
    "anonymous": True,
    "users": {"u": {"password": "p", "token": "t0k"}},
    "acl": [{"user": "anonymous", "senders": ["s*", "guest", "1", "2"], "listen": ["*"], "request": ["*"]},
            {"user": "u", "senders": ["*"], "listen": ["s1"], "request": ["srv"]}],
}


class Dispatch:
    """A ServerRouter (with access control) whose RPC methods a bare Carrier dispatches."""

    def __init__(self) -> None:
        self.router = sig.ServerRouter(access=sig.AccessControl.from_dict(ACCESS), request_timeout=0.5)
        self.carrier = sig.Carrier()
        self.router.attach(self.carrier)
        self.router.addSender("srv", ["tick"], requests={"echo": lambda params: params, None: lambda m, p: [m, p]})
        self.router.addSender("boom", ["bang"], requests={"fail": lambda params: 1 / 0})
        self.calls = 0


@pytest.fixture(scope="module")
def dispatch() -> Dispatch:
    return Dispatch()


@pytest.mark.fuzz
@settings(max_examples=CASES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=entropy)
def test_dispatcher_always_answers_with_a_known_status(dispatch: Dispatch, format_checker: FormatChecker,
                                                       data: bytes) -> None:
    provider = Provider(data)
    carrier = dispatch.carrier
    clientid = "fuzz-%d" % provider.below(4)
    disconnect = provider.below(40) == 0
    message = provider.message()
    reply = carrier.handleRPC(clientid, message)
    dispatch.calls += 1
    assert isinstance(reply, dict)
    assert reply["status"] in STATUSES
    expected_id = message.get("id") if isinstance(message, dict) else None
    assert reply["id"] is expected_id or reply["id"] == expected_id
    if reply["status"] != Status.OK:
        assert isinstance(reply.get("exception"), str) and reply["exception"]
    try:
        encode(reply)
    except (TypeError, ValueError):  # e.g. NaN echoed back: the connection answers with an error instead
        pass
    if disconnect:  # now and then a client goes, with all it registered
        carrier.handle_client_disconnected(clientid)


def test_dispatcher_fuzz_then_a_good_client_works(dispatch: Dispatch) -> None:
    """Runs after the fuzz above (same router): everything still works, over the same dispatcher and TCP."""
    carrier = dispatch.carrier
    assert dispatch.calls in (0, CASES)  # 0: the fuzz was deselected
    for n in range(4):
        carrier.handle_client_disconnected("fuzz-%d" % n)
    assert carrier.handleRPC("good", {"id": 1, "method": "auth", "params": {"user": "u", "password": "p"}}) == {
        "id": 1, "status": 0, "response": {"user": "u"}}
    assert carrier.handleRPC("good", {"id": 2, "method": "request",
                                      "params": {"sender": "srv", "method": "echo", "params": [1]}})["response"] == [1]
    tcp = CarrierTCPServer()
    dispatch.router.attach(tcp)
    tcp.start("127.0.0.1", 0)
    client = CarrierTCPClient(username="u", password="p")
    try:
        router = sig.ClientRouter(client, request_timeout=5.0)
        assert client.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        rec = Recorder()
        router.addRemoteListener(rec.listener(), "s1", "e")
        objsender = router.addRemoteSender("s1", ["e"], requests={"m": lambda params: params})
        objsender.getSignal("e").trigger({"after": "fuzz"})
        assert rec.wait_for(1)[-1][-1] == {"after": "fuzz"}
        assert router.remoteRequest("srv", "echo", "x") == "x"
    finally:
        client.disconnect()
        tcp.stop()


# -- (c) a real TCP server ------------------------------------------------------------------------------

def _frames(data: bytes, count: int) -> bytes:
    """``count`` random frames: NDJSON messages, 0.7.3-style back-to-back ones, garbage bytes."""
    provider = Provider(data * (1 + 4000 // max(1, len(data))))
    out = []
    for _ in range(count):
        kind = provider.below(3)
        if kind == 2:
            out.append(b"".join(provider.choice(TOKENS) for _ in range(provider.below(20))))
            continue
        try:
            text = json.dumps(provider.message(), allow_nan=True)
        except (TypeError, ValueError):
            text = "{}"
        out.append(text.encode() + (b"\n" if kind == 0 else b""))
    return b"".join(out)


@pytest.fixture(scope="module")
def tcp_site() -> Iterator[tuple[sig.ServerRouter, CarrierTCPServer]]:
    tcp = CarrierTCPServer(max_frame=4096, ping_interval=0.5)
    router = sig.ServerRouter(tcp, request_timeout=1.0)
    router.addSender("srv", ["tick"], requests={"echo": lambda params: params})
    tcp.start("127.0.0.1", 0)
    try:
        yield router, tcp
    finally:
        tcp.stop()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture,
                                                                HealthCheck.data_too_large])
@given(data=st.binary(min_size=1, max_size=300))
def test_random_frames_over_tcp_then_a_good_client_works(tcp_site: tuple[sig.ServerRouter, CarrierTCPServer],
                                                         data: bytes) -> None:
    _router, tcp = tcp_site
    sock = socket.create_connection(("127.0.0.1", tcp.port), timeout=5.0)
    received = bytearray()

    def drain() -> None:  # read everything the server says, so it never waits for us
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                received.extend(data)
        except OSError:
            return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        sock.sendall(_frames(data, 100))
        sock.sendall(b"\n")
    except OSError:
        pass  # the server may close a peer that broke the protocol badly enough; it must go on serving
    time.sleep(0.05)
    sock.close()
    reader.join(5.0)
    for line in bytes(received).split(b"\n"):
        if line.strip():
            reply = json.loads(line)  # whatever the server sent is valid JSON
            assert isinstance(reply, dict)
            assert "method" in reply or reply.get("status") in STATUSES
    # a good client
    carrier = CarrierTCPClient()
    try:
        good = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        rec = Recorder()
        good.addRemoteListener(rec.listener(), "good", "e")
        objsender = good.addRemoteSender("good", ["e"], requests={"m": lambda params: params})
        objsender.getSignal("e").trigger(1)
        rec.wait_for(1)
        assert good.remoteRequest("good", "m", [2]) == [2]
        assert good.remoteRequest("srv", "echo", "x") == "x"
    finally:
        carrier.disconnect()
    assert wait_until(lambda: len(tcp.clients()) == 0, 5.0), tcp.clients()
