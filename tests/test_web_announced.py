"""``sig web --mqtt``: which senders are announced to Home Assistant, from the retained discovery configs.

The tracker is tested on the payloads sig itself builds (no broker); then a sig node with
``ha_discovery=True`` on a private Mosquitto and ``sig web --mqtt`` as a subprocess, asked over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from netutil import wait_until

import sig
from sig_mqtt import AnnouncedSenders, CarrierMQTTClient, Topics
from sig_mqtt.hass import Discovery

ROOT = Path(__file__).resolve().parent.parent


def config(discovery: Discovery, sender: Any) -> bytes:
    return json.dumps({"name": "x", "state_topic": "t", "device": discovery.device(sender)}).encode()


def test_the_tracker_reads_sigs_own_configs() -> None:
    discovery = Discovery(Topics("site/sig"), "bridge-1")
    seen = AnnouncedSenders("site/sig")
    seen.config("homeassistant/sensor/a/t/config", config(discovery, "thermo"))
    seen.config("homeassistant/button/a/r/config", config(discovery, "thermo"))
    seen.config("homeassistant/sensor/b/x/config", config(discovery, "a/b #1"))  # escaped: one level
    seen.config("homeassistant/sensor/c/n/config", config(discovery, 42))
    node = {"name": "online", "device": {"identifiers": [discovery.node_device_id]}}
    seen.config("homeassistant/binary_sensor/n/online/config", json.dumps(node).encode())  # the node, not a sender
    seen.config("homeassistant/sensor/z/z/config", b"{not json")
    other = Discovery(Topics("other"), "n")  # another sig tree on the same broker
    seen.config("homeassistant/sensor/o/o/config", config(other, "elsewhere"))
    assert sorted(map(str, seen.senders())) == ["42", "a/b #1", "thermo"]
    seen.config("homeassistant/sensor/a/t/config", b"")  # one of thermo's two entities removed
    assert "thermo" in seen.senders()
    seen.config("homeassistant/button/a/r/config", b"")
    assert sorted(map(str, seen.senders())) == ["42", "a/b #1"]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_sig_web_lists_the_announced_senders(mosquitto: Any, carriers: list[Any]) -> None:
    carrier = CarrierMQTTClient(prefix="sig", ha_discovery=True)
    carriers.append(carrier)
    node = sig.ClientRouter(carrier)
    assert carrier.connect("127.0.0.1", mosquitto.port)
    thermo = node.addRemoteSender("thermo", ["temperature"], requests={"reset": lambda params: "done"})
    thermo.getSignal("temperature").trigger(21.5)
    web = subprocess.Popen([sys.executable, "-m", "sig", "web", "--mqtt", "mqtt://127.0.0.1:%d/sig" % mosquitto.port,
                            "--http", "127.0.0.1:0"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert web.stdout is not None
        url = web.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), web.stderr.read() if web.poll() is not None else url
        api = url.rstrip("/") + "/announced?fmt=json"
        assert wait_until(lambda: get_json(api)["announced"] == ["thermo"], 10), get_json(api)
        assert "thermo" in get_json(url.rstrip("/") + "/config")["announced"]
        node.removeRemoteSender("thermo")  # its entities go: empty retained configs
        assert wait_until(lambda: get_json(api)["announced"] == [], 10), get_json(api)
    finally:
        web.terminate()
        web.communicate(timeout=10)  # and close its pipes
