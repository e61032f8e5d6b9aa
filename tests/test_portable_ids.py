"""Portable identifier escaping: ``.``, space, ``*`` and ``>`` escaped too (NATS, RabbitMQ), off by default."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sig_mqtt import Topics, decode_level, encode_level

identifiers = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    st.text(alphabet=". *>!$%/+#ab1"),
    st.integers(),
    st.floats(allow_nan=False),
)


@given(identifiers)
def test_portable_levels_round_trip_and_hold_no_separator_or_wildcard(ident: Any) -> None:
    token = encode_level(ident, portable=True)
    assert not set(token) & set(". *>/+#")
    again = decode_level(token)
    assert again == ident and (type(again) is type(ident) or (isinstance(ident, float) and math.isfinite(ident)
                               and ident.is_integer()))


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=". *>")))
def test_portable_levels_equal_todays_levels_without_those_characters(name: str) -> None:
    assert encode_level(name, portable=True) == encode_level(name)


def test_examples_and_the_default_stays_as_today() -> None:
    assert encode_level("a.b c") == "a.b c"
    assert encode_level("a.b c", portable=True) == "a%2Eb%20c"
    assert encode_level("*>", portable=True) == "%2A%3E"
    assert encode_level(1.5, portable=True) == "!f:1%2E5" and decode_level("!f:1%2E5") == 1.5
    plain, portable = Topics("sig"), Topics("sig", portable=True)
    assert plain.event("a.b c", "x.y") == "sig/event/a.b c/x.y"
    assert portable.event("a.b c", "x.y") == "sig/event/a%2Eb%20c/x%2Ey"
    assert portable.birth("n.1", "a b") == "sig/node/n%2E1/sender/a%20b"
    assert portable.request_filter("a*b") == "sig/request/a%2Ab/+"
    parsed = portable.parse("sig/event/a%2Eb%20c/x%2Ey")
    assert parsed is not None and (parsed.sender, parsed.name) == ("a.b c", "x.y")
