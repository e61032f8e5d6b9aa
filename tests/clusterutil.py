"""Private clustered brokers for the ``cluster`` tests: a 3-node NATS cluster (JetStream + MQTT).

Configuration as measured in /work/shared/CLUSTERS.md: own loopback ports (free ones),
data directories under a temporary directory, ``stream_replicas: 3``. Every server is
started in its own session (``setsid``) and killed by its PID (and process group) at
the end, whatever happens; the machine's own NATS on 4222 is never touched.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mqttutil import free_port

import sig
from sig_mqtt import CarrierMQTTClient

__all__ = ["NATS_SERVER", "NatsCluster", "cluster_node"]

NATS_SERVER = "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else (
    shutil.which("nats-server") or "")

_running: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_running.values()):
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the server alone
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait(10)
    _running.pop(proc.pid, None)


class NatsCluster:
    """Three ``nats-server`` processes in one cluster, each with JetStream and an MQTT listener.

    Attributes:
        mqtt_ports: the MQTT port of each member (index 0..2).
    """

    SIZE = 3

    def __init__(self) -> None:
        if not NATS_SERVER:
            pytest.skip("nats-server is not installed (apt-get install nats-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="sig-nats-"))
        self.client_ports = [free_port() for _ in range(self.SIZE)]
        self.http_ports = [free_port() for _ in range(self.SIZE)]
        self.route_ports = [free_port() for _ in range(self.SIZE)]
        self.mqtt_ports = [free_port() for _ in range(self.SIZE)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * self.SIZE
        for index in range(self.SIZE):
            routes = ", ".join('"nats-route://127.0.0.1:%d"' % port
                               for other, port in enumerate(self.route_ports) if other != index)
            (self.dir / ("n%d.conf" % index)).write_text(
                "server_name: n%(i)d\n"
                "listen: 127.0.0.1:%(client)d\n"
                "http: 127.0.0.1:%(http)d\n"
                "jetstream { store_dir: %(store)s, max_memory_store: 64MB, max_file_store: 256MB }\n"
                "cluster { name: sigtest, listen: 127.0.0.1:%(route)d, routes: [%(routes)s] }\n"
                "mqtt { listen: 127.0.0.1:%(mqtt)d, stream_replicas: 3 }\n" % {
                    "i": index, "client": self.client_ports[index], "http": self.http_ports[index],
                    "store": self.dir / ("store%d" % index), "route": self.route_ports[index],
                    "routes": routes, "mqtt": self.mqtt_ports[index]})

    def member(self, index: int) -> tuple[str, int]:
        """The MQTT address of member ``index``."""
        return ("127.0.0.1", self.mqtt_ports[index])

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start the members not running, and wait until each says JetStream is healthy."""
        for index in range(self.SIZE):
            proc = self.procs[index]
            if proc is None or proc.poll() is not None:
                with open(self.dir / ("n%d.out" % index), "ab") as out:
                    proc = subprocess.Popen(
                        [NATS_SERVER, "-c", str(self.dir / ("n%d.conf" % index)),
                         "-l", str(self.dir / ("n%d.log" % index))],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                self.procs[index] = proc
                _running[proc.pid] = proc
        deadline = time.monotonic() + timeout
        for index in range(self.SIZE):
            while not (self.healthy(index) and self.mqtt_accepts(index)):
                if time.monotonic() > deadline:
                    raise RuntimeError("NATS member n%d not healthy after %.0f s:\n%s"
                                       % (index, timeout, self.log(index)[-2000:]))
                time.sleep(0.2)
        return self

    def healthy(self, index: int) -> bool:
        """JetStream of member ``index`` answers ``ok``."""
        url = "http://127.0.0.1:%d/healthz?js-enabled-only=true" % self.http_ports[index]
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                return b'"ok"' in answer.read()
        except OSError:
            return False

    def mqtt_accepts(self, index: int) -> bool:
        """An MQTT 3.1.1 client gets a CONNACK from member ``index`` (its MQTT streams are ready)."""
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        acked = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="probe%d" % index, protocol=paho.MQTTv311)
        client.on_connect = lambda *args: acked.set() if not args[3].is_failure else None
        try:
            client.connect("127.0.0.1", self.mqtt_ports[index], keepalive=5)
        except OSError:
            return False
        client.loop_start()
        try:
            return acked.wait(3.0)
        finally:
            client.disconnect()
            client.loop_stop()

    def kill(self, index: int) -> None:
        """SIGKILL member ``index`` (a crash), by its PID."""
        proc = self.procs[index]
        if proc is not None:
            _kill(proc)
            self.procs[index] = None

    def log(self, index: int) -> str:
        try:
            return (self.dir / ("n%d.log" % index)).read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Kill every member and remove the data directories."""
        for index in range(self.SIZE):
            self.kill(index)
        shutil.rmtree(self.dir, ignore_errors=True)


def cluster_node(carriers: list[Any], brokers: Any, prefix: str, request_timeout: float = 5.0,
                 **settings: Any) -> tuple[CarrierMQTTClient, sig.ClientRouter]:
    """A node online on one of ``brokers`` (added to ``carriers``, disconnected at the test's end)."""
    carrier = CarrierMQTTClient(prefix=prefix, **settings)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=request_timeout)
    assert carrier.connect(brokers), carrier.last_error
    return carrier, router
