"""sig-bridge as a subprocess for tests: :class:`BridgeProc` and the ``bridges`` fixture.

tests/conftest.py loads this module as a pytest plugin (``pytest_plugins``), so the fixture
is available to every test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mqttutil import free_port
from netutil import wait_until

import sig
from sig.carrier.tcpclient import CarrierTCPClient

__all__ = ["ROOT", "BridgeProc", "bridges"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BridgeProc:
    """``python -m bridge`` in a subprocess; its stderr is kept for the assertions.

    ``--listen`` on a free port is added unless ``args`` has one or ``listen`` is False
    (the config file's ``listen`` then applies: give its port as ``tcp_port``). ``env``:
    more environment variables.
    """

    def __init__(self, *args: str, tmp: Path, listen: bool = True, tcp_port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tcp_port = tcp_port or free_port()
        self.log = tmp / ("bridge-%s.log" % uuid.uuid4().hex[:6])
        self._log_file = open(self.log, "w")  # noqa: SIM115 (closed in stop())
        full = list(args)
        if listen and "--listen" not in full:
            full += ["--listen", "127.0.0.1:%d" % self.tcp_port]
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", *full], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=self._log_file, env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))

    def wait_ready(self, timeout: float = 10.0) -> None:
        assert wait_until(lambda: "online" in self.text() or self.proc.poll() is not None, timeout), self.text()
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text()

    def client(self, **settings: Any) -> sig.ClientRouter:
        carrier = CarrierTCPClient()
        router = sig.ClientRouter(carrier, request_timeout=5.0)
        assert carrier.connect("127.0.0.1", self.tcp_port, auto_reconnect=True)
        return router

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[Any]:
    """``start(*args, ready=True, **options) -> BridgeProc`` (options as :class:`BridgeProc`),
    waited for until online unless ``ready=False``; all are stopped after the test."""
    made: list[BridgeProc] = []
    clients: list[sig.ClientRouter] = []

    def start(*args: str, ready: bool = True, **options: Any) -> BridgeProc:
        bridge = BridgeProc(*args, tmp=tmp_path, **options)
        made.append(bridge)
        if ready:
            bridge.wait_ready()
        return bridge

    start.clients = clients  # type: ignore[attr-defined]
    yield start
    for router in clients:
        router.carrier.disconnect()  # type: ignore[attr-defined]
    for bridge in made:
        bridge.stop()
