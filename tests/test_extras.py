"""Optional parts come by extra; a missing one is one clear line naming the extra to install.

Each case runs in a fresh interpreter where the optional package is made unimportable
(``sys.modules[name] = None``), as on a machine that installed ``sig`` without that extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAHO = ["paho", "paho.mqtt", "paho.mqtt.client"]


def run(code: str, blocked: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\nfor name in %r:\n    sys.modules[name] = None\nsys.argv[1:] = %r\n" % (blocked, list(args))
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_core_needs_no_extra() -> None:
    done = run("""
        import sig
        from sig.carrier.local import LocalCarrier
        from sig.carrier.tcpclient import CarrierTCPClient
        from sig.carrier.tcpserver import CarrierTCPServer
        server = sig.ServerRouter()
        tcp = CarrierTCPServer()
        server.attach(tcp)
        tcp.start("127.0.0.1", 0)
        carrier = CarrierTCPClient()
        client = sig.ClientRouter(carrier)
        assert carrier.connect("127.0.0.1", tcp.port, auto_reconnect=False)
        heard = []
        client.addRemoteListener(lambda info, data: heard.append(data), "s", "e")
        client.addRemoteSender("s", ["e"]).getSignal("e").trigger(1)
        import time
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
        carrier.disconnect()
        tcp.stop()
        print(heard, sorted(m for m in ("paho", "amqtt", "aiohttp", "serial") if sys.modules.get(m)))
    """, PAHO + ["amqtt", "aiohttp", "serial"])
    assert (done.returncode, done.stdout.strip()) == (0, "[1] []"), done.stderr


@pytest.mark.parametrize(("command", "args", "blocked", "extra"), [
    ("from bridge.cli import main; sys.exit(main(sys.argv[1:]))", ["--listen", "127.0.0.1:0"], PAHO, "sig[mqtt]"),
    ("from bridge.cli import main; sys.exit(main(sys.argv[1:]))", ["acl", "--config", "compose/bridge.toml"], PAHO,
     "sig[mqtt]"),
    ("from sig_apps.cli import main; sys.exit(main(sys.argv[1:]))", ["listen", "--mqtt", "mqtt://127.0.0.1:9/x"], PAHO,
     "sig[mqtt]"),
    ("from sig_apps.cli import main; sys.exit(main(sys.argv[1:]))", ["web", "--http", "127.0.0.1:0"], ["aiohttp"],
     "sig[web]"),
])
def test_a_command_without_its_extra_says_which_in_one_line(command: str, args: list[str], blocked: list[str],
                                                          extra: str) -> None:
    done = run(command, blocked, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and extra in lines[0], done.stderr


@pytest.mark.parametrize(("code", "blocked", "extra"), [
    ("import sig_mqtt", PAHO, "sig[mqtt]"),
    ("from sig_mqtt.broker import EmbeddedBroker\nEmbeddedBroker().start()", ["amqtt"], "sig[broker]"),
    ("from sig.carrier.serial import CarrierSerialClient\nCarrierSerialClient().connect('/dev/null', 9600)",
     ["serial"], "sig[serial]"),
])
def test_a_library_part_without_its_extra_raises_missing_extra_error(code: str, blocked: list[str], extra: str) -> None:
    done = run("import sig\ntry:\n%s\nexcept sig.MissingExtraError as exc:\n    print('missing:', exc)\n"
               % textwrap.indent(code, "    "), blocked)
    assert done.returncode == 0 and done.stdout.startswith("missing:") and extra in done.stdout, (done.stdout,
                                                                                                  done.stderr)
