"""Presence decisions without a broker or a clock (sig_mqtt._presence): who is connected, and when
a silent node is taken as offline (1.5 of its advertised heartbeats; 3 of ours when it says none)."""

from __future__ import annotations

import json

import pytest

from sig_mqtt._nodecore import NodeCore
from sig_mqtt._payload import Birth, NodeState
from sig_mqtt._presence import Change, Presence
from sig_mqtt._topics import Topics


def state(heartbeat: float | None = 2.0, online: bool = True, ts: int | None = None) -> NodeState:
    return NodeState(online, "s1", ts, 4, heartbeat)


def birth(heartbeat: float | None = None) -> Birth:
    return Birth(["changed"], ["read"], "s1", heartbeat=heartbeat)


def kinds(changes: list[Change]) -> list[tuple[str, object, bool]]:
    return [(change.kind, change.sender, change.announce) for change in changes]


def online(heartbeat: float | None = 2.0, now: float = 100.0, own_heartbeat: float = 30.0) -> Presence:
    """A presence that knows node n2 hosting ``thermo``, its state heard at ``now``."""
    presence = Presence("n1", own_heartbeat)
    presence.sender_birth("n2", "thermo", birth(), retained=False)
    assert kinds(presence.node_state("n2", state(heartbeat), False, now)) == [("connect", "thermo", True)]
    return presence


def test_a_node_that_advertises_its_heartbeat_is_offline_after_one_and_a_half_of_them() -> None:
    presence = online(heartbeat=2.0)
    assert presence.deadline == 103.0
    assert presence.expire(102.99) == [] and presence.owner("thermo") == "n2"
    changes = presence.expire(103.0)
    assert kinds(changes) == [("disconnect", "thermo", True)]
    assert changes[0].birth.describe() == {"events": ["changed"], "requests": ["read"]}
    assert presence.owner("thermo") is None and presence.deadline == float("inf")
    assert presence.expire(200.0) == []  # once


def test_a_node_that_advertises_none_keeps_three_of_our_heartbeats() -> None:
    presence = online(heartbeat=None, own_heartbeat=5.0)
    assert presence.deadline == 115.0
    assert presence.expire(114.9) == []
    assert kinds(presence.expire(115.0)) == [("disconnect", "thermo", True)]


def test_the_heartbeat_of_the_births_counts_when_the_state_has_none() -> None:
    presence = Presence("n1", 30.0)
    presence.sender_birth("n2", "thermo", birth(heartbeat=4.0), retained=False)
    presence.node_state("n2", state(heartbeat=None), False, 10.0)
    assert presence.deadline == 16.0
    assert kinds(presence.expire(16.0)) == [("disconnect", "thermo", True)]


def test_states_heard_in_time_keep_the_node_without_any_change() -> None:
    presence = online(heartbeat=2.0)
    now = 100.0
    for _ in range(10):  # every heartbeat, late by up to half a heartbeat (a failover to another member)
        now += 2.9
        assert presence.expire(now - 0.01) == []
        assert presence.node_state("n2", state(), False, now) == []  # a re-published state is no #connect
    assert presence.owner("thermo") == "n2"
    assert presence.deadline <= now + 3.0  # never later than needed; expire() makes it exact
    assert presence.expire(now + 1.0) == [] and presence.deadline == pytest.approx(now + 3.0)


def test_a_state_after_the_node_was_taken_as_offline_is_a_new_connect() -> None:
    presence = online(heartbeat=2.0)
    assert kinds(presence.expire(104.0)) == [("disconnect", "thermo", True)]
    assert kinds(presence.node_state("n2", state(), False, 110.0)) == [("connect", "thermo", True)]
    # also when it comes back retained (after our own reconnect): listeners hear the difference
    assert kinds(presence.expire(113.5)) == [("disconnect", "thermo", True)]
    assert kinds(presence.node_state("n2", state(), True, 120.0)) == [("connect", "thermo", True)]


def test_the_clock_runs_from_the_receipt_whatever_the_sender_clock_says() -> None:
    wall = 1_700_000_000.0
    for skew in (-3600.0, -2.5, 0.0, 3600.0):  # the sender's clock: behind by an hour ... ahead by an hour
        presence = Presence("n1", 30.0)
        presence.sender_birth("n2", "thermo", birth(), retained=False)
        ts = int((wall + skew) * 1000)
        changes = presence.node_state("n2", state(ts=ts), False, 50.0, wall)  # live: its ts is not looked at
        assert kinds(changes) == [("connect", "thermo", True)], skew
        assert presence.deadline == 53.0
        assert presence.expire(52.9) == [] and len(presence.expire(53.0)) == 1


def test_a_retained_state_starts_its_clock_when_it_arrives_unless_its_ts_is_long_past() -> None:
    wall = 1_700_000_000.0
    presence = Presence("n1", 30.0)
    presence.sender_birth("n2", "thermo", birth(), retained=True)
    presence.sender_birth("n3", "ghost", birth(), retained=True)
    # n2's last heartbeat, 1.9 s old: known connected (not announced), its clock from now
    changes = presence.node_state("n2", state(ts=int((wall - 1.9) * 1000)), True, 50.0, wall)
    assert kinds(changes) == [("connect", "thermo", False)]
    # n3 died without its Will 10 s ago (more than 3 heartbeats): stale at once, never connected
    assert presence.node_state("n3", state(ts=int((wall - 10) * 1000)), True, 50.0, wall) == []
    assert presence.owner("ghost") is None and presence.deadline == 53.0
    assert kinds(presence.expire(53.0)) == [("disconnect", "thermo", True)]


def test_an_offline_state_disconnects_at_once_and_sets_no_deadline() -> None:
    presence = online(heartbeat=2.0)
    assert kinds(presence.node_state("n2", state(online=False), False, 101.0)) == [("disconnect", "thermo", True)]
    assert presence.expire(200.0) == []


def test_refresh_restarts_the_clocks_after_our_own_outage() -> None:
    presence = online(heartbeat=2.0)
    presence.refresh(150.0)  # we were offline and heard nothing: that is not the node's fault
    assert presence.deadline <= 150.0  # the next expire() recomputes
    assert presence.expire(152.9) == [] and presence.deadline == 153.0
    assert len(presence.expire(153.0)) == 1


def test_the_deadline_is_the_earliest_node() -> None:
    presence = Presence("n1", 30.0)
    for nid, heartbeat, now in (("slow", 10.0, 0.0), ("fast", 1.0, 1.0), ("old", None, 2.0)):
        presence.sender_birth(nid, nid + "-sender", birth(), retained=False)
        presence.node_state(nid, state(heartbeat), False, now)
    assert presence.deadline == 2.5
    assert kinds(presence.expire(2.5)) == [("disconnect", "fast-sender", True)]
    assert presence.deadline == 15.0
    assert kinds(presence.expire(15.0)) == [("disconnect", "slow-sender", True)]
    assert presence.deadline == 92.0


def test_births_and_states_carry_the_heartbeat() -> None:
    core = NodeCore(Topics("p"), "n1", "s1", heartbeat=2.5)
    core.sender_up("thermo", {"events": ["changed"], "requests": None})
    made = core.birth("thermo")
    assert made is not None and json.loads(made[1])["heartbeat"] == 2.5
    assert json.loads(core.state(True, 0, 4))["heartbeat"] == 2.5
    decoded = Birth.decode(made[1])
    assert decoded is not None and decoded.heartbeat == 2.5
    for bad in ("30", True, 0, -1, 10**7, None):  # not a sane number: as if absent
        payload = json.dumps({"events": [], "requests": None, "session": "s", "heartbeat": bad}).encode()
        assert Birth.decode(payload) == Birth([], None, "s")
    assert b"heartbeat" not in Birth([], None, "s").encode()  # old readers see what they saw


def test_the_dispatcher_wakes_for_the_presence_deadline() -> None:
    core = NodeCore(Topics("p"), "n1", "s1", heartbeat=30.0)
    core.next_heartbeat = 130.0
    assert core.wait(100.0, True) == 1.0
    assert core.wait(100.0, True, check_at=100.3) == pytest.approx(0.3)
    assert core.wait(100.0, True, check_at=99.0) == 0.05  # overdue: at once (but never a busy loop)
    assert core.wait(100.0, False, check_at=100.3) == 1.0  # offline: nothing is judged


def test_a_birth_that_answers_a_rebirth_request_is_state_sync_not_a_connect() -> None:
    """RabbitMQ hands a late joiner no retained births: it learns of senders only from the answers
    to its rebirth request, which say ``"rebirth": true``; pysig tells no late listener of them."""
    presence = Presence("n1", 30.0)
    presence.node_state("n2", state(), False, 10.0)
    answer = Birth(["changed"], ["read"], "s1", rebirth=True)
    assert kinds(presence.sender_birth("n2", "thermo", answer, retained=False)) == [("connect", "thermo", False)]
    assert presence.owner("thermo") == "n2"
    # the other order: the births of the answer first, then the node's state
    presence.sender_birth("n3", "hygro", Birth(["h"], None, "s3", rebirth=True), retained=False)
    assert kinds(presence.node_state("n3", NodeState(True, "s3", None, 4, 2.0), False, 11.0)) == [
        ("connect", "hygro", False)]
    # a sender that comes online now is announced; one we knew and lost is announced however it comes back
    assert kinds(presence.sender_birth("n2", "fresh", birth(), retained=False)) == [("connect", "fresh", True)]
    assert sorted(kinds(presence.node_state("n2", state(online=False), False, 12.0))) == [
        ("disconnect", "fresh", True), ("disconnect", "thermo", True)]
    assert ("connect", "thermo", True) in kinds(presence.node_state("n2", state(), False, 13.0))


def test_the_rebirth_flag_round_trips_and_is_left_out_when_false() -> None:
    assert json.loads(Birth(["e"], None, "s", rebirth=True).encode())["rebirth"] is True
    assert "rebirth" not in json.loads(Birth(["e"], None, "s").encode())
    assert Birth.decode(b'{"events": ["e"], "requests": null, "session": "s", "rebirth": true}').rebirth
    assert not Birth.decode(b'{"events": ["e"], "requests": null, "session": "s", "rebirth": "yes"}').rebirth
