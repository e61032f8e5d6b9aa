"""pysig TCP faults that measure what they prove, and print the figures (RELIABILITY.md).

* a client that vanishes without closing (a raw socket that did the sig handshake and went
  silent; a real sig client process stopped with SIGSTOP) is found by ping within two ping
  intervals, and its senders get ``#disconnect``;
* a pysig server restart on the same port: ClientRouters with auto_reconnect are registered
  again within 2 s of the server coming back;
* a slow and a stuck listener delay no one else: the sender keeps its pace, a fast listener
  gets every event in order with low latency; the slow one's events are dropped and counted;
* a burst of 100,000 events with a stuck and a slow listener keeps memory bounded.

Each figure is printed (even without ``-s``), and recorded as a test property (``--junitxml``).
Run: ``python3 -m pytest -q tests/test_reliability_tcp.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from netutil import Recorder, wait_until

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig.carrier.tcpserver import CarrierTCPServer

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
PING = 0.5  # the server's ping interval in these tests (default 15 s)

Figure = Callable[[str, float, str], None]


@pytest.fixture
def reliability_figures(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
                        record_property: Callable[[str, Any], None]) -> Iterator[Figure]:
    """``figure(name, value, unit)``: print it (past the capture) and record it as a test property."""
    figures: list[tuple[str, float, str]] = []

    def figure(name: str, value: float, unit: str) -> None:
        figures.append((name, value, unit))
        record_property(name, "%.3f %s" % (value, unit))

    yield figure
    if figures:
        with capsys.disabled():
            sys.stdout.write("\n")
            for name, value, unit in figures:
                sys.stdout.write("[figure] %s: %s = %.3f %s\n" % (request.node.name, name, value, unit))
            sys.stdout.flush()


class Server:
    """A ServerRouter on TCP (127.0.0.1), restartable on the same port as a new process would be."""

    def __init__(self, port: int = 0, **settings: Any) -> None:
        self.settings = settings
        self.tcp = CarrierTCPServer(**settings)
        self.router = sig.ServerRouter(self.tcp, request_timeout=5.0)
        self.tcp.start("127.0.0.1", port)
        assert self.tcp.port
        self.port: int = self.tcp.port

    def restart(self) -> None:
        self.tcp = CarrierTCPServer(**self.settings)
        self.router = sig.ServerRouter(self.tcp, request_timeout=5.0)
        self.tcp.start("127.0.0.1", self.port)

    def stop(self) -> None:
        self.tcp.stop()


@pytest.fixture
def carriers() -> Iterator[list[CarrierTCPClient]]:
    made: list[CarrierTCPClient] = []
    try:
        yield made
    finally:
        for carrier in made:
            carrier.disconnect()


def connect(carriers: list[CarrierTCPClient], port: int, **settings: Any) -> sig.ClientRouter:
    auto_reconnect = settings.pop("auto_reconnect", False)
    carrier = CarrierTCPClient(**settings)
    carriers.append(carrier)
    router = sig.ClientRouter(carrier, request_timeout=5.0)
    assert carrier.connect("127.0.0.1", port, auto_reconnect=auto_reconnect)
    return router


RAW_PEERS: list[RawPeer] = []


@pytest.fixture(autouse=True)
def _close_raw_peers() -> Iterator[None]:
    yield
    while RAW_PEERS:
        RAW_PEERS.pop().close()


class RawPeer:
    """A sig peer on a bare socket: handshake, then it reads slowly, not at all, or goes silent."""

    def __init__(self, port: int, capabilities: list[str], rcvbuf: int | None = None) -> None:
        RAW_PEERS.append(self)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(5.0)
        self.file = self.sock.makefile("rb")
        self.ids = iter(range(1, 10**9))
        self.read_bytes = 0
        self._stop = threading.Event()
        assert self.call("get_version", {"capabilities": capabilities})["status"] == 0

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        message_id = next(self.ids)
        self.sock.sendall((json.dumps({"id": message_id, "method": method, "params": params}) + "\n").encode())
        while True:
            message = json.loads(self.file.readline())
            if message.get("id") == message_id and "status" in message:
                return message  # type: ignore[no-any-return]

    def read_slowly(self, chunk: int, pause: float) -> None:
        """Read ``chunk`` bytes every ``pause`` seconds, in a thread (a slow listener)."""

        def loop() -> None:
            try:
                while not self._stop.wait(pause):
                    data = self.file.read1(chunk)
                    if not data:
                        return
                    self.read_bytes += len(data)
            except (OSError, ValueError):
                return

        threading.Thread(target=loop, daemon=True).start()

    def closed_by_server(self, timeout: float) -> bool:
        """Read (and drop) everything until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                continue
            except OSError:
                return True
        return False

    def close(self) -> None:
        self._stop.set()
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


# -- a client that vanishes without closing ------------------------------------------------------


def test_silent_client_is_found_by_ping_and_its_senders_disconnected(carriers: list[CarrierTCPClient],
                                                                     reliability_figures: Figure) -> None:
    server = Server(ping_interval=PING)
    try:
        watcher = connect(carriers, server.port)
        gone = threading.Event()
        watcher.addRemoteListener(lambda info, data: gone.set(), "ghost", sig.EVENT_DISCONNECT)
        raw = RawPeer(server.port, ["ndjson", "pipeline", "ping"])
        assert raw.call("add_sender", {"sender": "ghost", "events": ["e"]})["status"] == 0
        silent_since = time.monotonic()  # from now on it neither reads nor answers
        assert gone.wait(4 * PING + 2.0), "the silent client was never found out"
        detected = time.monotonic() - silent_since
        reliability_figures("ping interval", PING, "s")
        reliability_figures("silent client -> #disconnect of its senders", detected, "s")
        assert detected <= 2 * PING + 0.5
        assert not server.router.getSender("ghost").isConnected()
        raw.close()
    finally:
        server.stop()


STOPPED_CLIENT = """
import sys, time
import sig
from sig.carrier.tcpclient import CarrierTCPClient
carrier = CarrierTCPClient()
router = sig.ClientRouter(carrier)
assert carrier.connect("127.0.0.1", int(sys.argv[1]), auto_reconnect=False)
router.addRemoteSender("stopped", ["e"])
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_sigstopped_client_process_is_found_by_ping(carriers: list[CarrierTCPClient],
                                                    reliability_figures: Figure) -> None:
    server = Server(ping_interval=PING)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", STOPPED_CLIENT, str(server.port)], stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        watcher = connect(carriers, server.port)
        gone = threading.Event()
        watcher.addRemoteListener(lambda info, data: gone.set(), "stopped", sig.EVENT_DISCONNECT)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert server.router.getSender("stopped").isConnected()
        os.kill(proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        assert gone.wait(4 * PING + 2.0), "the stopped client was never found out"
        detected = time.monotonic() - stopped_at
        reliability_figures("SIGSTOP'd client process -> #disconnect of its senders", detected, "s")
        assert detected <= 2 * PING + 0.5
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        server.stop()


# -- server restart -----------------------------------------------------------------------------------

CLIENTS = 10


def test_server_restart_clients_registered_again_within_2_s(carriers: list[CarrierTCPClient],
                                                           reliability_figures: Figure) -> None:
    server = Server()
    routers = [connect(carriers, server.port, auto_reconnect=True) for _ in range(CLIENTS)]
    recorders = []
    for n, router in enumerate(routers):
        router.addRemoteSender("node%d" % n, ["e"], requests={"n": lambda params, n=n: n})
        rec = Recorder()
        router.addRemoteListener(rec.listener(), "node%d" % ((n + 1) % CLIENTS), "e")
        recorders.append(rec)
    server.stop()
    assert wait_until(lambda: not any(r.carrier.isConnected() for r in routers))
    time.sleep(3.0)  # down long enough for the clients' backoff to reach its cap (1 s)
    server.restart()
    back = time.monotonic()
    ready: dict[int, float] = {}

    def all_registered() -> bool:
        for n in range(CLIENTS):
            if n not in ready:
                objsender = server.router.senders.get("node%d" % n)
                if objsender is not None and objsender.isConnected():
                    ready[n] = time.monotonic() - back
        return len(ready) == CLIENTS

    assert wait_until(all_registered, 10.0, step=0.005), ready

    def all_listened() -> bool:
        # each client registers its senders first, then its listeners: a neighbour's sender can be back
        # before this client's listener is, so the events below wait for the server to hold every listener
        return all(server.router.senders["node%d" % n].hasListeners() for n in range(CLIENTS))

    assert wait_until(all_listened, 10.0, step=0.005)
    # the listeners are back too: every node hears its neighbour
    for n, router in enumerate(routers):
        router.getSender("node%d" % n).getSignal("e").trigger("after restart")
    for rec in recorders:
        assert rec.wait_for(1)[-1][-1] == "after restart"
    everything = time.monotonic() - back
    times = sorted(ready.values())
    reliability_figures("clients", CLIENTS, "")
    reliability_figures("restart -> all senders registered again (max)", times[-1], "s")
    reliability_figures("restart -> sender registered again (median)", statistics.median(times), "s")
    reliability_figures("restart -> senders and listeners working, events heard", everything, "s")
    assert times[-1] <= 2.0
    server.stop()


# -- slow and stuck listeners ---------------------------------------------------------------------------

EVENTS = 20_000
RATE = 2000  # events/s of the paced runs
PACED = 2.0  # seconds of each paced run


class Pace:
    """A sender and a fast listener of it: a burst (throughput) and a paced run (latency)."""

    def __init__(self, port: int, carriers: list[CarrierTCPClient], name: str) -> None:
        self.rec = Recorder()
        self.latencies: list[float] = []
        listener = connect(carriers, port)
        listener.addRemoteListener(self._hear, name, "e")
        self.signal = connect(carriers, port).addRemoteSender(name, ["e"]).getSignal("e")
        self.sent = 0

    def _hear(self, info: dict[str, Any], data: Any) -> None:
        self.latencies.append(time.monotonic() - data["t"])
        self.rec.listener()(info, data["n"])

    def _trigger(self) -> None:
        self.signal.trigger({"n": self.sent, "t": time.monotonic(), "pad": "x" * 100})
        self.sent += 1

    def burst(self) -> float:
        """EVENTS events as fast as they go; return events/s (all heard, in order)."""
        started = time.monotonic()
        for _ in range(EVENTS):
            self._trigger()
        self.rec.wait_for(self.sent, timeout=60.0)
        return EVENTS / (time.monotonic() - started)

    def paced(self) -> tuple[float, float]:
        """RATE events/s for PACED s; return the fast listener's latency p50, p99 (ms)."""
        self.rec.wait_for(self.sent, timeout=60.0)
        self.latencies.clear()
        started = time.monotonic()
        for n in range(int(RATE * PACED)):
            delay = started + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._trigger()
        self.rec.wait_for(self.sent, timeout=60.0)
        assert [call[3] for call in self.rec.calls] == list(range(self.sent))  # all of them, in order
        latencies = sorted(self.latencies)
        return latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3


def test_slow_and_stuck_listeners_delay_no_one_else(carriers: list[CarrierTCPClient],
                                                    reliability_figures: Figure) -> None:
    server = Server(max_queue=1000)
    try:
        alone = Pace(server.port, carriers, "alone")
        burst_alone = alone.burst()
        p50_alone, p99_alone = alone.paced()
        slow = RawPeer(server.port, ["ndjson", "pipeline", "ping"])
        assert slow.call("add_listener", {"sender": "crowded", "event": None})["status"] == 0
        slow.read_slowly(8192, 0.02)  # at most 400 kB/s: behind the bursts, not the paced run
        stuck = RawPeer(server.port, ["ndjson", "pipeline"], rcvbuf=4096)  # busy, not gone: no ping
        assert stuck.call("add_listener", {"sender": "crowded", "event": None})["status"] == 0
        assert len(server.tcp.clients()) == 4
        crowded = Pace(server.port, carriers, "crowded")
        burst_crowded = crowded.burst()
        per_client = {int(str(k).split(":")[1].split("#")[0]): v for k, v in server.tcp.overflow.dropped.items()}
        p50_crowded, p99_crowded = crowded.paced()
        dropped = server.tcp.overflow.total
        reliability_figures("burst pace, no other listener", burst_alone, "events/s")
        reliability_figures("burst pace, with a slow and a stuck listener", burst_crowded, "events/s")
        reliability_figures("fast listener latency p50 at %d events/s, alone" % RATE, p50_alone, "ms")
        reliability_figures("fast listener latency p99 at %d events/s, alone" % RATE, p99_alone, "ms")
        reliability_figures("fast listener latency p50 at %d events/s, slow+stuck listeners" % RATE, p50_crowded,
                            "ms")
        reliability_figures("fast listener latency p99 at %d events/s, slow+stuck listeners" % RATE, p99_crowded,
                            "ms")
        reliability_figures("events dropped for the slow listener in the burst (counted, logged)",
                            per_client.get(slow.sock.getsockname()[1], 0), "")
        reliability_figures("events dropped for the stuck listener in the burst (counted, logged)",
                            per_client.get(stuck.sock.getsockname()[1], 0), "")
        reliability_figures("events dropped in all", dropped, "")
        assert burst_crowded >= 0.3 * burst_alone, (burst_crowded, burst_alone)
        assert p50_crowded <= max(5 * p50_alone, 50.0), (p50_crowded, p50_alone)
        assert dropped > 0
        # once the kernel's buffers are full too, the stuck one makes no progress: disconnected after a
        # second (a slow one that falls a whole second behind goes too)
        port = stuck.sock.getsockname()[1]

        def stuck_connected() -> bool:
            return any(str(c).startswith("127.0.0.1:%d#" % port) for c in server.tcp.clients())

        deadline = time.monotonic() + 20.0
        while stuck_connected() and time.monotonic() < deadline:
            for _ in range(500):
                crowded.signal.trigger({"n": -1, "t": time.monotonic(), "pad": "x" * 100})
            time.sleep(0.1)
        assert not stuck_connected(), "the stuck listener was not disconnected"
        assert slow.read_bytes > 0
        slow.close()
        stuck.close()
    finally:
        server.stop()


# -- a burst to a stuck client: memory -------------------------------------------------------------------

BURST = 100_000


def test_burst_of_100k_events_to_a_stuck_client_keeps_memory_bounded(carriers: list[CarrierTCPClient],
                                                                     reliability_figures: Figure) -> None:
    process = psutil.Process()
    server = Server()  # the default queue: 10,000 messages per client
    try:
        stuck = RawPeer(server.port, ["ndjson", "pipeline"], rcvbuf=4096)
        assert stuck.call("add_listener", {"sender": "burst", "event": None})["status"] == 0
        slow = RawPeer(server.port, ["ndjson", "pipeline", "ping"], rcvbuf=4096)
        assert slow.call("add_listener", {"sender": "burst", "event": None})["status"] == 0
        slow.read_slowly(4096, 0.01)
        rec = Recorder()
        listener = connect(carriers, server.port)
        count = [0]
        done = threading.Event()

        def hear(info: dict[str, Any], data: Any) -> None:
            count[0] += 1
            if count[0] == BURST:
                done.set()

        listener.addRemoteListener(hear, "burst", "e")
        sender = connect(carriers, server.port).addRemoteSender("burst", ["e"]).getSignal("e")
        peak = [process.memory_info().rss]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.01):
                peak[0] = max(peak[0], process.memory_info().rss)

        before = process.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        payload = "x" * 200
        for n in range(BURST):
            sender.trigger({"n": n, "pad": payload})
        assert done.wait(60.0), "the fast listener got %d of %d events" % (count[0], BURST)
        elapsed = time.monotonic() - started
        sampling.set()
        sampler.join(5.0)
        growth = (peak[0] - before) / 2**20
        unbounded = BURST * (len(json.dumps({"n": BURST, "pad": payload})) + 100) / 2**20
        reliability_figures("burst", BURST, "events")
        reliability_figures("burst pace (fast listener got them all)", BURST / elapsed, "events/s")
        reliability_figures("RSS before", before / 2**20, "MiB")
        reliability_figures("peak RSS growth during the burst (whole test process)", growth, "MiB")
        reliability_figures("what queueing the whole burst for one client would take (frames only)", unbounded,
                            "MiB")
        reliability_figures("events dropped for the stuck and slow clients (counted, logged)",
                            server.tcp.overflow.total, "")
        assert growth < 64, "memory grew by %.0f MiB" % growth
        assert server.tcp.overflow.total > 0
        assert rec.calls == []
        stuck.close()
        slow.close()
    finally:
        server.stop()


# -- the bounded call queue never dead-locks -------------------------------------------------------------


def test_full_call_queue_still_reads_the_replies_its_dispatcher_waits_for(carriers: list[CarrierTCPClient],
                                                                          reliability_figures: Figure) -> None:
    """A server-side listener requests the very client whose flood fills its call queue."""
    server = Server(max_calls=5)
    try:
        client = connect(carriers, server.port)
        flood = client.addRemoteSender("flood", ["e"], requests={"m": lambda params: params}).getSignal("e")
        answers: list[Any] = []

        def on_event(info: dict[str, Any], data: Any) -> None:  # runs on that client's dispatcher
            if data % 100 == 0:
                answers.append(server.router.request("flood", "m", data))

        server.router.addListener(on_event, "flood", "e")
        started = time.monotonic()
        for n in range(2000):
            flood.trigger(n)
        assert wait_until(lambda: len(answers) == 20, 20.0), answers
        elapsed = time.monotonic() - started
        assert answers == list(range(0, 2000, 100))
        reliability_figures("2,000 events, max_calls=5, 20 requests back to the flooding client", elapsed, "s")
        assert elapsed < 10.0
    finally:
        server.stop()
