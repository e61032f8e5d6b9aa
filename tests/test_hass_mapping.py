"""Home Assistant discovery without a broker: the mapping (sig_mqtt.hass) and the catalog's decisions.

The payloads are also checked against Home Assistant's own MQTT platform schemas, in its venv
(``homeassistant`` marker: skipped only without Python 3.13).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.config import ConfigError, parse_config
from sig_mqtt import Topics
from sig_mqtt._hass_catalog import Catalog
from sig_mqtt.hass import Discovery, Entity, HassSettings, classify, topic_key

HINTS = HassSettings(
    senders={
        "thermo": {"name": "Kitchen thermometer", "events": {"temperature": {
            "device_class": "temperature", "unit_of_measurement": "°C", "name": "Air"}}},
        "hidden": {"ignore": True},
    },
    events={"door": {"component": "binary_sensor", "device_class": "door"}, "rssi": {"ignore": True}},
    requests={"mode": {"component": "select", "options": ["eco", "boost"]},
              "level": {"component": "number", "min": 0, "max": 10, "step": 0.5},
              "power": {"component": "switch"}, "label": {"component": "text"},
              "reset": {"payload": {"hard": True}}},
)


def make(settings: HassSettings | None = None, prefix: str = "sig") -> Discovery:
    return Discovery(Topics(prefix), "bridge-1", settings or HassSettings())


@pytest.mark.parametrize(("value", "platform"), [
    (21.5, "sensor"), (3, "sensor"), (True, "binary_sensor"), (False, "binary_sensor"), ({"a": 1}, "sensor"),
    ("hello", "event"), ([1, 2], "event"), (None, "event"),
])
def test_the_first_value_decides(value: Any, platform: str) -> None:
    assert classify(value) == platform


def test_a_number_is_a_measurement_on_sigs_own_topic() -> None:
    entity = make().event("thermo", "bridge-1", "temperature", "sensor", 21.5)
    payload = entity.payload
    assert payload is not None
    assert entity.topic.startswith("homeassistant/sensor/sig_") and entity.topic.endswith("/event_temperature/config")
    assert payload["state_topic"] == "sig/event/thermo/temperature"
    assert payload["state_class"] == "measurement"
    assert payload["unique_id"] == "sig:sig/thermo/event/temperature"
    assert payload["object_id"] == "thermo_temperature"
    assert payload["device"] == {"identifiers": ["sig:sig/thermo"], "name": "thermo", "manufacturer": "sig",
                                 "model": "sig sender", "via_device": "sig:sig/node/bridge-1"}
    assert [a["topic"] for a in payload["availability"]] == ["sig/node/bridge-1", "sig/node/bridge-1/sender/thermo"]
    assert payload["availability_mode"] == "all"


def test_bools_objects_and_fire_and_forget_events() -> None:
    discovery = make()
    door = discovery.event("thermo", "bridge-1", "door", "binary_sensor", True).payload
    assert door is not None and (door["payload_on"], door["payload_off"]) == ("true", "false")
    assert "state_class" not in door
    state = discovery.event("thermo", "bridge-1", "state", "sensor", {"mode": "bake"}).payload
    assert state is not None and state["json_attributes_topic"] == "sig/event/thermo/state"
    assert "state_class" not in state
    notify = discovery.event("thermo", "bridge-1", "#notify", "event", "hi").payload
    assert notify is not None and notify["event_types"] == ["notify"]
    assert notify["object_id"] == "thermo_notify" and notify["unique_id"] == "sig:sig/thermo/event/%23notify"
    assert "'event_type': \"notify\"" in notify["value_template"]


def test_requests_are_buttons_whose_command_is_a_sig_request() -> None:
    entity = make(HINTS).request("thermo", "bridge-1", "reset")
    assert entity is not None and entity.payload is not None
    assert entity.topic.split("/")[1] == "button"
    payload = entity.payload
    assert payload["command_topic"] == "sig/request/thermo/reset"
    assert json.loads(payload["payload_press"]) == {"hard": True}
    # the template renders sig's 3.1.1 request envelope, its id new per press
    rendered = payload["command_template"].replace("{{ now().timestamp() }}", "1.5").replace(
        "{{ value }}", payload["payload_press"])
    assert json.loads(rendered) == {"id": "ha-1.5", "reply_to": "sig/hass/reply/thermo/reset",
                                    "params": {"hard": True}}


def test_hints_choose_other_request_platforms() -> None:
    discovery = make(HINTS)
    platforms = {m: discovery.request("thermo", "bridge-1", m) for m in ("mode", "level", "power", "label")}
    assert {m: e.topic.split("/")[1] for m, e in platforms.items() if e} == {
        "mode": "select", "level": "number", "power": "switch", "label": "text"}
    select = platforms["mode"].payload  # type: ignore[union-attr]
    assert select is not None and select["options"] == ["eco", "boost"]
    assert "{{ value | tojson }}" in select["command_template"]
    number = platforms["level"].payload  # type: ignore[union-attr]
    assert number is not None and (number["min"], number["max"], number["step"]) == (0, 10, 0.5)
    assert discovery.request("thermo", "bridge-1", None) is None  # a default handler: no entity


def test_event_hints_override_the_first_value() -> None:
    discovery = make(HINTS)
    assert discovery.event_platform("thermo", "door") == "binary_sensor"  # known before any value
    assert discovery.event_platform("thermo", "temperature") is None  # waits for its first value
    assert discovery.event_platform("thermo", "temperature", 3, seen=True) == "sensor"
    assert discovery.event_platform("thermo", "rssi", -70, seen=True) is None  # ignored
    payload = discovery.event("thermo", "bridge-1", "temperature", "sensor", 3).payload
    assert payload is not None
    assert (payload["device_class"], payload["unit_of_measurement"], payload["name"]) == ("temperature", "°C", "Air")
    assert payload["device"]["name"] == "Kitchen thermometer"
    assert HINTS.ignored("hidden") and not HINTS.ignored("thermo")


@pytest.mark.parametrize(("hints", "message"), [
    ({"events": {"t": {"compnent": "sensor"}}}, "unknown hint(s) compnent"),
    ({"events": {"t": {"component": "light"}}}, "component must be one of"),
    ({"requests": {"m": {"component": "select"}}}, "a select needs options"),
    ({"discovery_prefix": "home/#"}, "bad discovery prefix"),
    ({"senders": {"s": {"evnts": {}}}}, "unknown hint(s) evnts"),
])
def test_bad_hints_are_refused(hints: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HassSettings(**hints)


def test_names_that_are_no_topic_levels_get_safe_keys() -> None:
    discovery = make(prefix="site 1/sig")
    keys = {discovery.sender_key(s) for s in ("a b", "a_b", "a/b", 7, "7", "Küche")}
    assert len(keys) == 6
    for key in keys:
        assert key.replace("_", "").isalnum() and key.isascii()
    assert topic_key("plain_name") == "plain_name"
    assert discovery.object_id("Küche", "#temp") == "site_1_sig_k_che_temp"
    assert discovery.parse_config_topic(discovery.config_topic("sensor", 7, "event", "t")) == (
        "sensor", discovery.sender_key(7), discovery.entity_key("event", "t"))
    assert discovery.parse_reply_topic("site 1/sig/hass/reply/!i:7/reset") == (7, "reset")


def test_a_template_in_a_name_stays_text() -> None:
    payload = make().event("x", "bridge-1", "{{ 7*7 }}", "event", "v").payload
    assert payload is not None and "{{ 7*7 }}" not in payload["value_template"]


# -- the catalog ------------------------------------------------------------------------------------


def topics_of(entities: list[Entity]) -> dict[str, str]:
    return {e.topic.split("/")[1] + ":" + e.topic.split("/")[3]: "removed" if e.payload is None else "config"
            for e in entities}


def test_connect_announces_requests_and_hinted_events_then_first_values() -> None:
    catalog = Catalog(make(HINTS))
    first = catalog.connect("thermo", "bridge-1", ["temperature", "door", "rssi"], ["reset"])
    assert topics_of(first) == {"binary_sensor:event_door": "config", "button:request_reset": "config"}
    assert topics_of(catalog.value("thermo", "temperature", 21.5)) == {"sensor:event_temperature": "config"}
    assert catalog.value("thermo", "temperature", 22.0) == []  # decided once
    assert catalog.value("thermo", "rssi", -60) == []  # ignored
    assert catalog.value("thermo", "undeclared", 1) == [] and catalog.value("nobody", "temperature", 1) == []
    assert catalog.announced() == ["thermo"]
    assert len(catalog.rebirth()) == 3


def test_a_lost_connection_keeps_the_entities_a_removal_deletes_them() -> None:
    catalog = Catalog(make())
    catalog.connect("thermo", "bridge-1", ["t"], ["reset"])
    catalog.value("thermo", "t", 1)
    assert catalog.disconnect("thermo", removed=False) == []
    again = catalog.connect("thermo", "bridge-2", ["t"], ["reset"])  # back, through another node
    assert topics_of(again) == {"sensor:event_t": "config", "button:request_reset": "config"}
    assert again[0].payload is not None and again[0].payload["availability"][0]["topic"] == "sig/node/bridge-2"
    removed = catalog.disconnect("thermo", removed=True)
    assert topics_of(removed) == {"sensor:event_t": "removed", "button:request_reset": "removed"}
    assert catalog.announced() == [] and catalog.disconnect("thermo", removed=True) == []


def test_configs_on_the_broker_are_adopted_or_removed_after_a_restart() -> None:
    before = Catalog(make())
    before.connect("thermo", "bridge-1", ["t", "old", "state"], ["reset"])
    kept = {e.topic: e.encode() for e in before.value("thermo", "t", 1) + before.value("thermo", "old", True)
            + before.value("thermo", "state", {"a": 1})}
    kept.update((e.topic, e.encode()) for e in before.connect("thermo", "bridge-1", ["t", "old", "state"], ["reset"]))
    # restarted with a hint that makes t an event, and "old" no longer declared
    after = Catalog(make(HassSettings(events={"t": {"component": "event"}})))
    for topic, payload in kept.items():  # retained, before the sender connects: kept aside
        assert after.retained(topic, payload) == []
    out = after.connect("thermo", "bridge-1", ["t", "state"], ["reset"])
    assert topics_of(out) == {"event:event_t": "config", "button:request_reset": "config",
                              "sensor:event_t": "removed", "binary_sensor:event_old": "removed"}
    # the object sensor's config was adopted (no value since the restart) and is not removed
    assert after.value("thermo", "state", {"a": 2}) == []
    assert any(topic.endswith("event_state/config") for topic, _ in after.rebirth())
    # a live config (ours coming back) is never judged; a retained one of an unknown sender waits
    assert after.retained(next(iter(kept)), b"{}", retained=False) == []
    assert after.retained("homeassistant/sensor/zigbee_1/temp/config", b"{}") == []


def test_an_ignored_sender_gets_its_old_configs_removed() -> None:
    before = Catalog(make())
    config = before.connect("hidden", "bridge-1", ["t"], ["reset"])[0]
    after = Catalog(make(HINTS))
    after.retained(config.topic, config.encode())
    assert topics_of(after.connect("hidden", "bridge-1", ["t"], ["reset"])) == {"button:request_reset": "removed"}


def test_bridge_toml_homeassistant_table() -> None:
    config = parse_config('[homeassistant]\ndiscovery = true\ndiscovery_prefix = "ha"\n'
                          '[homeassistant.events.door]\ncomponent = "binary_sensor"\n', "bridge.toml")
    assert config.homeassistant.discovery is True
    assert config.homeassistant.settings.discovery_prefix == "ha"
    assert config.homeassistant.settings.event_hints("any", "door") == {"component": "binary_sensor"}
    assert parse_config("").homeassistant.discovery is False
    with pytest.raises(ConfigError, match=r"bridge.toml:\d+: \[homeassistant\] key 'events' has a mistake: event 'do"):
        parse_config('[homeassistant]\n[homeassistant.events.door]\ncomponent = "lamp"\n', "bridge.toml")
    with pytest.raises(ConfigError, match="key 'discovry' is unknown"):
        parse_config("[homeassistant]\ndiscovry = true\n", "bridge.toml")


def test_the_carriers_ha_discovery_option() -> None:
    from sig_mqtt._hass_node import settings_of

    assert settings_of(False) is None and settings_of(None) is None
    assert settings_of(True) == HassSettings()
    assert settings_of("ha").discovery_prefix == "ha"  # type: ignore[union-attr]
    assert settings_of({"events": {"door": {"component": "binary_sensor"}}}).events  # type: ignore[union-attr]
    assert settings_of(HINTS) is HINTS
    with pytest.raises(TypeError, match="ha_discovery must be"):
        settings_of(3)


# -- Home Assistant's own schemas ---------------------------------------------------------------------


@pytest.mark.homeassistant
def test_every_payload_passes_home_assistants_discovery_schemas(ha_python: Any) -> None:
    from hautil import validate_discovery

    configs: list[tuple[str, dict[str, Any]]] = []
    for prefix in ("sig", "site 1/sig"):
        discovery = make(HINTS, prefix=prefix)
        for sender in ("thermo", 7, "Küche {{x}}"):
            for event, value in (("temperature", 21.5), ("door", True), ("#notify", "hi"), ("state", {"a": 1}),
                                 ("ir", [1, 2])):
                platform = discovery.event_platform(sender, event, value, seen=True)
                assert platform is not None
                configs.append((platform, discovery.event(sender, "bridge-1", event, platform, value).payload or {}))
            for method in ("reset", "mode", "level", "power", "label", 3):
                entity = discovery.request(sender, "bridge-1", method)
                assert entity is not None
                configs.append((entity.topic.split("/")[1], entity.payload or {}))
        configs.append(("binary_sensor", discovery.node().payload or {}))
    platforms = {platform for platform, _ in configs}
    assert platforms == {"sensor", "binary_sensor", "event", "button", "select", "number", "switch", "text"}
    assert validate_discovery(configs) == []
    # and the validator does refuse what HA refuses
    bad = [("sensor", {"state_topic": "a", "device_class": "nope"}), ("button", {"command_topic": "a", "x": 1})]
    assert len(validate_discovery(bad)) == 2


# -- the shell on the embedded broker (MQTT 3.1.1, as Home Assistant speaks it) -----------------------


def test_announcer_on_the_embedded_broker(embedded_broker: Any, caplog: Any) -> None:
    """Configs, the first value, a press as Home Assistant publishes it (3.1.1 envelope), its reply logged,
    Home Assistant's birth, and the removal: without Home Assistant, so it runs everywhere."""
    import logging
    import threading

    import paho.mqtt.client as paho
    from netutil import wait_until

    import sig
    from sig_mqtt import CarrierMQTTServer

    seen: dict[str, bytes] = {}
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    watcher.on_message = lambda client, userdata, message: seen.__setitem__(message.topic, message.payload)
    watcher.connect("127.0.0.1", embedded_broker.port)
    watcher.subscribe("hassx/#", 1)
    watcher.loop_start()
    pressed = threading.Event()
    router = sig.ServerRouter()
    carrier = CarrierMQTTServer(client_id="emb-node", prefix="embx/sig", protocol=4, ha_discovery="hassx")
    router.attach(carrier)
    caplog.set_level(logging.INFO, logger="sig.mqtt.hass")
    try:
        assert carrier.start("127.0.0.1", embedded_broker.port)
        def jam(params: Any) -> None:
            raise RuntimeError("the lamp is jammed")

        lamp = router.addSender("lamp", ["on"], requests={"toggle": lambda params: pressed.set() or params,
                                                         "jam": jam})
        discovery = Discovery(Topics("embx/sig"), "emb-node", HassSettings("hassx"))
        button = discovery.config_topic("button", "lamp", "request", "toggle")
        sensor = discovery.config_topic("binary_sensor", "lamp", "event", "on")
        assert wait_until(lambda: button in seen and discovery.node().topic in seen), sorted(seen)
        lamp.getSignal("on").trigger(True)
        assert wait_until(lambda: sensor in seen)
        assert json.loads(seen[sensor])["state_topic"] == "embx/sig/event/lamp/on"
        # the press, rendered as Home Assistant renders the command template
        config = json.loads(seen[button])
        payload = config["command_template"].replace("{{ now().timestamp() }}", "7.0").replace(
            "{{ value }}", '{"level": 3}')
        watcher.publish(config["command_topic"], payload, 1)
        assert pressed.wait(5)
        assert wait_until(lambda: "request 'toggle' to 'lamp' from Home Assistant: replied {'level': 3}" in caplog.text)
        # a failing request: the error is logged with the sender and the method
        jam_topic = discovery.config_topic("button", "lamp", "request", "jam")
        assert wait_until(lambda: jam_topic in seen)
        jam_config = json.loads(seen[jam_topic])
        watcher.publish(jam_config["command_topic"], jam_config["command_template"].replace(
            "{{ now().timestamp() }}", "8.0").replace("{{ value }}", "null"), 1)
        assert wait_until(lambda: "request 'jam' to 'lamp' from Home Assistant failed (status -2)" in caplog.text)
        assert "the lamp is jammed" in caplog.text
        # Home Assistant's birth: every config again
        seen.clear()
        watcher.publish("hassx/status", "online", 1)
        assert wait_until(lambda: {button, sensor, discovery.node().topic} <= set(seen)), sorted(seen)
        router.removeSender("lamp")
        assert wait_until(lambda: seen.get(button) == b"" and seen.get(sensor) == b"")
        assert "[HA] sender 'lamp' removed: 3 entities deleted" in caplog.text
    finally:
        carrier.stop()
        watcher.loop_stop()
        watcher.disconnect()
