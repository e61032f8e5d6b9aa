"""What an announcing node has told Home Assistant, and what it must tell next: pure decisions.

:class:`Catalog` takes what the node sees (a sender connected, a value of one of its events, a
sender disconnected or removed, a retained discovery config on the broker, Home Assistant's
birth) and answers with the configs to publish (:class:`~sig_mqtt.hass.Entity`, an empty one
removes). It keeps no socket, thread or clock; :mod:`sig_mqtt._hass_node` does the I/O.

The retained configs on the broker are the memory across restarts: a config found there for an
event whose first value has not come yet since this node started is adopted as it is (the first
value decided it before), one that names an event no longer declared, an ignored one, or one of
another platform than the event now gets (a hint changed) is removed, so a restart never leaves
duplicates behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .hass import Discovery, Entity

__all__ = ["Catalog"]


@dataclass
class _Sender:
    host: str
    events: list[Any]
    requests: list[Any] | None
    connected: bool = True
    ignored: bool = False
    decided: dict[Any, str | None] = field(default_factory=dict)  # event -> platform (None: ignored)
    published: dict[str, bytes] = field(default_factory=dict)  # config topic -> payload


class Catalog:
    """The senders one node announces (see the module docstring).

    Args:
        discovery: builds the payloads.
    """

    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self.senders: dict[Any, _Sender] = {}
        self._by_key: dict[str, Any] = {}
        self._orphans: dict[str, bytes] = {}  # configs on the broker of senders not connected now

    # -- inputs ----------------------------------------------------------------------

    def connect(self, sender: Any, host: str, events: list[Any], requests: list[Any] | None) -> list[Entity]:
        """A sender connected (hosted by node ``host``): its configs known so far."""
        before = self.senders.get(sender)
        old = before.published if before is not None else {}
        entry = _Sender(host, list(events), None if requests is None else list(requests),
                        decided={e: p for e, p in (before.decided if before else {}).items() if e in events})
        entry.ignored = self.discovery.settings.ignored(sender)
        self.senders[sender] = entry
        self._by_key[self.discovery.sender_key(sender)] = sender
        out: list[Entity] = []
        if not entry.ignored:
            for event in entry.events:
                platform = entry.decided.get(event) or self.discovery.event_platform(sender, event)
                if platform is not None:
                    out.append(self._event(sender, entry, event, platform, self._sample(old, event)))
            for method in entry.requests or []:
                entity = self.discovery.request(sender, host, method)
                if entity is not None:
                    out.append(self._keep(entry, entity))
        # what it had and has no more (an event it no longer declares, a hint that changed)
        out += [Entity(topic, None) for topic in old if topic not in entry.published]
        return out + self._orphans_of(sender)

    def value(self, sender: Any, event: Any, data: Any) -> list[Entity]:
        """A value of an event: the first one of an undecided event announces it."""
        entry = self.senders.get(sender)
        if entry is None or entry.ignored or event not in entry.events or event in entry.decided:
            return []
        platform = self.discovery.event_platform(sender, event, data, seen=True)
        entry.decided[event] = platform
        if platform is None:
            return []
        return [self._event(sender, entry, event, platform, data)]

    def disconnect(self, sender: Any, removed: bool) -> list[Entity]:
        """A sender left: removed (its configs are deleted) or only disconnected (they stay, unavailable)."""
        entry = self.senders.get(sender)
        if entry is None:
            return []
        if not removed:
            entry.connected = False
            return []
        del self.senders[sender]
        self._by_key.pop(self.discovery.sender_key(sender), None)
        return [Entity(topic, None) for topic in entry.published]

    def retained(self, topic: str, payload: bytes, retained: bool = True) -> list[Entity]:
        """A discovery config on the broker: for a sender this node announces, adopt it or remove it.

        Configs of senders not (yet) connected are kept aside and judged when the sender connects.
        """
        parsed = self.discovery.parse_config_topic(topic)
        if parsed is None or not parsed[1].startswith("sig_"):
            return []
        sender_key = parsed[1]
        if sender_key not in self._by_key:
            if payload:
                self._orphans[topic] = payload
            else:
                self._orphans.pop(topic, None)
            return []
        if not retained or not payload:
            return []  # a live one is ours coming back, or another announcer's
        return self._judge(self._by_key[sender_key], topic, payload)

    def rebirth(self) -> list[tuple[str, bytes]]:
        """Home Assistant came (back) online: every config again, as last published."""
        out: list[tuple[str, bytes]] = []
        for entry in self.senders.values():
            out.extend(entry.published.items())
        return out

    def announced(self) -> list[Any]:
        """The senders with at least one entity in Home Assistant."""
        return [sender for sender, entry in self.senders.items() if entry.published and not entry.ignored]

    # -- internals ----------------------------------------------------------------------

    def _orphans_of(self, sender: Any) -> list[Entity]:
        """Judge the configs found on the broker before ``sender`` connected."""
        key = self.discovery.sender_key(sender)
        out: list[Entity] = []
        for topic in [t for t in self._orphans if (self.discovery.parse_config_topic(t) or ("", ""))[1] == key]:
            out.extend(self._judge(sender, topic, self._orphans.pop(topic)))
        return out

    def _judge(self, sender: Any, topic: str, payload: bytes) -> list[Entity]:
        parsed = self.discovery.parse_config_topic(topic)
        assert parsed is not None
        platform, _, entity_key = parsed
        entry = self.senders[sender]
        wanted = None if entry.ignored else self._wanted(sender, entry, entity_key)
        if wanted is False:  # an event whose first value has not come since we started: adopt
            entry.decided[self._event_of(entry, entity_key)] = platform
            entry.published[topic] = payload
            return []
        if wanted == platform:
            entry.published.setdefault(topic, payload)
            return []
        entry.published.pop(topic, None)
        return [Entity(topic, None)]

    def _event(self, sender: Any, entry: _Sender, event: Any, platform: str, sample: Any) -> Entity:
        entry.decided[event] = platform
        return self._keep(entry, self.discovery.event(sender, entry.host, event, platform, sample))

    @staticmethod
    def _keep(entry: _Sender, entity: Entity) -> Entity:
        entry.published[entity.topic] = entity.encode()
        return entity

    def _sample(self, published: dict[str, bytes], event: Any) -> Any:
        # A sensor adopted or decided from an object keeps its attributes: tell it by its config.
        for topic, payload in published.items():
            if topic.endswith("/%s/config" % self.discovery.entity_key("event", event)) and (
                b"json_attributes_topic" in payload
            ):
                return {}
        return None

    def _event_of(self, entry: _Sender, entity_key: str) -> Any:
        for event in entry.events:
            if self.discovery.entity_key("event", event) == entity_key:
                return event
        return None

    def _wanted(self, sender: Any, entry: _Sender, entity_key: str) -> str | bool | None:
        """The platform an entity key should have now; None: none; False: not decided yet."""
        for method in entry.requests or []:
            if self.discovery.entity_key("request", method) == entity_key:
                return self.discovery.request_platform(sender, method)
        event = self._event_of(entry, entity_key)
        if event is None:
            return None
        if event in entry.decided:
            return entry.decided[event]
        platform = self.discovery.event_platform(sender, event)
        if platform is None and self.discovery.settings.event_hints(sender, event).get("ignore"):
            return None
        return platform if platform is not None else False
