"""Shared fixtures: a ServerRouter with client routers over LocalCarrier or TCP."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sig
from sig.carrier.local import LocalCarrier
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

sys.path.insert(0, str(Path(__file__).parent))

# A suite started in the background by a non-interactive shell (`.ci/run &`, nohup) inherits SIGINT
# ignored, and so would every process it starts: the examples and commands that the tests stop with
# Ctrl-C (SIGINT) would never see it. Handle SIGINT here, so children start with its default action.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# brokers and Mosquitto's clients; a real Home Assistant; sig-bridge processes; a private Docker engine;
# the session's RabbitMQ cluster
pytest_plugins = ["mqttutil", "hautil", "bridgeutil", "dockerengine", "rabbitutil"]


class Net:
    """A ServerRouter and a factory of connected ClientRouters over one transport."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server = sig.ServerRouter(request_timeout=5.0)
        self.tcp: CarrierTCPServer | None = None
        self.clients: list[tuple[sig.ClientRouter, Any]] = []
        if kind == "tcp":
            self.tcp = CarrierTCPServer()
            self.server.attach(self.tcp)
            self.tcp.start("127.0.0.1", 0)

    def client(self, **carrier_settings: Any) -> sig.ClientRouter:
        if self.kind == "tcp":
            assert self.tcp is not None and self.tcp.port is not None
            carrier: Any = CarrierTCPClient(**carrier_settings)
            router = sig.ClientRouter(carrier, request_timeout=5.0)
            assert carrier.connect("127.0.0.1", self.tcp.port, auto_reconnect=False)
        else:
            server_end, carrier = LocalCarrier(), LocalCarrier()
            self.server.attach(server_end)
            router = sig.ClientRouter(carrier, request_timeout=5.0)
            carrier.connect(server_end)
        self.clients.append((router, carrier))
        return router

    def drop(self, router: sig.ClientRouter) -> None:
        """Disconnect one client (cleanly)."""
        router.carrier.disconnect()  # type: ignore[attr-defined]

    def close(self) -> None:
        for _, carrier in self.clients:
            carrier.disconnect()
        if self.tcp is not None:
            self.tcp.stop()


@pytest.fixture(params=["local", "tcp"])
def net(request: pytest.FixtureRequest) -> Iterator[Net]:
    n = Net(request.param)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def tcp_net() -> Iterator[Net]:
    n = Net("tcp")
    try:
        yield n
    finally:
        n.close()


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: a test that takes seconds")


FactoryT = Callable[..., sig.ClientRouter]


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """Processes a test started (``test_cli.Proc``), killed by PID at its end whatever happens."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()
