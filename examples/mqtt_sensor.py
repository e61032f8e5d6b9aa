"""A sensor node on an MQTT broker: sender ``sensor`` with a ``#temperature`` channel and a request.

    python3 examples/mqtt_sensor.py mqtt://127.0.0.1:1883/sig [--count N] [--delay SECONDS]

Watch it with ``mosquitto_sub -v -t 'sig/#'`` or ``python3 examples/mqtt_listener.py``; ask it
with ``mosquitto_rr -V 5 -t sig/request/sensor/read -e my/reply -m null``.
"""

from __future__ import annotations

import argparse
import random
import time

import sig
from sig_mqtt import connect_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="mqtt://127.0.0.1:1883/sig")
    parser.add_argument("--count", type=int, default=0, help="readings to send (default: forever)")
    parser.add_argument("--delay", type=float, default=2.0)
    args = parser.parse_args()
    router = connect_url(args.url)
    temperature = [21.0]
    sensor = router.addRemoteSender("sensor", ["#temperature"], requests={"read": lambda params: temperature[0]})
    signal = sensor.getSignal("#temperature")
    sent = 0
    try:
        while not args.count or sent < args.count:
            temperature[0] = round(temperature[0] + random.uniform(-0.5, 0.5), 1)
            signal.trigger(temperature[0])
            print("sent", temperature[0], flush=True)
            sent += 1
            time.sleep(args.delay)
    except KeyboardInterrupt:
        pass
    finally:
        router.carrier.disconnect()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sig.setup_logger(None)
    main()
