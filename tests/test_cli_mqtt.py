"""The ``sig`` client subcommands over MQTT (``--mqtt URL``) against a private Mosquitto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from mqttutil import mosquitto_sub
from netutil import wait_until

ROOT = Path(__file__).resolve().parent.parent


def _sig(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", dict(os.environ, PYTHONPATH=str(ROOT)))
    return subprocess.run([sys.executable, "-m", "sig", *args], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, **kwargs)


def test_send_listen_and_request_over_mqtt(mosquitto: Any, tmp_path: Path) -> None:
    prefix = "c%s/sig" % uuid.uuid4().hex[:6]
    url = "mqtt://127.0.0.1:%d/%s" % (mosquitto.port, prefix)
    out = tmp_path / "listen.out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(out, "w") as stdout:
        listener = subprocess.Popen([sys.executable, "-m", "sig", "listen", "--mqtt", url, "--listen", "lamp:on",
                                     "--json"], stdout=stdout, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        try:
            assert wait_until(lambda: mosquitto_sub(mosquitto.port, "%s/node/+" % prefix, 1, 0.3) != [], 10)
            sub = mosquitto_sub.background(mosquitto.port, "%s/event/#" % prefix)
            try:
                done = _sig("send", "--mqtt", url, "--sender", "lamp", "--event", "on", "--data", '{"level": 3}')
                assert done.returncode == 0, done.stderr
                assert wait_until(lambda: len(sub.lines()) >= 1)
            finally:
                sub.stop()
            assert sub.lines()[0] == '%s/event/lamp/on {"level":3}' % prefix
            assert wait_until(lambda: "level" in out.read_text(), 10)
        finally:
            listener.terminate()
            listener.wait(10)
    heard = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert any(h.get("data") == {"level": 3} for h in heard), heard


def test_unreachable_broker_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _sig("send", "--mqtt", "mqtt://127.0.0.1:%d" % port, "--sender", "a", "--event", "b")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "cannot connect to mqtt://127.0.0.1:%d" % port in done.stderr
    done = _sig("send", "--mqtt", "http://x", "--sender", "a", "--event", "b")
    assert done.returncode == 2 and "bad --mqtt" in done.stderr


def test_mqtt_examples(mosquitto: Any, tmp_path: Path) -> None:
    prefix = "x%s/sig" % uuid.uuid4().hex[:6]
    url = "mqtt://127.0.0.1:%d/%s" % (mosquitto.port, prefix)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "listener.out"
    with open(out, "w") as stdout:
        listener = subprocess.Popen([sys.executable, str(ROOT / "examples" / "mqtt_listener.py"), url],
                                    stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        try:
            assert wait_until(lambda: mosquitto_sub(mosquitto.port, "%s/node/+" % prefix, 1, 0.3) != [], 10)
            done = subprocess.run([sys.executable, str(ROOT / "examples" / "mqtt_sensor.py"), url, "--count", "2",
                                   "--delay", "0.2"], capture_output=True, text=True, timeout=30, env=env)
            assert done.returncode == 0, done.stderr
            assert wait_until(lambda: "sensor:#disconnect" in out.read_text(), 10), out.read_text()
        finally:
            listener.terminate()
            listener.wait(10)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("sensor:#connect")
    assert [line.split(" ")[0] for line in lines[1:3]] == ["sensor:#temperature"] * 2


def test_password_file_wins_over_the_environment_and_user_takes_it(mosquitto_factory: Any, tmp_path: Path) -> None:
    """``--password-file`` beats ``$SIG_MQTT_PASSWORD``; ``--user`` with a URL without a user uses the variable."""
    broker = mosquitto_factory(password_file={"alice": "right-pw"})
    secret = tmp_path / "pw"
    secret.write_text("right-pw\n")
    prefix = "pw%s/sig" % uuid.uuid4().hex[:6]
    send = ["send", "--sender", "s", "--event", "e", "--data", "1"]
    wrong_env = dict(os.environ, SIG_MQTT_PASSWORD="wrong")
    done = _sig(*send, "--mqtt", "mqtt://alice@127.0.0.1:%d/%s" % (broker.port, prefix), "--password-file",
                str(secret), env=dict(wrong_env, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    right_env = dict(os.environ, SIG_MQTT_PASSWORD="right-pw", PYTHONPATH=str(ROOT))
    done = _sig(*send, "--mqtt", "mqtt://127.0.0.1:%d/%s" % (broker.port, prefix), "--user", "alice", env=right_env)
    assert done.returncode == 0, done.stderr
    done = _sig(*send, "--mqtt", "mqtt://127.0.0.1:%d/%s" % (broker.port, prefix), "--user", "alice",
                env=dict(wrong_env, PYTHONPATH=str(ROOT)))
    assert done.returncode != 0 and "Not authorized" in done.stderr, done.stderr  # the variable was used
