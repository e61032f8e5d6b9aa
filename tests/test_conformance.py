"""``sig conformance``: the rules judged on recorded messages (no broker), then the whole command
against real nodes (sig over MQTT 5 and 3.1.1 on Mosquitto and amqtt, sig-bridge, the reference
devices of examples/devices/) and against devices broken on purpose, one fault each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mqttutil import Mosquitto, free_port, mosquitto_pub
from netutil import wait_until
from paho.mqtt.enums import CallbackAPIVersion

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig_apps.cli import main as sig_main
from sig_apps.conformance import FAIL, PASS, RULES, SKIP, Evidence, Message, Sent, as_text, evaluate
from sig_mqtt import CarrierMQTTClient

ROOT = Path(__file__).parent.parent

# -- the rules alone -----------------------------------------------------------------------------

STATE = {"online": True, "session": "s", "proto": 4, "ts": 1000, "heartbeat": 1, "sig": "1.0"}
BIRTH = {"events": ["#x", "a/b"], "requests": ["get"], "session": "s"}


def dump(value: Any) -> bytes:
    return json.dumps(value).encode()


def recorded(**changes: Any) -> Evidence:
    """What a conforming node gives the probe (MQTT 3.1.1 probe); ``changes`` replace parts of it."""
    parts: dict[str, Any] = {
        "state": dump(STATE), "state_retain": True, "birth": dump(BIRTH), "birth_retain": True,
        "event_topic": "p/event/dev/%23x", "event": b"1", "event_retain": False, "reply_id": "c1",
        "heartbeat_state": dump(dict(STATE, ts=2000)), "will": dump({"online": False, "session": "s"}),
        "will_retain": True,
    }
    parts.update(changes)
    ev = Evidence("p", node="n1", reply_topic="p/reply/c")
    add = ev.add
    add(Message("p/node/n1", parts["state"], parts["state_retain"], 0.0))
    add(Message("p/node/n1/sender/dev", parts["birth"], parts["birth_retain"], 0.01))
    add(Message(parts["event_topic"], parts["event"], parts["event_retain"], 0.1))
    ev.rebirth = (1.0, 2.0)
    add(Message("p/node/n1", parts["state"], False, 1.1))
    add(Message("p/node/n1/sender/dev", parts["birth"], False, 1.2))
    ev.requests = [Sent("envelope", "p/request/dev/get", "c1", 2.0), Sent("unknown", "p/request/dev/zz", "c2", 2.0)]
    ev.skips["request-v5"] = "the node speaks MQTT 3.1.1"
    reply = {"status": 0, "response": 1} if parts["reply_id"] is None else {"id": parts["reply_id"], "status": 0,
                                                                              "response": 1}
    add(Message("p/reply/c", dump(reply), False, 2.1))
    add(Message("p/reply/c", dump({"id": "c2", "status": -1, "exception": "no method zz"}), False, 2.2))
    ev.requests_until = 3.0
    ev.heartbeat = (3.0, 4.5)
    if parts["heartbeat_state"] is not None:
        add(Message("p/node/n1", parts["heartbeat_state"], False, 3.9))
    ev.will = (5.0, 6.0)
    if parts["will"] is not None:
        add(Message("p/node/n1", parts["will"], parts["will_retain"], 5.1))
    return ev


def statuses(evidence: Evidence, profile: str = "full") -> dict[str, str]:
    return {result.rule: result.status for result in evaluate(evidence, profile)}


def test_a_conforming_record_passes_every_rule() -> None:
    results = evaluate(recorded(), "full")
    assert [r.rule for r in results] == [rule.id for rule in RULES]
    assert {r.rule: r.status for r in results} == dict.fromkeys([rule.id for rule in RULES], PASS) | {
        "request-v5": SKIP}
    assert all(r.required for r in results)
    assert [r.required for r in evaluate(recorded(), "minimal")] == [rule.profile == "minimal" for rule in RULES]


@pytest.mark.parametrize("changes, rule", [
    ({"state": b'{"online": true}'}, "node-state"),
    ({"state": dump(dict(STATE, proto="5"))}, "node-state"),
    ({"state_retain": False}, "node-state"),
    ({"birth": b'{"events": ['}, "birth"),
    ({"birth": dump(dict(BIRTH, events=[True]))}, "birth"),
    ({"birth": dump(dict(BIRTH, session="old"))}, "birth"),
    ({"birth": dump(dict(BIRTH, retained=["nope"]))}, "birth"),
    ({"birth_retain": False}, "birth"),
    ({"event_topic": "p/event/dev/a%2fb"}, "escaping"),
    ({"event_topic": "p/event/dev/a/b"}, "escaping"),
    ({"event_topic": "p/event/dev/%23%78"}, "escaping"),
    ({"event_topic": "p/event/dev/x"}, "event"),
    ({"event": b"not json"}, "event"),
    ({"event_retain": True}, "event"),
    ({"reply_id": None}, "request-envelope"),
    ({"reply_id": "other"}, "request-envelope"),
    ({"heartbeat_state": None}, "heartbeat"),
    ({"heartbeat_state": dump(dict(STATE, ts=10))}, "heartbeat"),
    ({"will": None}, "will"),
    ({"will_retain": False}, "will"),
    ({"will": dump({"online": False, "session": "another"})}, "will"),
])
def test_each_fault_fails_its_rule_and_only_it(changes: dict[str, Any], rule: str) -> None:
    failed = [name for name, status in statuses(recorded(**changes)).items() if status == FAIL]
    assert failed == [rule]


def test_retained_event_passes_when_its_birth_lists_it_and_an_undeclared_one_fails() -> None:
    assert statuses(recorded(event_retain=True, birth=dump(dict(BIRTH, retained=["#x"]))))["event"] == PASS
    assert statuses(recorded(event_topic="p/event/dev/%23y"))["event"] == FAIL


def test_with_retain_as_published_a_live_copy_without_retain_fails() -> None:
    evidence = recorded()
    assert statuses(evidence)["birth"] == PASS  # MQTT 3.1.1 probe: live copies never say RETAIN
    evidence.retain_as_published = True
    assert statuses(evidence)["birth"] == FAIL


# -- the command against real nodes -------------------------------------------------------------


def conformance(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``sig conformance ... --json`` in this process; return its exit status and report."""
    capsys.readouterr()
    code = sig_main(["conformance", "--mqtt", url, "--json", "--timeout", "3", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {result["rule"]: result["status"] for result in report["results"]}


@pytest.fixture
def made() -> Iterator[list[Any]]:
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing()


def sig_node(port: int, prefix: str, made: list[Any], **settings: Any) -> sig.ClientRouter:
    """A sig node hosting ``lamp/1`` (events ``#power`` and ``a/b``, request ``get``), triggering every 0.1 s."""
    carrier = CarrierMQTTClient(prefix=prefix, heartbeat=1.0, reconnect_max=0.5, **settings)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port)
    made.append(carrier.disconnect)
    lamp = router.addRemoteSender("lamp/1", ["#power", "a/b"], requests={"get": lambda params: 42})
    made.append(ticker(lambda: lamp.getSignal("#power").trigger({"w": 3})))
    return router


def ticker(action: Callable[[], None], every: float = 0.1) -> Callable[[], None]:
    """Run ``action`` every ``every`` s in a thread; return its stop function."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            action()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(2)

    return halt


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", [5, 4])
def test_a_sig_node_conforms_on_mosquitto(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str],
                                          made: list[Any], protocol: int) -> None:
    sig_node(mosquitto.port, "c1", made, client_id="node-%d" % protocol, protocol=protocol)
    code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c1" % mosquitto.port, "--node", "node-%d" % protocol,
                               "--profile", "full")
    assert code == 0 and report["passed"], report
    assert verdicts(report) == dict.fromkeys([rule.id for rule in RULES], PASS) | (
        {} if protocol == 5 else {"request-v5": SKIP})
    # and by its sender, in the minimal profile, beside what a dead node left behind
    mosquitto_pub(mosquitto.port, "c1/node/dead/sender/lamp%2F1", '{"events":[],"requests":null,"session":"x"}',
                  "-r")
    mosquitto_pub(mosquitto.port, "c1/node/dead", '{"online":false,"session":"x"}', "-r")
    code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c1" % mosquitto.port, "--sender", "lamp/1")
    assert code == 0 and verdicts(report)["will"] == PASS and verdicts(report)["request-envelope"] == SKIP
    assert report["results"][0]["evidence"][0]["topic"] == "c1/node/node-%d" % protocol


@pytest.mark.timeout(60)
def test_a_sig_node_conforms_on_amqtt(embedded_broker: Any, capsys: pytest.CaptureFixture[str],
                                      made: list[Any]) -> None:
    sig_node(embedded_broker.port, "c2", made, client_id="node-a")
    code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c2" % embedded_broker.port, "--node", "node-a",
                               "--profile", "full")
    assert code == 0, report
    result = {r["rule"]: r for r in report["results"]}
    assert result["will"]["status"] == SKIP and "session takeover" in result["will"]["detail"]
    assert {r: s for r, s in verdicts(report).items() if s != PASS} == {"will": SKIP, "request-v5": SKIP}


@pytest.mark.timeout(60)
def test_a_sig_node_retaining_an_event_says_so_in_its_birth(mosquitto: Mosquitto,
                                                            capsys: pytest.CaptureFixture[str],
                                                            made: list[Any]) -> None:
    sig_node(mosquitto.port, "c3", made, client_id="node-r", retain={"#power"})
    code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c3" % mosquitto.port, "--node", "node-r")
    assert code == 0 and verdicts(report)["event"] == PASS, report
    birth = next(e for r in report["results"] if r["rule"] == "birth" for e in r["evidence"])
    assert json.loads(birth["payload"])["retained"] == ["#power"]


@pytest.mark.timeout(90)
def test_sig_bridge_conforms(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str], made: list[Any],
                             tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("[bridge]\nheartbeat = 1\n")
    tcp_port = free_port()
    log = open(tmp_path / "bridge.log", "w")  # noqa: SIM115 (closed by made)
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port,
                             "--prefix", "c4", "--node-id", "bridge-1", "--listen", "127.0.0.1:%d" % tcp_port,
                             "--config", str(config)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    made.append(log.close)
    made.append(lambda: (proc.terminate(), proc.wait(10)))
    assert wait_until(lambda: "online" in (tmp_path / "bridge.log").read_text() or proc.poll() is not None, 15)
    carrier = CarrierTCPClient()
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", tcp_port, auto_reconnect=True)
    made.append(carrier.disconnect)
    thermo = router.addRemoteSender("thermo", ["changed"], requests={"read": lambda params: 21.5})
    made.append(ticker(lambda: thermo.getSignal("changed").trigger(21.5)))
    code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c4" % mosquitto.port, "--node", "bridge-1",
                               "--profile", "full")
    assert code == 0, report
    assert verdicts(report) == dict.fromkeys([rule.id for rule in RULES], PASS)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("device", ["shell_device.sh", "upython_device.py"])
def test_the_reference_devices_conform(mosquitto: Mosquitto, made: list[Any], device: str) -> None:
    path = ROOT / "examples" / "devices" / device
    argv = ["127.0.0.1", str(mosquitto.port), "c5", "dev-1"]
    if device.endswith(".sh"):
        proc = subprocess.Popen(["sh", str(path), *argv], env=dict(os.environ, HEARTBEAT="1", EVENT_EVERY="0.2"),
                                stdout=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen([sys.executable, str(path), *argv, "1"], stdout=subprocess.DEVNULL)
    made.append(lambda: (proc.terminate(), proc.wait(10)))
    # the real command, as CI would run it
    done = subprocess.run([sys.executable, "-m", "sig", "conformance", "--mqtt", "mqtt://127.0.0.1:%d/c5" %
                           mosquitto.port, "--node", "dev-1", "--profile", "full", "--json", "--timeout", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=dict(os.environ,
                                                                                        PYTHONPATH=str(ROOT)))
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert verdicts(report) == dict.fromkeys([rule.id for rule in RULES], PASS) | {"request-v5": SKIP}
    assert "rebirth" in done.stderr and "Will" in done.stderr  # it says what it publishes


# -- devices broken on purpose ------------------------------------------------------------------


class Device:
    """A paho device (MQTT 3.1.1) hosting ``dev`` with events ``a/b`` and ``#x`` and request ``get``;
    ``faults`` break one thing each. It reconnects by itself, as a device should."""

    def __init__(self, port: int, prefix: str, nid: str, *, will: bool = True, birth_retain: bool = True,
                 levels: dict[str, str] | None = None, correlation: bool = True, event_retain: bool = False,
                 heartbeat_stops: bool = False, birth: bytes | None = None, minimal: bool = False) -> None:
        self.prefix, self.nid, self.session = prefix, nid, uuid.uuid4().hex
        self.levels = {"a/b": "a%2Fb", "#x": "%23x"} | (levels or {})
        self.birth_retain, self.correlation, self.event_retain = birth_retain, correlation, event_retain
        self.heartbeat_stops = heartbeat_stops
        self.minimal = minimal  # the minimal profile: no requests, no subscriptions at all
        self.birth = birth if birth is not None else dump({"events": ["a/b", "#x"], "requests": None if minimal
                                                          else ["get"], "session": self.session})
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=nid, protocol=paho.MQTTv311)
        self.client.reconnect_delay_set(0.2, 0.5)
        if will:
            self.client.will_set(self.state_topic, self.state(False), 1, True)
        self.client.on_connect = lambda *args: self.announce(subscribe=True)
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.beats = 0
        self.stop_ticks = ticker(self.tick, 0.1)

    @property
    def state_topic(self) -> str:
        return "%s/node/%s" % (self.prefix, self.nid)

    def state(self, online: bool) -> bytes:
        return dump({"online": online, "session": self.session, "proto": 4, "heartbeat": 0.5, "sig": "1.0"})

    def announce(self, subscribe: bool = False) -> None:
        if subscribe and not self.minimal:
            self.client.subscribe([("%s/cmd/rebirth" % self.prefix, 1), ("%s/request/dev/+" % self.prefix, 1)])
        self.client.publish(self.state_topic, self.state(True), 1, True)
        self.client.publish(self.state_topic + "/sender/dev", self.birth, 1, self.birth_retain)

    def tick(self) -> None:
        self.beats += 1
        if self.beats % 5 == 0 and not self.heartbeat_stops:
            self.client.publish(self.state_topic, self.state(True), 1, True)
        for level in self.levels.values():
            self.client.publish("%s/event/dev/%s" % (self.prefix, level), b"1", 0, self.event_retain)

    def on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic.endswith("/cmd/rebirth"):
            self.announce()
            return
        envelope = json.loads(message.payload)
        reply: dict[str, Any] = {"status": 0, "response": 1} if message.topic.endswith("/get") else {
            "status": -1, "exception": "no such method"}
        if self.correlation:
            reply["id"] = envelope["id"]
        self.client.publish(envelope["reply_to"], dump(reply), 1, False)

    def close(self) -> None:
        self.stop_ticks()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("faults, rule", [
    ({}, None),
    ({"will": False}, "will"),
    ({"birth_retain": False}, "birth"),
    ({"levels": {"a/b": "a/b"}}, "escaping"),
    ({"levels": {"a/b": "a%2fb"}}, "escaping"),
    ({"levels": {"#x": "%23%78"}}, "escaping"),
    ({"correlation": False}, "request-envelope request-status"),  # both replies lack their id
    ({"event_retain": True}, "event"),
    ({"heartbeat_stops": True}, "heartbeat"),
    ({"birth": b'{"events": ["a/b", "#x"], "requests": ["get"]'}, "birth"),
], ids=["conforming", "no-will", "birth-not-retained", "a/b-two-levels", "a/b-lowercase-hex", "#x-over-escaped",
        "reply-without-correlation", "event-retained", "heartbeat-stops", "malformed-json-birth"])
def test_a_broken_device_fails_naming_the_rule(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str],
                                               made: list[Any], faults: dict[str, Any], rule: str | None) -> None:
    nid = "broken-%s" % uuid.uuid4().hex[:6]
    device = Device(mosquitto.port, "c6", nid, **faults)
    made.append(device.close)
    assert wait_until(lambda: device.beats > 2)  # it has published events before the check
    code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c6" % mosquitto.port, "--node", nid, "--profile",
                               "full")
    failed = [name for name, status in verdicts(report).items() if status == FAIL]
    assert failed == ([] if rule is None else rule.split()), report
    assert code == (0 if rule is None else 1) and report["passed"] is (rule is None)
    assert all(r["detail"] for r in report["results"])
    if rule is not None and rule.startswith("request"):  # not rules of the minimal profile
        code, report = conformance(capsys, "mqtt://127.0.0.1:%d/c6" % mosquitto.port, "--node", nid)
        assert code == 0 and report["profile"] == "minimal"


def test_misuse_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sig_main(["conformance", "--mqtt", "mqtt://127.0.0.1:1"])  # neither --node nor --sender
    assert exit_info.value.code == 2
    assert sig_main(["conformance", "--mqtt", "http://x", "--node", "n"]) == 2
    assert "bad --mqtt" in capsys.readouterr().err
    port = free_port()  # nothing listens there
    assert sig_main(["conformance", "--mqtt", "mqtt://127.0.0.1:%d" % port, "--node", "n", "--timeout", "1"]) == 1
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_a_minimal_device_passes_the_minimal_profile_only(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str],
                                                          made: list[Any]) -> None:
    device = Device(mosquitto.port, "c7", "tiny-1", minimal=True)
    made.append(device.close)
    assert wait_until(lambda: device.beats > 2)
    url = "mqtt://127.0.0.1:%d/c7" % mosquitto.port
    code, report = conformance(capsys, url, "--node", "tiny-1")
    assert code == 0 and report["passed"], report
    result = {r["rule"]: r for r in report["results"]}
    assert result["rebirth"]["status"] == FAIL and not result["rebirth"]["required"]  # a SHOULD here
    assert {result[r]["status"] for r in ("request-envelope", "request-v5", "request-status")} == {SKIP}
    code, report = conformance(capsys, url, "--node", "tiny-1", "--profile", "full")
    assert code == 1 and [r for r, status in verdicts(report).items() if status == FAIL] == ["rebirth"]
    assert verdicts(report)["request-envelope"] == SKIP  # it declares no requests


def test_the_text_report_names_each_rule_and_the_verdict() -> None:
    header = {"convention": "1.0", "target": "node n1", "broker": "mqtt://b", "profile": "full"}
    lines = as_text(evaluate(recorded(heartbeat_state=None), "full"), header).splitlines()
    assert lines[0] == "sig conformance (convention 1.0): node n1 on mqtt://b, profile full"
    assert lines[1].startswith("PASS node-state ") and '     p/node/n1 {"online": true' in lines[2]
    assert any(line.startswith("FAIL heartbeat ") and "no online node state" in line for line in lines)
    assert lines[-1] == "full profile: FAIL (heartbeat)"
