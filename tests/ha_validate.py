"""Run by the Home Assistant venv's Python: validate discovery configs with HA's own MQTT schemas.

Reads ``[[platform, config], ...]`` as JSON on stdin and prints a JSON list of problems: a config
its platform's ``DISCOVERY_SCHEMA`` refuses, a key that schema would drop (it removes unknown keys
silently), or an ``origin`` block the discovery's own schema refuses.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys


async def validate(configs: list[tuple[str, dict]]) -> list[str]:
    import tempfile

    from homeassistant.components.mqtt.schemas import MQTT_ORIGIN_INFO_SCHEMA
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers import frame

    # Templates are checked with a (not started) HA instance, as at discovery time.
    hass = HomeAssistant(tempfile.mkdtemp(prefix="sig-hass-validate-"))
    frame.async_setup(hass)

    problems: list[str] = []
    for platform, config in configs:
        where = "%s %s" % (platform, config.get("unique_id"))
        config = dict(config)
        origin = config.pop("origin", None)
        if origin is not None:
            try:
                MQTT_ORIGIN_INFO_SCHEMA(origin)
            except Exception as exc:
                problems.append("%s: origin: %s" % (where, exc))
        schema = importlib.import_module("homeassistant.components.mqtt." + platform).DISCOVERY_SCHEMA
        try:
            valid = schema(config)
        except Exception as exc:
            problems.append("%s: %s" % (where, exc))
            continue
        dropped = sorted(set(config) - set(valid))
        if dropped:
            problems.append("%s: keys the schema drops: %s" % (where, dropped))
    return problems


def main() -> int:
    json.dump(asyncio.run(validate(json.load(sys.stdin))), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
