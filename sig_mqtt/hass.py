"""Home Assistant MQTT discovery for sig senders: the mapping, pure (no I/O, no clock).

A sig sender becomes one Home Assistant *device*; each declared event an entity whose
``state_topic`` is sig's own ``P/event/S/E`` (the payload stays plain JSON); each declared
request method a ``button`` (or, by hint, a ``switch``/``number``/``select``/``text``) whose
command is a sig request on ``P/request/S/M``; availability comes from sig's own node state and
birth (``P/node/NID`` and ``P/node/NID/sender/S``), so no extra topic is needed.

Which platform an event gets, when no hint says: the first value decides (:func:`classify`):
numbers -> ``sensor`` (``state_class: measurement``), ``true``/``false`` -> ``binary_sensor``,
objects -> ``sensor`` with ``json_attributes_topic``, anything else (strings, lists, ``null``:
pysig's fire-and-forget events such as ``#notify`` or ``ir``) -> the ``event`` platform.

Names that other systems see, and that stay stable across restarts:

* device ``identifiers``: ``sig:<prefix>/<sender level>``; the announcing node is a device too
  (``sig:<prefix>/node/<nid>``, a ``connectivity`` binary sensor) and every sender's ``via_device``;
* ``unique_id``: ``sig:<prefix>/<sender level>/event/<event level>`` (``.../request/<method level>``);
* entity ids: ``<platform>.<sender>_<event>`` (``object_id``), slugged as Home Assistant does;
* config topics: ``<discovery prefix>/<platform>/<sender key>/<entity key>/config``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sig

from ._topics import Topics, decode_level, encode_level

__all__ = [
    "EVENT_PLATFORMS",
    "HassSettings",
    "REQUEST_PLATFORMS",
    "Discovery",
    "Entity",
    "classify",
]

#: the platforms an event may become, and those a request method may become
EVENT_PLATFORMS = ("sensor", "binary_sensor", "event")
REQUEST_PLATFORMS = ("button", "switch", "number", "select", "text")
_EVENT_HINTS = frozenset({
    "component", "device_class", "unit_of_measurement", "name", "icon", "value_template", "ignore",
    "state_class", "entity_category", "suggested_display_precision", "expire_after", "force_update",
})
_REQUEST_HINTS = frozenset({
    "component", "name", "icon", "ignore", "payload", "options", "min", "max", "step", "mode", "device_class",
    "entity_category", "unit_of_measurement",
})
_SENDER_HINTS = frozenset({"name", "model", "ignore", "events", "requests"})
_SLUG = re.compile(r"[^a-z0-9]+")
_KEY_SAFE = re.compile(r"[a-z0-9_]{1,64}")

# Availability from sig's own retained topics: the node state says {"online": true} while the
# node lives (its Will says false); a birth is a JSON object while the sender exists, empty
# once it was removed or its connection was lost.
NODE_AVAILABILITY = "{{ 'online' if value_json is defined and value_json.online is defined and value_json.online" \
    " else 'offline' }}"
BIRTH_AVAILABILITY = "{{ 'online' if value_json is defined and value_json.events is defined else 'offline' }}"


def classify(value: Any) -> str:
    """Return the platform of an event whose first value is ``value`` (see the module docstring)."""
    if isinstance(value, bool):
        return "binary_sensor"
    if isinstance(value, (int, float)):
        return "sensor"
    if isinstance(value, dict):
        return "sensor"
    return "event"


def slug(text: str) -> str:
    """Lower-case ASCII letters, digits and ``_`` (Home Assistant's entity-id alphabet)."""
    return _SLUG.sub("_", text.lower()).strip("_") or "x"


def topic_key(token: str) -> str:
    """A discovery-topic level for ``token``: the token itself when safe, else a slug plus a short hash."""
    if _KEY_SAFE.fullmatch(token):
        return token
    return "%s_%s" % (slug(token)[:40], hashlib.sha1(token.encode("utf-8")).hexdigest()[:8])


def hint_key(ident: Any) -> str:
    """How ``bridge.toml`` names an identifier: a string as is, a number by its topic level (``!i:5``)."""
    return ident if isinstance(ident, str) else encode_level(ident)


def display(ident: Any) -> str:
    """A human name for an identifier: a channel's ``#`` dropped."""
    text = ident if isinstance(ident, str) else str(ident)
    return text[1:] if text.startswith("#") and len(text) > 1 else (text or "(empty)")


def _json_in_template(value: str) -> str:
    # A JSON string that Jinja leaves alone: braces escaped so that a name with "{{" is no template.
    return json.dumps(value).replace("{", "\\u007b").replace("}", "\\u007d")


def _check_hints(where: str, hints: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(hints, Mapping):
        raise ValueError("%s: expected a table of hints, got %r" % (where, hints))
    unknown = sorted(set(hints) - allowed)
    if unknown:
        raise ValueError("%s: unknown hint(s) %s (allowed: %s)" % (where, ", ".join(unknown),
                                                                   ", ".join(sorted(allowed))))
    return dict(hints)


@dataclass(frozen=True)
class HassSettings:
    """What to announce, and the user's hints.

    Args:
        discovery_prefix: Home Assistant's discovery prefix (``homeassistant``).
        senders: per-sender hints: ``{sender: {"name", "model", "ignore", "events": {event: hints},
            "requests": {method: hints}}}``.
        events: per-event hints for every sender: ``{event: hints}`` (a sender's own win).
        requests: per-method hints for every sender: ``{method: hints}``.

    Event hints: ``component`` (``sensor``, ``binary_sensor``, ``event``), ``device_class``,
    ``unit_of_measurement``, ``name``, ``icon``, ``value_template``, ``state_class``,
    ``entity_category``, ``suggested_display_precision``, ``expire_after``, ``force_update``,
    ``ignore``. Request hints: ``component`` (``button``, ``switch``, ``number``, ``select``,
    ``text``), ``payload`` (a button's request params), ``options`` (select), ``min``/``max``/
    ``step``/``mode`` (number), ``name``, ``icon``, ``device_class``, ``entity_category``,
    ``unit_of_measurement``, ``ignore``.

    Raises:
        ValueError: an unknown hint, platform or prefix.
    """

    discovery_prefix: str = "homeassistant"
    senders: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    events: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    requests: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        prefix = self.discovery_prefix
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "+#\0") or prefix.endswith("/"):
            raise ValueError("bad discovery prefix %r" % (prefix,))
        for name, hints in self.senders.items():
            checked = _check_hints("sender %r" % name, hints, _SENDER_HINTS)
            for event, event_hints in dict(checked.get("events") or {}).items():
                self._check_event("sender %r event %r" % (name, event), event_hints)
            for method, request_hints in dict(checked.get("requests") or {}).items():
                self._check_request("sender %r request %r" % (name, method), request_hints)
        for event, event_hints in self.events.items():
            self._check_event("event %r" % event, event_hints)
        for method, request_hints in self.requests.items():
            self._check_request("request %r" % method, request_hints)

    @staticmethod
    def _check_event(where: str, hints: Any) -> None:
        checked = _check_hints(where, hints, _EVENT_HINTS)
        if checked.get("component", "sensor") not in EVENT_PLATFORMS:
            raise ValueError("%s: component must be one of %s" % (where, ", ".join(EVENT_PLATFORMS)))

    @staticmethod
    def _check_request(where: str, hints: Any) -> None:
        checked = _check_hints(where, hints, _REQUEST_HINTS)
        if checked.get("component", "button") not in REQUEST_PLATFORMS:
            raise ValueError("%s: component must be one of %s" % (where, ", ".join(REQUEST_PLATFORMS)))
        if checked.get("component") == "select" and not checked.get("options"):
            raise ValueError("%s: a select needs options" % where)

    def sender_hints(self, sender: Any) -> dict[str, Any]:
        """The hints of one sender (empty when none)."""
        return dict(self.senders.get(hint_key(sender)) or {})

    def event_hints(self, sender: Any, event: Any) -> dict[str, Any]:
        """The hints of one event of one sender: the sender's own over the every-sender ones."""
        key = hint_key(event)
        own = (self.sender_hints(sender).get("events") or {}).get(key) or {}
        return {**(self.events.get(key) or {}), **own}

    def request_hints(self, sender: Any, method: Any) -> dict[str, Any]:
        """The hints of one request method of one sender."""
        key = hint_key(method)
        own = (self.sender_hints(sender).get("requests") or {}).get(key) or {}
        return {**(self.requests.get(key) or {}), **own}

    def ignored(self, sender: Any) -> bool:
        """Whether the sender is not announced at all."""
        return bool(self.sender_hints(sender).get("ignore"))


@dataclass(frozen=True)
class Entity:
    """One discovery config: ``payload`` is published retained on ``topic`` (``None``: removed)."""

    topic: str
    payload: dict[str, Any] | None

    def encode(self) -> bytes:
        """The MQTT payload: the config as JSON, or empty to remove the entity."""
        return b"" if self.payload is None else json.dumps(self.payload, sort_keys=True).encode("utf-8")


class Discovery:
    """Builds the discovery configs of one announcing node.

    Args:
        topics: sig's topic tree (its prefix names devices and unique ids).
        nid: the announcing node's id (its device is every sender's ``via_device``).
        settings: discovery prefix and hints.
        node_name: the announcing node's device name.
    """

    def __init__(self, topics: Topics, nid: str, settings: HassSettings | None = None,
                 node_name: str | None = None) -> None:
        self.topics = topics
        self.nid = nid
        self.settings = settings or HassSettings()
        self.node_name = node_name or "sig node %s" % nid
        self.prefix = topics.prefix
        self.status_topic = "%s/status" % self.settings.discovery_prefix
        # requests pressed in Home Assistant are answered here: P/hass/reply/S/M
        self.reply_root = "%s/hass/reply/" % self.prefix
        self.reply_filter = self.reply_root + "+/+"

    # -- names ------------------------------------------------------------------

    def device_id(self, sender: Any) -> str:
        """The stable device identifier of a sender."""
        return "sig:%s/%s" % (self.prefix, encode_level(sender))

    @property
    def node_device_id(self) -> str:
        """The announcing node's device identifier."""
        return "sig:%s/node/%s" % (self.prefix, encode_level(self.nid))

    def sender_key(self, sender: Any) -> str:
        """The discovery topic's node-id level of a sender's entities."""
        return "sig_" + topic_key("%s/%s" % (self.prefix, encode_level(sender)))

    def entity_key(self, kind: str, name: Any) -> str:
        """The discovery topic's object-id level of an event (``kind`` ``event``) or request."""
        return topic_key("%s_%s" % (kind, encode_level(name)))

    def config_topic(self, platform: str, sender: Any, kind: str, name: Any) -> str:
        """Where one entity's config is published."""
        return "%s/%s/%s/%s/config" % (self.settings.discovery_prefix, platform, self.sender_key(sender),
                                       self.entity_key(kind, name))

    def config_filter(self, sender: Any) -> str:
        """A filter matching every config of a sender, whatever its platform."""
        return "%s/+/%s/+/config" % (self.settings.discovery_prefix, self.sender_key(sender))

    def parse_config_topic(self, topic: str) -> tuple[str, str, str] | None:
        """``(platform, sender key, entity key)`` of a config topic, or ``None``."""
        root = self.settings.discovery_prefix + "/"
        if not topic.startswith(root) or not topic.endswith("/config"):
            return None
        levels = topic[len(root):-len("/config")].split("/")
        return (levels[0], levels[1], levels[2]) if len(levels) == 3 else None

    def object_id(self, sender: Any, name: Any) -> str:
        """The entity id's object part: ``<sender>_<name>`` (with the prefix when it is not ``sig``)."""
        parts = [display(sender), display(name)]
        if self.prefix != "sig":
            parts.insert(0, self.prefix)
        return slug("_".join(parts))

    # -- payloads --------------------------------------------------------------------

    def device(self, sender: Any) -> dict[str, Any]:
        """The ``device`` block of a sender's entities."""
        hints = self.settings.sender_hints(sender)
        return {
            "identifiers": [self.device_id(sender)],
            "name": str(hints.get("name") or display(sender)),
            "manufacturer": "sig",
            "model": str(hints.get("model") or "sig sender"),
            "via_device": self.node_device_id,
        }

    def availability(self, sender: Any, host: str) -> list[dict[str, str]]:
        """Online while the hosting node is online and the sender's birth exists."""
        return [
            {"topic": self.topics.node(host), "value_template": NODE_AVAILABILITY},
            {"topic": self.topics.birth(host, sender), "value_template": BIRTH_AVAILABILITY},
        ]

    def _common(self, sender: Any, host: str, kind: str, name: Any, hints: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "name": str(hints.get("name") or display(name)),
            "unique_id": "%s/%s/%s" % (self.device_id(sender), kind, encode_level(name)),
            "object_id": self.object_id(sender, name),
            "device": self.device(sender),
            "availability": self.availability(sender, host),
            "availability_mode": "all",
            "origin": {"name": "sig", "sw_version": sig.VERSION},
        }
        for key in ("icon", "device_class", "entity_category", "unit_of_measurement"):
            if key in hints:
                payload[key] = hints[key]
        return payload

    def event_platform(self, sender: Any, event: Any, first_value: Any = None, seen: bool = False) -> str | None:
        """The platform of an event: its hint's, else its first value's; ``None``: not yet known or ignored."""
        hints = self.settings.event_hints(sender, event)
        if hints.get("ignore"):
            return None
        if "component" in hints:
            return str(hints["component"])
        return classify(first_value) if seen else None

    def event(self, sender: Any, host: str, event: Any, platform: str, sample: Any = None) -> Entity:
        """The config of one event as ``platform`` (``sample``: a value, to tell objects from numbers)."""
        hints = self.settings.event_hints(sender, event)
        state_topic = self.topics.event(sender, event)
        payload = self._common(sender, host, "event", event, hints)
        if platform == "event":
            payload["state_topic"] = state_topic
            event_type = display(event)
            payload["event_types"] = [event_type]
            payload["value_template"] = hints.get("value_template") or (
                "{{ {'event_type': %s, 'value': (value_json if value_json is defined else value)} | tojson }}"
                % _json_in_template(event_type)
            )
        else:
            payload["state_topic"] = state_topic
            if platform == "binary_sensor":
                payload["payload_on"] = "true"
                payload["payload_off"] = "false"
            elif isinstance(sample, dict) and "value_template" not in hints:
                payload["json_attributes_topic"] = state_topic
                payload["value_template"] = "{{ value[:255] }}"
            elif not isinstance(sample, dict) and "state_class" not in hints:
                payload["state_class"] = "measurement"
            for key in ("value_template", "state_class", "suggested_display_precision", "expire_after",
                        "force_update"):
                if key in hints:
                    payload[key] = hints[key]
            if platform == "binary_sensor":
                payload.pop("unit_of_measurement", None)
                payload.pop("state_class", None)
        return Entity(self.config_topic(platform, sender, "event", event), payload)

    def request_platform(self, sender: Any, method: Any) -> str | None:
        """The platform of a request method (``None``: ignored, or the default handler)."""
        if method is None or self.settings.request_hints(sender, method).get("ignore"):
            return None
        hints = self.settings.request_hints(sender, method)
        return str(hints.get("component", "button"))

    def request(self, sender: Any, host: str, method: Any) -> Entity | None:
        """The config of one request method (a button unless a hint says otherwise)."""
        platform = self.request_platform(sender, method)
        if platform is None:
            return None
        hints = self.settings.request_hints(sender, method)
        payload = self._common(sender, host, "request", method, hints)
        payload["command_topic"] = self.topics.request(sender, method)
        params = {"button": "{{ value }}", "switch": "{{ value }}", "number": "{{ value }}"}.get(
            platform, "{{ value | tojson }}")
        # sig's MQTT 3.1.1 request envelope (Home Assistant speaks 3.1.1): the responder answers on
        # reply_to, where the announcing node logs it; the id differs per press, so a second press
        # is no QoS 1 redelivery to the responder.
        reply_to = self.reply_root + "%s/%s" % (encode_level(sender), encode_level(method))
        payload["command_template"] = '{"id": "ha-{{ now().timestamp() }}", "reply_to": %s, "params": %s}' % (
            _json_in_template(reply_to), params)
        if platform == "button":
            payload["payload_press"] = json.dumps(hints.get("payload"))
        elif platform == "switch":
            payload["payload_on"] = "true"
            payload["payload_off"] = "false"
        elif platform == "select":
            payload["options"] = [str(option) for option in hints["options"]]
        for key in ("min", "max", "step", "mode"):
            if key in hints and platform in ("number", "text"):
                payload[key] = hints[key]
        if platform == "button":
            payload.pop("unit_of_measurement", None)
        return Entity(self.config_topic(platform, sender, "request", method), payload)

    def node(self) -> Entity:
        """The announcing node's own device: a ``connectivity`` binary sensor on its node state."""
        payload = {
            "name": "connectivity",
            "unique_id": self.node_device_id + "/online",
            "object_id": slug("%s_%s" % (self.nid, "online")),
            "device_class": "connectivity",
            "state_topic": self.topics.node(self.nid),
            "value_template": "{{ 'ON' if value_json is defined and value_json.online is defined and "
                              "value_json.online else 'OFF' }}",
            "device": {"identifiers": [self.node_device_id], "name": self.node_name, "manufacturer": "sig",
                       "model": "sig node"},
            "origin": {"name": "sig", "sw_version": sig.VERSION},
        }
        topic = "%s/binary_sensor/sig_%s/node/config" % (
            self.settings.discovery_prefix, topic_key("%s/node/%s" % (self.prefix, encode_level(self.nid))))
        return Entity(topic, payload)

    def parse_reply_topic(self, topic: str) -> tuple[Any, Any] | None:
        """``(sender, method)`` of a reply to a request pressed in Home Assistant, or ``None``."""
        if not topic.startswith(self.reply_root):
            return None
        levels = topic[len(self.reply_root):].split("/")
        if len(levels) != 2:
            return None
        try:
            return decode_level(levels[0]), decode_level(levels[1])
        except (TypeError, ValueError):
            return None
