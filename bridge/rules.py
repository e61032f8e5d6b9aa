"""The bridge's rule engine (pure: no I/O, no clocks): foreign MQTT topics <-> pysig events.

    rules = Rules.from_config(load_config("bridge.toml"))
    rules.inbound_filters()                        # MQTT filters to subscribe to
    for item in rules.inbound(topic, payload, retained):   # list[InboundEvent]
        ...  # item.kind "event": dispatch (item.sender, item.event, item.data, item.info)
             # item.kind "connect" / "disconnect": the device item.sender came / went
    rules.outbound_subscriptions()                 # (sender, event) pairs to listen to, None = any
    for message in rules.outbound(sender, event, data, origin_inbound=False):
        ...  # publish message.payload on message.topic with message.qos, message.retain

Inbound: a rule's filter matches a topic by the MQTT rules (``+`` one level,
``#`` the rest including the parent, topics starting with ``$`` not matched by a
leading wildcard). The sender and event are the rule's templates filled with the
``+`` levels (``{1}``..) and what ``#`` matched (``{#}``); identifiers are always
strings (a level ``42`` stays ``"42"``). The payload is read as the rule's
``payload`` says: ``auto`` (JSON when it parses, else the text), ``json``,
``number`` or ``text``; a payload that is not UTF-8 arrives as base64 text with
``info["encoding"] = "base64"`` (``auto`` and ``text``). ``field`` takes a key (or
dotted path) out of a JSON object; a payload without it gives no event. An
``availability`` rule maps its ``online`` / ``offline`` payloads (also a JSON
``{"state": "online"}`` as Zigbee2MQTT sends) to ``connect`` / ``disconnect``.

Outbound: a pysig event whose sender and event match a rule (``None`` = any) is
published on the rule's topic, ``{sender}`` and ``{event}`` filled with the
identifier as text (``/ + # %``, control characters and a leading ``$`` are
percent-encoded so the result stays one level of a valid topic name).

Loop rule (DESIGN.md, Decisions -> Bridge): an outbound rule never sends back
what an inbound rule of the same bridge brought in. The caller says where an
event came from with ``Rules.outbound(..., origin_inbound=True)``; such events
give no message at all. (The service marks inbound events with ``info["topic"]``,
so ``origin_inbound = "topic" in info``.)
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import BridgeConfig, InboundSpec, OutboundSpec, Placeholder, Template

__all__ = [
    "InboundEvent",
    "InboundRule",
    "OutboundMessage",
    "OutboundRule",
    "Rules",
    "match_filter",
    "topic_matches",
]

logger = logging.getLogger("sig.bridge.rules")

_MISSING = object()


def match_filter(topic_filter: str, topic: str) -> tuple[list[str], str | None] | None:
    """Match an MQTT topic name against a filter (MQTT 3.1.1 / 5 rules).

    Returns ``None`` when it does not match, else ``(plus, rest)``: the levels the
    ``+`` wildcards matched, in order, and what ``#`` matched (``""`` for the parent
    level itself; ``None`` when the filter has no ``#``).
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return None
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    plus: list[str] = []
    for index, flevel in enumerate(flevels):
        if flevel == "#":
            return plus, "/".join(tlevels[index:])
        if index >= len(tlevels):
            return None
        if flevel == "+":
            plus.append(tlevels[index])
        elif flevel != tlevels[index]:
            return None
    if len(flevels) != len(tlevels):
        return None
    return plus, None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether an MQTT topic name matches a subscription filter."""
    return match_filter(topic_filter, topic) is not None


@dataclass(frozen=True)
class InboundEvent:
    """What an inbound rule made of an MQTT message.

    ``kind`` is ``"event"`` (dispatch ``sender``, ``event``, ``data`` with ``info``),
    ``"connect"`` or ``"disconnect"`` (the device ``sender`` came or went; ``event`` is
    ``"#connect"`` / ``"#disconnect"``, ``data`` ``None``; ``events`` are the events the
    inbound rules give such a device, for its ``#connect`` data).
    ``info`` holds ``topic``, ``retained`` and, for base64 data, ``encoding``.
    """

    sender: str
    event: str
    data: Any
    info: dict[str, Any]
    kind: str = "event"
    republish: bool = False
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutboundMessage:
    """An MQTT message an outbound rule publishes."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1


def _fill(template: Template, plus: Sequence[str], rest: str | None) -> str:
    out: list[str] = []
    for part in template:
        if isinstance(part, Placeholder):
            out.append((rest or "") if part.name == "#" else plus[int(part.name) - 1])
        else:
            out.append(part)
    return "".join(out)


def _take(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _number(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class InboundRule:
    """One ``[[inbound]]`` rule; :meth:`match` turns a matching MQTT message into an :class:`InboundEvent`."""

    def __init__(self, spec: InboundSpec, device_events: Iterable[str] = ()) -> None:
        self.spec = spec
        self.device_events = list(device_events)

    def __repr__(self) -> str:
        return "InboundRule(%r)" % self.spec.topic

    def match(self, topic: str, payload: bytes, retained: bool = False) -> InboundEvent | None:
        """The event this rule makes of the message, or ``None`` (no match, or a payload it cannot use)."""
        spec = self.spec
        found = match_filter(spec.topic, topic)
        if found is None:
            return None
        plus, rest = found
        sender = _fill(spec.sender, plus, rest)
        info: dict[str, Any] = {"topic": topic, "retained": retained}
        if spec.availability:
            return self._availability(sender, payload, info)
        event = _fill(spec.event, plus, rest)
        data = self._data(payload, info)
        if data is _MISSING:
            return None
        return InboundEvent(sender, event, data, info, "event", spec.republish)

    def _data(self, payload: bytes, info: dict[str, Any]) -> Any:
        spec = self.spec
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            if spec.payload in ("json", "number") or spec.field is not None:
                logger.debug("[BRIDGE] %s: payload on %s is not UTF-8: dropped", self, info["topic"])
                return _MISSING
            info["encoding"] = "base64"
            return base64.b64encode(payload).decode("ascii")
        if spec.field is not None:
            return self._field(text, info)
        if spec.payload == "text":
            return text
        if spec.payload == "number":
            number = _number(text)
            if number is None:
                logger.debug("[BRIDGE] %s: payload on %s is not a number: dropped", self, info["topic"])
                return _MISSING
            return number
        try:
            return json.loads(text)
        except ValueError:
            if spec.payload == "json":
                logger.debug("[BRIDGE] %s: payload on %s is not JSON: dropped", self, info["topic"])
                return _MISSING
            return text

    def _field(self, text: str, info: dict[str, Any]) -> Any:
        """The rule's field out of a JSON object payload, converted as its ``payload`` says."""
        spec = self.spec
        assert spec.field is not None
        try:
            data = _take(json.loads(text), spec.field)
        except ValueError:
            logger.debug("[BRIDGE] %s: payload on %s is not JSON: dropped", self, info["topic"])
            return _MISSING
        if data is _MISSING:
            return _MISSING
        if spec.payload == "number":
            if isinstance(data, str):
                data = _number(data)
            elif isinstance(data, bool) or not isinstance(data, (int, float)):
                data = None
            return _MISSING if data is None else data
        if spec.payload == "text" and not isinstance(data, str):
            return json.dumps(data, ensure_ascii=False)
        return data

    def _availability(self, sender: str, payload: bytes, info: dict[str, Any]) -> InboundEvent | None:
        spec = self.spec
        try:
            state: Any = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
        if state.startswith("{"):
            try:
                state = json.loads(state).get("state")
            except (ValueError, AttributeError):
                return None
        elif state.startswith('"'):
            try:
                state = json.loads(state)
            except ValueError:
                return None
        if state == spec.online:
            kind = "connect"
        elif state == spec.offline:
            kind = "disconnect"
        else:
            if payload:
                logger.debug("[BRIDGE] %s: availability %r of %r is neither %r nor %r", self, state, sender,
                             spec.online, spec.offline)
            return None
        return InboundEvent(sender, "#" + kind, None, info, kind, False, list(self.device_events))


_UNSAFE_LEVEL = re.compile("[%/+#\x00-\x1f\x7f-\x9f]")


def _level(ident: Any, first: bool) -> str:
    if isinstance(ident, float) and ident.is_integer():
        ident = int(ident)
    text = ident if isinstance(ident, str) else str(ident)
    text = _UNSAFE_LEVEL.sub(lambda m: "".join("%%%02X" % b for b in m.group().encode("utf-8")), text)
    if first and text.startswith("$"):
        text = "%24" + text[1:]
    return text


def _name(ident: Any) -> str:
    if isinstance(ident, float) and ident.is_integer():
        return str(int(ident))
    return ident if isinstance(ident, str) else str(ident)


class OutboundRule:
    """One ``[[outbound]]`` rule; :meth:`message` turns a matching pysig event into an :class:`OutboundMessage`."""

    def __init__(self, spec: OutboundSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return "OutboundRule(%r, %r)" % (self.spec.sender, self.spec.event)

    def matches(self, sender: Any, event: Any) -> bool:
        """Tell whether the rule takes events ``event`` of ``sender`` (compared as text)."""
        spec = self.spec
        return (spec.sender is None or _name(sender) == spec.sender) and (
            spec.event is None or _name(event) == spec.event)

    def message(self, sender: Any, event: Any, data: Any) -> OutboundMessage | None:
        """The message for this event, or ``None`` (no match, no such field, or data JSON cannot carry)."""
        spec = self.spec
        if not self.matches(sender, event):
            return None
        if spec.field is not None:
            data = _take(data, spec.field)
            if data is _MISSING:
                logger.debug("[BRIDGE] %s: event %r of %r has no field %s", self, event, sender, ".".join(spec.field))
                return None
        parts: list[str] = []
        for index, part in enumerate(spec.topic):
            if isinstance(part, Placeholder):
                parts.append(_level(sender if part.name == "sender" else event, index == 0))
            else:
                parts.append(part)
        topic = "".join(parts)
        try:
            topic.encode("utf-8")
            if spec.payload == "text" and isinstance(data, str):
                payload = data.encode("utf-8")
            else:
                payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:  # not JSON, NaN, a lone surrogate (UnicodeEncodeError)
            logger.warning("[BRIDGE] %s: event %r of %r not published: %s", self, event, sender, exc)
            return None
        return OutboundMessage(topic, payload, spec.retain, spec.qos)


class Rules:
    """All the rules of one bridge."""

    def __init__(self, inbound: Sequence[InboundSpec] = (), outbound: Sequence[OutboundSpec] = ()) -> None:
        device_events = sorted({
            part for spec in inbound if not spec.availability and len(spec.event) == 1
            for part in spec.event if isinstance(part, str)
        })
        self.inbound_rules = [InboundRule(spec, device_events) for spec in inbound]
        self.outbound_rules = [OutboundRule(spec) for spec in outbound]

    @classmethod
    def from_config(cls, config: BridgeConfig) -> Rules:
        """The rules of a config file."""
        return cls(config.inbound, config.outbound)

    def __bool__(self) -> bool:
        return bool(self.inbound_rules or self.outbound_rules)

    def inbound_filters(self) -> list[str]:
        """The MQTT filters the inbound rules need, each once, in config order."""
        return list(dict.fromkeys(rule.spec.topic for rule in self.inbound_rules))

    def inbound(self, topic: str, payload: bytes, retained: bool = False) -> list[InboundEvent]:
        """What every matching inbound rule makes of one MQTT message, in config order."""
        out = []
        for rule in self.inbound_rules:
            item = rule.match(topic, payload, retained)
            if item is not None:
                out.append(item)
        return out

    def outbound_subscriptions(self) -> list[tuple[str | None, str | None]]:
        """Non-overlapping ``(sender, event)`` pairs (``None`` = any) that every outbound rule hears its events on.

        Each event reaches at most one of them, so calling :meth:`outbound` once per
        listener call publishes each message once. A rule with an event but no sender
        needs ``(None, None)`` unless its event is a ``#channel`` (pysig fires
        ``(None, "plain")`` for nothing); overlapping pairs widen to ``(None, None)``.
        """
        pairs: list[tuple[str | None, str | None]] = []
        for rule in self.outbound_rules:
            sender, event = rule.spec.sender, rule.spec.event
            if sender is None and event is not None and not event.startswith("#"):
                event = None
            pairs.append((sender, event))
        pairs = list(dict.fromkeys(pairs))
        pairs = [p for p in pairs if not (p[1] is not None and (p[0], None) in pairs)]

        def overlap(a: tuple[str | None, str | None], b: tuple[str | None, str | None]) -> bool:
            return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))

        if any(overlap(a, b) for i, a in enumerate(pairs) for b in pairs[i + 1:]):
            return [(None, None)]
        return pairs

    def outbound(self, sender: Any, event: Any, data: Any, origin_inbound: bool = False) -> list[OutboundMessage]:
        """The messages the outbound rules make of one pysig event, in config order.

        ``origin_inbound=True`` says the event was brought in by an inbound rule of
        this bridge: it is never sent back (no messages).
        """
        if origin_inbound:
            return []
        out = []
        for rule in self.outbound_rules:
            message = rule.message(sender, event, data)
            if message is not None:
                out.append(message)
        return out
