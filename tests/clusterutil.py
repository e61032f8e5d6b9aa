"""Private clustered brokers for the ``cluster`` tests: a 3-node NATS cluster (JetStream + MQTT).

Configuration as measured in /work/shared/CLUSTERS.md: own loopback ports (free ones),
data directories under a temporary directory, ``stream_replicas: 3``. Every server is
started in its own session (``setsid``) and killed by its PID (and process group) at
the end, whatever happens; the machine's own NATS on 4222 is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
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
from typing import Any, TypeVar

import pytest
from mqttutil import free_port
from netutil import Recorder, wait_until

import sig
from sig_mqtt import CarrierMQTTClient

__all__ = ["NATS_SERVER", "NatsCluster", "SenderProcess", "booted", "cluster_node", "disconnects_after_member_death",
           "member_node", "mqtt_accepts", "sees"]

NATS_SERVER = "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else (
    shutil.which("nats-server") or "")
ClusterT = TypeVar("ClusterT", bound="_Cluster")

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


class _Cluster:
    """Members ``0 .. SIZE-1``, each a server process of ours with an MQTT port."""

    SIZE = 3
    mqtt_ports: list[int]
    procs: list[subprocess.Popen[bytes] | None]

    def member(self, index: int) -> tuple[str, int]:
        """The MQTT address of member ``index``."""
        return ("127.0.0.1", self.mqtt_ports[index])

    def members(self) -> list[tuple[str, int]]:
        """The MQTT addresses of all members."""
        return [self.member(index) for index in range(self.SIZE)]

    def running(self, index: int) -> bool:
        """Member ``index`` was started and has not died."""
        proc = self.procs[index]
        return proc is not None and proc.poll() is None

    def kill(self, index: int) -> None:
        """SIGKILL member ``index`` (a crash), by its PID and process group."""
        proc = self.procs[index]
        if proc is not None:
            _kill(proc)
            self.procs[index] = None

    def start(self, timeout: float = 30.0) -> Any:
        """Start the members not running and wait until they are ready."""
        raise NotImplementedError

    def close(self) -> None:
        """Kill every process of the cluster and remove its files."""
        raise NotImplementedError


class NatsCluster(_Cluster):
    """Three ``nats-server`` processes in one cluster, each with JetStream and an MQTT listener.

    Attributes:
        mqtt_ports: the MQTT port of each member (index 0..2).
    """

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


@contextlib.contextmanager
def booted(cluster: ClusterT, ready: str) -> Iterator[ClusterT]:
    """Start ``cluster`` (printing how long it took to be ``ready``) and close it at the end, whatever happens."""
    try:
        started = time.monotonic()
        cluster.start()
        print("\n%s after %.1f s" % (ready, time.monotonic() - started))
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


def disconnects_after_member_death(cluster: Any, node: Callable[..., tuple[CarrierMQTTClient, Any]],
                                   prefix: str, heartbeat: float) -> list[float]:
    """A sender node (a child process) on member 0, a listener of its ``#disconnect`` on members 1
    and 2; kill member 0 (so it cannot send the node's Will), then the node. Returns the seconds
    from the kill to each listener's ``#disconnect`` (``node(brokers, prefix)`` makes a listener)."""
    child = SenderProcess([cluster.member(0)], prefix, "thermo", protocol=4, heartbeat=heartbeat)
    try:
        recs = []
        for index in (1, 2):
            listening, listener = node(cluster.member(index), prefix)
            rec = Recorder()
            listener.addRemoteListener(rec.listener(), "thermo", "#disconnect")
            assert wait_until(sees(listening, "thermo"), 10.0)
            recs.append(rec)
        killed = time.monotonic()
        cluster.kill(0)
        child.kill()
        took = []
        for rec in recs:
            rec.wait_for(1, 3 * heartbeat)
            took.append(time.monotonic() - killed)
        return took
    finally:
        child.kill()


def member_node(carriers: list[Any], brokers: Any, prefix: str, **settings: Any) -> tuple[CarrierMQTTClient, Any]:
    """A :func:`cluster_node` for a clustered broker: MQTT 3.1.1 (NATS and RabbitMQ 3.10 have no
    MQTT 5; the fallback would cost each connect half a second), quick reconnects, 10 s requests."""
    settings.setdefault("protocol", 4)
    settings.setdefault("reconnect_min", 0.2)
    settings.setdefault("reconnect_max", 2.0)
    return cluster_node(carriers, brokers, prefix, request_timeout=10.0, **settings)


def second_registration_yields(carriers: list[Any], members: list[tuple[str, int]], prefix: str) -> str:
    """A node on ``members[0]`` holds ``thermo``; one on ``members[1]`` registers it too: assert that
    the first keeps it (requests from a third member and from the second node reach it), and say how
    the second registration ended: refused (``NameError``) or accepted and then yielded, after how long."""
    first, first_router = member_node(carriers, members[0], prefix)
    first_router.addRemoteSender("thermo", ["changed"], requests={"who": lambda params: "first"})
    assert first.sync()
    second, second_router = member_node(carriers, members[1], prefix)
    started = time.monotonic()
    try:
        second_router.addRemoteSender("thermo", ["changed"], requests={"who": lambda params: "second"})
        outcome = "accepted, then yielded %.2f s after it was registered"
    except NameError:
        outcome = "refused (NameError) in %.2f s"
    registered = time.monotonic()
    assert wait_until(lambda: not second.node.hosts("thermo"), 5.0)
    outcome %= (time.monotonic() - registered) if outcome.startswith("accepted") else (registered - started)
    _, requester = member_node(carriers, members[2], prefix)
    assert wait_until(lambda: requester.carrier.isSenderConnected("thermo"), 10.0)
    assert [requester.remoteRequest("thermo", "who") for _ in range(3)] == ["first"] * 3
    assert second_router.remoteRequest("thermo", "who") == "first"
    return outcome
