"""Home Assistant discovery against a real Home Assistant Core (through its REST API).

One Home Assistant and its Mosquitto serve the whole module (tests/hautil.py); each test has its
own senders and bridge node id. Values are published again until Home Assistant shows them: it
subscribes an entity's state topic ~0.1 s after the entity appears (shared HOMEASSISTANT.md).
"""


from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bridgeutil import ROOT, BridgeProc
from hautil import HomeAssistant
from mqttutil import Mosquitto, mosquitto_pub
from netutil import wait_until

from sig_mqtt import Topics
from sig_mqtt.hass import Discovery

pytestmark = [pytest.mark.homeassistant, pytest.mark.timeout(300)]

UNAVAILABLE = "unavailable"


def available(state: str) -> bool:
    return state != UNAVAILABLE


def device_entities(hass: HomeAssistant, entity_id: str) -> list[str]:
    """Every entity of the device that ``entity_id`` belongs to (HA's device registry, by template)."""
    text = hass.template("{{ device_entities(device_id('%s')) | tojson }}" % entity_id)
    return sorted(json.loads(text))


def via_device_name(hass: HomeAssistant, entity_id: str) -> str:
    return hass.template("{{ device_attr(device_attr(device_id('%s'), 'via_device_id'), 'name') }}" % entity_id)


def bridge_args(mosquitto: Mosquitto, node_id: str, config: Path | None = None) -> list[str]:
    args = ["--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--node-id", node_id, "--log-level", "debug"]
    if config is not None:
        args += ["--config", str(config)]
    else:
        args.append("--ha-discovery")
    return args


class Thermo:
    """A pysig TCP client's sender ``name``: temperature (numbers), door (bools), #notify, a reset request."""

    def __init__(self, bridge: BridgeProc, name: str) -> None:
        self.name = name
        self.pressed: list[Any] = []
        self.press = threading.Event()
        self.router = bridge.client()
        self.sender = self.router.addRemoteSender(
            name, ["temperature", "door", "#notify"], requests={"reset": self._reset})

    def _reset(self, params: Any) -> str:
        self.pressed.append(params)
        self.press.set()
        return "reset done"

    def fire(self, event: str, data: Any) -> None:
        self.sender.getSignal(event).trigger(data)

    def kill(self) -> None:
        self.router.carrier.disconnect()  # type: ignore[attr-defined]


@pytest.fixture
def thermos() -> Iterator[list[Thermo]]:
    made: list[Thermo] = []
    yield made
    for thermo in made:
        thermo.kill()


def test_tcp_client_sender_through_the_bridge(home_assistant: HomeAssistant, ha_mosquitto: Mosquitto,
                                              bridges: Any, thermos: list[Thermo], tmp_path: Path) -> None:
    hass = home_assistant
    started = time.monotonic()
    bridge = bridges(*bridge_args(ha_mosquitto, "bridge-tcp"))
    thermo = Thermo(bridge, "thermo")
    thermos.append(thermo)

    # the request is a button at once; the events appear with their first values
    hass.wait(lambda: hass.state("button.thermo_reset"), 30, "button.thermo_reset")
    state = hass.wait_state("sensor.thermo_temperature", "21.5", nudge=lambda: thermo.fire("temperature", 21.5))
    assert state["attributes"]["state_class"] == "measurement"
    hass.wait_state("binary_sensor.thermo_door", "on", nudge=lambda: thermo.fire("door", True))
    event = hass.wait_state("event.thermo_notify", lambda s: s not in (UNAVAILABLE, "unknown"),
                            nudge=lambda: thermo.fire("#notify", "hello"))
    assert event["attributes"]["event_type"] == "notify" and event["attributes"]["value"] == "hello"
    assert event["attributes"]["event_types"] == ["notify"]
    hass.wait_state("binary_sensor.thermo_door", "off", nudge=lambda: thermo.fire("door", False))
    entities = device_entities(hass, "sensor.thermo_temperature")
    assert entities == ["binary_sensor.thermo_door", "button.thermo_reset", "event.thermo_notify",
                        "sensor.thermo_temperature"]
    assert via_device_name(hass, "sensor.thermo_temperature") == "sig node bridge-tcp"
    assert "[HA] announced sender 'thermo'" in bridge.text()
    print("\nTCP sender: entities %s in %.1f s" % (entities, time.monotonic() - started))

    # a press in Home Assistant runs the pysig client's handler; the bridge logs the reply
    hass.service("button", "press", entity_id="button.thermo_reset")
    assert thermo.press.wait(10), bridge.text()[-3000:]
    assert thermo.pressed == [None]
    assert wait_until(lambda: "replied 'reset done'" in bridge.text(), 10), bridge.text()[-2000:]

    # the client's connection dies: unavailable, still there; back with a new connection
    thermo.kill()
    for entity in entities:
        hass.wait_state(entity, UNAVAILABLE)
    thermo = Thermo(bridge, "thermo")
    thermos.append(thermo)
    for entity in entities:
        hass.wait_state(entity, available)

    # the bridge restarts: the same entities, no duplicates
    bridge.stop()
    hass.wait_state("sensor.thermo_temperature", UNAVAILABLE)
    bridge = bridges(*bridge_args(ha_mosquitto, "bridge-tcp"))
    thermo = Thermo(bridge, "thermo")
    thermos.append(thermo)
    hass.wait_state("sensor.thermo_temperature", "19.0", nudge=lambda: thermo.fire("temperature", 19.0))
    for entity in entities:
        hass.wait_state(entity, available)
    assert device_entities(hass, "sensor.thermo_temperature") == entities
    names = [s["entity_id"] for s in hass.states() if ".thermo_" in s["entity_id"]]
    assert sorted(names) == entities, names

    # removing the sender removes its entities
    thermo.router.removeRemoteSender("thermo")
    for entity in entities:
        hass.wait(lambda entity=entity: hass.state(entity) is None, 30, "%s removed" % entity)
    assert wait_until(lambda: "[HA] sender 'thermo' removed" in bridge.text(), 5)


class NodeProc:
    """tests/hass_node_child.py: an MQTT-only node (``CarrierMQTTClient(ha_discovery=True)``) in a process."""

    def __init__(self, port: int, client_id: str, sender: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("hass_node_child.py")), str(port), client_id, sender],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        threading.Thread(target=self._read, daemon=True).start()
        assert wait_until(lambda: "ready" in self.lines, 15), self.lines

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def test_mqtt_only_node(home_assistant: HomeAssistant, ha_mosquitto: Mosquitto) -> None:
    hass = home_assistant
    node = NodeProc(ha_mosquitto.port, "kitchen-node", "oven")
    try:
        hass.wait(lambda: hass.state("button.oven_off"), 30, "button.oven_off")
        hass.wait_state("sensor.oven_heat", "180", nudge=lambda: node.send("fire heat 180"))
        state = hass.wait_state("sensor.oven_state", lambda s: s.startswith("{"),
                                nudge=lambda: node.send('fire state {"mode": "bake", "door": "closed"}'))
        assert state["attributes"]["mode"] == "bake"  # an object: its fields are attributes
        assert via_device_name(hass, "sensor.oven_heat") == "sig node kitchen-node"
        hass.service("button", "press", entity_id="button.oven_off")
        assert wait_until(lambda: "pressed null" in node.lines, 10), node.lines
        # the node dies (SIGKILL: the broker sends its Will): unavailable, still there
        node.kill()
        for entity in ("sensor.oven_heat", "sensor.oven_state", "button.oven_off"):
            hass.wait_state(entity, UNAVAILABLE)
        node = NodeProc(ha_mosquitto.port, "kitchen-node", "oven")
        hass.wait_state("sensor.oven_heat", available)
        hass.wait_state("sensor.oven_heat", "181", nudge=lambda: node.send("fire heat 181"))
        node.send("remove")
        for entity in ("sensor.oven_heat", "sensor.oven_state", "button.oven_off"):
            hass.wait(lambda entity=entity: hass.state(entity) is None, 30, "%s removed" % entity)
    finally:
        node.kill()


def online_state() -> str:
    """A device's node state: online, now (a retained state older than 3 heartbeats is taken as stale)."""
    return json.dumps({"online": True, "session": "s1", "ts": int(time.time() * 1000)})


def test_plain_device_following_the_topic_tree(home_assistant: HomeAssistant, ha_mosquitto: Mosquitto,
                                               bridges: Any) -> None:
    hass = home_assistant
    port = ha_mosquitto.port
    bridge = bridges(*bridge_args(ha_mosquitto, "bridge-plain"))
    # what a small device publishes itself: its node state, its sender's birth, its events
    mosquitto_pub(port, "sig/node/esp-1", online_state(), "-r")
    mosquitto_pub(port, "sig/node/esp-1/sender/porch", json.dumps({"events": ["lux", "motion"], "requests": None,
                                                                   "session": "s1"}), "-r")
    hass.wait_state("sensor.porch_lux", "340", nudge=lambda: mosquitto_pub(port, "sig/event/porch/lux", "340"))
    hass.wait_state("binary_sensor.porch_motion", "on",
                    nudge=lambda: mosquitto_pub(port, "sig/event/porch/motion", "true"))
    # its Will says offline: unavailable, kept
    mosquitto_pub(port, "sig/node/esp-1", json.dumps({"online": False, "session": "s1"}), "-r")
    hass.wait_state("sensor.porch_lux", UNAVAILABLE)
    hass.wait_state("binary_sensor.porch_motion", UNAVAILABLE)
    mosquitto_pub(port, "sig/node/esp-1", online_state(), "-r")
    hass.wait_state("sensor.porch_lux", available)
    # the bridge restarts: it learns of the device from the retained birth (no #connect)
    bridge.stop()
    bridge = bridges(*bridge_args(ha_mosquitto, "bridge-plain"))
    assert wait_until(lambda: "[HA] announced sender 'porch'" in bridge.text(), 10), bridge.text()
    hass.wait_state("sensor.porch_lux", "350", nudge=lambda: mosquitto_pub(port, "sig/event/porch/lux", "350"))
    # its birth cleared: removed
    mosquitto_pub(port, "sig/node/esp-1/sender/porch", "", "-r")
    for entity in ("sensor.porch_lux", "binary_sensor.porch_motion"):
        hass.wait(lambda entity=entity: hass.state(entity) is None, 30, "%s removed" % entity)
    mosquitto_pub(port, "sig/node/esp-1", "", "-r")


def test_bridge_toml_hints(home_assistant: HomeAssistant, ha_mosquitto: Mosquitto, bridges: Any,
                           thermos: list[Thermo], tmp_path: Path) -> None:
    hass = home_assistant
    config = tmp_path / "bridge.toml"
    config.write_text(textwrap.dedent("""
        [homeassistant]
        discovery = true

        [homeassistant.senders.attic]
        name = "Attic climate"

        [homeassistant.senders.attic.events.temperature]
        device_class = "temperature"
        unit_of_measurement = "°C"
        name = "Air temperature"

        [homeassistant.senders.attic.events."#notify"]
        ignore = true

        [homeassistant.events.door]
        component = "binary_sensor"
        device_class = "door"

        [homeassistant.requests.reset]
        component = "switch"
        """))
    bridge = bridges(*bridge_args(ha_mosquitto, "bridge-hints", config))
    thermo = Thermo(bridge, "attic")
    thermos.append(thermo)
    # hinted events are announced before any value; the switch publishes the request
    hass.wait(lambda: hass.state("binary_sensor.attic_door"), 30, "binary_sensor.attic_door")
    switch = hass.wait(lambda: hass.state("switch.attic_reset"), 30, "switch.attic_reset")
    assert switch is not None
    state = hass.wait_state("sensor.attic_temperature", "22.5", nudge=lambda: thermo.fire("temperature", 22.5))
    assert state["attributes"]["unit_of_measurement"] == "°C"
    assert state["attributes"]["device_class"] == "temperature"
    assert state["attributes"]["friendly_name"] == "Attic climate Air temperature"
    assert hass.state("binary_sensor.attic_door")["attributes"]["device_class"] == "door"  # type: ignore[index]
    thermo.fire("#notify", "ignored")
    hass.service("switch", "turn_on", entity_id="switch.attic_reset")
    assert thermo.press.wait(10)
    assert thermo.pressed == [True]
    assert hass.state("event.attic_notify") is None
    assert sorted(device_entities(hass, "sensor.attic_temperature")) == [
        "binary_sensor.attic_door", "sensor.attic_temperature", "switch.attic_reset"]


def test_home_assistant_restart_gets_every_config_again(home_assistant: HomeAssistant, ha_mosquitto: Mosquitto,
                                                        bridges: Any, thermos: list[Thermo]) -> None:
    hass = home_assistant
    bridge = bridges(*bridge_args(ha_mosquitto, "bridge-restart"))
    thermo = Thermo(bridge, "cellar")
    thermos.append(thermo)
    hass.wait_state("sensor.cellar_temperature", "12.5", nudge=lambda: thermo.fire("temperature", 12.5))
    hass.stop()
    # a broker that forgot the retained configs (no persistence, a restart): only HA's birth
    # (homeassistant/status = online) can bring them back
    for kind, key in (("sensor", "temperature"), ("button", "reset")):
        topic = Discovery(Topics("sig"), "bridge-restart").config_topic(
            kind, "cellar", "request" if kind == "button" else "event", key)
        mosquitto_pub(ha_mosquitto.port, topic, "", "-r")
    started = time.monotonic()
    hass.start()
    hass.wait(lambda: hass.state("sensor.cellar_temperature"), 30, "sensor.cellar_temperature after the restart")
    hass.wait(lambda: hass.state("button.cellar_reset"), 30, "button.cellar_reset after the restart")
    hass.wait_state("sensor.cellar_temperature", "13.0", nudge=lambda: thermo.fire("temperature", 13.0))
    print("\nHA restart: entities back %.1f s after launch" % (time.monotonic() - started))
    assert "Home Assistant online: published" in bridge.text()


def test_a_zigbee2mqtt_device_through_inbound_rules(home_assistant: HomeAssistant, ha_mosquitto: Mosquitto,
                                                    bridges: Any, tmp_path: Path) -> None:
    """A device mapped by [[inbound]] rules: offline (its availability topic) keeps its entities, unavailable."""
    hass = home_assistant
    port = ha_mosquitto.port
    config = tmp_path / "bridge.toml"
    config.write_text(textwrap.dedent("""
        [homeassistant]
        discovery = true

        [homeassistant.events."#temperature"]
        device_class = "temperature"
        unit_of_measurement = "°C"

        [[inbound]]
        topic = "z2m/+"
        sender = "{1}"
        event = "#temperature"
        field = "temperature"

        [[inbound]]
        topic = "z2m/+/availability"
        sender = "{1}"
        availability = true
        """))
    bridges(*bridge_args(ha_mosquitto, "bridge-z2m", config))
    mosquitto_pub(port, "z2m/hall/availability", "online", "-r")
    state = hass.wait_state("sensor.hall_temperature", "20.5",
                            nudge=lambda: mosquitto_pub(port, "z2m/hall", json.dumps({"temperature": 20.5})))
    assert state["attributes"]["unit_of_measurement"] == "°C"
    mosquitto_pub(port, "z2m/hall/availability", "offline", "-r")
    hass.wait_state("sensor.hall_temperature", UNAVAILABLE)
    mosquitto_pub(port, "z2m/hall/availability", "online", "-r")
    hass.wait_state("sensor.hall_temperature", available)
    mosquitto_pub(port, "z2m/hall/availability", "", "-r")
