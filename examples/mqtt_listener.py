"""Print every pysig event on an MQTT broker, #connect and #disconnect included.

    python3 examples/mqtt_listener.py mqtt://127.0.0.1:1883/sig
"""

from __future__ import annotations

import sys
import time
from typing import Any

from sig_mqtt import connect_url


def show(info: dict[str, Any], data: Any) -> None:
    print("%s:%s %r" % (info["sender"], info["event"], data), flush=True)


def main() -> None:
    router = connect_url(sys.argv[1] if len(sys.argv) > 1 else "mqtt://127.0.0.1:1883/sig")
    router.addRemoteListener(show)  # every event of every sender
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        router.carrier.disconnect()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
