"""The ``[homeassistant]`` table of ``bridge.toml``: Home Assistant discovery and its hints.

    [homeassistant]
    discovery = true                      # or sig-bridge --ha-discovery
    discovery_prefix = "homeassistant"    # the default

    [homeassistant.senders.thermo]        # one sender: device name, model, ignore
    name = "Kitchen thermometer"
    [homeassistant.senders.thermo.events.temperature]
    device_class = "temperature"
    unit_of_measurement = "°C"
    [homeassistant.senders.thermo.requests.reset]
    payload = {hard = true}               # the button's request params

    [homeassistant.events.door]           # this event of every sender
    component = "binary_sensor"
    device_class = "door"

The hints themselves are checked by :class:`sig_mqtt.hass.HassSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sig_mqtt.hass import HassSettings

__all__ = ["HassSection", "read_hass_section"]

_KEYS = ("discovery", "discovery_prefix", "senders", "events", "requests")


@dataclass(frozen=True)
class HassSection:
    """``discovery``: announce (without it, ``--ha-discovery`` still can); ``settings``: prefix and hints."""

    discovery: bool = False
    settings: HassSettings = field(default_factory=HassSettings)


class _TableLike(Protocol):
    data: Any

    def check_keys(self, known: tuple[str, ...]) -> None: ...
    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any: ...
    def text(self, key: str, default: str | None = None, required: bool = False, empty: bool = False) -> Any: ...
    def fail(self, key: str | None, message: str) -> Exception: ...


def read_hass_section(table: _TableLike) -> HassSection:
    """Read the table (a :class:`bridge.config` reader's); mistakes raise its ``ConfigError``."""
    table.check_keys(_KEYS)
    discovery = table.get("discovery", bool, False)
    hints = {key: table.get(key, dict, {}) for key in ("senders", "events", "requests")}
    try:
        settings = HassSettings(discovery_prefix=table.text("discovery_prefix", "homeassistant"), **hints)
    except ValueError as exc:
        message = str(exc)
        key = {"sender": "senders", "event": "events", "request": "requests"}.get(message.split(" ")[0],
                                                                                  "discovery_prefix")
        raise table.fail(key, "has a mistake: %s" % message) from None
    return HassSection(discovery, settings)
