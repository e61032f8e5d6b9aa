"""The documented Carrier contract: handleRX / handleRPC / handleTX, formats, status codes, RPC methods."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from netutil import Recorder

import sig
from sig.carrier.local import LocalCarrier


class RecordingCarrier(sig.Carrier):
    """A custom carrier written the pysig 0.7.3 way: it only implements handleTX."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[Any, dict[str, Any]]] = []

    def handleTX(self, clientid, message):
        self.sent.append((clientid, message))
        return {"id": message.get("id"), "status": 0, "response": None}


@pytest.fixture
def server() -> tuple[sig.ServerRouter, RecordingCarrier]:
    carrier = RecordingCarrier()
    router = sig.ServerRouter(carrier)
    carrier.handle_client_connected("c1")
    return router, carrier


def test_documented_message_and_reply_format(server) -> None:
    router, carrier = server
    message = {"id": "23", "method": "add_sender", "params": {"sender": "lorem", "events": ["ipsum"]}}
    reply = carrier.handleRX("c1", message)
    assert reply == {"id": "23", "status": 0, "response": None}
    assert router.getSender("lorem").isConnected()


def test_status_codes(server) -> None:
    _, carrier = server
    assert carrier.handleRX("c1", {"id": 1, "params": {}})["status"] == -3
    unknown = carrier.handleRX("c1", {"id": 2, "method": "fly", "params": {}})
    assert unknown["status"] == -1 and unknown["id"] == 2 and "fly" in unknown["exception"]
    failed = carrier.handleRX("c1", {"id": 3, "method": "remove_sender", "params": {"sender": "nobody"}})
    assert failed["status"] == -2 and failed["error"] == "NameError" and "nobody" in failed["exception"]
    typed = carrier.handleRX("c1", {"id": 4, "method": "add_sender", "params": {"sender": True, "events": []}})
    assert typed["status"] == -2 and typed["error"] == "TypeError"
    assert carrier.handleRX("c1", {"id": 5, "method": "signal", "params": []})["status"] == -2
    assert carrier.handleRPC("c1", ["not", "a", "dict"])["status"] == -3


def test_get_version_and_list_senders(server) -> None:
    router, carrier = server
    assert carrier.handleRX("c1", {"id": 1, "method": "get_version"})["response"] == "1.01"
    sig_peer = carrier.handleRX("c1", {"id": 2, "method": "get_version", "params": {"capabilities": ["ndjson"]}})
    assert sig_peer["response"]["version"] == sig.VERSION and "pipeline" in sig_peer["response"]["capabilities"]
    router.addSender("timer", ["tick"])
    router.addListener(lambda i, d: None, "later", "e")
    listed = carrier.handleRX("c1", {"id": 3, "method": "list_senders", "params": {}})["response"]
    assert {"sender": "timer", "connected": True} in listed and {"sender": "later", "connected": False} in listed
    detailed = carrier.handleRX("c1", {"id": 4, "method": "list_senders", "params": {"list_events": True}})
    timer = next(entry for entry in detailed["response"] if entry["sender"] == "timer")
    assert {"event": "tick"} in timer["events"] and {"event": "#connect"} in timer["events"]


def test_listener_signal_request_flow_through_handleTX(server) -> None:
    router, carrier = server
    added = carrier.handleRX("c1", {"id": 1, "method": "add_listener", "params": {"sender": "timer", "event": "tick"}})
    listener_id = added["response"]["listener_id"]
    router.addSender("timer", ["tick"]).getSignal("tick").trigger(5)
    assert carrier.sent[-1] == (
        "c1",
        {"method": "signal",
         "params": {"listener_id": listener_id, "info": {"sender": "timer", "event": "tick"}, "data": 5}},
    )
    carrier.handleRX("c1", {"id": 2, "method": "remove_listener", "params": {"listener_id": listener_id}})
    again = carrier.handleRX("c1", {"id": 3, "method": "remove_listener", "params": {"listener_id": listener_id}})
    assert again["status"] == -2
    dev = {"sender": "dev", "events": ["e"], "requests": ["get"]}
    carrier.handleRX("c1", {"id": 4, "method": "add_sender", "params": dev})
    router.request("dev", "get", {"a": 1})  # forwarded to the client through handleTX
    assert carrier.sent[-1][1]["method"] == "request"
    assert carrier.sent[-1][1]["params"] == {"sender": "dev", "method": "get", "params": {"a": 1}}


def test_client_disconnect_removes_its_senders_and_listeners(server) -> None:
    router, carrier = server
    rec = Recorder()
    router.addListener(rec.listener("d"), None, sig.EVENT_DISCONNECT)
    carrier.handleRX("c1", {"id": 1, "method": "add_sender", "params": {"sender": "dev", "events": ["e"]}})
    carrier.handleRX("c1", {"id": 2, "method": "add_listener", "params": {"sender": None, "event": None}})
    carrier.handle_client_disconnected("c1")
    assert rec.calls == [("d", "dev", sig.EVENT_DISCONNECT, {"events": ["e"], "requests": None})]
    assert router.getBroadcastEvent().listeners == ()
    carrier.handle_client_connected("c2")
    carrier.handleRX("c2", {"id": 1, "method": "add_sender", "params": {"sender": "dev2", "events": ["e"]}})
    carrier.handle_all_clients_diconnected()  # the documented spelling
    carrier.handle_client_connected("c3")
    carrier.handleRX("c3", {"id": 1, "method": "add_sender", "params": {"sender": "dev3", "events": ["e"]}})
    carrier.handle_all_clients_disconnected()  # and the correct one
    assert [c[1] for c in rec.calls] == ["dev", "dev2", "dev3"]


def test_signal_only_for_own_senders(server) -> None:
    router, carrier = server
    router.addSender("server_owned", ["e"])
    params = {"info": {"sender": "server_owned", "event": "e"}}
    spoof = carrier.handleRX("c1", {"id": 1, "method": "signal", "params": params})
    assert spoof["status"] == -2 and spoof["error"] == "NameError"


class Base64Carrier(LocalCarrier):
    """A carrier with its own encoding: pack / unpack overridden."""

    def pack(self, message):
        return base64.b64encode(json.dumps(message).encode())

    def unpack(self, data):
        return json.loads(base64.b64decode(data))


def test_overridden_pack_unpack_and_lockstep_custom_carrier() -> None:
    server_end, client_end = Base64Carrier(), Base64Carrier()
    server = sig.ServerRouter(server_end)
    client = sig.ClientRouter(client_end)
    client_end.connect(server_end)
    rec = Recorder()
    client.addRemoteListener(rec.listener("l"), "s", "e")
    sender = client.addRemoteSender("s", ["e"], requests={"twice": lambda p: p * 2})
    sender.getSignal("e").trigger("x")
    assert rec.calls == [("l", "s", "e", "x")]
    assert client.remoteRequest("s", "twice", 21) == 42
    assert server.request("s", "twice", "ab") == "abab"
    client_end.disconnect()
    assert "s" not in server.senders  # removed, and nobody listens to it any more


def test_default_pack_unpack() -> None:
    carrier = sig.Carrier()
    assert json.loads(carrier.pack({"a": 1})) == {"a": 1}
    assert carrier.pack({"a": {1, 2}}) is None
    assert carrier.unpack('{"a": 1}') == {"a": 1}
    assert carrier.unpack("not json") is None
    assert carrier.unpack("[1]") is None
