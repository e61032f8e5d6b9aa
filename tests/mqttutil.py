"""MQTT test infrastructure: private brokers and Mosquitto's own command-line clients.

* :class:`Mosquitto`: a private ``mosquitto`` process on a free loopback port, with a
  temporary config (persistence, password file, ACL, TLS as asked), stopped by its PID;
* fixtures ``embedded_broker`` (amqtt, one per module), ``mosquitto`` (one per test)
  and ``mosquitto_factory`` (several, with options);
* ``mosquitto_pub``, ``mosquitto_sub`` (once), ``mosquitto_sub.background`` (a
  :class:`Subscriber` that runs until stopped) and ``mosquitto_rr``, each bounded in time.

tests/conftest.py loads this module as a pytest plugin (``pytest_plugins``), so the
fixtures are available to every test. The machine's own Mosquitto on 127.0.0.1:1883 is
never used.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from certs import Pki

    from sig_mqtt.broker import EmbeddedBroker

__all__ = [
    "Mosquitto",
    "Subscriber",
    "embedded_broker",
    "free_port",
    "mosquitto",
    "mosquitto_factory",
    "mosquitto_pub",
    "mosquitto_rr",
    "mosquitto_sub",
    "password_hash",
    "retained_lines",
]

MOSQUITTO = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else (shutil.which("mosquitto") or "")
#: the default bound of one command-line client run, in seconds
CLIENT_TIMEOUT = 10.0
_START_TIMEOUT = 5.0

# Mosquitto processes this module started and has not stopped yet: killed at exit at the
# latest, so a crashed test run leaves no broker behind.
_running: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_running.values()):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _running.clear()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM a process we started, then SIGKILL it if it still runs after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def password_hash(password: str, *, iterations: int = 101) -> str:
    """A Mosquitto 2 password-file hash (``$7$``: PBKDF2-SHA512), as ``mosquitto_passwd`` makes."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """Write a Mosquitto password file: with ``mosquitto_passwd -b`` if installed, else by hand."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        path.write_text("".join("%s:%s\n" % (user, password_hash(password)) for user, password in users.items()))
    else:
        path.write_text("")
        for user, password in users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=10)
    path.chmod(0o600)


class Mosquitto:
    """A private Mosquitto broker on a free loopback port (not started until :meth:`start`).

    Args:
        persistence: keep retained messages and sessions across :meth:`restart` (saved on a
            clean stop, and every second for :meth:`kill` tests).
        password_file: ``{user: password}``; anonymous clients are then refused.
        acl: the text of an ACL file.
        tls: serve TLS (only) with a CA and certificates made for the test; see :attr:`pki`,
            :attr:`ca_file` and :attr:`client_args`.
        require_certificate: ask clients for a certificate signed by that CA.
        allow_duplicate_messages: Mosquitto's option of that name (left unset when ``None``).
        extra: more configuration lines (global section, after the listener's lines).
        port: the loopback port to listen on (default: a free one).
    """

    def __init__(self, *, persistence: bool = False, password_file: dict[str, str] | None = None,
                 acl: str | None = None, tls: bool = False, require_certificate: bool = False,
                 allow_duplicate_messages: bool | None = None, extra: list[str] | None = None,
                 port: int | None = None) -> None:
        if not MOSQUITTO or shutil.which("mosquitto_sub") is None:
            pytest.skip("mosquitto and mosquitto-clients are not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="sig-mosquitto-"))
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pki: Pki | None = None
        self.ca_file: str | None = None
        self.tls = tls
        self.require_certificate = require_certificate
        lines = ["per_listener_settings false", "listener %d %s" % (self.port, self.host)]
        if tls:
            from certs import make_pki

            self.pki = make_pki(self.dir)
            self.ca_file = str(self.pki.ca)
            lines += ["cafile %s" % self.pki.ca, "certfile %s" % self.pki.server_cert,
                      "keyfile %s" % self.pki.server_key]
            if require_certificate:
                lines.append("require_certificate true")
        lines += ["log_dest file %s" % (self.dir / "mosquitto.log"), "log_type all", "log_timestamp true",
                  "max_queued_messages 100000"]
        if os.geteuid() == 0:
            lines.append("user root")  # else Mosquitto drops to user "mosquitto", who cannot write here
        if persistence:
            lines += ["persistence true", "persistence_location %s/" % self.dir, "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if password_file:
            write_password_file(self.dir / "passwd", password_file)
            lines += ["allow_anonymous false", "password_file %s" % (self.dir / "passwd")]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            lines.append("acl_file %s" % (self.dir / "acl"))
        if allow_duplicate_messages is not None:
            lines.append("allow_duplicate_messages %s" % str(allow_duplicate_messages).lower())
        lines += extra or []
        self.config_file = self.dir / "mosquitto.conf"
        self.config_file.write_text("\n".join(lines) + "\n")

    def __repr__(self) -> str:
        return "<Mosquitto %s pid=%s>" % (self.url, self.pid)

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` (``mqtts://`` with TLS)."""
        return "%s://%s:%d" % ("mqtts" if self.tls else "mqtt", self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def client_args(self) -> list[str]:
        """TLS arguments for Mosquitto's command-line clients (``--cafile``, and a client
        certificate when :attr:`require_certificate`); empty without TLS."""
        if self.pki is None:
            return []
        args = ["--cafile", str(self.pki.ca)]
        if self.require_certificate:
            args += ["--cert", str(self.pki.client_cert), "--key", str(self.pki.client_key)]
        return args

    def start(self) -> Mosquitto:
        """Start it and wait until it accepts connections (5 s at most).

        Raises:
            RuntimeError: it exited or did not listen in time; the message has its log's tail.
        """
        if self.pid is not None:
            return self
        with open(self.dir / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config_file)], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=subprocess.STDOUT)
        _running[self.proc.pid] = self.proc
        deadline = time.monotonic() + _START_TIMEOUT
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.kill()
                raise RuntimeError("mosquitto did not start on %s:%d (%s):\n%s" % (
                    self.host, self.port, "exit code %s" % code if code is not None else "not listening after 5 s",
                    self.log_text()[-2000:]))
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM (a clean stop: Mosquitto saves its persistence file), then SIGKILL after 5 s."""
        proc = self.proc
        if proc is None:
            return
        terminate(proc, 5)
        _running.pop(proc.pid, None)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash (nothing saved since the last autosave)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _running.pop(proc.pid, None)
        self.proc = None

    def restart(self) -> Mosquitto:
        """Stop cleanly if running, then start again on the same port (retried for 5 s while it is busy)."""
        self.stop()
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                return self.start()
            except RuntimeError:  # the port may linger for a moment
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def wait_for_autosave(self, timeout: float = 5.0) -> None:
        """Wait until Mosquitto begins saving its persistence file after this call (every
        second or two with ``persistence``), so a :meth:`kill` keeps what it holds now."""
        marker = "Saving in-memory database"
        seen = self.log_text().count(marker)
        deadline = time.monotonic() + timeout
        while self.log_text().count(marker) <= seen:
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto did not save its persistence file in %.0f s" % timeout)
            time.sleep(0.05)
        time.sleep(0.1)  # let it finish writing

    def log_text(self) -> str:
        """What Mosquitto logged so far (its log file, then anything it wrote to stderr)."""
        text = ""
        for name in ("mosquitto.log", "stderr.log"):
            try:
                text += (self.dir / name).read_text(errors="replace")
            except OSError:
                pass
        return text

    def connections(self, client_id: str) -> list[str]:
        """What the broker logged of each CONNECT of ``client_id``: e.g. ``p5, c1, k30, u'name'``
        (protocol 5 or 2 = 3.1.1, clean start, keepalive, user)."""
        found = re.findall(r"New client connected from \S+ as (\S+) \(([^)]*)\)", self.log_text())
        return [details for cid, details in found if cid == client_id]

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- Mosquitto's command-line clients ------------------------------------------------------


def _client(tool: str, port: int) -> list[str]:
    path = shutil.which(tool)
    if path is None:
        pytest.skip("%s is not installed (mosquitto-clients)" % tool)
    return [path, "-h", "127.0.0.1", "-p", str(port)]


def mosquitto_pub(port: int, topic: str, payload: str, *extra: str) -> None:
    """Publish one message with ``mosquitto_pub`` (empty ``payload``: a zero-length one).

    QoS 1 unless ``extra`` says ``-q``: mosquitto_pub then exits only after the broker's PUBACK,
    so the message is the broker's before the test's next step. At QoS 0 it sends PUBLISH and
    DISCONNECT back to back and nothing tells whether the broker routed it.

    Raises:
        AssertionError: it exited with an error (its stderr in the message).
    """
    qos = [] if "-q" in extra else ["-q", "1"]
    args = [*_client("mosquitto_pub", port), "-t", topic, *(["-n"] if payload == "" else ["-m", payload]), *qos,
            *extra]
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    assert done.returncode == 0, "mosquitto_pub failed (%s): %s" % (done.returncode, done.stderr.strip())


def mosquitto_rr(port: int, topic: str, response_topic: str, payload: str, timeout: float = 5.0,
                 *extra: str) -> str:
    """Send a request with ``mosquitto_rr`` (MQTT 5) and return the reply's payload.

    Raises:
        AssertionError: no reply within ``timeout`` (rounded up to whole seconds) or another error.
    """
    args = [*_client("mosquitto_rr", port), "-t", topic, "-e", response_topic, "-m", payload,
            "-W", str(max(1, int(-(-timeout // 1)))), *extra]
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 5)
    assert done.returncode == 0, "mosquitto_rr failed (%s): %s %s" % (
        done.returncode, done.stdout.strip(), done.stderr.strip())
    return done.stdout.rstrip("\n")


class Subscriber:
    """``mosquitto_sub -v`` running in the background; its output lines are collected.

    It has subscribed when the constructor returns (it waits for the SUBACK in the ``-d``
    debug output, 5 s at most; run under ``stdbuf -oL``, else its output is not flushed
    and it waits 0.5 s instead). Debug lines are left out of :meth:`lines`; a payload
    with newlines gives several lines. Use it as a context manager, or call :meth:`stop`.

    Raises:
        RuntimeError: no SUBACK within 5 s (the message has its debug output).
    """

    def __init__(self, port: int, topic: str, *extra: str) -> None:
        args = [*_client("mosquitto_sub", port), "-t", topic, "-v", "-d", *extra]
        stdbuf = shutil.which("stdbuf")
        if stdbuf is not None:
            args = [stdbuf, "-oL", *args]  # its debug lines are not flushed into a pipe otherwise
        self.topic = topic
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self._lines: list[str] = []
        self._debug: list[str] = []
        self._subscribed = threading.Event()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="mosquitto_sub reader", daemon=True)
        self._reader.start()
        if stdbuf is None:  # its debug lines stay in its stdout buffer: give it time instead
            time.sleep(0.5)
            if self.proc.poll() is None:
                self._subscribed.set()
        if not self._subscribed.wait(5.0):
            self.stop()
            raise RuntimeError("mosquitto_sub did not subscribe to %r on port %d:\n%s" % (
                topic, port, "\n".join(self._debug[-20:])))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            with self._changed:
                if line.startswith("Client ") and (" sending " in line or " received " in line):
                    self._debug.append(line)
                    if " received SUBACK" in line:
                        self._subscribed.set()
                elif line.startswith("Subscribed (mid:") or line.startswith("Error:"):
                    self._debug.append(line)
                else:
                    self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def lines(self) -> list[str]:
        """``topic payload`` lines received so far."""
        with self._changed:
            return list(self._lines)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until ``count`` lines came (or ``timeout`` s passed, or it exited); return all lines."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._lines) < count and self._reader.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return list(self._lines)

    def debug(self) -> list[str]:
        """The ``-d`` lines (CONNECT, SUBACK, PUBLISH...) seen so far."""
        with self._changed:
            return list(self._debug)

    def stop(self) -> list[str]:
        """Stop the process (SIGTERM by its PID, SIGKILL after 5 s); return the lines."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.lines()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Sub:
    """``mosquitto_sub(port, topic, count, timeout, *extra)`` and ``mosquitto_sub.background(port, topic, *extra)``."""

    def __call__(self, port: int, topic: str, count: int = 1, timeout: float = 5.0, *extra: str) -> list[str]:
        """Subscribe, then return the ``topic payload`` lines received: once ``count`` came
        (the first ``count``), or after ``timeout`` s (all of them; ``count`` <= 0: always wait)."""
        with Subscriber(port, topic, *extra) as sub:
            lines = sub.wait_for(count if count > 0 else 1 << 62, timeout)
        return lines[:count] if count > 0 else lines

    @staticmethod
    def background(port: int, topic: str, *extra: str) -> Subscriber:
        """Start a subscriber that runs until ``.stop()``; it has subscribed when this returns."""
        return Subscriber(port, topic, *extra)


mosquitto_sub = _Sub()


def retained_lines(port: int, topic: str, *extra: str, fmt: str | None = None) -> list[str]:
    """The retained messages a new subscriber to ``topic`` gets, as ``mosquitto_sub -v`` prints them
    (or as ``-F fmt`` says); ``extra``: connection options (credentials, TLS) of both clients.

    No fixed wait: after the SUBACK it publishes a marker on a topic of its own, subscribed too;
    the broker sends the retained messages before it.
    """
    marker = "sig-test-marker/%s" % os.urandom(6).hex()
    with Subscriber(port, topic, "-t", marker, *extra, *(["-F", fmt] if fmt else [])) as sub:
        mosquitto_pub(port, marker, "end", *extra)
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while not any(marker in line for line in sub.lines()):
            assert time.monotonic() < deadline, "the marker never came back on port %d" % port
            sub.wait_for(len(sub.lines()) + 1, deadline - time.monotonic())
        return [line for line in sub.lines() if marker not in line]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """An amqtt broker (MQTT 3.1.1) for the module's tests; use a topic prefix per test."""
    from sig_mqtt.broker import EmbeddedBroker

    broker = EmbeddedBroker("127.0.0.1", 0).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def carriers() -> Iterator[list[Any]]:
    """MQTT carriers (``CarrierMQTTClient``) a test made, disconnected at its end whatever happens."""
    made: list[Any] = []
    try:
        yield made
    finally:
        for carrier in made:
            carrier.disconnect()


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., Mosquitto]]:
    """``factory(start=True, **options) -> Mosquitto`` (options as :class:`Mosquitto`),
    started unless ``start=False``; all are stopped and removed after the test."""
    made: list[Mosquitto] = []

    def factory(start: bool = True, **options: Any) -> Mosquitto:
        broker = Mosquitto(**options)
        made.append(broker)
        return broker.start() if start else broker

    yield factory
    for broker in made:
        broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A private Mosquitto for one test: anonymous, no persistence, plain TCP."""
    return mosquitto_factory()
