"""The sans-I/O core of a stream peer (sig._peer.Peer), driven with bytes and numbers only.

No socket, thread, lock or sleep here: bytes go in by ``receive_data``, the time is a number
passed in, and the events that come out are checked (what to dispatch, which call a reply
resolves, which bytes to write in which write).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from sig import CarrierError
from sig._codec import CAPABILITIES, Status, encode, make_reply
from sig._peer import (
    LEGACY_FRAME_LIMIT,
    LEGACY_GAP,
    PING,
    WAKE,
    Close,
    Dispatch,
    Event,
    Peer,
    Resolve,
    RunRequest,
    SendPing,
    Write,
    reply_frame,
)

Events = list[Event[str]]


def make_peer(**options: Any) -> Peer[str]:
    return Peer("test", **options)


def sig_peer(now: float = 0.0, **options: Any) -> Peer[str]:
    """A peer that negotiated every capability with a sig peer."""
    peer = make_peer(**options)
    peer.negotiate(list(CAPABILITIES), now)
    return peer


def call(peer: Peer[str], message: dict[str, Any], token: str, **options: Any) -> tuple[int, Events]:
    """Queue ``message`` as a call (as the shell does); return its id and the events."""
    message_id = peer.new_id()
    events = peer.call(encode(dict(message, id=message_id)), message_id, token, str(message["method"]), **options)
    return message_id, events


def write_all(peer: Peer[str], now: float) -> list[bytes]:
    """The writes the writer makes now, one entry per write (each ``sendall``), until it must wait."""
    writes = []
    while True:
        batch, _wait = peer.next_writes(now)
        if not batch:
            return writes
        writes.append(b"".join(batch))
        peer.wrote(now)


def frames(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def reply_bytes(message_id: Any, response: Any = None, status: int = Status.OK) -> bytes:
    return encode(make_reply(message_id, status, response))


def dispatched(events: Events) -> list[dict[str, Any]]:
    return [event.frame for event in events if isinstance(event, Dispatch)]


# -- framing ---------------------------------------------------------------------------------


def test_ndjson_frames_become_calls_in_order() -> None:
    peer = sig_peer()
    events = peer.receive_data(b'{"method":"a","params":{}}\n{"method":"b","params":{}}\n')
    assert [frame["method"] for frame in dispatched(events)] == ["a", "b"]


def test_back_to_back_objects_as_pysig_073_sends_them() -> None:
    peer = make_peer()
    data = json.dumps({"id": 1, "method": "signal", "params": {"sender": "s"}}).encode()
    data += json.dumps({"id": 2, "method": "signal", "params": {"sender": "t"}}).encode()
    events = peer.receive_data(data)
    assert [(f["id"], f["params"]["sender"]) for f in dispatched(events)] == [(1, "s"), (2, "t")]


def test_split_frame_waits_for_its_last_byte() -> None:
    peer = sig_peer()
    data = b'{"id":5,"method":"request","params":{"data":"\xc3\xa9t\xc3\xa9"}}\n'  # a character split too
    for i in range(len(data) - 2):
        assert peer.receive_data(data[i : i + 1]) == []
    events = peer.receive_data(data[-2:])
    assert events == [RunRequest({"id": 5, "method": "request", "params": {"data": "été"}})]


def test_oversized_frame_is_answered_with_its_id_and_the_next_one_is_read() -> None:
    peer = make_peer(max_frame=100)
    big = json.dumps({"id": 42, "method": "signal", "params": {"data": "x" * 200}}).encode()
    events = peer.receive_data(big + b"\n" + b'{"id":43,"method":"ok","params":{}}\n')
    assert WAKE in events
    assert [f["id"] for f in dispatched(events)] == [43]
    (error,) = [f for data in write_all(peer, 1.0) for f in frames(data)]
    assert error["id"] == 42 and error["status"] == Status.NO_METHOD
    assert "larger than 100" in error["exception"]


def test_oversized_frame_arriving_in_pieces_is_skipped_to_the_newline() -> None:
    peer = make_peer(max_frame=64)
    head = b'{"id":"big","method":"signal","params":{"data":"' + b"y" * 100
    events = peer.receive_data(head)
    assert events == [WAKE]  # the error reply is queued at once, the rest is skipped
    assert peer.receive_data(b"y" * 1000) == []
    events = peer.receive_data(b'"}}\n{"method":"next","params":{}}\n')
    assert [f["method"] for f in dispatched(events)] == ["next"]
    (error,) = frames(write_all(peer, 0.0)[0])
    assert error["id"] == "big" and error["status"] == Status.NO_METHOD


def test_non_utf8_frame_is_answered_and_the_stream_resyncs() -> None:
    peer = make_peer()
    events = peer.receive_data(b'{"method":"a","params":{}}\n{"id":7,"method":"x","params":"\xff\xfe"}\n'
                               b'{"method":"b","params":{}}\n')
    assert [f["method"] for f in dispatched(events)] == ["a", "b"]
    (error,) = frames(write_all(peer, 0.0)[0])
    assert error["id"] == 7 and error["status"] == Status.NO_METHOD and "UTF-8" in error["exception"]


def test_malformed_json_is_answered_and_the_stream_resyncs() -> None:
    peer = make_peer()
    events = peer.receive_data(b'{"id":3,"method":}\n{"method":"ok","params":{}}\n')
    assert [f["method"] for f in dispatched(events)] == ["ok"]
    (error,) = frames(write_all(peer, 0.0)[0])
    assert error["id"] == 3 and "malformed JSON" in error["exception"]


def test_a_ping_is_answered_by_the_peer_itself() -> None:
    peer = sig_peer()
    assert peer.receive_data(b'{"method":"ping","params":{}}\n') == []  # a notification: no answer
    assert peer.receive_data(b'{"id":9,"method":"ping","params":{}}\n') == [WAKE]
    (pong,) = frames(write_all(peer, 0.0)[0])
    assert pong == {"id": 9, "status": 0, "response": {"pong": True}}


def test_a_reply_json_cannot_carry_becomes_an_error_reply() -> None:
    (reply,) = frames(reply_frame({"id": 1, "status": 0, "response": float("nan")}))
    assert reply["id"] == 1 and reply["status"] == Status.METHOD_FAILED
    (reply,) = frames(reply_frame({"id": [float("inf")], "status": 0, "response": None}))
    assert reply["id"] is None and reply["status"] == Status.METHOD_FAILED


def test_a_ping_with_an_id_json_cannot_write_back_gets_an_error_reply() -> None:
    peer = sig_peer()
    assert peer.receive_data(b'{"id":Infinity,"method":"ping","params":{}}\n') == [WAKE]
    (reply,) = frames(write_all(peer, 0.0)[0])
    assert reply["id"] is None and reply["status"] == Status.METHOD_FAILED


# -- capability negotiation, pipelined and lock-step -----------------------------------------


def link(a: Peer[str], b: Peer[str], now: float) -> Events:
    """Write what ``a`` may write now into ``b``; return b's events."""
    events: Events = []
    for data in write_all(a, now):
        events.extend(b.receive_data(data))
    return events


def serve(server: Peer[str], events: Events, response: Any, now: float) -> None:
    """Run the calls the server dispatched (as the shell's dispatcher does) with ``response``."""
    for frame in dispatched(events):
        reply = make_reply(frame.get("id"), Status.OK, response)
        server.answer(frame, reply, reply_frame(reply), now)


def test_sig_to_sig_negotiates_pipelining_both_ways() -> None:
    client, server = make_peer(), make_peer()
    _, events = call(client, {"method": "get_version", "params": {"capabilities": list(CAPABILITIES)}}, "hello")
    assert events == [WAKE]
    serve(server, link(client, server, 0.0), {"version": "x", "capabilities": list(CAPABILITIES)}, 0.0)
    assert server.pipelined and server.capabilities == frozenset(CAPABILITIES)
    (resolve,) = link(server, client, 0.0)[:1]
    assert isinstance(resolve, Resolve) and resolve.token == "hello"
    client.negotiate(resolve.reply["response"]["capabilities"], 0.0)
    assert client.pipelined
    for i in range(3):
        call(client, {"method": "signal", "params": {"n": i}}, "t%d" % i)
    client.post(encode({"method": "signal", "params": {"n": 3}}), "signal")
    server.queue_reply(reply_bytes(99))
    # pipelined: everything queued goes in one write, replies first
    assert len(write_all(client, 0.1)) == 1
    assert [f["id"] for f in frames(write_all(server, 0.1)[0])] == [99]


def test_capabilities_are_what_both_sides_have() -> None:
    peer = make_peer()
    peer.negotiate(["ndjson", "ping", "teleport", 7], 0.0)
    assert peer.capabilities == frozenset({"ndjson", "ping"}) and not peer.pipelined
    peer.negotiate("pipeline", 0.0)  # not a list: nothing
    assert peer.capabilities == frozenset()


def test_a_073_client_never_announces_and_the_server_stays_lock_step() -> None:
    server = make_peer()
    events = server.receive_data(b'{"id": 1, "method": "get_version", "params": {}}')
    serve(server, events, "1.01", 0.0)
    assert server.capabilities == frozenset() and not server.pipelined


def test_a_073_server_keeps_a_sig_client_lock_step() -> None:
    client = make_peer()
    hello_id, _ = call(client, {"method": "get_version", "params": {"capabilities": list(CAPABILITIES)}}, "hello")
    assert len(write_all(client, 0.0)) == 1
    (resolve, _wake) = client.receive_data(reply_bytes(hello_id, "1.01"))
    assert isinstance(resolve, Resolve)
    client.negotiate(None, 0.01)  # a 0.7.3 server answers "1.01": no capabilities
    assert not client.pipelined
    ids = [call(client, {"method": "signal", "params": {"n": i}}, "s%d" % i)[0] for i in range(3)]
    # at most one message in flight: each waits for the reply to the one before
    sent: list[int] = []
    now = 1.0
    for message_id in ids:
        writes = write_all(client, now)
        assert len(writes) == 1 and [f["id"] for f in frames(writes[0])] == [message_id]
        batch, wait = client.next_writes(now)
        assert batch == [] and wait == pytest.approx(client.legacy_timeout)
        assert not client.idle
        sent.append(message_id)
        client.receive_data(reply_bytes(message_id))
        now += 0.001
    assert sent == ids and client.idle


def test_towards_073_a_reply_and_the_next_message_never_share_a_write() -> None:
    server = make_peer()  # no capabilities: a 0.7.3 client
    events = server.receive_data(b'{"id": 1, "method": "signal", "params": {}}')
    serve(server, events, None, 0.0)
    call(server, {"method": "signal", "params": {"to": "client"}}, "out")
    batch, _ = server.next_writes(0.0)
    assert [f.get("status") for f in frames(batch[0])] == [0]  # the reply alone
    server.wrote(0.0)
    batch, wait = server.next_writes(0.0)  # the message waits: the reply gives no proof it was read
    assert batch == [] and wait == pytest.approx(LEGACY_GAP)
    assert server.next_writes(LEGACY_GAP / 2)[0] == []
    batch, _ = server.next_writes(LEGACY_GAP)
    assert [f["method"] for f in frames(b"".join(batch))] == ["signal"] and len(batch) == 1


def test_towards_073_replies_do_not_starve_messages() -> None:
    peer = make_peer()
    for i in range(3):
        peer.queue_reply(reply_bytes(100 + i))
    call(peer, {"method": "signal", "params": {}}, "m")
    now, order = 0.0, []
    for _ in range(2):
        (data,) = write_all(peer, now)
        order.append(frames(data)[0].get("method", "reply"))
        now += LEGACY_GAP
    assert order == ["reply", "signal"]


def test_towards_073_an_unanswered_message_holds_the_line_only_legacy_timeout(caplog: pytest.LogCaptureFixture) -> None:
    peer = make_peer(legacy_timeout=10.0)
    call(peer, {"method": "signal", "params": {}}, "first")
    call(peer, {"method": "signal", "params": {}}, "second")
    assert len(write_all(peer, 0.0)) == 1
    assert write_all(peer, 9.9) == []
    with caplog.at_level(logging.WARNING, logger="sig.connection"):
        assert len(write_all(peer, 10.1)) == 1
    assert "no reply to signal in 10 s" in caplog.text


def test_a_call_given_up_frees_the_line_without_proof_it_was_read() -> None:
    peer = make_peer()
    first, _ = call(peer, {"method": "signal", "params": {}}, "first")
    call(peer, {"method": "signal", "params": {}}, "second")
    write_all(peer, 0.0)
    assert peer.forget(first) == [WAKE]
    assert write_all(peer, 0.001) == []  # LEGACY_GAP after the write, as after a reply
    assert len(write_all(peer, LEGACY_GAP)) == 1


def test_a_large_message_to_a_073_peer_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sig.connection"):
        call(make_peer(), {"method": "signal", "params": {"data": "z" * LEGACY_FRAME_LIMIT}}, "big")
        call(sig_peer(), {"method": "signal", "params": {"data": "z" * LEGACY_FRAME_LIMIT}}, "big")
    assert caplog.text.count("reads 4096 bytes at most") == 1


def test_direct_writes_to_an_idle_sig_peer_and_the_rest_after_a_partial_write() -> None:
    peer = sig_peer(direct=True)
    _, events = call(peer, {"method": "request", "params": {}}, "a")
    (write,) = events
    assert isinstance(write, Write) and peer.sending == 1
    _, events = call(peer, {"method": "request", "params": {}}, "b")  # the first is still being written
    assert events == [WAKE] and peer.next_writes(0.0) == ([], None)
    assert peer.written(write.data, 5) == [WAKE]
    (data,) = write_all(peer, 0.0)
    assert data.startswith(write.data[5:]) and data.count(b"\n") == 2
    assert peer.post(encode({"method": "signal", "params": {}}), "signal") == [WAKE]  # notifications queue
    assert make_peer(direct=True).queue_reply(reply_bytes(1)) == [WAKE]  # lock-step: never direct


def test_the_queue_is_full_at_max_queue() -> None:
    peer = sig_peer(max_queue=2)
    for _ in range(2):
        assert not peer.full
        peer.post(encode({"method": "signal", "params": {}}), "signal")
    assert peer.full and peer.queued == 2
    peer.queue_reply(reply_bytes(1))  # replies need no room
    write_all(peer, 0.0)
    assert not peer.full and peer.idle


# -- ping ------------------------------------------------------------------------------------


def test_a_ping_is_due_after_an_idle_interval_and_a_silent_peer_has_vanished() -> None:
    peer = sig_peer(now=100.0, ping_interval=15.0)
    assert peer.tick(114.0) == ([], pytest.approx(1.0))
    events, wait = peer.tick(115.0)
    assert events == [SendPing()] and wait == 15.0
    ping_id, _ = call(peer, PING, "ping", ping=True)
    (data,) = write_all(peer, 115.0)
    assert frames(data) == [{"method": "ping", "params": {}, "id": ping_id}]
    assert peer.tick(129.9)[0] == []
    events, _ = peer.tick(130.0)  # no answer by the next ping
    assert events == [Close("peer vanished: no answer to ping in 15.0 s")]


def test_an_answered_ping_keeps_the_peer_and_writes_put_the_next_one_off() -> None:
    peer = sig_peer(now=0.0, ping_interval=15.0)
    assert peer.tick(15.0)[0] == [SendPing()]
    ping_id, _ = call(peer, PING, "ping", ping=True)
    write_all(peer, 15.0)  # the writer wrote at 15: the next ping is due at 30
    (resolve,) = peer.receive_data(reply_bytes(ping_id, {"pong": True}))
    assert resolve == Resolve("ping", {"id": ping_id, "status": 0, "response": {"pong": True}})
    peer.post(encode({"method": "signal", "params": {}}), "signal")
    assert peer.tick(30.0) == ([], 15.0)  # something to write: it goes first
    write_all(peer, 29.0)
    assert peer.tick(30.0)[0] == []  # written at 29: due at 44
    assert peer.tick(44.0)[0] == [SendPing()]


def test_no_ping_without_the_capability_or_an_interval() -> None:
    for peer in (make_peer(), sig_peer(ping_interval=0.0)):
        assert peer.tick(0.0) == ([], None)
        assert peer.tick(1e9) == ([], None)


# -- the request table -----------------------------------------------------------------------


def test_a_reply_resolves_its_own_call() -> None:
    peer = sig_peer()
    first, _ = call(peer, {"method": "request", "params": {}}, "first")
    second, _ = call(peer, {"method": "request", "params": {}}, "second")
    assert first != second
    events = peer.receive_data(reply_bytes(second, "B") + reply_bytes(first, "A"))
    resolved = [(e.token, e.reply["response"]) for e in events if isinstance(e, Resolve)]
    assert resolved == [("second", "B"), ("first", "A")]
    assert peer.pending == {}


def test_a_late_reply_after_a_timeout_is_ignored_and_never_answers_the_next_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = sig_peer()
    late, _ = call(peer, {"method": "request", "params": {}}, "timed out")
    peer.forget(late)  # the caller timed out and gave up
    following, _ = call(peer, {"method": "request", "params": {}}, "next")
    with caplog.at_level(logging.WARNING, logger="sig.connection"):
        assert peer.receive_data(reply_bytes(late, "too late")) == []
    assert "reply to no pending message" in caplog.text
    (resolve,) = peer.receive_data(reply_bytes(following, "right"))
    assert resolve == Resolve("next", make_reply(following, Status.OK, "right"))


def test_a_reply_to_an_unknown_id_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    peer = sig_peer()
    with caplog.at_level(logging.WARNING, logger="sig.connection"):
        assert peer.receive_data(reply_bytes(12345) + reply_bytes([1, 2])) == []
    assert caplog.text.count("reply to no pending message") == 2


def test_close_hands_back_the_pending_calls_once_and_refuses_more() -> None:
    peer = sig_peer()
    call(peer, {"method": "request", "params": {}}, "a")
    call(peer, {"method": "request", "params": {}}, "b")
    assert sorted(peer.close("bye")) == ["a", "b"]
    assert peer.close("again") == [] and peer.close_reason == "bye"
    with pytest.raises(CarrierError, match="closed: bye"):
        call(peer, {"method": "request", "params": {}}, "c")
    with pytest.raises(CarrierError):
        peer.post(encode({"method": "signal", "params": {}}), "signal")
    assert peer.queue_reply(reply_bytes(1)) == []
    assert peer.tick(1e9) == ([], None)


def test_a_notification_from_a_sig_peer_gets_no_reply_but_a_073_peer_always_does() -> None:
    notification = {"method": "signal", "params": {}}
    reply = make_reply(None, Status.OK)
    assert sig_peer().answer(notification, reply, reply_frame(reply), 0.0) == []
    legacy = make_peer()
    assert legacy.answer(notification, reply, reply_frame(reply), 0.0) == [WAKE]
    assert frames(write_all(legacy, 0.0)[0])[0]["status"] == 0


def test_replies_of_one_read_come_before_its_calls() -> None:
    peer = sig_peer()
    message_id, _ = call(peer, {"method": "request", "params": {}}, "awaited")
    events = peer.receive_data(b'{"method":"signal","params":{}}\n' + reply_bytes(message_id, "ok"))
    assert [type(event) for event in events] == [Resolve, Dispatch]
