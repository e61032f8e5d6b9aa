"""bridge.config: the TOML config file, its errors (file:line and key), and MQTT filter matching."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import (
    BridgeConfig,
    ConfigError,
    Placeholder,
    check_filter,
    load_config,
    parse_config,
    parse_template,
    template_text,
)
from bridge.rules import match_filter, topic_matches
from sig_mqtt._topics import filter_matches as sig_mqtt_filter_matches

ROOT = Path(__file__).resolve().parent.parent

FULL = """\
[bridge]
listen = "127.0.0.1:3000"       # pysig TCP
mqtt = "mqtt://user@127.0.0.1:1883"
broker_listen = "127.0.0.1:1883"
embedded = false
prefix = "sig"
node_id = "bridge"
log_level = "info"
password_file = "/run/secrets/mqtt_password"
heartbeat = 30

[[inbound]]
topic = "zigbee2mqtt/+/temperature"
sender = "{1}"
event = "#temperature"
field = "temperature"
payload = "auto"
republish = false
availability = false
online = "online"
offline = "offline"

[[outbound]]
sender = "thermo"
event = "changed"
topic = "home/{sender}/{event}"
retain = true
qos = 1
payload = "json"
field = "value"

[auth]
anonymous = true

[[auth.users]]
name = "kitchen"
password = "s3cret"

[[auth.users]]
name = "hall"
token = "t0ken"

[[acl]]
user = "kitchen"
senders = ["kitchen.*"]
listen = ["*"]
request = ["thermo"]
"""


def error(text: str, filename: str = "bridge.toml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), filename)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# -- valid files ----------------------------------------------------------------------------------


def test_full_example_parses() -> None:
    config = parse_config(FULL, "bridge.toml")
    bridge = config.bridge
    assert (bridge.listen, bridge.mqtt, bridge.broker_listen) == (
        "127.0.0.1:3000", "mqtt://user@127.0.0.1:1883", "127.0.0.1:1883")
    assert (bridge.embedded, bridge.prefix, bridge.node_id, bridge.log_level) == (False, "sig", "bridge", "info")
    assert bridge.password_file == "/run/secrets/mqtt_password"
    assert bridge.heartbeat == 30.0 and isinstance(bridge.heartbeat, float)
    (rule,) = config.inbound
    assert rule.topic == "zigbee2mqtt/+/temperature"
    assert rule.sender == (Placeholder("1"),)
    assert rule.event == ("#temperature",)
    assert rule.field == ("temperature",)
    assert rule.line == 12
    (out,) = config.outbound
    assert out.topic == ("home/", Placeholder("sender"), "/", Placeholder("event"))
    assert (out.sender, out.event, out.retain, out.qos, out.payload, out.field) == (
        "thermo", "changed", True, 1, "json", ("value",))
    assert config.acl[0].senders == ("kitchen.*",)
    assert config.filename == "bridge.toml"


def test_access_dict_shape() -> None:
    access = parse_config(FULL).access_dict()
    assert access == {
        "anonymous": True,
        "users": {"kitchen": {"password": "s3cret", "token": None}, "hall": {"password": None, "token": "t0ken"}},
        "acl": [{"user": "kitchen", "senders": ["kitchen.*"], "listen": ["*"], "request": ["thermo"]}],
    }


def test_access_dict_is_what_sig_access_control_reads() -> None:
    from sig._access import AccessControl

    AccessControl.from_dict(parse_config(FULL).access_dict())


def test_secrets_not_in_repr() -> None:
    config = parse_config(FULL)
    assert "s3cret" not in repr(config) and "t0ken" not in repr(config)


def test_empty_file_gives_defaults() -> None:
    config = parse_config("")
    assert config == BridgeConfig()
    assert config.bridge.prefix == "sig" and config.bridge.listen is None and config.bridge.heartbeat is None
    assert config.access_dict() == {"anonymous": True, "users": {}, "acl": []}


def test_defaults_of_rules() -> None:
    config = parse_config('[[inbound]]\ntopic = "a/#"\nsender = "s"\nevent = "{#}"\n'
                          '[[outbound]]\ntopic = "x/y"\n')
    rule = config.inbound[0]
    assert (rule.payload, rule.republish, rule.availability, rule.online, rule.offline, rule.field) == (
        "auto", False, False, "online", "offline", None)
    out = config.outbound[0]
    assert (out.sender, out.event, out.retain, out.qos, out.payload, out.field) == (None, None, False, 1, "json", None)


def test_availability_rule_needs_no_event() -> None:
    config = parse_config('[[inbound]]\ntopic = "z/+/availability"\nsender = "{1}"\navailability = true\n')
    assert config.inbound[0].availability and config.inbound[0].event == ()


def test_compose_example_parses() -> None:
    config = load_config(ROOT / "compose" / "bridge.toml")
    topics = [rule.topic for rule in config.inbound]
    assert topics[:3] == ["zigbee2mqtt/+", "zigbee2mqtt/+", "zigbee2mqtt/+/availability"]
    assert any(rule.availability for rule in config.inbound)
    assert any(rule.topic[0] == "homeassistant/sensor/" for rule in config.outbound)
    assert config.bridge.password_file == "/run/secrets/mqtt_password"


def test_load_config_file_name_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[bridge]\nprefix = "sig"\nlisten = "nohost"\n')
    with pytest.raises(ConfigError, match=r"^%s:3: \[bridge\] key 'listen'" % re.escape(str(path))):
        load_config(path)


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_bytes(b'[bridge]\nprefix = "\xff"\n')
    with pytest.raises(ConfigError, match=r":2: not UTF-8 text"):
        load_config(path)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_config(tmp_path / "nope.toml")


def test_quoted_keys_and_dotted_fields() -> None:
    config = parse_config('[[inbound]]\n"topic" = "a/+"\nsender = "{1}"\nevent = "e"\nfield = "a.b.c"\n')
    assert config.inbound[0].field == ("a", "b", "c")


def test_literal_braces_in_templates() -> None:
    config = parse_config('[[inbound]]\ntopic = "a/+"\nsender = "{{{1}}}"\nevent = "e"\n')
    assert config.inbound[0].sender == ("{", Placeholder("1"), "}")
    assert template_text(config.inbound[0].sender) == "{{{1}}}"


def test_parse_template_alone() -> None:
    assert parse_template("x{a}y", lambda name: None) == ("x", Placeholder("a"), "y")
    assert parse_template("", lambda name: None) == ()


# -- errors: file:line and key ---------------------------------------------------------------------

ERRORS = [
    # unknown keys and tables, with a suggestion
    ("""
     [bridge]
     prefix = "sig"

     [[inbound]]
     topic = "a/+"
     sender = "{1}"
     event = "e"

     [[inbound]]
     topic = "zigbee2mqtt/+"
     sender = "{1}"
     event = "#temperature"
     feild = "temperature"
     """, "bridge.toml:14: [[inbound]] key 'feild' is unknown (did you mean 'field'?)"),
    ('[brige]\nprefix = "x"\n', "bridge.toml:1: table 'brige' is unknown (did you mean 'bridge'?)"),
    ('[bridge]\nlisten = "127.0.0.1:3000"\nprefx = "x"\n',
     "bridge.toml:3: [bridge] key 'prefx' is unknown (did you mean 'prefix'?)"),
    ('[[outbound]]\ntopic = "a"\nretian = true\n',
     "bridge.toml:3: [[outbound]] key 'retian' is unknown (did you mean 'retain'?)"),
    ('[auth]\nanonymus = false\n', "bridge.toml:2: [auth] key 'anonymus' is unknown (did you mean 'anonymous'?)"),
    ('[[auth.users]]\nname = "a"\npasswd = "x"\n',
     "bridge.toml:3: [[auth.users]] key 'passwd' is unknown (did you mean 'password'?)"),
    ('[[acl]]\nuser = "a"\nsender = ["x"]\n',
     "bridge.toml:3: [[acl]] key 'sender' is unknown (did you mean 'senders'?)"),
    ('[bridge]\nzzz = 1\n', "bridge.toml:2: [bridge] key 'zzz' is unknown (known: listen, mqtt, broker_listen, "
     "embedded, prefix, node_id, log_level, password_file, heartbeat)"),
    # wrong types
    ('[[outbound]]\ntopic = "a"\nqos = "1"\n', "bridge.toml:3: [[outbound]] key 'qos' must be an integer, not '1'"),
    ('[[outbound]]\ntopic = "a"\nqos = true\n', "bridge.toml:3: [[outbound]] key 'qos' must be an integer, not True"),
    ('[bridge]\nheartbeat = true\n', "bridge.toml:2: [bridge] key 'heartbeat' must be a number, not True"),
    ('[bridge]\nembedded = "yes"\n', "bridge.toml:2: [bridge] key 'embedded' must be a boolean, not 'yes'"),
    ('[[inbound]]\ntopic = 5\n', "bridge.toml:2: [[inbound]] key 'topic' must be a string, not 5"),
    ('[[acl]]\nuser = "a"\nlisten = "*"\n', "bridge.toml:3: [[acl]] key 'listen' must be a list, not '*'"),
    ('[[acl]]\nuser = "a"\nlisten = ["*", 3]\n',
     "bridge.toml:3: [[acl]] key 'listen' must be a list of non-empty strings (glob patterns), not ['*', 3]"),
    ('[inbound]\ntopic = "a"\n', "bridge.toml:1: 'inbound' must be an array of tables: write [[inbound]]"),
    ('bridge = 3\n', "bridge.toml:1: 'bridge' must be a table: write [bridge]"),
    # bad filters and topics
    ('[[inbound]]\ntopic = "a/b#"\nsender = "s"\nevent = "e"\n',
     "bridge.toml:2: [[inbound]] key 'topic' is not a valid MQTT filter ('#' must be the whole last level): 'a/b#'"),
    ('[[inbound]]\ntopic = "a/#/b"\nsender = "s"\nevent = "e"\n',
     "bridge.toml:2: [[inbound]] key 'topic' is not a valid MQTT filter ('#' must be the whole last level): 'a/#/b'"),
    ('[[inbound]]\ntopic = "a+/b"\nsender = "s"\nevent = "e"\n',
     "bridge.toml:2: [[inbound]] key 'topic' is not a valid MQTT filter ('+' must be a whole level): 'a+/b'"),
    ('[[inbound]]\ntopic = ""\nsender = "s"\nevent = "e"\n',
     "bridge.toml:2: [[inbound]] key 'topic' must not be empty"),
    ('[[outbound]]\ntopic = "home/+/x"\n',
     "bridge.toml:2: [[outbound]] key 'topic' a topic name cannot hold '+' or '#': 'home/+/x'"),
    ('[[outbound]]\ntopic = "home/{sender}/#"\n',
     "bridge.toml:2: [[outbound]] key 'topic' a topic name cannot hold '+' or '#': 'home/{sender}/#'"),
    ('[[outbound]]\ntopic = "$SYS/x"\n',
     "bridge.toml:2: [[outbound]] key 'topic' must not start with '$' (broker topics): '$SYS/x'"),
    # placeholders
    ('[[inbound]]\ntopic = "z/+"\nsender = "{3}"\nevent = "e"\n',
     "bridge.toml:3: [[inbound]] key 'sender' uses {3} but the filter 'z/+' has 1 '+' level ({1}..{1})"),
    ('[[inbound]]\ntopic = "z/+/+"\nsender = "{1}"\nevent = "{0}"\n',
     "bridge.toml:4: [[inbound]] key 'event' uses {0} but the filter 'z/+/+' has 2 '+' levels ({1}..{2})"),
    ('[[inbound]]\ntopic = "z/a"\nsender = "{1}"\nevent = "e"\n',
     "bridge.toml:3: [[inbound]] key 'sender' uses {1} but the filter 'z/a' has no '+' level"),
    ('[[inbound]]\ntopic = "z/+"\nsender = "{1}"\nevent = "{#}"\n',
     "bridge.toml:4: [[inbound]] key 'event' uses {#} but the filter 'z/+' does not end with '#'"),
    ('[[inbound]]\ntopic = "z/+"\nsender = "{name}"\nevent = "e"\n',
     "bridge.toml:3: [[inbound]] key 'sender' has an unknown placeholder {name} "
     "(use {1}..{n} for '+' levels, {#} for what '#' matched)"),
    ('[[inbound]]\ntopic = "z/+"\nsender = "{1"\nevent = "e"\n',
     "bridge.toml:3: [[inbound]] key 'sender' lone '{' (write {{ for a literal brace)"),
    ('[[outbound]]\ntopic = "home/{room}"\n',
     "bridge.toml:2: [[outbound]] key 'topic' has an unknown placeholder {room} (use {sender} and {event})"),
    # bad choices and values
    ('[[inbound]]\ntopic = "z/+"\nsender = "{1}"\nevent = "e"\npayload = "xml"\n',
     "bridge.toml:5: [[inbound]] key 'payload' must be one of auto, json, number, text, not 'xml'"),
    ('[[outbound]]\ntopic = "a"\npayload = "auto"\n',
     "bridge.toml:3: [[outbound]] key 'payload' must be one of json, text, not 'auto'"),
    ('[[outbound]]\ntopic = "a"\nqos = 3\n', "bridge.toml:3: [[outbound]] key 'qos' must be 0, 1 or 2, not 3"),
    ('[bridge]\nlog_level = "loud"\n',
     "bridge.toml:2: [bridge] key 'log_level' must be one of trace, debug, info, warning, error, critical, none, "
     "not 'loud'"),
    ('[bridge]\nheartbeat = 0\n',
     "bridge.toml:2: [bridge] key 'heartbeat' must be a finite number of seconds above 0, not 0.0"),
    ('[bridge]\nprefix = "$sig"\n', "bridge.toml:2: [bridge] key 'prefix' a prefix must not start with '$': '$sig'"),
    ('[bridge]\nnode_id = "a/b"\n', "bridge.toml:2: [bridge] key 'node_id' cannot hold '/', '+', '#' or NUL: 'a/b'"),
    ('[[inbound]]\ntopic = "z/+"\nsender = "{1}"\nevent = "e"\nfield = "a..b"\n',
     "bridge.toml:5: [[inbound]] key 'field' must be a key or a dotted path of keys such as 'a.b', not 'a..b'"),
    ('[[inbound]]\ntopic = "z/+"\nsender = "{1}"\navailability = true\nonline = "x"\noffline = "x"\n',
     "bridge.toml:6: [[inbound]] key 'offline' must differ from online ('x')"),
    # host:port and URLs
    ('[bridge]\nlisten = "localhost"\n',
     "bridge.toml:2: [bridge] key 'listen' not HOST:PORT: 'localhost' (expected HOST:PORT or [IPv6]:PORT)"),
    ('[bridge]\nbroker_listen = "127.0.0.1:99999"\n',
     "bridge.toml:2: [bridge] key 'broker_listen' the port must be a number from 0 to 65535: '127.0.0.1:99999' "
     "(expected HOST:PORT or [IPv6]:PORT)"),
    ('[bridge]\nlisten = "[::1]"\n', "bridge.toml:2: [bridge] key 'listen' no port: '[::1]' "
     "(expected HOST:PORT or [IPv6]:PORT)"),
    ('[bridge]\nlisten = ":3000"\n', "bridge.toml:2: [bridge] key 'listen' no host: ':3000' "
     "(expected HOST:PORT or [IPv6]:PORT)"),
    ('[bridge]\nmqtt = "http://x:1883"\n',
     "bridge.toml:2: [bridge] key 'mqtt' not an MQTT URL (mqtt[s]://[user[:pass]@]host[:port][/prefix]): "
     "'http://x:1883'"),
    ('[bridge]\nmqtt = "mqtt://x:0"\n',
     "bridge.toml:2: [bridge] key 'mqtt' the port must be a number from 1 to 65535: 'mqtt://x:0'"),
    # required keys
    ('[[inbound]]\nsender = "s"\nevent = "e"\n', "bridge.toml:1: [[inbound]] needs key 'topic'"),
    ('[[inbound]]\ntopic = "a"\nevent = "e"\n', "bridge.toml:1: [[inbound]] needs key 'sender'"),
    ('[[inbound]]\ntopic = "a"\nsender = "s"\n', "bridge.toml:1: [[inbound]] needs key 'event'"),
    ('[[outbound]]\nsender = "s"\n', "bridge.toml:1: [[outbound]] needs key 'topic'"),
    ('[[acl]]\nlisten = ["*"]\n', "bridge.toml:1: [[acl]] needs key 'user'"),
    # users
    ('[[auth.users]]\nname = "a"\n', "bridge.toml:1: [[auth.users]] needs a 'password' or a 'token'"),
    ('[[auth.users]]\nname = "a"\ntoken = "x"\n\n[[auth.users]]\nname = "a"\ntoken = "y"\n',
     "bridge.toml:6: [[auth.users]] key 'name' 'a' is given twice"),
    ('[[auth.users]]\nname = "*"\ntoken = "x"\n',
     "bridge.toml:2: [[auth.users]] key 'name' '*' is reserved for [[acl]] entries"),
    # not TOML at all
    ('[bridge]\nprefix = "sig\n', "bridge.toml:2: not valid TOML: Illegal character '\\n'"),
    ('[bridge]\nprefix = "a"\nprefix = "b"\n', "bridge.toml:3: not valid TOML: Cannot overwrite a value"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_error_messages(text: str, message: str) -> None:
    assert error(text) == message


def test_error_line_skips_multiline_values() -> None:
    text = '''\
[[acl]]
user = "a"
senders = [
  "x",
  "y",
]
notes = """
[[inbound]]
topic = "fake"
"""

[[inbound]]
topic = "a/+"
sender = "{2}"
event = "e"
'''
    # the [[inbound]] inside the multi-line string is not a table: the real one is on line 12
    assert error(text) == "bridge.toml:14: [[inbound]] key 'sender' uses {2} but the filter 'a/+' has 1 '+' level " \
                          "({1}..{1})"
    text = text[:text.index("\n[[inbound]]\ntopic = \"a/+\"")]
    assert error(text) == "bridge.toml:7: [[acl]] key 'notes' is unknown (known: user, senders, listen, request)"


def test_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[bridge]\nprefix = 1\n', "x.toml")
    assert (info.value.filename, info.value.line) == ("x.toml", 2)
    assert info.value.detail == "[bridge] key 'prefix' must be a string, not 1"


def test_default_filename() -> None:
    assert error("[x]\n", filename="<string>").startswith("<string>:1: table 'x' is unknown")


_FRAGMENTS = [
    "[bridge]\n", "[[inbound]]\n", "[[outbound]]\n", "[auth]\n", "[[auth.users]]\n", "[[acl]]\n", "[x]\n",
    "[inbound]\n", "[[bridge]]\n", "inbound = []\n", "acl = [1]\n", "auth = 3\n", "users = {}\n",
    'topic = "a/+"\n', 'topic = "#"\n', 'topic = "a/b#"\n', 'topic = ""\n', 'topic = "x/{sender}"\n',
    'sender = "{1}"\n', 'sender = "{#}"\n', 'sender = "{"\n', "sender = 1\n", 'event = "#e"\n', 'event = "{2}"\n',
    'field = "a.b"\n', 'field = "."\n', 'payload = "number"\n', 'payload = "xml"\n', "availability = true\n",
    'online = "x"\n', 'offline = "x"\n', "qos = 2\n", "qos = -1\n", "retain = 1\n", 'name = "u"\n',
    'password = "p"\n', 'token = ""\n', 'user = "*"\n', 'senders = ["a", ""]\n', "listen = [[]]\n",
    'listen = "127.0.0.1:1"\n', 'mqtt = "mqtt://[::1]:x"\n', 'mqtt = "mqtts://u:p@h/p/q"\n', "heartbeat = nan\n",
    "heartbeat = inf\n", "heartbeat = 1e308\n", 'prefix = "a//b"\n', "embedded = true\n", 'log_level = "debug"\n',
    "x = 1\n", "a.b = 1\n", '"q k" = 1\n', 'm = """\n[[inbound]]\n"""\n', "arr = [\n1,\n]\n", "= broken\n",
    "# comment\n", "\n", "[[inbound]] # c\n", "\x00", "\ufeff",
]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=14))
def test_any_text_gives_a_config_or_a_config_error(fragments: list[str]) -> None:
    """Fuzz: whatever the text, parse_config returns a config or raises ConfigError (with file and line)."""
    try:
        config = parse_config("".join(fragments), "f.toml")
    except ConfigError as exc:
        assert str(exc).startswith("f.toml")
        assert exc.line is None or 1 <= exc.line <= "".join(fragments).count("\n") + 1
    else:
        assert isinstance(config, BridgeConfig)
        config.access_dict()


# -- MQTT filters -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("topic_filter", "ok"), [
    ("a", True), ("a/b", True), ("+", True), ("#", True), ("a/+/b", True), ("a/#", True), ("+/+/#", True),
    ("/a", True), ("a//b", True), ("$SYS/#", True),
    ("", False), ("a#", False), ("a/#/b", False), ("#/a", False), ("a+", False), ("+a/b", False), ("a/b+", False),
    ("a\x00b", False),
])
def test_check_filter(topic_filter: str, ok: bool) -> None:
    assert (check_filter(topic_filter) is None) is ok


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("a/+/c", "a/b/c", (["b"], None)),
    ("a/+/c", "a//c", ([""], None)),
    ("a/#", "a", ([], "")),
    ("a/#", "a/b/c", ([], "b/c")),
    ("#", "a/b", ([], "a/b")),
    ("+/+", "/x", (["", "x"], None)),
    ("a/+", "a/b/c", None),
    ("a/+", "a", None),
    ("+/#", "$SYS/x", None),
    ("#", "$SYS", None),
    ("$SYS/#", "$SYS/x", ([], "x")),
    ("a/b", "a/b", ([], None)),
    ("a/b", "a/B", None),
])
def test_match_filter_examples(topic_filter: str, topic: str, expected: object) -> None:
    assert match_filter(topic_filter, topic) == expected


def _reference(topic_filter: str, topic: str) -> bool:
    """A different formulation: the filter as a regular expression."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if topic_filter == "#":
        return True
    pattern = ""
    for index, level in enumerate(topic_filter.split("/")):
        sep = "/" if index else ""
        if level == "#":
            pattern += "(?:/.*)?"
        else:
            pattern += sep + ("[^/]*" if level == "+" else re.escape(level))
    return re.fullmatch(pattern, topic, re.DOTALL) is not None


_level = st.sampled_from(["a", "b", "", "$x", "ab"])
_topics = st.lists(_level, min_size=1, max_size=5).map("/".join)
_filters = st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=5).flatmap(
    lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"]), "#"])).filter(bool)


@settings(max_examples=2000, deadline=None)
@given(_filters, _topics)
def test_filter_matching_against_reference(topic_filter: str, topic: str) -> None:
    assert check_filter(topic_filter) is None
    expected = _reference(topic_filter, topic)
    assert topic_matches(topic_filter, topic) is expected
    assert sig_mqtt_filter_matches(topic_filter, topic) is expected
    found = match_filter(topic_filter, topic)
    if found is not None:
        # the captured levels put back into the filter give the topic again
        plus, rest = found
        levels = topic_filter.split("/")
        filled = [plus.pop(0) if level == "+" else level for level in levels if level != "#"]
        assert not plus
        if rest is None:
            assert "/".join(filled) == topic
        else:
            assert "/".join([*filled, rest]) == topic or (rest == "" and "/".join(filled) == topic)
