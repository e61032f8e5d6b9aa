"""docs/convention.md says what sig does: its identifier test vectors and its command lines run here.

The vectors go through sig_mqtt's topic functions both ways; each example block is run with
Mosquitto's own clients against a private Mosquitto, with a sig node on the other side.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mqttutil import Mosquitto
from netutil import Recorder

import sig
from sig_mqtt import CarrierMQTTClient, decode_level, encode_level

DOC = (Path(__file__).parent.parent / "docs" / "convention.md").read_text()


def vectors(marker: str) -> list[list[str]]:
    """The rows of the table after ``<!-- vectors: marker -->``, cells without their backquotes."""
    lines = DOC.split("<!-- vectors: %s -->" % marker, 1)[1].strip().splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip()[1:-1] for cell in line.strip().strip("|").split("|")])
    return rows


def example(name: str) -> tuple[list[str], list[str]]:
    """The command lines and the expected output lines (``# ...``) of an example block."""
    block = re.search(r"<!-- example: %s -->\n```sh\n(.*?)```" % re.escape(name), DOC, re.S)
    assert block is not None, "no example %r in docs/convention.md" % name
    lines = block.group(1).splitlines()
    return [line for line in lines if not line.startswith("#")], [line[2:] for line in lines if line.startswith("# ")]


def test_the_document_has_its_version_and_every_example_is_run_here() -> None:
    assert "# sig over MQTT — convention 1.0" in DOC and '"sig": "1.0"' in DOC
    names = set(re.findall(r"<!-- example: ([\w-]+) -->", DOC))
    assert names == {"device", "remove", "watch", "rebirth", "request-v5", "request-envelope"}


@pytest.mark.parametrize("ident, level", vectors("round trip"))
def test_round_trip_vectors(ident: str, level: str) -> None:
    value = json.loads(ident)
    assert encode_level(value) == level
    integral = isinstance(value, float) and value.is_integer()  # 1.0 and 1 are one key: read back as 1
    assert decode_level(level) == value and type(decode_level(level)) is (int if integral else type(value))


@pytest.mark.parametrize("level, reads, written", vectors("read only"))
def test_read_only_vectors(level: str, reads: str, written: str) -> None:
    value = json.loads(reads)
    assert decode_level(level) == value
    assert encode_level(value) == written != level


# -- the command lines ------------------------------------------------------------------------


class Shell:
    """Runs an example's lines with Mosquitto's clients against one broker, each bounded in time."""

    def __init__(self, port: int) -> None:
        if shutil.which("mosquitto_rr") is None:
            pytest.skip("mosquitto-clients is not installed")
        self.port = port
        self.background: list[subprocess.Popen[str]] = []

    def args(self, line: str, extra: list[str]) -> list[str]:
        words = shlex.split(line.rstrip(" &"))
        assert words[0] in ("mosquitto_pub", "mosquitto_sub", "mosquitto_rr"), line
        return [shutil.which(words[0]) or words[0], "-h", "127.0.0.1", "-p", str(self.port), *words[1:], *extra]

    def run(self, name: str, repeat_until_done: bool = True) -> list[str]:
        """Run example ``name``: background lines first, then the others (again every 0.3 s until the
        background subscriber has its lines). Returns what the line that prints printed."""
        commands, expected = example(name)
        bounded = ["-C", str(len(expected)), "-W", "10"] if expected else []
        printer: subprocess.Popen[str] | None = None
        for line in commands:
            if line.endswith("&"):
                proc = subprocess.Popen(self.args(line, bounded), stdout=subprocess.PIPE, text=True)
                self.background.append(proc)
                printer = proc if expected else None
        foreground = [line for line in commands if not line.endswith("&")]
        deadline = time.monotonic() + 10
        output = ""
        while True:
            for line in foreground:
                last = line is foreground[-1] and printer is None
                done = subprocess.run(self.args(line, bounded if last and "mosquitto_sub" in line else
                                                (["-W", "10"] if last and "mosquitto_rr" in line else [])),
                                      capture_output=True, text=True, timeout=15)
                assert done.returncode == 0, (line, done.stderr)
                output = done.stdout
            if printer is None or not repeat_until_done:
                break
            try:
                output = printer.communicate(timeout=0.3)[0]
                break
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline, "%s printed nothing in 10 s" % name
        return output.splitlines()

    def kill(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # a crash: the broker publishes the Will
            proc.communicate(timeout=5)
        self.background.clear()


def matches(expected: list[str], output: list[str]) -> bool:
    """Output lines equal the expected ones, where ``<name>`` stands for any value."""
    patterns = [re.escape(line).replace(r"<session>", '[^"]+').replace(r"<ms>", r"\d+") for line in expected]
    return len(output) == len(expected) and all(re.fullmatch(p, o) for p, o in zip(patterns, output, strict=True))


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as mosquitto:
        yield mosquitto


@pytest.fixture
def shell(broker: Mosquitto) -> Iterator[Shell]:
    runner = Shell(broker.port)
    yield runner
    runner.kill()


def node(port: int, made: list[Any], **settings: Any) -> sig.ClientRouter:
    carrier = CarrierMQTTClient(prefix="sig", reconnect_max=0.5, **settings)
    made.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port)
    return router


@pytest.fixture
def made(carriers: list[Any]) -> list[Any]:
    """The carriers a test made (mqttutil's ``carriers``: disconnected at its end)."""
    return carriers


@pytest.fixture
def thermo(broker: Mosquitto, made: list[Any]) -> sig.Sender:
    """Node n1 hosting ``thermo`` (``#temperature``, request ``read`` -> 21.5), as the examples say."""
    router = node(broker.port, made, client_id="n1")
    return router.addRemoteSender("thermo", ["#temperature"], requests={"read": lambda params: 21.5})


@pytest.mark.timeout(60)
def test_device_and_remove_examples_reach_a_sig_listener(broker: Mosquitto, shell: Shell, made: list[Any]) -> None:
    heard = Recorder()
    router = node(broker.port, made)
    router.addRemoteListener(heard.listener(), "relay/1")
    shell.run("device")
    connect = ("", "relay/1", "#connect", {"events": ["#state"], "requests": None})
    assert heard.wait_for(2)[:2] == [connect, ("", "relay/1", "#state", {"on": True})]
    assert router.carrier.isSenderConnected("relay/1")  # type: ignore[attr-defined]
    shell.kill()  # the Will
    assert heard.wait_for(3)[2] == ("", "relay/1", "#disconnect", {"events": ["#state"], "requests": None})
    shell.run("device")  # back, then removed by its birth
    assert heard.wait_for(5)[3:5] == [connect, ("", "relay/1", "#state", {"on": True})]
    shell.run("remove")
    assert heard.wait_for(6)[5] == ("", "relay/1", "#disconnect", {"events": ["#state"], "requests": None})
    assert not router.carrier.isSenderConnected("relay/1")  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_watch_example_prints_a_sig_node_s_channel_event(shell: Shell, thermo: sig.Sender) -> None:
    commands, expected = example("watch")
    proc = subprocess.Popen(shell.args(commands[0], ["-C", "1", "-W", "10"]), stdout=subprocess.PIPE, text=True)
    shell.background.append(proc)
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        thermo.getSignal("#temperature").trigger(21.5)
        time.sleep(0.1)
    assert proc.communicate(timeout=5)[0].splitlines() == expected


@pytest.mark.timeout(60)
def test_rebirth_example_gets_a_sig_node_s_state_and_birth(shell: Shell, thermo: sig.Sender) -> None:
    output = shell.run("rebirth")
    assert matches(example("rebirth")[1], output), output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["request-v5", "request-envelope"])
def test_request_examples_are_answered_by_a_sig_node(shell: Shell, thermo: sig.Sender, name: str) -> None:
    assert shell.run(name) == example(name)[1]
