"""An MQTT-only sig node in its own process, for tests/test_hass_live.py (a SIGKILL fires its Will).

    python hass_node_child.py PORT CLIENT_ID SENDER
    stdin:  "fire EVENT JSON" | "remove" | "quit"
    stdout: "ready", "pressed PARAMS" when Home Assistant presses the ``off`` button, "removed"
"""

from __future__ import annotations

import json
import sys

import sig
from sig_mqtt import CarrierMQTTClient


def main() -> int:
    port, client_id, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    carrier = CarrierMQTTClient(client_id=client_id, ha_discovery=True, keepalive=5)
    router = sig.ClientRouter(carrier, request_timeout=5.0)

    def off(params: object) -> str:
        print("pressed", json.dumps(params), flush=True)
        return "off"

    if not carrier.connect("127.0.0.1", port, auto_reconnect=False):
        return 1
    sender = router.addRemoteSender(name, ["heat", "state"], requests={"off": off})
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.strip().split(" ", 2)
        if words[0] == "fire":
            sender.getSignal(words[1]).trigger(json.loads(words[2]))
        elif words[0] == "remove":
            router.removeRemoteSender(name)
            print("removed", flush=True)
        elif words[0] == "quit":
            break
    carrier.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
