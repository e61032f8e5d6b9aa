"""Private clustered brokers for the ``cluster`` tests: a 3-node NATS cluster (JetStream + MQTT).

Configuration as measured in /work/shared/CLUSTERS.md: own loopback ports (free ones),
data directories under a temporary directory, ``stream_replicas: 3``. Every server is
started in its own session (``setsid``) and killed by its PID (and process group) at
the end, whatever happens; the machine's own NATS on 4222 is never touched.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mqttutil import free_port

import sig
from sig_mqtt import CarrierMQTTClient

__all__ = ["NATS_SERVER", "RABBITMQ_SERVER", "NatsCluster", "RabbitCluster", "SenderProcess", "cluster_node",
           "rabbit_cluster", "sees"]

NATS_SERVER = "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else (
    shutil.which("nats-server") or "")
# The server script itself, not /usr/sbin's wrapper (which su's to the rabbitmq user and logs to /var/log)
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server" if os.path.exists(
    "/usr/lib/rabbitmq/bin/rabbitmq-server") else ""
EPMD = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"

_running: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_running.values()):
        _kill(proc)


def _descendants(pid: int) -> list[int]:
    """The PIDs of ``pid``'s children, grandchildren... (from /proc; Erlang's helpers start their own sessions)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc/%s/stat" % entry).read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            parents.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        children = _descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the server alone
        except (ProcessLookupError, PermissionError):
            proc.kill()
        for child in children:  # those that made their own session (erl_child_setup)
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait(10)
    _running.pop(proc.pid, None)


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own session, its output appended to ``log``; killed at exit at the latest."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    _running[proc.pid] = proc
    return proc


def mqtt_accepts(port: int, client_id: str, timeout: float = 3.0) -> bool:
    """An MQTT 3.1.1 client gets a successful CONNACK from ``127.0.0.1:port`` within ``timeout``."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    acked = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    client.on_connect = lambda *args: acked.set() if not args[3].is_failure else None
    try:
        client.connect("127.0.0.1", port, keepalive=5)
    except OSError:
        return False
    client.loop_start()
    try:
        return acked.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


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
                self.procs[index] = _spawn([NATS_SERVER, "-c", str(self.dir / ("n%d.conf" % index)),
                                            "-l", str(self.dir / ("n%d.log" % index))], self.dir / ("n%d.out" % index))
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
        return mqtt_accepts(self.mqtt_ports[index], "probe%d" % index)

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


class RabbitCluster:
    """Three RabbitMQ 3.10 nodes with ``rabbitmq_mqtt`` in one cluster (3: two lose the MQTT
    client-id Raft quorum when one dies), with a private epmd and Erlang cookie.

    Members 1 and 2 join member 0 when they boot (classic-config peer discovery: no
    ``rabbitmqctl`` round trips). Attributes: ``mqtt_ports`` (index 0..2).
    """

    SIZE = 3

    def __init__(self, config: str = "") -> None:
        if not RABBITMQ_SERVER:
            pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="sig-rabbit-"))
        home = self.dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex().upper())
        cookie.chmod(0o400)
        self.epmd_port = free_port()
        self.node_ports = [free_port() for _ in range(self.SIZE)]
        self.mqtt_ports = [free_port() for _ in range(self.SIZE)]
        self.names = ["sig%d@localhost" % index for index in range(self.SIZE)]
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * self.SIZE
        self.epmd: subprocess.Popen[bytes] | None = None
        self.envs: list[dict[str, str]] = []
        peers = "".join("cluster_formation.classic_config.nodes.%d = %s\n" % (index + 1, name)
                        for index, name in enumerate(self.names))
        for index in range(self.SIZE):
            conf = self.dir / ("sig%d.conf" % index)
            conf.write_text(
                "listeners.tcp.default = 127.0.0.1:%d\n"
                "mqtt.listeners.tcp.default = 127.0.0.1:%d\n"
                "mqtt.allow_anonymous = true\nmqtt.default_user = guest\nmqtt.default_pass = guest\n"
                "loopback_users = none\nlog.console = false\n"
                "cluster_formation.peer_discovery_backend = classic_config\n%s%s"
                % (self.node_ports[index], self.mqtt_ports[index], peers, config))
            dist = "-kernel inet_dist_use_interface {127,0,0,1}"
            self.envs.append({
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                "HOME": str(home), "RABBITMQ_CONF_ENV_FILE": "/nonexistent",
                "RABBITMQ_NODENAME": self.names[index], "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.node_ports[index]), "RABBITMQ_DIST_PORT": str(free_port()),
                "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_MNESIA_BASE": str(self.dir / ("mnesia%d" % index)),
                "RABBITMQ_LOG_BASE": str(self.dir / ("log%d" % index)),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(conf), "RABBITMQ_ADVANCED_CONFIG_FILE": "/nonexistent",
                "RABBITMQ_PID_FILE": str(self.dir / ("sig%d.erlpid" % index)),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": dist, "RABBITMQ_CTL_ERL_ARGS": dist,
            })

    def member(self, index: int) -> tuple[str, int]:
        """The MQTT address of member ``index``."""
        return ("127.0.0.1", self.mqtt_ports[index])

    def members(self) -> list[tuple[str, int]]:
        """The MQTT addresses of all members."""
        return [self.member(index) for index in range(self.SIZE)]

    def running(self, index: int) -> bool:
        proc = self.procs[index]
        return proc is not None and proc.poll() is None

    def start(self, timeout: float = 150.0) -> RabbitCluster:
        """Start the private epmd and the members not running; wait until each accepts MQTT clients.

        Member 0 boots first (the others join it). A restarted member may wait long for its
        Raft peers (6 s once, ~100 s another time, CLUSTERS.md): hence the long ``timeout``.
        """
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = _spawn([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"], self.dir / "epmd.out",
                               {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        deadline = time.monotonic() + timeout
        order = [0] if not self.running(0) and not any(self.running(i) for i in range(1, self.SIZE)) else []
        for group in (order, [i for i in range(self.SIZE) if i not in order]):
            for index in group:
                if not self.running(index):
                    self.procs[index] = _spawn([RABBITMQ_SERVER], self.dir / ("sig%d.out" % index), self.envs[index])
            for index in group:
                while not mqtt_accepts(self.mqtt_ports[index], "probe%d" % index, 2.0):
                    proc = self.procs[index]
                    if time.monotonic() > deadline or proc is None or proc.poll() is not None:
                        raise RuntimeError("RabbitMQ member %d does not accept MQTT clients after %.0f s:\n%s"
                                           % (index, timeout, self.log(index)[-3000:]))
                    time.sleep(0.5)
        return self

    def kill(self, index: int) -> None:
        """SIGKILL member ``index`` (a crash), by its PID and process group."""
        proc = self.procs[index]
        if proc is not None:
            _kill(proc)
            self.procs[index] = None

    def log(self, index: int) -> str:
        text = ""
        for path in sorted((self.dir / ("log%d" % index)).glob("*.log")) + [self.dir / ("sig%d.out" % index)]:
            try:
                text += path.read_text(errors="replace")
            except OSError:
                pass
        return text

    def close(self) -> None:
        """Kill every member and the private epmd; remove the directories."""
        for index in range(self.SIZE):
            self.kill(index)
        if self.epmd is not None:
            _kill(self.epmd)
            self.epmd = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """The session's RabbitMQ cluster, booted at its first use (skipped without rabbitmq-server).

    QoS 1 queues of persistent sessions are quorum queues (replicated on the 3 members): a
    node with ``session_expiry`` can then resume its session on another member at once. A
    clean session's QoS 1 queue stays a classic queue on the member it was first made on.
    """
    cluster = RabbitCluster("mqtt.durable_queue_type = quorum\n")
    try:
        started = time.monotonic()
        cluster.start()
        print("\nRabbitMQ cluster accepting MQTT clients after %.1f s" % (time.monotonic() - started))
        yield cluster
    finally:
        cluster.close()


def sees(carrier: CarrierMQTTClient, *senders: Any) -> Callable[[], bool]:
    """A predicate for ``wait_until``: ``carrier`` sees every one of ``senders`` connected."""
    return lambda: all(carrier.isSenderConnected(sender) for sender in senders)


def cluster_node(carriers: list[Any], brokers: Any, prefix: str, request_timeout: float = 5.0,
                 **settings: Any) -> tuple[CarrierMQTTClient, sig.ClientRouter]:
    """A node online on one of ``brokers`` (added to ``carriers``, disconnected at the test's end)."""
    carrier = CarrierMQTTClient(prefix=prefix, **settings)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=request_timeout)
    assert carrier.connect(brokers), carrier.last_error
    return carrier, router


_CHILD = """
import json, sys
import sig
from sig_mqtt import CarrierMQTTClient
brokers, prefix, name, settings = json.loads(sys.argv[1])
carrier = CarrierMQTTClient(prefix=prefix, **settings)
router = sig.ClientRouter(carrier)
if not carrier.connect([tuple(broker) for broker in brokers]):
    print("failed", carrier.last_error, flush=True)
    sys.exit(1)
router.addRemoteSender(name, ["changed"])
print("ready", carrier.client_id, flush=True)
sys.stdin.read()  # until the test kills us
"""


class SenderProcess:
    """A node in a child process hosting sender ``name`` (events ``changed``): a node that can die
    with its broker member (SIGKILL by PID, no clean stop, no Will the member could send)."""

    def __init__(self, brokers: list[tuple[str, int]], prefix: str, name: str, timeout: float = 20.0,
                 **settings: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps([brokers, prefix, name, settings])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        _running[self.proc.pid] = self.proc
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            self.kill()
            raise RuntimeError("the sender process did not come online in %.0f s: %r" % (timeout, line))
        self.nid = line.split()[1]

    def kill(self) -> None:
        """SIGKILL it (a crash)."""
        _kill(self.proc)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
