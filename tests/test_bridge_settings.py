"""Each ``sig-bridge`` option and ``[bridge]`` config key takes effect (the bridge as a subprocess).

Options already shown by tests/test_bridge.py (``--listen``, ``--node-id``, ``--prefix``,
``--config`` rules and ``[auth]``, ``--broker-listen`` with an embedded broker) are not
repeated; here: the MQTT password from the URL, ``--password-file``, ``$SIG_MQTT_PASSWORD``
and ``password_file``; the prefix from the URL path; ``--log-level`` / ``log_level``;
``--broker-listen`` / ``broker_listen`` joining a broker that is there; ``--embedded`` /
``embedded`` insisting on its own; ``listen``, ``mqtt``, ``node_id``, ``heartbeat`` from the
config file, and options winning over it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from bridgeutil import ROOT
from mqttutil import Mosquitto, Subscriber, free_port, mosquitto_pub, retained_lines
from netutil import wait_until

import sig
from sig.carrier.tcpclient import CarrierTCPClient

PASSWORD = "b-pw"


@pytest.fixture
def prefix() -> str:
    return "bs%s/sig" % uuid.uuid4().hex[:8]


@pytest.fixture
def secured(mosquitto_factory: Any) -> Mosquitto:
    """A Mosquitto that only lets in user ``bridge`` with :data:`PASSWORD`."""
    return mosquitto_factory(password_file={"bridge": PASSWORD})  # type: ignore[no-any-return]


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def node_state(port: int, prefix: str, nid: str, *extra: str) -> dict[str, Any]:
    """The retained state of node ``nid`` (``{}`` if there is none)."""
    lines = retained_lines(port, "%s/node/%s" % (prefix, nid), *extra)
    return json.loads(lines[0].split(" ", 1)[1]) if lines else {}


def connected_users(broker: Mosquitto, nid: str) -> list[str]:
    """The user of each CONNECT of client ``nid``, as Mosquitto logged it (``u'name'``; ``-`` for none)."""
    return [next((part for part in item.split(", ") if part.startswith("u'")), "-") for item in broker.connections(nid)]


# -- the MQTT password -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["url", "password-file", "env", "config", "file-over-env"])
def test_mqtt_password_sources(secured: Mosquitto, bridges: Any, prefix: str, tmp_path: Path, source: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIG_MQTT_PASSWORD", raising=False)
    nid = "pw-%s" % source
    url = "mqtt://bridge@127.0.0.1:%d" % secured.port
    password_file = write(tmp_path / "mqtt_password", PASSWORD + "\n")
    args: list[str] = ["--prefix", prefix, "--node-id", nid]
    env: dict[str, str] = {}
    if source == "url":
        args += ["--mqtt", "mqtt://bridge:%s@127.0.0.1:%d" % (PASSWORD, secured.port)]
    elif source == "password-file":
        args += ["--mqtt", url, "--password-file", password_file]
    elif source == "env":
        args += ["--mqtt", url]
        env["SIG_MQTT_PASSWORD"] = PASSWORD
    elif source == "config":
        args += ["--mqtt", url, "--config", write(tmp_path / "bridge.toml", """
            [bridge]
            password_file = "%s"
            """ % password_file)]
    else:
        args += ["--mqtt", url, "--password-file", password_file]
        env["SIG_MQTT_PASSWORD"] = "wrong"
    bridge = bridges(*args, env=env)
    assert connected_users(secured, nid) == ["u'bridge'"], bridge.text()
    assert node_state(secured.port, prefix, nid, "-u", "bridge", "-P", PASSWORD)["online"] is True
    assert PASSWORD not in bridge.text()


def test_mqtts_url_with_a_password_file(mosquitto_factory: Any, bridges: Any, prefix: str, tmp_path: Path) -> None:
    """README's example: ``--mqtt mqtts://bridge@host:8883 --password-file FILE``; the broker's CA is one the
    system trusts (here: the test CA, through ``SSL_CERT_FILE``)."""
    broker = mosquitto_factory(tls=True, password_file={"bridge": PASSWORD})
    password_file = write(tmp_path / "mqtt_password", PASSWORD + "\n")
    bridges("--mqtt", "mqtts://bridge@localhost:%d" % broker.port, "--password-file", password_file, "--prefix",
            prefix, "--node-id", "tls", env={"SSL_CERT_FILE": str(broker.ca_file)})
    assert connected_users(broker, "tls") == ["u'bridge'"]
    state = node_state(broker.port, prefix, "tls", *broker.client_args, "-u", "bridge", "-P", PASSWORD)
    assert state["online"] is True


def test_a_wrong_mqtt_password_is_refused_and_retried(secured: Mosquitto, bridges: Any, prefix: str,
                                                      tmp_path: Path) -> None:
    password_file = write(tmp_path / "mqtt_password", "wrong\n")
    bridge = bridges("--mqtt", "mqtt://bridge@127.0.0.1:%d" % secured.port, "--password-file", password_file,
                     "--prefix", prefix, ready=False)
    assert wait_until(lambda: bridge.text().count("refused") >= 2, 10), bridge.text()
    assert bridge.proc.poll() is None and "online" not in bridge.text()


# -- the topic prefix ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["url path", "option over url path", "config", "option over config"])
def test_prefix_sources(mosquitto: Mosquitto, bridges: Any, prefix: str, tmp_path: Path, where: str) -> None:
    other = prefix.replace("/sig", "/other")
    config = write(tmp_path / "bridge.toml", '[bridge]\nprefix = "%s"\n' % (other if "over" in where else prefix))
    url = "mqtt://127.0.0.1:%d" % mosquitto.port
    args = {
        "url path": ["--mqtt", "%s/%s" % (url, prefix)],
        "option over url path": ["--mqtt", "%s/%s" % (url, other), "--prefix", prefix],
        "config": ["--mqtt", url, "--config", config],
        "option over config": ["--mqtt", url, "--config", config, "--prefix", prefix],
    }[where]
    bridges(*args, "--node-id", "px")
    assert node_state(mosquitto.port, prefix, "px")["online"] is True
    assert node_state(mosquitto.port, other, "px") == {}


# -- the log level ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "config", "shown"), [
    (["--log-level", "debug"], None, {"debug", "info", "warning"}),
    (["--log-level", "info"], None, {"info", "warning"}),
    (["--log-level", "warning"], None, {"warning"}),
    ([], "debug", {"debug", "info", "warning"}),
    (["--log-level", "warning"], "debug", {"warning"}),
])
def test_log_level(mosquitto: Mosquitto, bridges: Any, prefix: str, tmp_path: Path, args: list[str],
                   config: str | None, shown: set[str]) -> None:
    if config is not None:
        args = [*args, "--config", write(tmp_path / "bridge.toml", '[bridge]\nlog_level = "%s"\n' % config)]
    topic = "%s/node/lv" % prefix
    with Subscriber(mosquitto.port, topic) as states:
        bridge = bridges("--mqtt", "mqtt://127.0.0.1:%d" % mosquitto.port, "--prefix", prefix, "--node-id", "lv",
                         *args, ready=False)
        assert wait_until(lambda: any('"online":true' in line for line in states.lines()), 10), bridge.text()
    mosquitto_pub(mosquitto.port, "%s/reply/lv" % prefix, '{"id": "nobody-asked", "status": 0}')  # debug
    mosquitto_pub(mosquitto.port, "%s/reply/lv" % prefix, "{")  # a warning, handled after the debug one
    assert wait_until(lambda: "unreadable reply" in bridge.text()), bridge.text()
    text = bridge.text()
    seen = {level for level, needle in (("debug", "reply to an unknown or expired request"),
                                        ("info", "] node lv online"), ("warning", "unreadable reply"))
            if needle in text}
    assert seen == shown, text


# -- which broker ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "config"])
def test_broker_listen_joins_the_broker_that_answers_there(mosquitto: Mosquitto, bridges: Any, prefix: str,
                                                           tmp_path: Path, how: str) -> None:
    address = "127.0.0.1:%d" % mosquitto.port
    args = ["--broker-listen", address] if how == "option" else [
        "--config", write(tmp_path / "bridge.toml", '[bridge]\nbroker_listen = "%s"\n' % address)]
    bridge = bridges(*args, "--prefix", prefix, "--node-id", "joiner")
    assert "already answers at %s: joining it" % address in bridge.text()
    assert node_state(mosquitto.port, prefix, "joiner")["proto"] == 5  # Mosquitto's MQTT 5, not amqtt's 3.1.1


@pytest.mark.parametrize("how", ["option", "config"])
def test_embedded_insists_on_its_own_broker(mosquitto: Mosquitto, prefix: str, tmp_path: Path, how: str) -> None:
    address = "127.0.0.1:%d" % mosquitto.port
    args = ["--embedded", "--broker-listen", address] if how == "option" else [
        "--config", write(tmp_path / "bridge.toml", '[bridge]\nembedded = true\nbroker_listen = "%s"\n' % address)]
    done = subprocess.run([sys.executable, "-m", "bridge", *args, "--listen", "127.0.0.1:%d" % free_port(),
                           "--prefix", prefix], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "sig-bridge: cannot start the embedded broker on %s" % address), done.stderr


# -- the [bridge] table, and options over it ------------------------------------------------------------------------


@pytest.mark.parametrize("options_win", [False, True])
def test_bridge_table_listen_mqtt_node_id_heartbeat(mosquitto_factory: Any, bridges: Any, prefix: str,
                                                   tmp_path: Path, options_win: bool) -> None:
    configured, other = mosquitto_factory(), mosquitto_factory()
    config_port, option_port = free_port(), free_port()
    config = write(tmp_path / "bridge.toml", """
        [bridge]
        listen = "127.0.0.1:%d"
        mqtt = "mqtt://127.0.0.1:%d"
        node_id = "from-config"
        heartbeat = 0.5
        """ % (config_port, configured.port))
    args = ["--config", config, "--prefix", prefix]
    if options_win:
        args += ["--listen", "127.0.0.1:%d" % option_port, "--mqtt", "mqtt://127.0.0.1:%d" % other.port,
                 "--node-id", "from-option"]
    broker, nid, tcp_port = (other, "from-option", option_port) if options_win else (
        configured, "from-config", config_port)
    topic = "%s/node/%s" % (prefix, nid)
    with Subscriber(broker.port, topic, "-F", "%U %p") as states:
        bridge = bridges(*args, listen=False, tcp_port=tcp_port)
        lines = states.wait_for(5, timeout=6)
    stamps = [float(line.split(" ", 1)[0]) for line in lines[1:]]  # after the first: the heartbeats
    periods = [b - a for a, b in itertools.pairwise(stamps)]
    # 0.5 s asked (the default is 30 s); a loaded 2-core machine delays a beat now and then
    assert len(periods) == 3 and all(0.3 < period < 1.5 for period in periods), (periods, bridge.text())
    assert json.loads(lines[-1].split(" ", 1)[1])["heartbeat"] == 0.5
    carrier = CarrierTCPClient()
    sig.ClientRouter(carrier)
    try:
        assert carrier.connect("127.0.0.1", tcp_port, auto_reconnect=False)
    finally:
        carrier.disconnect()
    if options_win:
        assert node_state(configured.port, prefix, "from-config") == {}


# -- sig-bridge acl ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "expected"), [([], "cfg/sig"), (["--prefix", "opt/sig"], "opt/sig")])
def test_acl_prefix_from_the_config_or_the_option(tmp_path: Path, option: list[str], expected: str) -> None:
    config = write(tmp_path / "bridge.toml", """
        [bridge]
        prefix = "cfg/sig"

        [[acl]]
        user = "kitchen"
        senders = ["kitchen"]
        """)
    done = subprocess.run([sys.executable, "-m", "bridge", "acl", "--config", config, *option], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "topic write %s/event/kitchen/#" % expected in lines, done.stdout
    assert not any(("cfg/sig" if expected == "opt/sig" else "opt/sig") in line for line in lines)


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "bridge", "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0 and done.stdout.strip() == "sig-bridge %s" % sig.VERSION, done
