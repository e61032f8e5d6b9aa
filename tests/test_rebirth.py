"""Presence without retained births: a node that starts following presence asks for a
rebirth, and the other nodes answer with jitter (private Mosquitto).

To stand for a broker that never hands retained births to wildcard subscriptions
(RabbitMQ's MQTT plugin), the test wipes every retained message under ``P/node/``
after the sender's node published them, and checks that none is left.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from mqttutil import mosquitto_pub, retained_lines
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient
from sig_mqtt._rebirth import RebirthPlan


def _node(carriers: list[Any], port: int, prefix: str, **settings: Any) -> sig.ClientRouter:
    carrier = CarrierMQTTClient(prefix=prefix, **settings)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port), carrier.last_error
    return router


def test_late_joiner_learns_of_senders_by_rebirth_when_births_are_not_retained(mosquitto: Any,
                                                                               carriers: list[Any]) -> None:
    prefix = "b%s/sig" % uuid.uuid4().hex[:6]
    hosting = _node(carriers, mosquitto.port, prefix, rebirth_jitter=0.5)
    thermo = hosting.addRemoteSender("thermo", ["changed"], requests={"read": lambda params: 21})
    assert hosting.carrier.sync()
    kept = retained_lines(mosquitto.port, prefix + "/node/#")
    assert any("/sender/" in line for line in kept), kept
    for line in kept:
        mosquitto_pub(mosquitto.port, line.split(" ", 1)[0], "", "-r")
    assert retained_lines(mosquitto.port, prefix + "/node/#") == []
    answers = hosting.carrier.node.rebirths.plan.answers

    late = _node(carriers, mosquitto.port, prefix)
    started = time.monotonic()
    assert wait_until(lambda: late.carrier.isSenderConnected("thermo"), 5.0)
    learned = time.monotonic() - started
    assert hosting.carrier.node.rebirths.plan.answers > answers
    assert late.carrier.node.rebirths.requests >= 1
    rec = Recorder()
    late.addRemoteListener(rec.listener(), "thermo", "changed")
    thermo.getSignal("changed").trigger(5)
    assert rec.wait_for(1) == [("", "thermo", "changed", 5)]
    assert late.remoteRequest("thermo", "read", None) == 21
    print("\nlate joiner learned of the sender by rebirth %.2f s after it started to follow it "
          "(jitter up to 0.5 s)" % learned)


def test_rebirth_plan_jitters_and_one_answer_serves_the_requests_that_wait_for_it() -> None:
    plan = RebirthPlan(jitter=1.0)
    assert plan.asked(10.0, 0.4) == 0.4
    assert plan.asked(10.2, 0.9) is None  # pending until 10.4: the same answer serves it
    plan.answered()
    assert plan.answers == 1
    assert plan.asked(10.5, 0.0) == 0.0
    assert plan.asked(10.6, 2.0) == 1.0  # rand clamped: at most the jitter
    assert RebirthPlan(jitter=-1).asked(0.0, 0.5) == 0.0


def test_a_node_lets_its_own_request_pass_unanswered() -> None:
    from sig_mqtt._rebirth import Rebirths

    sent: list[str] = []
    jobs: list[Any] = []
    online = [True]
    rebirths = Rebirths(lambda: online[0] and not sent.append("ask"), lambda: sent.append("answer"), jobs.append,
                        jitter=0.0)
    rebirths.request()
    rebirths.asked()  # ours, back from the broker
    assert rebirths.plan.pending_until is None and sent == ["ask"]
    rebirths.asked()  # another node's
    assert wait_until(lambda: bool(jobs), 2.0)
    jobs.pop()()
    assert sent == ["ask", "answer"] and rebirths.plan.answers == 1
    online[0] = False
    rebirths.request()  # offline: nothing sent, nothing to skip
    online[0] = True
    rebirths.request(connected=True)
    assert rebirths.requests == 2
    rebirths.asked()
    rebirths.asked()
    assert wait_until(lambda: bool(jobs), 2.0)


def test_births_that_answer_a_rebirth_reach_a_late_listener_as_state_not_as_connect(
        mosquitto: Any, carriers: list[Any]) -> None:
    """What a late joiner on RabbitMQ sees (no retained birth, only the answers to its rebirth
    request), published by hand: a node's state, then a birth with ``"rebirth": true``: the sender
    is connected, and no ``#connect`` fires (pysig tells a late listener nothing); a birth without
    the flag is a sender that comes online now: ``#connect``."""
    prefix = "f%s/sig" % uuid.uuid4().hex[:6]
    late = _node(carriers, mosquitto.port, prefix)
    rec = Recorder()
    late.addRemoteListener(rec.listener(), None, None)
    mosquitto_pub(mosquitto.port, prefix + "/node/dev9", '{"online": true, "session": "s9", "proto": 4}')
    mosquitto_pub(mosquitto.port, prefix + "/node/dev9/sender/thermo",
                  '{"events": ["changed"], "requests": null, "session": "s9", "rebirth": true}')
    mosquitto_pub(mosquitto.port, prefix + "/node/dev9/sender/hygro",
                  '{"events": ["h"], "requests": null, "session": "s9"}')
    calls = rec.wait_for(1)
    assert wait_until(lambda: late.carrier.isSenderConnected("thermo"))
    assert calls[0][1:] == ("hygro", "#connect", {"events": ["h"], "requests": None})
    assert late.carrier.sync()  # a broker round trip: anything about thermo would be in by now
    assert [call[1] for call in rec.calls] == ["hygro"], rec.calls
