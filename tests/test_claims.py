"""One owner per sender name, even under races (sig_mqtt._claims).

The decision alone (:class:`ClaimBook`), a model of one broker that hands every node what
it takes in order, with every interleaving Hypothesis finds, and real races: 2 and 3 nodes
register one name at the same moment (threads released by a barrier), 20 times, on
Mosquitto and amqtt: one owner every time, the others get ``NameError``, requests are
answered once, by the owner. After registration, a held birth of another node that ranks
first takes the name: ours is removed and publishes nothing more.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mqttutil import mosquitto_pub, retained_lines
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient
from sig_mqtt._claims import Claim, ClaimBook
from sig_mqtt._payload import Birth
from sig_mqtt._presence import Presence

# -- the decision (pure) --------------------------------------------------------------------------


def _other(nid: str, since: int = 5, pending: bool = False, shared: bool = False, session: str = "s") -> Claim:
    return Claim(nid, session + nid, since, shared, pending)


def test_a_held_claim_blocks_before_anything_is_published() -> None:
    book = ClaimBook("me", "sme")
    assert book.blocker(False, []) is None
    assert book.blocker(False, [_other("a", pending=True)]) is None  # pending: decided after our round trip
    assert book.blocker(False, [_other("a")]) == _other("a")
    assert book.blocker(True, [_other("a", shared=True)]) is None  # shared hosts share
    assert book.blocker(True, [_other("a")]) == _other("a")  # shared vs not: a conflict
    assert book.blocker(False, [_other("a", shared=True)]) == _other("a", shared=True)


def test_judging_a_pending_claim() -> None:
    book = ClaimBook("me", "sme")
    book.open("S", False, 5)
    assert book.judge("S", []) == ("win", None)
    assert book.judge("S", [_other("a")]) == ("lose", _other("a"))  # held: it was there first
    assert book.judge("S", [_other("a", since=4, pending=True)])[0] == "lose"  # pending, claimed earlier
    assert book.judge("S", [_other("a", pending=True, session="s0")])[0] == "lose"  # same ms, lower session
    later = _other("z", since=6, pending=True)
    assert book.judge("S", [later]) == ("wait", later)  # it yields to us, or was held before it saw us
    assert book.judge("S", [later, _other("y", since=4, pending=True)])[0] == "lose"
    assert book.hold("S", 99) == Claim("me", "sme", 5)  # held keeps its since
    assert book.close("S") is not None and book.close("S") is None


def test_shared_claims_share_and_conflict_with_plain_ones() -> None:
    book = ClaimBook("me", "sme")
    book.open("S", True, 5)
    assert book.judge("S", [_other("a", shared=True), _other("b", since=1, pending=True, shared=True)]) == (
        "win", None)
    assert book.judge("S", [_other("a", since=9, pending=True)])[0] == "wait"
    assert book.judge("S", [_other("a", since=1, pending=True)])[0] == "lose"
    assert book.shared("S") and not book.shared("T")


def test_a_held_claim_meets_a_later_held_one() -> None:
    book = ClaimBook("me", "sme")
    book.hold("S", 5)  # a sender that came without a claim (a ServerRouter's client): held since 5
    assert book.contest("S", [_other("a", since=6)]) is None  # ours came first: the other yields
    assert book.contest("S", [_other("a", since=1, pending=True)]) is None  # pending: it yields by itself
    assert book.contest("S", [_other("a", since=1)]) == _other("a", since=1)
    book.revoked.add("S")
    assert book.contest("S", [_other("a", since=1)]) is None  # revoked once
    assert book.contest("T", [_other("a", since=1)]) is None  # not ours


def test_others_pending_births_are_noted_until_held_or_removed() -> None:
    book = ClaimBook("me", "sme")
    pending = Birth(["e"], None, "sa", pending=True, since=3)
    book.note("a", "S", pending)
    book.note("b", "S", pending)
    assert set(book.pending["S"]) == {"a", "b"}
    book.note("a", "S", Birth(["e"], None, "sa", since=3))  # held now: Presence's
    book.note("b", "S", None)
    assert book.pending == {}
    assert Claim.of("a", pending) == Claim("a", "sa", 3, False, True)
    assert Claim.of("a", Birth(["e"], None, "sa")).since == 0  # an older node's birth ranks first


def test_births_carry_the_claim_fields() -> None:
    birth = Birth(["e"], ["m"], "s1", shared=True, pending=True, since=1700000000000)
    assert Birth.decode(birth.encode()) == birth
    assert Birth.decode(b'{"events": [], "requests": null, "session": "s", "since": true, "shared": 1}') == Birth(
        [], None, "s")  # odd values are ignored, not trusted


def test_presence_keeps_a_shared_sender_connected_while_one_host_is_left() -> None:
    presence = Presence("me")
    from sig_mqtt._payload import NodeState

    for nid in ("h1", "h2"):
        presence.node_state(nid, NodeState(True, "s" + nid, proto=4), False, 100.0)
    first = presence.sender_birth("h1", "S", Birth(["e"], None, "sh1", shared=True), False)
    assert [(c.kind, c.nid) for c in first] == [("connect", "h1")]
    assert presence.sender_birth("h2", "S", Birth(["e"], None, "sh2", shared=True), False) == []
    moved = presence.node_state("h1", NodeState(False, "sh1"), False, 101.0)
    assert [(c.kind, c.nid) for c in moved] == [("move", "h2")]
    assert presence.owner("S") == "h2"
    gone = presence.sender_birth("h2", "S", None, False)
    assert [(c.kind, c.nid) for c in gone] == [("disconnect", "h2")]


# -- a model of one broker: every interleaving -------------------------------------------------


class _Node:
    def __init__(self, nid: str, since: int, shared: bool) -> None:
        self.nid = nid
        self.book = ClaimBook(nid, "s" + nid)
        self.since = since
        self.shared = shared
        self.stage = "idle"  # idle -> sent (pending and marker published) -> judging -> won / lost
        self.cursor = 0  # messages of the broker's log processed
        self.view: dict[str, Claim] = {}  # what it knows of the others' births

    def others(self) -> list[Claim]:
        return [claim for claim in self.view.values() if claim is not None]


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 4), st.data())
def test_on_one_broker_exactly_one_claim_wins_whatever_the_interleaving(count: int, data: st.DataObject) -> None:
    shared = data.draw(st.lists(st.booleans(), min_size=count, max_size=count))
    nodes = [_Node("n%d" % index, data.draw(st.integers(0, 2)), shared[index]) for index in range(count)]
    log: list[tuple[str, str, Claim | None]] = []  # what the broker took, in order: (kind, node, claim)
    for _ in range(400):
        moves = [node for node in nodes if node.stage == "idle" or node.cursor < len(log)]
        if not moves:
            break
        node = data.draw(st.sampled_from(moves))
        if node.stage == "idle":
            claim = node.book.open("S", node.shared, node.since)
            log += [("birth", node.nid, claim), ("marker", node.nid, None)]
            node.stage = "sent"
            continue
        kind, nid, claim = log[node.cursor]
        node.cursor += 1
        if nid != node.nid and kind == "birth":
            node.view[nid] = claim  # type: ignore[assignment]
        if kind == "marker" and nid == node.nid:
            node.stage = "judging"
        if node.stage == "judging":
            verdict, _ = node.book.judge("S", node.others())
            if verdict == "win":
                node.stage = "won"
                log.append(("birth", node.nid, node.book.hold("S", node.since)))
            elif verdict == "lose":
                node.stage = "lost"
                log.append(("birth", node.nid, None))
    assert all(node.stage in ("won", "lost") for node in nodes), [(n.nid, n.stage) for n in nodes]
    winners = [node for node in nodes if node.stage == "won"]
    assert winners, "nobody won"
    if not all(node.shared for node in winners):
        assert len(winners) == 1, [(n.nid, n.since, n.shared) for n in winners]


# -- real races -----------------------------------------------------------------------------------


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker_port(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    fixture = "mosquitto" if request.param == "mosquitto" else "embedded_broker"
    yield request.param, request.getfixturevalue(fixture).port


def _race(routers: list[sig.ClientRouter], name: str) -> tuple[dict[int, Any], dict[int, int]]:
    """Every router registers ``name`` at once: ``({index: "owner" or its error}, {index: requests answered})``."""
    barrier = threading.Barrier(len(routers))
    outcomes: dict[int, Any] = {}
    answered: dict[int, int] = {}

    def register(index: int) -> None:
        def who(params: Any) -> int:
            answered[index] = answered.get(index, 0) + 1
            return index

        barrier.wait(5.0)
        try:
            routers[index].addRemoteSender(name, ["changed"], requests={"who": who})
            outcomes[index] = "owner"
        except NameError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=register, args=(index,)) for index in range(len(routers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    return outcomes, answered


def _owned_by(observer: sig.ClientRouter, name: str, owner_nid: str) -> bool:
    presence = observer.carrier.node.presence  # type: ignore[attr-defined]
    return bool(observer.carrier.isSenderConnected(name)  # type: ignore[attr-defined]
                and set(presence.births.get(name, {})) == {owner_nid} and presence.owner(name) == owner_nid)


@pytest.mark.parametrize("contenders", [2, 3])
def test_nodes_registering_one_name_at_the_same_moment_leave_one_owner(
        broker_port: tuple[str, int], carriers: list[Any], contenders: int) -> None:
    kind, port = broker_port
    prefix = "c%s/sig" % uuid.uuid4().hex[:8]
    protocol = 5 if kind == "mosquitto" else 4
    routers = []
    for index in range(contenders + 1):  # the last one only requests and watches
        carrier = CarrierMQTTClient(client_id="c%d-%s" % (index, uuid.uuid4().hex[:6]), prefix=prefix,
                                    protocol=protocol, request_timeout=5.0)
        carriers.append(carrier)
        routers.append(sig.ClientRouter(carrier, request_timeout=5.0))
        assert carrier.connect("127.0.0.1", port, auto_reconnect=False), carrier.last_error
    observer = routers[-1]
    for race in range(20):
        name = "dev%d" % race
        outcomes, answered = _race(routers[:contenders], name)
        owners = [index for index, outcome in outcomes.items() if outcome == "owner"]
        assert len(outcomes) == contenders and len(owners) == 1, (race, outcomes)
        owner = owners[0]
        assert all(isinstance(outcome, sig.SigError) for index, outcome in outcomes.items() if index != owner)
        # The broker keeps the owner's birth only and everyone sees that owner (its held birth
        # may still be on its way when its registration returns, as any birth).
        owner_nid = routers[owner].carrier.client_id  # type: ignore[attr-defined]
        assert wait_until(lambda: _owned_by(observer, name, owner_nid), 5.0), (  # noqa: B023
            race, observer.carrier.node.presence.births.get(name))  # type: ignore[attr-defined]
        assert [observer.remoteRequest(name, "who") for _ in range(3)] == [owner] * 3
        assert answered == {owner: 3}
        for index in range(contenders):
            if index != owner:  # a loser knows the owner (once its held birth is in), and its requests reach it
                assert wait_until(lambda: _owned_by(routers[index], name, owner_nid), 5.0)  # noqa: B023
                assert routers[index].remoteRequest(name, "who") == owner
        assert answered == {owner: 3 + contenders - 1}


def _node(carriers: list[Any], port: int, prefix: str) -> tuple[CarrierMQTTClient, sig.ClientRouter]:
    carrier = CarrierMQTTClient(prefix=prefix, protocol=5, request_timeout=5.0)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port, auto_reconnect=False), carrier.last_error
    return carrier, router


def test_a_held_birth_that_came_first_takes_the_name_back(mosquitto: Any, carriers: list[Any],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """After registration: another node's held birth that ranks first (a cluster that ordered the
    claims differently, presence that came late) wins; ours is removed and publishes nothing more."""
    prefix = "c%s/sig" % uuid.uuid4().hex[:8]
    hosting, router = _node(carriers, mosquitto.port, prefix)
    _, listener = _node(carriers, mosquitto.port, prefix)
    rec = Recorder()
    listener.addRemoteListener(rec.listener(), "dev", "changed")
    dev = router.addRemoteSender("dev", ["changed"], requests={"get": lambda params: "ours"})
    dev.getSignal("changed").trigger(1)
    rec.wait_for(1, 5.0)
    # A later held claim does not move us.
    mosquitto_pub(mosquitto.port, prefix + "/node/late", '{"online":true,"session":"sl","proto":4}', "-r")
    mosquitto_pub(mosquitto.port, prefix + "/node/late/sender/dev",
                  '{"events":["changed"],"requests":null,"session":"sl","since":%d}' % (2 ** 46), "-r")
    assert hosting.sync() and hosting.node.hosts("dev")
    with caplog.at_level(logging.ERROR, logger="sig.mqtt"):
        mosquitto_pub(mosquitto.port, prefix + "/node/early", '{"online":true,"session":"se","proto":4}', "-r")
        mosquitto_pub(mosquitto.port, prefix + "/node/early/sender/dev",
                      '{"events":["changed"],"requests":null,"session":"se","since":1}', "-r")
        assert wait_until(lambda: not hosting.node.hosts("dev"), 5.0)
    assert any("whose claim came first" in record.getMessage() for record in caplog.records)
    births = retained_lines(mosquitto.port, prefix + "/node/+/sender/dev")
    assert not any("/node/%s/" % hosting.client_id in line for line in births), births
    dev.getSignal("changed").trigger(2)  # published no more
    dev.getSignal("changed").trigger(3)
    assert [call[3] for call in rec.settle(0.3)] == [1]
