"""sig.compact_encoder and signal frames: the bytes of json.dumps(value, separators=(",", ":")), errors included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sig
from sig._codec import encode, signal_frame

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["é", "\u2028", "\x00", '"\\', "😀"]),
)
keys = st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=10), st.tuples(inner, inner),
                            st.dictionaries(keys, inner, max_size=10)),
    max_leaves=30,
)


def reference(value: Any, ensure_ascii: bool, allow_nan: bool) -> tuple[str, str | None]:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=allow_nan), None
    except (TypeError, ValueError) as exc:
        return "", type(exc).__name__


@settings(max_examples=1000, deadline=None)
@given(value=values, ensure_ascii=st.booleans(), allow_nan=st.booleans())
def test_same_text_or_same_error_as_json_dumps(value: Any, ensure_ascii: bool, allow_nan: bool) -> None:
    encode = sig.compact_encoder(ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    expected, error = reference(value, ensure_ascii, allow_nan)
    if error is None:
        assert encode(value) == expected
    else:
        with pytest.raises(ValueError if error == "ValueError" else TypeError):
            encode(value)


def test_circular_values_and_unsupported_types_raise_as_json_does() -> None:
    encode = sig.compact_encoder()
    looped: dict[str, Any] = {}
    looped["self"] = looped
    listed: list[Any] = [1]
    listed.append({"back": listed})
    for value in (looped, listed, {"a": {"b": {"c": {"d": looped}}}}):
        with pytest.raises(ValueError, match="Circular reference"):
            encode(value)
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode({"x": {1, 2}})
    with pytest.raises(ValueError):
        encode({"x": [float("nan")]})
    deep = {"deep": [[[[[[{"k": "é"}]]]]]]}
    assert encode(deep) == json.dumps(deep, separators=(",", ":"))
    assert encode("é") == '"\\u00e9"' and encode(7) == "7" and encode(True) == "true"


idents = st.one_of(st.text(max_size=5), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False), st.booleans())


@settings(max_examples=500, deadline=None)
@given(infos=st.lists(st.dictionaries(st.sampled_from(["sender", "event", "retained"]), idents, max_size=3),
                      min_size=1, max_size=8),
       listener_id=st.one_of(st.none(), st.integers(1, 9)))
def test_signal_frames_are_json_dumps_of_the_message_even_when_infos_repeat(
        infos: list[dict[str, Any]], listener_id: int | None) -> None:
    """Frames of signals reuse the encoding of an info seen before: never one of another (1 vs 1.0 vs True)."""
    for data, info in enumerate(infos + infos[::-1]):
        params: dict[str, Any] = {"info": info, "data": data}
        if listener_id is not None:
            params = {"listener_id": listener_id, **params}
        message = {"method": "signal", "params": params}
        assert encode(message) == (json.dumps(message, separators=(",", ":")) + "\n").encode()
        if listener_id is not None:  # what a server's remote listener posts (Carrier.post_signal)
            assert signal_frame(listener_id, info, data) == encode(message)
