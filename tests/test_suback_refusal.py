"""A subscription the broker refuses is an error the user sees, never a silent listener.

A private Mosquitto whose dynamic-security plugin denies subscribing to one sender's
events (Mosquitto 2.0's acl_file never refuses a SUBSCRIBE: it filters at delivery,
so the plugin is what makes the SUBACK say no): on MQTT 5 the SUBACK
says 0x87 (not authorized), on 3.1.1 0x80; ``addRemoteListener`` raises a
:class:`sig.SigError` (an access error naming the filter), a log line says so, and the
listener is not left registered. Other listeners of the same node work.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient, SubscriptionRefusedError
from sig_mqtt._subacks import Subacks

DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def _denying_broker(factory: Any, directory: Path, denied: str) -> Any:
    """A Mosquitto that lets anyone do anything but subscribe to ``denied`` (a filter)."""
    if not os.path.exists(DYNSEC):
        pytest.skip("Mosquitto's dynamic security plugin is not installed (%s)" % DYNSEC)
    config = directory / "dynsec.json"
    config.write_text(json.dumps({
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True, "subscribe": True,
                             "unsubscribe": True},
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "limited"}], "clients": []}],
        "roles": [{"rolename": "limited", "acls": [
            {"acltype": "subscribePattern", "topic": denied, "priority": 0, "allow": False}]}],
        "anonymousGroup": "anonymous",
    }))
    return factory(extra=["plugin %s" % DYNSEC, "plugin_opt_config_file %s" % config])


def _node(carriers: list[Any], port: int, prefix: str, protocol: int) -> sig.ClientRouter:
    carrier = CarrierMQTTClient(prefix=prefix, protocol=protocol)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port), carrier.last_error
    return router


@pytest.mark.parametrize("protocol", [5, 4])
def test_refused_listener_raises_and_is_not_registered(mosquitto_factory: Any, carriers: list[Any], protocol: int,
                                                      caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    prefix = "r%s/sig" % uuid.uuid4().hex[:6]
    broker = _denying_broker(mosquitto_factory, tmp_path, "%s/event/secret/#" % prefix)
    listening = _node(carriers, broker.port, prefix, protocol)
    sending = _node(carriers, broker.port, prefix, protocol)
    rec = Recorder()
    with caplog.at_level(logging.WARNING, logger="sig.mqtt"), pytest.raises(sig.SigError) as info:
        listening.addRemoteListener(rec.listener("secret"), "secret", "x")
    assert isinstance(info.value, sig.AccessDeniedError)
    text = str(info.value)
    assert "refused the subscription to %s/event/secret/x" % prefix in text
    assert ("Not authorized" in text) if protocol == 5 else ("Unspecified error" in text or "128" in text)
    assert any("not registered" in record.getMessage() for record in caplog.records)
    network = listening.carrier.network
    objsender = network.senders.get("secret")
    objevent = objsender.events.get("x") if objsender is not None else None
    assert objevent is None or not objevent.listeners  # taken back
    # the node still works: another listener hears, the refused one hears nothing
    listening.addRemoteListener(rec.listener("open"), "open", "x")
    sending.addRemoteSender("open", ["x"]).getSignal("x").trigger(1)
    sending.addRemoteSender("secret", ["x"]).getSignal("x").trigger(2)
    assert rec.wait_for(1) == [("open", "open", "x", 1)]
    assert not wait_until(lambda: len(rec.calls) > 1, 0.3)


def test_subacks_refusals_between_marks_and_downgrades_once() -> None:
    subacks = Subacks()
    before = subacks.mark()
    subacks.sent(1, ["a/#"], 1)
    subacks.sent(2, ["b/#", "c/#"], 2)
    assert subacks.acked(1, [0x87]) == [("a/#", "135")]
    assert subacks.acked(2, [1, 2]) == []
    after = subacks.mark()
    assert subacks.refusals(before, after) == [("a/#", "135")]
    assert subacks.refusals(after, subacks.mark()) == []
    assert subacks.take_downgrades() == [("b/#", 2, 1)]
    subacks.sent(3, ["b/#"], 2)
    subacks.acked(3, [1])
    assert subacks.take_downgrades() == []  # logged once
    subacks.reset()
    assert subacks.refusals(before, subacks.mark()) == []  # a new connection: the old refusals are gone
    assert SubscriptionRefusedError([("a/#", "135")]).refused == [("a/#", "135")]


def test_retry_plan_doubles_per_filter_and_starts_over_on_a_new_connection() -> None:
    from sig_mqtt._resubscribe import RetryPlan

    plan = RetryPlan(first=1.0, most=5.0)
    assert [plan.refused(7, ["a"]) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert plan.refused(7, ["b"]) == 1.0
    assert plan.current(7) and not plan.current(6)
    assert plan.refused(8, ["a"]) == 1.0  # a new connection
    assert not plan.current(7)


def test_a_qos_granted_below_the_one_asked_caps_the_qos_of_the_link() -> None:
    subacks = Subacks()
    subacks.sent(1, ["a/#", "b/#"], 2)
    subacks.acked(1, [2, 1])
    assert subacks.max_qos == 1
    subacks.sent(2, ["c/#"], 1)
    subacks.acked(2, [1])
    assert subacks.max_qos == 1
    subacks.reset()
    assert subacks.max_qos == 1  # what the broker grants does not change with a new connection
