"""A real Home Assistant Core for tests: seeded config dir, private Mosquitto, REST API, stopped by PID.

* :class:`HomeAssistant`: ``hass -c DIR --skip-pip`` from the venv of :mod:`ha_venv` on a free
  loopback port, with its MQTT integration set to a private Mosquitto. The config dir is seeded
  (onboarding done, an admin user with a long-lived token, the MQTT config entry) in Home
  Assistant 2025.4's storage formats, and a bearer token is signed with that token's key, so no
  UI and no onboarding request is needed;
* module fixtures ``ha_mosquitto`` and ``home_assistant`` (marker ``homeassistant``): skipped
  only when the machine has no Python 3.13, with the reason; the venv is built when missing;
* :func:`validate_discovery`: checks discovery configs against Home Assistant's own MQTT platform
  schemas, in its venv.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ha_venv
import mqttutil
import pytest
from mqttutil import Mosquitto, free_port

__all__ = ["HomeAssistant", "home_assistant", "ha_mosquitto", "validate_discovery"]

# seconds for the API to answer after launch: 3-8 s measured on an idle machine, 13-25 s with the
# other core busy, over 60 s once under a load of 9 on 2 cores
_API_TIMEOUT = 180.0
# Home Assistant processes not stopped yet: mqttutil kills them (by PID) at exit at the latest
_running = mqttutil._running


def _store(key: str, version: int, data: Any, minor: int = 1) -> str:
    return json.dumps({"version": version, "minor_version": minor, "key": key, "data": data}, indent=1)


class HomeAssistant:
    """One Home Assistant Core process (see the module docstring).

    Args:
        python: the HA venv's interpreter.
        mqtt_port: the broker HA's MQTT integration connects to.
    """

    def __init__(self, python: Path, mqtt_port: int) -> None:
        self.python = python
        self.mqtt_port = mqtt_port
        self.dir = Path(tempfile.mkdtemp(prefix="sig-hass-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.timings: dict[str, float] = {}
        self._seed()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def _seed(self) -> None:
        (self.dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: sig test\n  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: NL\n"
            "http:\n  server_host: 127.0.0.1\n  server_port: %d\napi:\nconfig:\nonboarding:\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n" % self.port)
        storage = self.dir / ".storage"
        storage.mkdir()
        now = "2025-01-01T00:00:00+00:00"
        user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
        auth = {
            "users": [{"id": user_id, "group_ids": ["system-admin"], "is_owner": True, "is_active": True,
                       "name": "sig", "system_generated": False, "local_only": False}],
            "groups": [{"id": "system-admin", "name": "Administrators"}, {"id": "system-users", "name": "Users"},
                       {"id": "system-read-only", "name": "Read Only"}],
            "credentials": [],
            "refresh_tokens": [{
                "id": token_id, "user_id": user_id, "client_id": None, "client_name": "sig tests",
                "client_icon": None, "token_type": "long_lived_access_token", "created_at": now,
                "access_token_expiration": 315360000.0, "token": secrets.token_hex(64), "jwt_key": jwt_key,
                "last_used_at": None, "last_used_ip": None, "expire_at": None, "credential_id": None,
                "version": None,
            }],
        }
        (storage / "auth").write_text(_store("auth", 1, auth))
        (storage / "onboarding").write_text(_store("onboarding", 4, {
            "done": ["user", "core_config", "analytics", "integration"]}))
        entry = {
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 2, "domain": "mqtt", "title": "127.0.0.1",
            "data": {"broker": "127.0.0.1", "port": self.mqtt_port}, "options": {}, "pref_disable_new_entities": False,
            "pref_disable_polling": False, "source": "user", "unique_id": None, "disabled_by": None,
            "created_at": now, "modified_at": now, "discovery_keys": {}, "subentries": [],
        }
        (storage / "core.config_entries").write_text(_store("core.config_entries", 1, {"entries": [entry]}, minor=5))
        # A bearer token HA accepts: signed with the long-lived token's key, issued by its id.
        script = ("import jwt, sys, time; now = int(time.time()); "
                  "print(jwt.encode({'iss': sys.argv[1], 'iat': now, 'exp': now + 86400 * 365}, sys.argv[2], "
                  "algorithm='HS256'))")
        self.token = subprocess.run([str(self.python), "-c", script, token_id, jwt_key], capture_output=True,
                                    text=True, check=True, timeout=60).stdout.strip()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> HomeAssistant:
        """Launch ``hass`` and wait until its API answers and MQTT is loaded."""
        started = time.monotonic()
        log = open(self.dir / "stdout.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [str(self.python), "-m", "homeassistant", "-c", str(self.dir), "--skip-pip"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _running[self.proc.pid] = self.proc
        self.wait(lambda: self._get("/api/") is not None, _API_TIMEOUT, "the API")
        self.timings["api"] = time.monotonic() - started
        self.wait(lambda: "mqtt" in (self._get("/api/config") or {}).get("components", []), 30, "MQTT loaded")
        self.timings["mqtt"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 20 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        _running.pop(proc.pid, None)
        started = time.monotonic()
        mqttutil.terminate(proc, 20)
        self.timings["stop"] = time.monotonic() - started

    def restart(self) -> HomeAssistant:
        """Stop and start again with the same config dir (its entity registry survives)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, size: int = 4000) -> str:
        """The end of Home Assistant's log."""
        try:
            return (self.dir / "stdout.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    # -- REST API ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def _get(self, path: str) -> Any:
        try:
            return self._request("GET", path)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """``GET /api/states/<entity_id>``; ``None`` when HA has no such entity."""
        try:
            return self._request("GET", "/api/states/" + entity_id)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def states(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/states") or []

    def service(self, domain: str, service: str, **data: Any) -> Any:
        """Call a service (``POST /api/services/<domain>/<service>``)."""
        return self._request("POST", "/api/services/%s/%s" % (domain, service), data)

    def template(self, text: str) -> str:
        """Render a template in HA (``POST /api/template``): device registry queries, ..."""
        request = urllib.request.Request(self.url + "/api/template", data=json.dumps({"template": text}).encode(),
                                         method="POST", headers={"Authorization": "Bearer " + self.token,
                                                                 "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``predicate`` until it returns something true; fail with HA's log tail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("Home Assistant exited (%s) waiting for %s:\n%s" % (
                    self.proc.returncode, what, self.log_tail()))
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("Home Assistant: no %s after %.0f s\n%s" % (what, timeout, self.log_tail()))
            time.sleep(0.1)

    def wait_state(self, entity_id: str, expected: Callable[[str], bool] | str, timeout: float = 30.0,
                   nudge: Callable[[], Any] | None = None) -> dict[str, Any]:
        """Wait until the entity's state is ``expected`` (or passes it); ``nudge`` re-publishes meanwhile.

        HA subscribes an entity's state topic ~0.1 s after the entity appears, so a value published
        at once may be lost: ``nudge`` (e.g. trigger the event again) runs every half second.
        """
        check = expected if callable(expected) else (lambda state: state == expected)
        last_nudge = 0.0

        def ready() -> dict[str, Any] | None:
            nonlocal last_nudge
            if nudge is not None and time.monotonic() - last_nudge > 0.5:
                last_nudge = time.monotonic()
                nudge()
            state = self.state(entity_id)
            return state if state is not None and check(state["state"]) else None

        return self.wait(ready, timeout, "state %r of %s" % (expected, entity_id))  # type: ignore[no-any-return]


def validate_discovery(configs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Validate ``(platform, config)`` pairs with HA's own discovery schemas; return the problems.

    A key the schema would drop (it removes unknown keys silently) counts as a problem too.
    """
    python = ha_venv.hass_python()
    script = Path(__file__).with_name("ha_validate.py")
    out = subprocess.run([str(python), str(script)], input=json.dumps(configs), capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise AssertionError("validator failed: %s" % out.stderr[-3000:])
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _need_venv() -> Path:
    if ha_venv.find_python313() is None:  # (a cached venv is no use without its interpreter)
        pytest.skip("Home Assistant 2025.4 needs Python 3.13, and this machine has none")
    return ha_venv.build()


@pytest.fixture(scope="session")
def ha_python() -> Path:
    """The HA venv's interpreter (built when missing; skipped without Python 3.13)."""
    return _need_venv()


@pytest.fixture(scope="module")
def ha_mosquitto() -> Iterator[Mosquitto]:
    """The private Mosquitto Home Assistant talks to (one per module, so neither outlives its tests)."""
    broker = Mosquitto().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def home_assistant(ha_python: Path, ha_mosquitto: Mosquitto) -> Iterator[HomeAssistant]:
    """A running Home Assistant Core whose MQTT integration uses ``ha_mosquitto``."""
    hass = HomeAssistant(ha_python, ha_mosquitto.port)
    try:
        hass.start()
        print("\nHome Assistant up: API %.1f s, MQTT loaded %.1f s after launch" % (
            hass.timings["api"], hass.timings["mqtt"]))
        yield hass
    finally:
        hass.stop()
        if os.environ.get("SIG_HASS_LOG"):
            print("Home Assistant log:", hass.log_tail(100000))
        hass.close()
