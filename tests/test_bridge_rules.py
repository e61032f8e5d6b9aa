"""bridge.rules: foreign MQTT topics -> pysig events, pysig events -> plain topics (pure, no broker)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bridge.acl import mosquitto_acl, sender_level
from bridge.config import load_config, parse_config
from bridge.rules import InboundEvent, OutboundMessage, Rules

ROOT = Path(__file__).resolve().parent.parent


def rules(text: str) -> Rules:
    return Rules.from_config(parse_config(text))


def one(r: Rules, topic: str, payload: bytes, retained: bool = False) -> InboundEvent:
    items = r.inbound(topic, payload, retained)
    assert len(items) == 1, items
    return items[0]


Z2M = """
[[inbound]]
topic = "zigbee2mqtt/+"
sender = "{1}"
event = "#temperature"
field = "temperature"

[[inbound]]
topic = "zigbee2mqtt/+/availability"
sender = "{1}"
availability = true
"""


# -- inbound -----------------------------------------------------------------------------------------


def test_zigbee2mqtt_json_field() -> None:
    r = rules(Z2M)
    payload = json.dumps({"battery": 97, "temperature": 21.5, "humidity": 40, "linkquality": 120}).encode()
    item = one(r, "zigbee2mqtt/kitchen_sensor", payload)
    assert (item.kind, item.sender, item.event, item.data) == ("event", "kitchen_sensor", "#temperature", 21.5)
    assert item.info == {"topic": "zigbee2mqtt/kitchen_sensor", "retained": False}
    assert item.republish is False


def test_field_missing_gives_no_event() -> None:
    r = rules(Z2M)
    assert r.inbound("zigbee2mqtt/switch", b'{"state": "ON"}', False) == []
    assert r.inbound("zigbee2mqtt/switch", b"not json", False) == []
    assert r.inbound("zigbee2mqtt/switch", b"[1, 2]", False) == []


def test_dotted_field_and_retained_flag() -> None:
    r = rules('[[inbound]]\ntopic = "dev/+"\nsender = "{1}"\nevent = "v"\nfield = "a.b"\n')
    item = one(r, "dev/x", b'{"a": {"b": [1, 2]}}', retained=True)
    assert item.data == [1, 2] and item.info["retained"] is True
    assert r.inbound("dev/x", b'{"a": 3}', False) == []


@pytest.mark.parametrize(("mode", "payload", "data"), [
    ("auto", b"21.5", 21.5),
    ("auto", b"42", 42),
    ("auto", b"hello", "hello"),
    ("auto", b'{"a": 1}', {"a": 1}),
    ("auto", b'"quoted"', "quoted"),
    ("auto", b"", ""),
    ("auto", "h\u00e9".encode(), "h\u00e9"),
    ("json", b"[1, null]", [1, None]),
    ("json", b"true", True),
    ("number", b" 7 ", 7),
    ("number", b"-1.25e2", -125.0),
    ("text", b"42", "42"),
    ("text", b'{"a": 1}', '{"a": 1}'),
])
def test_payload_modes(mode: str, payload: bytes, data: object) -> None:
    r = rules('[[inbound]]\ntopic = "t/+"\nsender = "{1}"\nevent = "e"\npayload = "%s"\n' % mode)
    item = one(r, "t/s", payload)
    assert item.data == data and type(item.data) is type(data)
    assert "encoding" not in item.info


@pytest.mark.parametrize(("mode", "payload"), [
    ("json", b"not json"),
    ("number", b"abc"),
    ("number", b"nan"),
    ("number", b"inf"),
    ("number", b"\xff"),
    ("json", b"\xff\xfe"),
])
def test_payload_that_does_not_fit_gives_nothing(mode: str, payload: bytes) -> None:
    r = rules('[[inbound]]\ntopic = "t/+"\nsender = "{1}"\nevent = "e"\npayload = "%s"\n' % mode)
    assert r.inbound("t/s", payload, False) == []


@pytest.mark.parametrize("mode", ["auto", "text"])
def test_non_utf8_is_base64(mode: str) -> None:
    r = rules('[[inbound]]\ntopic = "cam/+"\nsender = "{1}"\nevent = "snapshot"\npayload = "%s"\n' % mode)
    raw = b"\x89PNG\r\n\x1a\n\xff\x00\xfe"
    item = one(r, "cam/door", raw)
    assert item.info == {"topic": "cam/door", "retained": False, "encoding": "base64"}
    assert base64.b64decode(item.data) == raw


def test_number_field_from_string() -> None:
    r = rules('[[inbound]]\ntopic = "t/+"\nsender = "{1}"\nevent = "e"\nfield = "v"\npayload = "number"\n')
    assert one(r, "t/s", b'{"v": "3.5"}').data == 3.5
    assert one(r, "t/s", b'{"v": 4}').data == 4
    assert r.inbound("t/s", b'{"v": true}', False) == []
    assert r.inbound("t/s", b'{"v": "x"}', False) == []


def test_text_field_of_object_is_json_text() -> None:
    r = rules('[[inbound]]\ntopic = "t/+"\nsender = "{1}"\nevent = "e"\nfield = "v"\npayload = "text"\n')
    assert one(r, "t/s", b'{"v": {"x": 1}}').data == '{"x": 1}'
    assert one(r, "t/s", b'{"v": "plain"}').data == "plain"


@pytest.mark.parametrize(("payload", "kind"), [
    (b"online", "connect"),
    (b"offline", "disconnect"),
    (b" online\n", "connect"),
    (b'{"state": "online"}', "connect"),
    (b'{"state":"offline"}', "disconnect"),
    (b'"online"', "connect"),
])
def test_availability(payload: bytes, kind: str) -> None:
    r = rules(Z2M)
    item = one(r, "zigbee2mqtt/kitchen_sensor/availability", payload, retained=True)
    assert (item.kind, item.sender, item.event, item.data) == (kind, "kitchen_sensor", "#" + kind, None)
    assert item.info == {"topic": "zigbee2mqtt/kitchen_sensor/availability", "retained": True}
    assert item.events == ["#temperature"]  # what the other inbound rules give such a device


@pytest.mark.parametrize("payload", [b"", b"maybe", b'{"state": 1}', b"{bad", b"[1]", b"\xff", b'"x'])
def test_availability_other_payloads_ignored(payload: bytes) -> None:
    assert rules(Z2M).inbound("zigbee2mqtt/x/availability", payload, False) == []


def test_availability_custom_words() -> None:
    r = rules('[[inbound]]\ntopic = "dev/+/lwt"\nsender = "{1}"\navailability = true\n'
              'online = "Online"\noffline = "Offline"\n')
    assert one(r, "dev/a/lwt", b"Online").kind == "connect"
    assert one(r, "dev/a/lwt", b"Offline").kind == "disconnect"
    assert r.inbound("dev/a/lwt", b"online", False) == []


def test_placeholders() -> None:
    r = rules('[[inbound]]\ntopic = "site/+/room/+/#"\nsender = "{1}.{2}"\nevent = "#{#}"\n')
    item = one(r, "site/home/room/kitchen/temp/c", b"1")
    assert (item.sender, item.event) == ("home.kitchen", "#temp/c")
    item = one(r, "site/home/room/kitchen", b"1")  # '#' matches the parent level too
    assert (item.sender, item.event) == ("home.kitchen", "#")


def test_int_looking_levels_stay_strings() -> None:
    r = rules('[[inbound]]\ntopic = "dev/+/+"\nsender = "{1}"\nevent = "{2}"\n')
    item = one(r, "dev/42/7", b"1")
    assert item.sender == "42" and item.event == "7"
    assert isinstance(item.sender, str) and isinstance(item.event, str)


def test_dollar_topics_not_matched_by_leading_wildcards() -> None:
    r = rules('[[inbound]]\ntopic = "#"\nsender = "all"\nevent = "{#}"\n'
              '[[inbound]]\ntopic = "$SYS/broker/+"\nsender = "broker"\nevent = "{1}"\n')
    assert r.inbound_filters() == ["#", "$SYS/broker/+"]
    items = r.inbound("$SYS/broker/uptime", b"5 seconds", False)
    assert [(i.sender, i.event) for i in items] == [("broker", "uptime")]
    assert [(i.sender, i.event) for i in r.inbound("a/b", b"x", False)] == [("all", "a/b")]


def test_several_rules_match_in_order_and_filters_once() -> None:
    r = Rules.from_config(load_config(ROOT / "compose" / "bridge.toml"))
    assert r.inbound_filters() == ["zigbee2mqtt/+", "zigbee2mqtt/+/availability", "home/+/+"]
    items = r.inbound("zigbee2mqtt/sensor1", b'{"temperature": 20, "humidity": 55.5}', False)
    assert [(i.sender, i.event, i.data) for i in items] == [("sensor1", "#temperature", 20),
                                                           ("sensor1", "#humidity", 55.5)]
    (home,) = r.inbound("home/kitchen/temperature", b"21", False)
    assert (home.sender, home.event, home.data, home.republish) == ("kitchen", "#temperature", 21, True)


def test_no_match() -> None:
    r = rules(Z2M)
    assert r.inbound("other/topic", b"1", False) == []
    assert r.inbound("zigbee2mqtt/a/b/c", b"1", False) == []
    assert not Rules() and bool(r)


# -- outbound ----------------------------------------------------------------------------------------

HA = """
[[outbound]]
sender = "thermo"
event = "changed"
topic = "homeassistant/sensor/{sender}/state"
retain = true
qos = 1
field = "value"

[[outbound]]
topic = "all/{sender}/{event}"
qos = 0
payload = "text"
"""


def test_outbound_topic_payload_retain_qos() -> None:
    r = rules(HA)
    messages = r.outbound("thermo", "changed", {"value": 21.5, "unit": "C"})
    assert messages == [
        OutboundMessage("homeassistant/sensor/thermo/state", b"21.5", retain=True, qos=1),
        OutboundMessage("all/thermo/changed", b'{"value":21.5,"unit":"C"}', retain=False, qos=0),
    ]


def test_outbound_text_and_json() -> None:
    r = rules(HA)
    assert r.outbound("lamp", "state", "ON") == [OutboundMessage("all/lamp/state", b"ON", False, 0)]
    assert r.outbound("lamp", "level", 3) == [OutboundMessage("all/lamp/level", b"3", False, 0)]
    assert r.outbound("lamp", "x", None)[0].payload == b"null"
    json_rule = rules('[[outbound]]\ntopic = "j/{sender}"\n')
    assert json_rule.outbound("lamp", "state", "ON")[0].payload == b'"ON"'
    assert json_rule.outbound("lamp", "state", "h\u00e9")[0].payload == '"h\u00e9"'.encode()


def test_outbound_identifiers_are_escaped_into_one_level() -> None:
    r = rules('[[outbound]]\ntopic = "{sender}/{event}"\n')
    assert r.outbound("a/b", "#changed", 1)[0].topic == "a%2Fb/%23changed"
    assert r.outbound("$x", "e+", 1)[0].topic == "%24x/e%2B"
    assert r.outbound(42, 1.0, 1)[0].topic == "42/1"
    assert r.outbound("100%", "e", 1)[0].topic == "100%25/e"


def test_outbound_matching_by_text() -> None:
    r = rules('[[outbound]]\nsender = "7"\ntopic = "n/{event}"\n')
    assert r.outbound(7, "e", 1)[0].topic == "n/e"
    assert r.outbound("7", "e", 1)[0].topic == "n/e"
    assert r.outbound(8, "e", 1) == []


def test_outbound_missing_field_or_unencodable_data() -> None:
    r = rules(HA)
    assert [m.topic for m in r.outbound("thermo", "changed", {"other": 1})] == ["all/thermo/changed"]
    assert r.outbound("thermo", "changed", 21.5)[0].topic == "all/thermo/changed"
    assert r.outbound("x", "e", float("nan")) == []
    assert r.outbound("x", "e", {1, 2}) == []
    assert r.outbound("x", "e", "\ud800") == []        # a lone surrogate has no UTF-8 form
    assert r.outbound("\udc00", "e", "ok") == []


def test_no_loop_inbound_events_are_not_sent_back() -> None:
    r = rules(Z2M + HA)
    (item,) = r.inbound("zigbee2mqtt/thermo", b'{"temperature": 20}', False)
    assert r.outbound(item.sender, item.event, item.data, origin_inbound=True) == []
    # the same event from a pysig client goes out
    assert [m.topic for m in r.outbound(item.sender, item.event, item.data)] == ["all/thermo/%23temperature"]


@pytest.mark.parametrize(("text", "pairs"), [
    ('[[outbound]]\nsender = "a"\nevent = "e"\ntopic = "x"\n', [("a", "e")]),
    ('[[outbound]]\nsender = "a"\ntopic = "x"\n[[outbound]]\nsender = "a"\nevent = "e"\ntopic = "y"\n', [("a", None)]),
    ('[[outbound]]\nevent = "#ch"\ntopic = "x"\n[[outbound]]\nsender = "b"\nevent = "e"\ntopic = "y"\n',
     [(None, "#ch"), ("b", "e")]),
    ('[[outbound]]\nevent = "plain"\ntopic = "x"\n', [(None, None)]),
    ('[[outbound]]\nevent = "#ch"\ntopic = "x"\n[[outbound]]\nsender = "b"\ntopic = "y"\n', [(None, None)]),
    ('[[outbound]]\nsender = "a"\nevent = "e"\ntopic = "x"\n[[outbound]]\nsender = "a"\nevent = "e"\ntopic = "y"\n',
     [("a", "e")]),
    ("", []),
])
def test_outbound_subscriptions_do_not_overlap(text: str, pairs: list[tuple[str | None, str | None]]) -> None:
    assert rules(text).outbound_subscriptions() == pairs


# -- Mosquitto ACL writer ------------------------------------------------------------------------------


def test_sender_level() -> None:
    assert sender_level("*") == "+"
    assert sender_level("kitchen") == "kitchen"
    assert sender_level("a/b") == "a%2Fb"
    assert sender_level("kitchen.*") is None
    assert sender_level("lamp?") is None


def test_mosquitto_acl_blocks() -> None:
    config = parse_config("""
[bridge]
mqtt = "mqtt://hub@127.0.0.1:1883"
prefix = "site1/sig"

[[inbound]]
topic = "zigbee2mqtt/+"
sender = "{1}"
event = "e"

[[outbound]]
topic = "ha/{sender}_x/state"

[[acl]]
user = "kitchen"
senders = ["kitchen", "kitchen-lamp", "kitchen.*"]
listen = ["thermo"]
request = ["*"]

[[acl]]
user = "*"
listen = ["*"]
""", "b.toml")
    text = mosquitto_acl(config)
    lines = text.splitlines()
    assert "pattern write site1/sig/event/%u/#" in lines
    assert "pattern read site1/sig/reply/%c" in lines
    assert "pattern read site1/sig/event/+/#" in lines  # user "*"
    block = lines[lines.index("user kitchen"):]
    block = block[:block.index("")]
    assert "topic write site1/sig/event/kitchen/#" in block
    assert "topic write site1/sig/event/kitchen-lamp/#" in block
    assert "topic read site1/sig/request/kitchen-lamp/#" in block
    assert "topic read site1/sig/event/thermo/#" in block
    assert "topic write site1/sig/request/+/#" in block
    assert any("kitchen.*" in line and line.startswith("#") for line in block)
    bridge = lines[lines.index("user hub"):]
    assert bridge[1:] == ["topic readwrite site1/sig/#", "topic read zigbee2mqtt/+", "topic write ha/+/state"]
    assert mosquitto_acl(config, "other").count("other/event/") > 0


def test_mosquitto_acl_anonymous_section_comes_first() -> None:
    config = load_config(ROOT / "compose" / "bridge.toml")
    lines = mosquitto_acl(config).splitlines()
    first_user = next(i for i, line in enumerate(lines) if line.startswith("user "))
    anonymous = [line for line in lines[:first_user] if line.startswith("topic ")]
    assert "topic read sig/event/+/#" in anonymous
    assert lines[first_user:].count("user bridge") == 1
