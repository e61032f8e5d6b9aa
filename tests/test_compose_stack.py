"""compose/ brought up for real: the stack on a private Docker engine, exercised from the host.

The engine, the debootstrapped base image and the stand-ins for ``python:3.11-slim`` and
``eclipse-mosquitto:2.0`` come from ``dockerengine`` (session fixtures). The stack is
``compose/docker-compose.yml`` as users run it, with ``tests/docker/compose.test.yml`` over
it (host network for the build, published ports on free loopback ports, the test's password
file and secret); the images' bases are the compose variables ``BASE_IMAGE`` and
``MOSQUITTO_IMAGE``. ``docker compose build`` built sig-bridge from the repository for the
session (``dockerengine``); ``up -d --wait`` waits for both healthchecks. Then, from the host:

* the bridge's liveness is retained on the broker;
* a sig TCP client and a pysig 0.7.3 client (the documented wire, on a bare socket) register
  senders on the bridge's published port; ``mosquitto_sub`` on the published broker port sees
  their events and retained births;
* a ``mosquitto_pub`` event reaches both TCP listeners;
* requests cross both ways: TCP clients to an MQTT node's sender, the MQTT node to senders of
  both TCP clients;
* the ACL drops a client's publishes on another's sender;
* ``docker compose restart mosquitto``: a retained message persisted, and the bridge's births
  (deleted from the broker before the restart) come back, and events flow again;
* ``docker compose stop`` within seconds, the bridge exiting 0 on SIGTERM (as PID 1), its
  node state retained as offline; ``down -v`` at the end whatever happens.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from dockerengine import COMPOSE_FILES, ROOT, DockerEngine, LocalImages, timed
from mqttutil import Subscriber, free_port, mosquitto_pub, mosquitto_sub, write_password_file
from netutil import Recorder, wait_until
from test_pysig073_wire import ADD_SENDER_OLD, REPLY_PONG, SIGNAL_OLD_TICK, Fake073Client

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig_mqtt import CarrierMQTTClient

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PASSWORDS = {"bridge": "bridge-pw", "thermo": "thermo-pw", "lamp": "lamp-pw", "calc": "calc-pw"}


class Stack:
    """The compose project of one test: its published ports, files and ``docker compose`` calls."""

    def __init__(self, engine: DockerEngine, images: LocalImages, work: Path) -> None:
        self.engine = engine
        self.mqtt_port, self.tcp_port = free_port(), free_port()
        passwd, secret = work / "passwd", work / "mqtt_password"
        write_password_file(passwd, PASSWORDS)
        secret.write_text(PASSWORDS["bridge"] + "\n")
        for path in (passwd, secret):
            path.chmod(0o644)  # read by the containers' users (mosquitto, uid 10001)
        self.project = "sig%s" % uuid.uuid4().hex[:8]
        self.env = {
            "MQTT_PORT": str(self.mqtt_port), "SIG_TCP_PORT": str(self.tcp_port),
            "MOSQUITTO_IMAGE": images.mosquitto, "BASE_IMAGE": images.python,
            "SIG_TEST_PASSWD": str(passwd), "SIG_TEST_SECRET": str(secret),
        }

    def compose(self, *args: str, timeout: float = 300.0, check: bool = True) -> Any:
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        return self.engine.run("compose", *files, "-p", self.project, *args, timeout=timeout, check=check,
                               cwd=ROOT, env=self.env)

    def logs(self) -> str:
        return str(self.compose("logs", "--no-color", check=False, timeout=60).stdout)[-6000:]

    def exit_codes(self) -> dict[str, int]:
        """Service -> exit code of its container (``docker compose ps -a``)."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = json.loads(out) if out.lstrip().startswith("[") else [json.loads(line) for line in out.splitlines()]
        return {row["Service"]: row["ExitCode"] for row in rows if row["State"] == "exited"}

    @staticmethod
    def login(user: str) -> list[str]:
        return ["-u", user, "-P", PASSWORDS[user]]

    def retained(self, topic: str, count: int = 1, timeout: float = 2.0) -> dict[str, Any]:
        """Retained messages on ``topic`` (a filter), read as the bridge user: topic -> JSON payload."""
        lines = mosquitto_sub(self.mqtt_port, topic, count, timeout, *self.login("bridge"))
        return {topic: json.loads(payload) for topic, payload in (line.split(" ", 1) for line in lines)}

    def retained_now(self, topic: str) -> dict[str, Any]:
        """:meth:`retained`, or nothing while the broker does not take connections (restarting)."""
        try:
            return self.retained(topic, timeout=1.0)
        except RuntimeError:  # mosquitto_sub could not connect and subscribe
            return {}

    def publish(self, user: str, topic: str, payload: str, *extra: str) -> None:
        mosquitto_pub(self.mqtt_port, topic, payload, *self.login(user), *extra)


@pytest.fixture
def stack(docker_engine: DockerEngine, docker_images: LocalImages, tmp_path: Path) -> Iterator[Stack]:
    up = Stack(docker_engine, docker_images, tmp_path)
    try:
        with timed("docker compose up -d --wait --no-build (both services healthy)"):
            done = up.compose("up", "-d", "--wait", "--no-build", timeout=180, check=False)
        assert done.returncode == 0, "up --wait failed:\n%s\n%s" % (done.stderr[-3000:], up.logs())
        yield up
    finally:
        with timed("docker compose down -v"):
            up.compose("down", "-v", "--timeout", "10", check=False)


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    """Clients, carriers and subscribers of the test, closed at its end whatever happens."""
    with ExitStack() as stack:
        yield stack


def tcp_client(port: int, closing: ExitStack) -> sig.ClientRouter:
    carrier = CarrierTCPClient()
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port, auto_reconnect=False)
    closing.callback(carrier.disconnect)
    return router


def request_when_there(router: sig.ClientRouter, sender: str, method: str, params: Any, timeout: float) -> Any:
    """``remoteRequest``, asked again while the sender is not (yet, or again) known to the bridge."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return router.remoteRequest(sender, method, params)
        except (NameError, TimeoutError):
            assert time.monotonic() < deadline, "%s.%s never answered through the bridge" % (sender, method)
            time.sleep(0.1)


def frame(method: str, params: dict[str, Any], message_id: int) -> bytes:
    """A pysig 0.7.3 call, written the way 0.7.3 writes it (``json.dumps``, default separators)."""
    return json.dumps({"method": method, "params": params, "id": message_id}).encode()


def test_stack_end_to_end(stack: Stack, closing: ExitStack) -> None:
    with timed("check: bridge liveness retained, logs on stdout"):
        state = stack.retained("sig/node/bridge")
        assert state["sig/node/bridge"]["online"] is True, state
        assert "pysig TCP on 0.0.0.0:3000" in stack.logs()

    with timed("check: TCP clients (sig, 0.7.3 wire) register senders; mosquitto_sub sees events and births"):
        hub = closing.enter_context(Subscriber(stack.mqtt_port, "sig/#", *stack.login("bridge")))
        tcp = tcp_client(stack.tcp_port, closing)
        thermo = tcp.addRemoteSender("thermo", ["changed"])
        thermo.getSignal("changed").trigger({"t": 19.5})
        old = Fake073Client(stack.tcp_port)
        closing.callback(old.close)
        assert old.call(ADD_SENDER_OLD)["status"] == 0
        assert old.call(SIGNAL_OLD_TICK)["status"] == 0
        assert wait_until(lambda: any(line.startswith("sig/event/old/tick ") for line in hub.lines()), 10), \
            hub.lines()
        seen = dict(line.split(" ", 1) for line in hub.lines() if line.startswith("sig/event/"))
        assert json.loads(seen["sig/event/thermo/changed"]) == {"t": 19.5}
        assert json.loads(seen["sig/event/old/tick"]) == {"n": 1}
        births = stack.retained("sig/node/bridge/sender/+", count=2)
        assert births["sig/node/bridge/sender/thermo"]["events"] == ["changed"]
        assert births["sig/node/bridge/sender/old"]["events"] == ["tick"]

    with timed("check: a mosquitto_pub event reaches the TCP listeners"):
        assert old.call(frame("add_listener", {"sender": "lamp", "event": None}, 20))["status"] == 0
        heard = Recorder()
        tcp.addRemoteListener(heard.listener(), "lamp", "changed")
        # the bridge subscribes on the broker meanwhile: publish until the (later) sig listener hears
        syncs = 0
        while not heard.calls:
            assert syncs < 40, "no event from mosquitto_pub reached the bridge's TCP listener"
            stack.publish("lamp", "sig/event/lamp/changed", json.dumps("sync"))
            syncs += 1
            wait_until(lambda: bool(heard.calls), 0.5)
        stack.publish("lamp", "sig/event/lamp/changed", json.dumps({"on": True}))
        assert wait_until(lambda: heard.calls[-1][3] == {"on": True}, 10), heard.calls
        # the 0.7.3 listener was sent the same messages: one MQTT message reaches both listeners
        signals: list[dict[str, Any]] = []
        while not signals or signals[-1]["data"] != {"on": True}:
            signals.append(old.serve(1, timeout=10)[0]["params"])
        assert {json.dumps(s["info"]) for s in signals} == {'{"sender": "lamp", "event": "changed"}'}
        assert [s["data"] for s in signals] == [call[3] for call in heard.calls]
        assert {call[1:3] for call in heard.calls} == {("lamp", "changed")}
        assert old.violations == []

    with timed("check: requests cross both ways (TCP <-> MQTT node)"):
        carrier = CarrierMQTTClient(client_id="calc-node", username="calc", password=PASSWORDS["calc"],
                                    reconnect_max=0.5)
        node = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", stack.mqtt_port)
        closing.callback(carrier.disconnect)
        node.addRemoteSender("calc", ["e"], requests={"add": lambda p: p[0] + p[1]})
        assert request_when_there(tcp, "calc", "add", [20, 22], 10) == 42
        answer = old.call(frame("request", {"sender": "calc", "method": "add", "params": [1, 2]}, 21))
        assert (answer["status"], answer["response"]) == (0, 3)
        tcp.addRemoteSender("heater", ["on"], requests={"state": lambda p: "warm"})
        assert wait_until(lambda: carrier.isSenderConnected("heater") and carrier.isSenderConnected("old"), 10)
        assert node.remoteRequest("heater", "state") == "warm"
        old.answers[("request", "ping")] = REPLY_PONG
        result: list[Any] = []
        asking = threading.Thread(target=lambda: result.append(node.remoteRequest("old", "ping", [])))
        asking.start()
        request = old.serve(1)[0]
        asking.join(10)
        assert request["params"]["sender"] == "old" and request["params"]["method"] == "ping"
        assert result == [{"pong": "x"}]

    with timed("check: the ACL drops publishes on another's sender"):
        stack.publish("lamp", "sig/event/thermo/changed", json.dumps("spoof"))
        stack.publish("lamp", "sig/node/calc-node/sender/thermo", json.dumps({"events": ["spoof"]}), "-r")
        stack.publish("lamp", "sig/event/lamp/changed", json.dumps("after the spoof"))
        assert wait_until(lambda: any("after the spoof" in line for line in hub.lines()), 10)
        assert not [line for line in hub.lines() if "spoof" in line and "after the spoof" not in line]
        assert stack.retained("sig/node/calc-node/sender/thermo", timeout=1.0) == {}

    with timed("docker compose restart mosquitto, births back (bridge reconnected)"):
        stack.publish("thermo", "sig/event/thermo/kept", json.dumps("persisted"), "-r", "-q", "1")
        stack.publish("bridge", "sig/node/bridge/sender/thermo", "", "-r")  # deleted: only the bridge brings it back
        assert stack.retained("sig/node/bridge/sender/thermo", timeout=1.0) == {}
        hub.stop()
        stack.compose("restart", "mosquitto", timeout=60)
        assert wait_until(lambda: stack.retained_now("sig/node/bridge/sender/thermo") != {}, 30), stack.logs()
        assert stack.retained("sig/event/thermo/kept") == {"sig/event/thermo/kept": "persisted"}
        assert stack.retained("sig/node/bridge")["sig/node/bridge"]["online"] is True
        after = closing.enter_context(Subscriber(stack.mqtt_port, "sig/event/thermo/changed", *stack.login("thermo")))
        thermo.getSignal("changed").trigger("after the restart")
        assert after.wait_for(1, 10) == ['sig/event/thermo/changed "after the restart"']
        assert request_when_there(tcp, "calc", "add", [1, 1], 15) == 2  # the MQTT node reconnected too

    with timed("clients closed (TCP, 0.7.3, MQTT node, mosquitto_sub)"):
        closing.close()
    with timed("docker compose stop bridge, then all (SIGTERM, exit codes)"):
        started = time.monotonic()
        stack.compose("stop", "bridge", timeout=60)
        assert time.monotonic() - started < 8, "the bridge did not stop on SIGTERM before its grace period"
        assert stack.retained("sig/node/bridge")["sig/node/bridge"]["online"] is False
        stack.compose("stop", timeout=60)
        assert stack.exit_codes() == {"bridge": 0, "mosquitto": 0}, stack.logs()
