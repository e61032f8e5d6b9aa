"""Events/s through sig-bridge (pysig TCP client -> bridge -> Mosquitto -> MQTT listener) against raw paho.

One private Mosquitto (``/usr/sbin/mosquitto -c <temp conf>``, ``listener <free port> 127.0.0.1``,
``allow_anonymous true``, ``persistence false``, plus ``set_tcp_nodelay true`` and ``max_queued_messages
N`` as in bench/mqtt.py: with Mosquitto's default queue of 1000 QoS 1 messages per subscriber it drops
events even for a connected subscriber) serves both paths in the same run; it is terminated by PID at
the end and the machine's broker on 1883 is never touched. Every party is its own process:

- raw paho (bench/mqtt.py's ``raw-pub`` and ``raw-sub`` roles): a paho MQTT 5 publisher sends the
  sequence number as JSON on ``sig/event/bench/tick`` at QoS 1 (100 in flight, TCP_NODELAY), a paho
  subscriber at QoS 1 ``json.loads`` each one;
- through the bridge: ``python3 -m bridge --mqtt mqtt://127.0.0.1:PORT --listen 127.0.0.1:TCPPORT
  --prefix sig`` (a fresh bridge per round, stopped with SIGTERM by PID); a pysig TCP client
  (``python3 bench/bridge.py --role tcp-pub``: ``sig.ClientRouter(CarrierTCPClient())`` that
  ``addRemoteSender("bench", ["tick"])`` and triggers N signals, data = sequence number, then
  disconnects, which flushes) and bench/mqtt.py's ``sig-sub`` role as the MQTT listener
  (``sig.ClientRouter(CarrierMQTTClient(qos=1))`` with ``addRemoteListener(cb, "bench", "tick")``).
  The bridge publishes each event at QoS 1 on the same topic with the same bytes as raw paho.

Throughput = received / (time from the first to the last event received by the subscriber);
lost = N - received; disorder = events that came after a later one. CPU µs per event: each client
process (``time.process_time``, all threads) and the bridge process (utime + stime of
``/proc/PID/stat`` from just before the publisher starts to after the subscriber is done).

Each round runs raw paho and the bridge path as a pair (raw first in odd rounds, the bridge first in
even ones), then (a diagnostic, not a goal; ``--no-diagnostic`` skips it) the bridge path with
bench/mqtt.py's paho ``raw-sub`` as the listener, which tells the bridge's own limit from the sig
listener's; fresh processes every time. It prints every round, the median round of each kind, and
issue 13's row (bench/_pairs.py: medians, ranges, each pair's ratio, the goal marked met or MISSED):

- bridge path events/s / raw paho events/s: >= 0.9 (median of the pairs), 0 lost, 0 out of order

Run: ``python3 bench/bridge.py [--n 20000] [--rounds 5] [--profile FILE]`` (about 70 s; ``--profile``
runs the bridge once more under ``py-spy record --pid`` and prints where its busy samples went).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import _pairs  # bench/_pairs.py: paired rounds, per-pair ratios, goals

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
m = importlib.import_module("mqtt")  # bench/mqtt.py: its roles, Child, Mosquitto, run_events, report, ...
tcp = importlib.import_module("tcp")  # bench/tcp.py: _client(port), a ClientRouter on CarrierTCPClient

PREFIX = "sig"  # bench/mqtt.py's raw topic and sig-sub role use sig's default prefix
BRIDGE_READY = 20.0  # seconds for the bridge to serve TCP and be online on the broker


# -- child side ------------------------------------------------------------------------------


def role_tcp_pub(args: argparse.Namespace) -> None:
    """A pysig TCP client of the bridge: register ``bench`` and trigger N ticks, then flush by disconnecting."""
    carrier, router = tcp._client(args.port)
    trigger = router.addRemoteSender("bench", ["tick"]).getSignal("tick").trigger
    m.report("READY")
    m.wait_for_stdin_line(m.CHILD_TIMEOUT)
    cpu, start = time.process_time(), time.perf_counter()
    for i in range(args.n):
        trigger(i)
    queued = time.perf_counter()
    carrier.disconnect()  # sends what is queued first
    m.report("SENT", seconds=queued - start, flushed=time.perf_counter() - start, cpu=time.process_time() - cpu)


ROLES = {"tcp-pub": role_tcp_pub}


# -- parent side ---------------------------------------------------------------------------


class Child(m.Child):
    """bench/mqtt.py's Child, started as ``python3 bench/bridge.py --role ROLE``."""

    script = os.path.abspath(__file__)


class BridgeProcess:
    """``python3 -m bridge`` on a free TCP port, joined to ``broker_port``; ``stop()`` sends SIGTERM to its PID."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []  # every line it wrote on stderr
        self.exit_code: int | None = None

    def start(self) -> BridgeProcess:
        for _ in range(5):  # the free port may be taken between our probe and the bridge's bind
            with socket.socket() as probe:
                probe.bind((m.HOST, 0))
                self.port = probe.getsockname()[1]
            argv = [sys.executable, "-m", "bridge", "--mqtt", "mqtt://%s:%d" % (m.HOST, self.broker_port),
                    "--listen", "%s:%d" % (m.HOST, self.port), "--prefix", PREFIX,
                    "--node-id", "bench-bridge-%d" % os.getpid(), "--log-level", "info"]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True, cwd=m.ROOT)
            self.lines = queue.Queue()
            threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
            if self._wait_online():
                return self
            self.stop()
        raise RuntimeError("sig-bridge did not come up; its last lines:\n%s" % "".join(self.log[-5:]))

    def _read(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for line in proc.stderr:
                self.log.append(line)
                lines.put(line)
        lines.put(None)

    def _wait_online(self) -> bool:
        """Wait for the node's "online" log line (the TCP server is up before the node connects)."""
        deadline = time.monotonic() + BRIDGE_READY

        def next_line() -> str | None:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))

        with contextlib.suppress(queue.Empty):
            for line in iter(next_line, None):  # None: the bridge exited
                if "[MQTT] node" in line and " online " in line:
                    return True
        return False

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) the bridge used so far, from /proc/PID/stat."""
        assert self.proc is not None
        with open("/proc/%d/stat" % self.proc.pid) as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15 of stat

    def warnings(self) -> list[str]:
        return [line.rstrip() for line in self.log if "WARN" in line.upper() or "ERROR" in line.upper()]

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # sig-bridge exits 0 within 5 s
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)
        if proc.poll() is None:
            proc.kill()
        self.exit_code = proc.wait(5.0)
        self.proc = None


def run_bridge(broker_port: int, n: int, listener: str = "sig-sub", profile: str = "") -> dict[str, Any]:
    """One TCP client -> bridge -> Mosquitto -> ``listener`` run; the listener's result plus the others'.

    ``listener`` is a role of bench/mqtt.py: ``sig-sub`` (the measurement) or ``raw-sub`` (a paho
    subscriber, to tell the bridge's limit from the sig listener's).

    With ``profile``, ``py-spy record --pid`` samples the bridge while the events flow and writes its
    collapsed stacks to that file.
    """
    children: list[Any] = []
    spy: subprocess.Popen[bytes] | None = None
    bridge = BridgeProcess(broker_port)
    try:
        bridge.start()
        sub = m.Child(listener, port=broker_port, qos=1, n=n)  # bench/mqtt.py --role sig-sub / raw-sub
        children.append(sub)
        sub.expect("READY")
        pub = Child("tcp-pub", port=bridge.port, n=n)
        children.append(pub)
        pub.expect("READY")
        time.sleep(0.3)  # the sender's birth reaches the listener's node before the first event
        if profile:
            assert bridge.proc is not None
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(bridge.proc.pid), "--format", "raw", "--threads",
                                    "--rate", "200", "--output", profile], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        cpu = bridge.cpu()
        pub.go()
        sent = pub.expect("SENT")
        sub.go()
        result = sub.expect("RESULT", m.CHILD_TIMEOUT + m.IDLE + 5)
        result["bridge_cpu"] = bridge.cpu() - cpu
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            spy.wait(30.0)
        result.update(send_seconds=sent["seconds"], flush_seconds=sent["flushed"], pub_cpu=sent["cpu"])
        return result
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait(5.0)
        for child in children:
            child.kill()
        bridge.stop()
        if bridge.exit_code not in (0, None):
            print("  (sig-bridge exited with status %s)" % bridge.exit_code)
        for line in bridge.warnings()[:5]:
            print("  sig-bridge: %s" % line)


# Innermost frames where a thread blocks (py-spy sometimes counts them as active): left out of the shares.
# Client._loop as the innermost Python frame is paho's select(), MqttNode._dispatch_loop its queue's get().
WAITS = ("Condition.wait", "Event.wait", "Stopper.wait", "socket.accept", "Client._loop", "MqttNode._dispatch_loop")


def print_profile(path: str, top: int = 20) -> None:
    """Where the bridge's busy samples went: by thread, by function (self and inclusive)."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    threads: dict[str, int] = {}
    samples = waiting = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame.replace(m.ROOT + os.sep, "") for frame in stack.split(";")]
            if frames[-1].split(" (")[0] in WAITS:
                waiting += count
                continue
            samples += count
            thread = frames[0].split(": ", 1)[-1].rstrip("0123456789-")
            threads[thread] = threads.get(thread, 0) + count
            self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
            for frame in set(frames[1:]):
                total_counts[frame] = total_counts.get(frame, 0) + count
    if not samples:
        print("  (no samples in %s)" % path)
        return
    print("%d busy samples (py-spy at 200/s; %d more in %s left out); by thread:" % (
        samples, waiting, ", ".join(WAITS)))
    for name, count in sorted(threads.items(), key=lambda item: -item[1]):
        print("  %5.1f%%  %s" % (count * 100.0 / samples, name))
    for title, counts in (("self", self_counts), ("inclusive", total_counts)):
        print("top %d functions, %s:" % (top, title))
        for frame, count in sorted(counts.items(), key=lambda item: -item[1])[:top]:
            print("  %5.1f%%  %s" % (count * 100.0 / samples, frame))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="events per run")
    parser.add_argument("--role", choices=sorted(ROLES))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds")
    parser.add_argument("--no-diagnostic", dest="diagnostic", action="store_false",
                        help="skip the bridge -> paho subscriber run of each round")
    parser.add_argument("--profile", metavar="FILE", help="then one more bridge run under py-spy record --pid, "
                        "its collapsed stacks written to FILE and summed up (not counted in the results)")
    args = parser.parse_args()
    if args.role:
        ROLES[args.role](args)
        return 0

    sys.path.insert(0, m.ROOT)
    import paho.mqtt

    import sig

    version = subprocess.run([m.MOSQUITTO, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    print("sig %s, paho-mqtt %s, %s, Python %s, %d CPUs; every party its own process, QoS 1, loopback" % (
        sig.VERSION, paho.mqtt.__version__, version.strip() or "mosquitto", sys.version.split()[0],
        os.cpu_count() or 0))
    started = time.monotonic()
    broker = m.Mosquitto(set_tcp_nodelay="true", max_queued_messages=args.n)
    try:
        broker.start()
        print("private broker on port %d (%s -c <temp conf>, allow_anonymous, no persistence, set_tcp_nodelay true, "
              "max_queued_messages %d)" % (broker.port, m.MOSQUITTO, args.n))
        kinds = {  # what runs each round, in this order, and its column in the table
            "raw": "raw paho-mqtt",
            "bridge": "via sig-bridge",
            "bridge-paho": "bridge, paho sub",
        }
        if not args.diagnostic:
            del kinds["bridge-paho"]
        results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}

        def cpu(result: dict[str, Any], key: str, per: int) -> str:
            return "%.1f" % (result[key] / max(1, per) * 1e6) if key in result else "-"

        row = _pairs.Row("events/s, TCP client -> sig-bridge -> Mosquitto -> sig listener (raw: paho -> paho)",
                         ">= 0.9x, 0 lost, order kept", lambda r, s: r >= 0.9 and all(
                             x["count"] == args.n and not x["disorder"] for x in results["bridge"]),
                         extra=lambda: "lost %d, out of order %d in all rounds" % (
                             sum(args.n - x["count"] for x in results["bridge"]),
                             sum(x["disorder"] for x in results["bridge"])))
        listener_cpu = _pairs.Row("CPU us per event of the listener process (raw: paho; bridge path: sig)", "",
                                  lambda r, s: True, fmt="%.1f")
        for round_ in range(1, args.rounds + 1):
            first, _ = _pairs.order(round_)
            if first == "raw":
                raw = m.run_events("raw", broker.port, 1, args.n)
            via = run_bridge(broker.port, args.n)
            if first != "raw":
                raw = m.run_events("raw", broker.port, 1, args.n)
            row.add(m.rate_of(raw), m.rate_of(via))
            diag = run_bridge(broker.port, args.n, listener="raw-sub") if args.diagnostic else {
                "count": 0, "seconds": 0.0}
            for kind, result in zip(kinds, (raw, via, diag), strict=False):
                results[kind].append(result)
            print("round %d  raw %6.0f/s (pub %5.0f/s) lost %d disorder %d | bridge %6.0f/s (TCP client %6.0f/s, "
                  "bridge CPU %s us/event) lost %d disorder %d, ratio %.2f%s" % (
                      round_, m.rate_of(raw), args.n / raw["flush_seconds"], args.n - raw["count"], raw["disorder"],
                      m.rate_of(via), args.n / via["flush_seconds"], cpu(via, "bridge_cpu", args.n),
                      args.n - via["count"], via["disorder"], m.rate_of(via) / max(1.0, m.rate_of(raw)),
                      " | bridge to a paho sub %6.0f/s lost %d" % (m.rate_of(diag), args.n - diag["count"])
                      if args.diagnostic else ""))
            listener_cpu.add(raw["cpu"] / max(1, raw["count"]) * 1e6, via["cpu"] / max(1, via["count"]) * 1e6)

        best = {kind: sorted(results[kind], key=m.rate_of)[len(results[kind]) // 2] for kind in kinds}
        print()
        print("median rounds of %d; %d events per run, QoS 1" % (args.rounds, args.n))
        line = "%-52s" + " %17s" * len(kinds)
        print(line % ("", *kinds.values()))
        print(line % ("events/s (lost)", *("%.0f (%d)" % (m.rate_of(r), args.n - r["count"]) for r in best.values())))
        print(line % ("  ratio to raw paho", *("%.2f" % (m.rate_of(r) / max(1.0, m.rate_of(best["raw"])))
                                             for r in best.values())))
        print(line % ("  CPU us per event, publisher", *(cpu(r, "pub_cpu", args.n) for r in best.values())))
        print(line % ("  CPU us per event, sig-bridge process", *(cpu(r, "bridge_cpu", args.n) for r in best.values())))
        print(line % ("  CPU us per event, subscriber", *(cpu(r, "cpu", r["count"]) for r in best.values())))
        print(line % ("  publisher done (raw: PUBACKs; TCP: flushed), ev/s",
                     *("%.0f" % (args.n / r["flush_seconds"]) for r in best.values())))
        _pairs.table([row, listener_cpu], " (bench/bridge.py)")
        if args.profile:
            print()
            print("profile of one more bridge run (py-spy record --pid, written to %s):" % args.profile)
            profiled = run_bridge(broker.port, args.n, profile=args.profile)
            print("under py-spy: %.0f events/s, lost %d, bridge CPU %.1f us/event" % (
                m.rate_of(profiled), args.n - profiled["count"], profiled["bridge_cpu"] / args.n * 1e6))
            print_profile(args.profile)
        print("(%.1f s in all)" % (time.monotonic() - started))
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
