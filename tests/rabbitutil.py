"""A private 3-node RabbitMQ 3.10 cluster with ``rabbitmq_mqtt`` for the ``cluster`` tests.

As measured in /work/shared/CLUSTERS.md: ``/usr/lib/rabbitmq/bin/rabbitmq-server`` started
directly (not /usr/sbin's wrapper, which su's to the rabbitmq user and logs to /var/log),
each member with free loopback ports, its own data and log directories under a temporary
directory, one private HOME with the members' Erlang cookie, and a private epmd on a free
port. Every process is started in its own session and killed by its PID (and process group,
and Erlang's helpers that start their own sessions) at the end, whatever happens (at exit
too); the machine's RabbitMQ on 5672 and epmd on 4369 are never touched.

tests/conftest.py loads this module as a plugin: the ``rabbit_cluster`` fixture boots the
cluster once per test session (~25 s), at its first use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterutil import _Cluster, _kill, _spawn, booted, mqtt_accepts
from mqttutil import free_port

__all__ = ["RABBITMQ_SERVER", "RabbitCluster", "rabbit_cluster"]

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server" if os.path.exists(
    "/usr/lib/rabbitmq/bin/rabbitmq-server") else ""
EPMD = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"


class RabbitCluster(_Cluster):
    """Three RabbitMQ 3.10 nodes with ``rabbitmq_mqtt`` in one cluster (3: two lose the MQTT
    client-id Raft quorum when one dies), with a private epmd and Erlang cookie.

    Members 1 and 2 join member 0 when they boot (classic-config peer discovery: no
    ``rabbitmqctl`` round trips). Attributes: ``mqtt_ports`` (index 0..2).
    """

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
    with booted(cluster, "RabbitMQ cluster accepting MQTT clients"):
        yield cluster


