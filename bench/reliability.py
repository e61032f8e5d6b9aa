"""Load through one bridge: 50 pysig TCP clients and 50 MQTT nodes, 1,000 QoS 1 events each.

    python3 bench/reliability.py            # about 1-3 minutes; --events 1000 --procs 5 --per-proc 10
    python3 bench/reliability.py --rate 20  # paced: each sender 20 events/s (2,000/s in all), about 70 s

Everything is private and on loopback: a Mosquitto (``/usr/sbin/mosquitto -c <temp conf>`` on a free
port, ``max_queued_messages 1000000``, ``set_tcp_nodelay true``, no persistence) and one bridge
(``python3 -m bridge --mqtt mqtt://127.0.0.1:PORT --listen 127.0.0.1:TCPPORT --prefix P``) as
subprocesses, terminated by PID at the end.

Senders: ``--procs`` processes host ``--per-proc`` TCP clients each (pysig TCP to the bridge), and as
many processes host as many MQTT nodes (``CarrierMQTTClient``, QoS 1); every client or node is one
sender with its own name and triggers ``--events`` events ``{"n": i, "t": time.monotonic_ns()}``,
all of them as fast as they go once the parent says go (round robin over its senders), or
``--rate`` events/s each (latency without a backlog).
Listeners (in this process): one MQTT node listening to everything ``(None, None)`` and one TCP
client of the bridge listening to everything. Each listener must get every event of every sender,
in order per sender.

Printed: events not heard by the end of the run (``TIMEOUT``, or ``QUIET`` s without any) and out of
order per listener, events/s (events heard / from the go to the
last one heard), latency p50 / p99 / max (monotonic_ns is system-wide on Linux), the senders'
own pace, and the bridge's peak RSS (psutil, sampled every 50 ms) and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE, os.path.join(ROOT, "tests")]

from mqtt import Mosquitto, percentiles, report, wait_for_stdin_line  # noqa: E402 (bench/mqtt.py)

import sig  # noqa: E402
from sig.carrier.tcpclient import CarrierTCPClient  # noqa: E402
from sig_mqtt import CarrierMQTTClient  # noqa: E402

PREFIX = "load/sig"
TIMEOUT = 150.0  # the longest the run waits for anything
QUIET = 40.0  # the listeners are done when nothing came for this long (a stalled publisher waits 30 s)


# -- children: hosts of senders ------------------------------------------------------------------------


def role_senders(args: argparse.Namespace) -> None:
    """Host ``per_proc`` senders (TCP clients of the bridge or MQTT nodes); send when told to."""
    carriers: list[Any] = []
    signals = []
    for index in range(args.first, args.first + args.per_proc):
        name = "%s-%03d" % (args.kind, index)
        if args.kind == "tcp":
            carrier: Any = CarrierTCPClient()
            router = sig.ClientRouter(carrier, request_timeout=30.0)
            assert carrier.connect("127.0.0.1", args.port, auto_reconnect=False)
        else:
            carrier = CarrierMQTTClient(client_id=name, prefix=PREFIX, qos=1)
            router = sig.ClientRouter(carrier, request_timeout=30.0)
            assert carrier.connect("127.0.0.1", args.port, auto_reconnect=False), carrier.last_error
        carriers.append(carrier)
        signals.append(router.addRemoteSender(name, ["e"]).getSignal("e"))
    report("ready")
    wait_for_stdin_line(TIMEOUT)
    started = time.monotonic()
    for n in range(args.events):
        if args.rate:
            delay = started + n / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for signal_ in signals:
            signal_.trigger({"n": n, "t": time.monotonic_ns()})
    report("sent", seconds=time.monotonic() - started)
    wait_for_stdin_line(TIMEOUT)  # stay connected until the listeners are done
    for carrier in carriers:
        carrier.disconnect()


# -- parent ---------------------------------------------------------------------------------------------------


class Listener:
    """Counts events per sender, their order and their latency."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.next: dict[Any, int] = {}
        self.count = 0
        self.by_kind = {"tcp": 0, "mqtt": 0}
        self.last_by_kind = {"tcp": 0.0, "mqtt": 0.0}
        self.disorder = 0
        self.delays: list[float] = []
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, info: dict[str, Any], data: Any) -> None:
        if info.get("event") != "e":
            return
        now = time.monotonic_ns()
        with self.lock:
            sender = info["sender"]
            if data["n"] != self.next.get(sender, 0):
                self.disorder += 1
            self.next[sender] = data["n"] + 1
            self.count += 1
            kind = sender.split("-")[0]
            self.by_kind[kind] += 1
            self.last_by_kind[kind] = now / 1e9
            self.delays.append((now - data["t"]) / 1e6)
            self.last = now / 1e9


class Child:
    """A sender-hosting process, talked to on stdin / stdout."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "senders", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def expect(self, tag: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(tag + " "):
            raise RuntimeError("a sender process said %r instead of %r" % (line, tag))
        return json.loads(line[len(tag) + 1:])  # type: ignore[no-any-return]

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.go()
            except OSError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.wait(0.05):
        try:
            peak[0] = max(peak[0], process.memory_info().rss)
        except psutil.Error:
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", default="parent")
    parser.add_argument("--kind", default="tcp")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--events", type=int, default=1000, help="events per sender (1000)")
    parser.add_argument("--procs", type=int, default=5, help="processes per kind (5)")
    parser.add_argument("--per-proc", type=int, default=10, help="senders per process (10)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="events/s of each sender (default 0: as fast as they go, a burst)")
    parser.add_argument("--progress", action="store_true", help="print what the listeners heard every 5 s")
    args = parser.parse_args()
    if args.role == "senders":
        role_senders(args)
        return 0

    import paho.mqtt
    import psutil
    from test_bridge import BridgeProc  # the tests' bridge subprocess helper

    senders = 2 * args.procs * args.per_proc
    expected = senders * args.events
    print("sig %s, paho-mqtt %s, Python %s, %d CPUs" % (sig.VERSION, paho.mqtt.__version__, sys.version.split()[0],
                                                      os.cpu_count() or 0))
    print("%d TCP clients + %d MQTT nodes (%d processes of %d), %d QoS 1 events each (%s): %d events per listener" % (
        args.procs * args.per_proc, args.procs * args.per_proc, 2 * args.procs, args.per_proc, args.events,
        "%g events/s each" % args.rate if args.rate else "a burst", expected))
    broker = Mosquitto(max_queued_messages=1000000, set_tcp_nodelay="true").start()
    tmp = Path(tempfile.mkdtemp(prefix="sig-bench-bridge-"))
    bridge = BridgeProc("--mqtt", "mqtt://127.0.0.1:%d" % broker.port, "--prefix", PREFIX, tmp=tmp)
    children: list[Child] = []
    carriers: list[Any] = []
    stop = threading.Event()
    peak = [0]
    try:
        bridge.wait_ready(15.0)
        print("bridge: python3 -m bridge --mqtt mqtt://127.0.0.1:%d --listen 127.0.0.1:%d --prefix %s (pid %d)" % (
            broker.port, bridge.tcp_port, PREFIX, bridge.proc.pid))
        threading.Thread(target=sample_rss, args=(bridge.proc.pid, stop, peak), daemon=True).start()
        rss_idle = psutil.Process(bridge.proc.pid).memory_info().rss
        mqtt_heard, tcp_heard = Listener("MQTT node (None, None)"), Listener("TCP client (None, None)")
        mqtt_carrier = CarrierMQTTClient(prefix=PREFIX)
        mqtt_router = sig.ClientRouter(mqtt_carrier)
        carriers.append(mqtt_carrier)
        assert mqtt_carrier.connect("127.0.0.1", broker.port, auto_reconnect=False)
        mqtt_router.addRemoteListener(mqtt_heard)
        tcp_router = bridge.client()
        carriers.append(tcp_router.carrier)
        tcp_router.addRemoteListener(tcp_heard)
        bridge_cpu0 = sum(psutil.Process(bridge.proc.pid).cpu_times()[:2])
        for kind, port in (("tcp", bridge.tcp_port), ("mqtt", broker.port)):
            for p in range(args.procs):
                children.append(Child("--kind", kind, "--port", str(port), "--first", str(p * args.per_proc),
                                      "--per-proc", str(args.per_proc), "--events", str(args.events),
                                      "--rate", str(args.rate)))
        for child in children:
            child.expect("ready")
        time.sleep(1.0)  # the listeners' views of the senders settle
        go = time.monotonic()
        for child in children:
            child.go()
        paces = [child.expect("sent")["seconds"] for child in children]
        deadline = time.monotonic() + TIMEOUT
        seen = (-1, -1)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            now = (mqtt_heard.count, tcp_heard.count)
            if now == (expected, expected):
                break
            if now != seen:
                seen, quiet_since = now, time.monotonic()
            if args.progress and int(time.monotonic() - go) % 5 == 0:
                print("  %3.0f s: MQTT listener %s, TCP listener %s" % (time.monotonic() - go, mqtt_heard.by_kind,
                                                                       tcp_heard.by_kind), flush=True)
                time.sleep(1.0)
            elif time.monotonic() - quiet_since > QUIET:
                break  # nothing more is coming
            time.sleep(0.05)
        bridge_cpu = sum(psutil.Process(bridge.proc.pid).cpu_times()[:2]) - bridge_cpu0
        stop.set()
        print("senders' pace: %.0f events/s (all %d senders together; slowest process %.1f s)" % (
            expected / max(paces), senders, max(paces)))
        ok = True
        for heard in (mqtt_heard, tcp_heard):
            with heard.lock:
                lost = expected - heard.count
                elapsed = heard.last - go if heard.count else float("nan")
                lat = percentiles(heard.delays)
                print("%-24s heard %d of %d (from TCP clients %d, from MQTT nodes %d), not heard %d, out of order %d, "
                      "%.0f events/s, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
                          heard.label, heard.count, expected, heard.by_kind["tcp"], heard.by_kind["mqtt"], lost,
                          heard.disorder, heard.count / elapsed, lat["p50"], lat["p99"], lat["max"]))
                for kind, what in (("tcp", "TCP clients"), ("mqtt", "MQTT nodes")):
                    if heard.by_kind[kind]:
                        took = heard.last_by_kind[kind] - go
                        print("    the %d events of the %s it heard: the last %.1f s after the go (%.0f events/s)" % (
                            heard.by_kind[kind], what, took, heard.by_kind[kind] / took))
                ok = ok and lost == 0 and heard.disorder == 0
        print("bridge peak RSS %.1f MiB (idle %.1f MiB), CPU %.1f s" % (peak[0] / 2**20, rss_idle / 2**20,
                                                                        bridge_cpu))
        print("Mosquitto log lines saying it dropped messages: %d" % broker.dropped())
        warnings = [line for line in bridge.text().splitlines() if "warning" in line or "error" in line]
        print("bridge warnings and errors: %d%s" % (len(warnings), "".join("\n  " + w for w in warnings[:3])))
        print("goal 0 lost, order kept per sender: %s" % ("met" if ok else "MISSED"))
        return 0 if ok else 1
    finally:
        stop.set()
        for child in children:
            child.close()
        for carrier in carriers:
            carrier.disconnect()
        bridge.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
