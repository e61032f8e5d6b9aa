"""The decisions of an MQTT node without a broker, a thread or a clock (sig_mqtt._nodecore)."""

from __future__ import annotations

import json

import pytest

from sig_mqtt import Topics
from sig_mqtt._nodecore import NO_CHANGE, NodeCore
from sig_mqtt._payload import Birth


def core(**settings: object) -> NodeCore:
    return NodeCore(Topics("p"), "n1", "s1", **settings)  # type: ignore[arg-type]


def test_own_filters_from_the_start() -> None:
    assert set(core().filters.subscribed) == {"p/reply/n1", "p/cmd/rebirth", "p/node/n1/sender/+"}
    assert {"p/node/+/sender/+", "p/node/+"} <= set(core(follow_all=True).filters.subscribed)


def test_listener_demand_is_counted_per_pair() -> None:
    c = core()
    subscribe, unsubscribe = c.listener_changed("thermo", "changed", True)
    assert [f for f, _ in subscribe] == ["p/event/thermo/changed"] and unsubscribe == []
    assert c.listener_changed("thermo", "changed", True) == NO_CHANGE  # a second listener: nothing new
    assert c.listener_changed("thermo", "changed", False) == NO_CHANGE  # one is left
    assert c.listener_changed("thermo", "changed", False) == ([], ["p/event/thermo/changed"])


def test_a_sender_broadcast_follows_presence_and_a_plain_event_of_any_sender_needs_nothing() -> None:
    c = core()
    subscribe, _ = c.listener_changed("thermo", None, True)
    # (on MQTT 5 our own births filter, which now overlaps, is subscribed again with an identifier)
    assert {"p/event/thermo/+", "p/node/+/sender/thermo", "p/node/+"} <= {f for f, _ in subscribe}
    assert c.listener_changed(None, "changed", True) == NO_CHANGE  # never fires, as in pysig
    subscribe, _ = c.listener_changed(None, "#temp", True)
    assert "p/event/+/%23temp" in [f for f, _ in subscribe]  # (with p/event/thermo/+ again: they overlap)


def test_subscription_identifiers_on_overlapping_filters_only_on_mqtt5() -> None:
    c = core(identifiers=True)
    c.listener_changed("a", None, True)
    ids = dict(c.resubscribe(True))
    assert ids["p/node/+/sender/a"] is not None and ids["p/node/n1/sender/+"] is not None  # they overlap
    assert ids["p/reply/n1"] is None
    assert all(sid is None for _, sid in c.resubscribe(False))


def test_watch_once() -> None:
    c = core()
    first = c.watch("door")
    assert first is not None and {"p/node/+/sender/door", "p/node/+"} <= {f for f, _ in first[0]}
    assert c.watch("door") is None


def test_our_senders_births_and_events() -> None:
    c = core(retain={("thermo", "changed")})
    subscribe, _ = c.sender_up("thermo", {"events": ["changed", "moved"], "requests": ["get"]}, 1700)
    assert [f for f, _ in subscribe] == ["p/request/thermo/+"]
    topic, payload = c.birth("thermo")  # type: ignore[misc]
    assert topic == "p/node/n1/sender/thermo"
    assert json.loads(payload) == {"events": ["changed", "moved"], "requests": ["get"], "session": "s1",
                                   "retained": ["changed"], "heartbeat": 30.0, "since": 1700}  # since: claimed
    assert c.event("thermo", "changed", 21.5) == ("p/event/thermo/changed", b"21.5", True)
    assert c.event("thermo", "moved", {"x": 1}) == ("p/event/thermo/moved", b'{"x":1}', False)
    assert c.event("thermo", "#connect", {}) is None  # births say that
    assert c.event("other", "changed", 1) is None  # not ours
    assert c.event("thermo", "changed", object()) is None  # not JSON: logged, not published
    assert c.sender_down("thermo") == ([], ["p/request/thermo/+"])
    assert c.sender_down("thermo") is None
    assert c.birth("thermo") is None


def test_stale_own_births_after_a_reconnect() -> None:
    c = core()
    c.sender_up("kept", {"events": [], "requests": None})
    c.own_births["kept"] = Birth([], None, "s1")  # this run's
    c.own_births["gone"] = Birth([], None, "s1")  # ours, but no longer hosted
    c.own_births["old"] = Birth([], None, "s0")  # of an earlier run
    c.own_births["cleared"] = None
    assert sorted(c.stale_own_births()) == ["gone", "old"]
    assert c.own_births == {}


@pytest.mark.parametrize(("topic", "size", "ids", "kind"), [
    ("p/event/thermo/changed", 10, None, "tree"),
    ("p/node/n2/sender/thermo", 10, None, "tree"),
    ("p/request/thermo/get", 10, None, "request"),
    ("p/reply/n1", 10, None, "reply"),
    ("zigbee2mqtt/lamp", 10, None, "raw"),
    ("p/event/thermo/changed", 2000, None, "oversized"),
])
def test_what_an_incoming_message_is(topic: str, size: int, ids: list[int] | None, kind: str) -> None:
    c = core(max_payload=1000)
    c.listener_changed("thermo", "changed", True)
    assert c.classify(topic, size, ids).kind == kind


def test_overlapping_filters_dispatch_one_copy() -> None:
    c = core(identifiers=True)
    subscribe, _ = c.listener_changed("thermo", None, True)
    more, _ = c.listener_changed(None, None, True)
    ids = {f: sid for f, sid in subscribe + more}
    both = [ids["p/event/thermo/+"], ids["p/event/+/+"]]
    copies = [c.classify("p/event/thermo/changed", 1, [sid]).kind for sid in both]
    assert sorted(copies) == ["copy", "tree"]


def test_echo_of_our_own_events() -> None:
    c = core()
    c.sender_up("mine", {"events": ["e"], "requests": None})
    assert c.is_echo("mine", "e") and c.is_echo("other", "#connect") and not c.is_echo("other", "e")


def test_heartbeat_due_once_per_period() -> None:
    c = core(heartbeat=30.0)
    c.next_heartbeat = 100.0
    assert not c.heartbeat_due(99.9)
    assert c.heartbeat_due(100.0) and c.next_heartbeat == 130.0
    assert not c.heartbeat_due(100.1)
    assert c.wait(120.0, ready=True) == 1.0 and c.wait(129.99, ready=True) == 0.05
    assert c.wait(0.0, ready=False) == 1.0
