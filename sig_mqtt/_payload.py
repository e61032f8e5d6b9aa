"""Payloads of sig's MQTT tree: event data, node states, births (pure, no I/O).

Event payloads are the event data as JSON and nothing else, so that
``mosquitto_sub``, Home Assistant and Node-RED read them as they are. What
plain devices publish is read leniently: JSON when it parses, else UTF-8 text,
else base64 text with ``info["encoding"] = "base64"``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from sig import compact_encoder

__all__ = [
    "CONVENTION",
    "NodeState",
    "Birth",
    "encode_data",
    "decode_data",
    "encode_json",
    "decode_json_object",
    "now_ms",
]

#: the version of docs/convention.md this package follows (the node state's ``"sig"`` field)
CONVENTION = "1.0"

_dumps = compact_encoder(ensure_ascii=False, allow_nan=True)
_loads = json.loads


def encode_json(value: Any) -> bytes:
    """Encode a JSON value as compact UTF-8 bytes (raises TypeError / ValueError if it is not one)."""
    return _dumps(value).encode("utf-8")


def encode_data(data: Any) -> bytes:
    """Encode event data as its MQTT payload: JSON (``None`` -> ``null``)."""
    return _dumps(data).encode("utf-8")


def decode_data(payload: bytes) -> tuple[Any, dict[str, Any] | None]:
    """Decode an event payload: ``(data, extra info or None)``.

    JSON when it parses; otherwise UTF-8 text; otherwise base64 text with
    ``{"encoding": "base64"}``. An empty payload is ``None``.
    """
    if not payload:
        return None, None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), {"encoding": "base64"}
    try:
        return _loads(text), None
    except ValueError:
        return text, None


def decode_json_object(payload: bytes) -> dict[str, Any] | None:
    """Decode a payload that must be a JSON object; ``None`` if it is not one."""
    try:
        value = _loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


_MAX_TS = 10**14  # ms: year 5138
_MAX_HEARTBEAT = 10**6  # s


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ident(value: Any) -> bool:
    """A pysig identifier: str, int or a finite float (not bool)."""
    if isinstance(value, str):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return _number(value)


def _ms(value: Any) -> int | None:
    """A ``ts`` or ``since`` field: wall-clock milliseconds, an int in range, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_TS else None


def _heartbeat(value: Any) -> float | None:
    """A ``heartbeat`` field: seconds, positive and sane, else None."""
    return float(value) if _number(value) and 0 < value <= _MAX_HEARTBEAT else None


def now_ms() -> int:
    """Wall-clock time in milliseconds (what ``ts`` fields carry)."""
    return int(time.time() * 1000)


@dataclass
class NodeState:
    """``P/node/NID``: ``{"online", "session", "ts", "proto", "heartbeat", "sig"}`` (``sig``: :data:`CONVENTION`)."""

    online: bool
    session: str
    ts: int | None = None
    proto: int = 5
    heartbeat: float | None = None

    def encode(self) -> bytes:
        """The retained payload."""
        body: dict[str, Any] = {"online": self.online, "session": self.session, "proto": self.proto,
                                "sig": CONVENTION}
        if self.ts is not None:
            body["ts"] = self.ts
        if self.heartbeat is not None:
            body["heartbeat"] = self.heartbeat
        return encode_json(body)

    @classmethod
    def decode(cls, payload: bytes) -> NodeState | None:
        """Read a node state; ``None`` when it is not one (logged by the caller)."""
        body = decode_json_object(payload)
        if body is None or not isinstance(body.get("online"), bool):
            return None
        session = body.get("session")
        proto = body.get("proto")
        return cls(
            online=body["online"],
            session=session if isinstance(session, str) else "",
            ts=_ms(body.get("ts")),
            proto=proto if proto in (4, 5) and not isinstance(proto, bool) else 5,
            heartbeat=_heartbeat(body.get("heartbeat")),
        )


@dataclass
class Birth:
    """``P/node/NID/sender/S``: ``{"events", "requests", "session"[, "retained"][, "heartbeat"][, "shared",
    "pending", "since"][, "rebirth"]}``.

    ``events`` and ``requests`` are pysig's ``#connect`` data; ``retained``: the events the node
    publishes retained, when there are any; ``heartbeat``: the node's, as in its state; ``shared``:
    several nodes may host the sender (load-balanced requests); ``pending``: a claim on the name
    not decided yet (not connected); ``since``: when the node claimed the name (ms since 1970;
    see :mod:`._claims`); ``rebirth``: published again in answer to a rebirth request, so a
    listener that did not know the sender takes it as state sync, as a retained birth, not as a
    ``#connect`` (brokers that hand no retained births to wildcard subscriptions send only these).
    """

    events: list[Any]
    requests: list[Any] | None
    session: str
    retained: list[Any] | None = None
    heartbeat: float | None = None
    shared: bool = False
    pending: bool = False
    since: int | None = None
    rebirth: bool = False

    def encode(self) -> bytes:
        """The retained payload."""
        body: dict[str, Any] = {"events": self.events, "requests": self.requests, "session": self.session}
        if self.retained:
            body["retained"] = self.retained
        if self.heartbeat is not None:
            body["heartbeat"] = self.heartbeat
        if self.shared:
            body["shared"] = True
        if self.pending:
            body["pending"] = True
        if self.since is not None:
            body["since"] = self.since
        if self.rebirth:
            body["rebirth"] = True
        return encode_json(body)

    def describe(self) -> dict[str, Any]:
        """What ``#connect`` / ``#disconnect`` listeners get."""
        return {"events": list(self.events), "requests": None if self.requests is None else list(self.requests)}

    @classmethod
    def decode(cls, payload: bytes) -> Birth | None:
        """Read a birth; ``None`` when it is not one."""
        body = decode_json_object(payload)
        if body is None or not isinstance(body.get("events"), list):
            return None
        requests = body.get("requests")
        if not all(_ident(event) for event in body["events"]) or (
            isinstance(requests, list) and not all(m is None or _ident(m) for m in requests)
        ):
            return None  # names a JSON value that is no pysig identifier
        session = body.get("session")
        retained = body.get("retained")
        return cls(
            events=body["events"],
            requests=requests if isinstance(requests, list) else None,
            session=session if isinstance(session, str) else "",
            retained=retained if isinstance(retained, list) else None,
            heartbeat=_heartbeat(body.get("heartbeat")),
            shared=body.get("shared") is True,
            pending=body.get("pending") is True,
            since=_ms(body.get("since")),
            rebirth=body.get("rebirth") is True,
        )
