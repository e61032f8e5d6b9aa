"""The MQTT topic tree, escaping and filter sets: pure functions, property-tested."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sig_mqtt._filters import FilterSet, covers, demand_filters, join, overlap
from sig_mqtt._payload import CONVENTION, Birth, NodeState, decode_data, encode_data
from sig_mqtt._topics import Topics, check_filter, check_prefix, decode_level, encode_level, filter_matches
from sig_mqtt._url import parse_url

idents = st.one_of(
    st.text(),
    st.text(alphabet="/+#%$!\x00\x01\x7f\x9f\ufffe\uffff\ufdd0 aé", max_size=8),
    st.integers(),
    st.floats(allow_nan=False),
)

# What Mosquitto refuses in a topic (it drops the client): NUL, C0/C1 controls, noncharacters.
_FORBIDDEN = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), *range(0xFDD0, 0xFDF0), 0xFFFE, 0xFFFF)]


def _same(a: object, b: object) -> bool:
    return a == b and (type(a) is type(b) or (isinstance(b, float) and b.is_integer() and type(a) is int))


@given(idents.filter(lambda x: not (isinstance(x, str) and any("\ud800" <= c <= "\udfff" for c in x))))
@settings(max_examples=2000)
def test_level_round_trip(ident: object) -> None:
    token = encode_level(ident)
    assert token
    assert "/" not in token and "+" not in token and "#" not in token
    assert not token.startswith("$")
    assert not any(c in token for c in _FORBIDDEN)
    back = decode_level(token)
    assert _same(back, ident)


@pytest.mark.parametrize(
    ("ident", "token"),
    [
        ("#changed", "%23changed"),
        ("a/b", "a%2Fb"),
        ("", "!e"),
        (42, "!i:42"),
        (1.0, "!i:1"),
        (1.5, "!f:1.5"),
        ("$SYS", "%24SYS"),
        ("!x", "%21x"),
        ("x!", "x!"),
        ("50%", "50%25"),
        ("a+b", "a%2Bb"),
        ("\x00", "%00"),
        ("\ufffe", "%EF%BF%BE"),
        ("temp é", "temp é"),
    ],
)
def test_documented_tokens(ident: object, token: str) -> None:
    assert encode_level(ident) == token
    assert decode_level(token) == ident


def test_special_floats_and_refusals() -> None:
    assert decode_level(encode_level(float("inf"))) == float("inf")
    assert math.isnan(decode_level(encode_level(float("nan"))))
    for bad in (True, None, (1,), b"x", [1]):
        with pytest.raises(TypeError):
            encode_level(bad)
    with pytest.raises(ValueError):
        encode_level("\ud800")


def test_plain_device_levels_read_leniently() -> None:
    assert decode_level("50%") == "50%"
    assert decode_level("%zz") == "%zz"
    assert decode_level("!weird") == "!weird"
    assert decode_level("%FF") == "%FF"  # not UTF-8: kept as written
    assert decode_level("temperature") == "temperature"


@pytest.mark.parametrize("prefix", ["", "$sig", "a/+", "a/#", "a//b", "/a", "a/", "a\x00", "a\x01b", 3])
def test_bad_prefix(prefix: object) -> None:
    with pytest.raises(ValueError):
        check_prefix(prefix)  # type: ignore[arg-type]


def test_tree_and_parse() -> None:
    t = Topics("site1/sig")
    assert t.node("n1") == "site1/sig/node/n1"
    assert t.birth("n1", "thermo") == "site1/sig/node/n1/sender/thermo"
    assert t.event("thermo", "#temp") == "site1/sig/event/thermo/%23temp"
    assert t.request("thermo", 7) == "site1/sig/request/thermo/!i:7"
    assert t.reply("n1") == "site1/sig/reply/n1"
    assert t.event_filter(None, "#temp") == "site1/sig/event/+/%23temp"
    assert t.birth_filter() == "site1/sig/node/+/sender/+"
    p = t.parse("site1/sig/event/a%2Fb/!i:3")
    assert p is not None and (p.kind, p.sender, p.name) == ("event", "a/b", 3)
    p = t.parse(t.birth("n2", ""))
    assert p is not None and (p.kind, p.nid, p.sender) == ("birth", "n2", "")
    assert t.parse("site1/sig/cmd/rebirth") is not None
    for outside in ("sig/event/a/b", "site1/sig/event/a", "site1/sig/event/a/b/c", "site1/sig/other/x"):
        assert t.parse(outside) is None


def test_demand_filters_follow_the_design_table() -> None:
    t = Topics("sig")
    presence = ["sig/node/+/sender/+", "sig/node/+"]
    assert demand_filters(t, "s", "e") == ["sig/event/s/e"]
    assert demand_filters(t, "s", None) == ["sig/event/s/+", "sig/node/+/sender/s", "sig/node/+"]
    assert demand_filters(t, None, None) == ["sig/event/+/+"] + presence
    assert demand_filters(t, None, "#c") == ["sig/event/+/%23c"]
    assert demand_filters(t, None, "#connect") == presence
    assert demand_filters(t, "s", "#disconnect") == ["sig/node/+/sender/s", "sig/node/+"]
    assert demand_filters(t, None, "plain") == []


def test_filter_matching_rules() -> None:
    assert filter_matches("a/#", "a")
    assert filter_matches("a/+/c", "a//c")
    assert not filter_matches("+/x", "$SYS/x")
    assert not filter_matches("#", "$SYS/x")
    assert filter_matches("$SYS/#", "$SYS/x")
    assert not filter_matches("a/+", "a/b/c")
    for bad in ("", "a/b#", "a/#/b", "a+/b"):
        with pytest.raises(ValueError):
            check_filter(bad)


levels = st.sampled_from(["a", "b", "+", ""])
filters = st.lists(levels, min_size=1, max_size=3).map("/".join) | st.lists(levels, max_size=2).map(
    lambda ls: "/".join([*ls, "#"])
)
topic_names = st.lists(st.sampled_from(["a", "b", "c", ""]), min_size=1, max_size=4).map("/".join)


@given(filters, filters, st.lists(topic_names, min_size=30, max_size=30))
@settings(max_examples=500)
def test_overlap_covers_join_agree_with_matching(a: str, b: str, names: list[str]) -> None:
    both = [n for n in names if filter_matches(a, n) and filter_matches(b, n)]
    if both:
        assert overlap(a, b)
    if covers(a, b):
        assert all(filter_matches(a, n) for n in names if filter_matches(b, n))
    j = join(a, b)
    assert all(filter_matches(j, n) for n in names if filter_matches(a, n) or filter_matches(b, n))


@given(st.lists(filters, min_size=1, max_size=8), st.lists(topic_names, min_size=40, max_size=40))
@settings(max_examples=300)
def test_311_filter_set_has_no_overlaps_and_loses_nothing(wanted: list[str], names: list[str]) -> None:
    fs = FilterSet(identifiers=False)
    for f in wanted:
        fs.add(f)
    subs = list(fs.subscribed)
    for i, x in enumerate(subs):
        for y in subs[i + 1:]:
            assert not overlap(x, y), (x, y)
    for n in names:
        if any(filter_matches(f, n) for f in wanted):
            assert sum(filter_matches(s, n) for s in subs) == 1


def test_v5_filter_set_keeps_one_copy_per_message() -> None:
    fs = FilterSet(identifiers=True)
    assert len(fs.add("sig/event/a/+")[0]) == 1
    assert fs.subscribed == {"sig/event/a/+": None}  # alone: no identifier needed
    changes = fs.add("sig/event/+/x")[0]
    # they overlap: both get an identifier (the first one is subscribed again)
    assert sorted(f for f, _ in changes) == ["sig/event/+/x", "sig/event/a/+"]
    assert all(sid is not None for _, sid in changes)
    ids = dict(fs.subscribed)
    low, high = sorted([ids["sig/event/a/+"], ids["sig/event/+/x"]])
    assert fs.accept("sig/event/a/x", [low])
    assert not fs.accept("sig/event/a/x", [high])
    assert fs.accept("sig/event/a/x", [high, low])
    assert fs.accept("sig/event/b/x", [ids["sig/event/+/x"]])
    assert fs.add("sig/event/a/+") == ([], [])  # refcounted
    assert fs.remove("sig/event/a/+") == ([], [])
    subscribe, unsubscribe = fs.remove("sig/event/a/+")
    assert unsubscribe == ["sig/event/a/+"] and subscribe == [("sig/event/+/x", None)]
    assert fs.accept("sig/event/a/x", [high])
    assert fs.accept("sig/event/a/x", None)


def test_payloads() -> None:
    assert encode_data({"t": 21.5, "n": "é"}) == '{"t":21.5,"n":"é"}'.encode()
    assert decode_data(b"21.5") == (21.5, None)
    assert decode_data(b"on") == ("on", None)
    assert decode_data(b"") == (None, None)
    assert decode_data(b"\xff\x00") == ("/wA=", {"encoding": "base64"})
    state = NodeState(True, "s1", 5, 4, 30.0)
    assert NodeState.decode(state.encode()) == state
    assert NodeState.decode(b"[]") is None
    birth = Birth(["a", 1], None, "s1")
    assert Birth.decode(birth.encode()) == birth
    assert birth.describe() == {"events": ["a", 1], "requests": None}
    assert json.loads(state.encode())["sig"] == CONVENTION == "1.0"  # docs/convention.md's version
    assert "retained" not in json.loads(birth.encode())
    kept = Birth(["a", 1], ["get"], "s1", retained=[1])
    assert json.loads(kept.encode())["retained"] == [1] and Birth.decode(kept.encode()) == kept


def test_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    u = parse_url("mqtts://bob:p%40ss@broker.lan:8884/site1/sig")
    assert (u.host, u.port, u.tls, u.username, u.password, u.prefix) == ("broker.lan", 8884, True, "bob", "p@ss",
                                                                         "site1/sig")
    assert "p@ss" not in str(u)
    u = parse_url("mqtt://127.0.0.1")
    assert (u.port, u.tls, u.prefix, u.username) == (1883, False, None, None)
    monkeypatch.setenv("SIG_MQTT_PASSWORD", "secret")
    assert parse_url("mqtt://alice@h").password == "secret"
    for bad in ("http://h", "mqtt://h:notaport"):
        with pytest.raises(ValueError):
            parse_url(bad)
