"""MQTT events/s, latency and request round trip of sig against raw paho-mqtt, through one private Mosquitto.

The script starts its own Mosquitto (``/usr/sbin/mosquitto -c <temp conf>``, ``listener <free port>
127.0.0.1``, ``allow_anonymous true``, ``persistence false``; never the machine's broker on 1883) and
terminates it by PID at the end. Every party is its own process (``python3 bench/mqtt.py --role ROLE``),
on loopback; raw paho-mqtt 2.2 and sig use the same broker and the same settings: MQTT 5, at most 100
QoS 1 messages in flight (sig's default), TCP_NODELAY on the broker socket (sig always sets it).

1. events/s at QoS 0 and QoS 1: a publisher process sends N events as fast as it can, through the broker,
   to a subscriber process. Raw: paho publishes the sequence number as JSON on ``sig/event/bench/tick``
   (the bytes sig publishes) and a paho subscriber ``json.loads`` each one. sig: a ``sig.ClientRouter``
   on ``CarrierMQTTClient`` that ``addRemoteSender("bench", ["tick"])`` and triggers N signals (data =
   sequence number), and a ClientRouter with ``addRemoteListener(cb, "bench", "tick")``.
   Throughput = received / (time from the first to the last event received); lost = N - received;
   disorder = events that came after a later one. Mosquitto drops what does not fit a subscriber's
   queue (``max_queued_messages``, default 1000): at QoS 0 the losses are reported as they are; if
   QoS 1 loses events with the defaults, the QoS 1 runs move to a second private broker with
   ``max_queued_messages N`` (for raw and sig alike) and the output says so.
2. latency: the publisher sends ``[seq, time.monotonic_ns()]`` at a fixed moderate rate; the subscriber
   takes ``monotonic_ns() - t`` (CLOCK_MONOTONIC is system-wide on Linux); p50 / p99 at QoS 0 and 1.
3. request round trip at QoS 1: a raw paho MQTT 5 requester (Response Topic + Correlation Data, one
   request at a time) and a raw paho responder, both with TCP_NODELAY, then both without (Nagle on,
   paho's default; few requests, each takes tens of ms); sig: ``router.remoteRequest("bench", "echo",
   i)`` to a sender another process registered with ``requests={"echo": lambda p: p}``.

Each measurement runs ROUNDS times as a pair, raw and sig in turn (raw first in odd rounds, sig first in
even ones; fresh processes each time). It prints every round, then issue 13's rows (bench/_pairs.py): the
median and range of raw and of sig, each pair's sig/raw ratio, their median and range, and the goal,
judged on the median ratio and marked met or MISSED:

- sig events/s / raw paho events/s, QoS 0: >= 1.0
- the same at QoS 1: >= 1.0, and 0 events lost in every sig round
- sig request round trip p50 / raw paho p50, QoS 1, TCP_NODELAY everywhere: <= 1.05

and, without a goal, CPU µs per event of each publisher and listener process (a figure that depends
less on what else the machine runs than events/s do), and the request round trip of a raw paho responder
that hands each request to a worker thread and replies from there (role ``hop-responder``): the least
the hand-off costs that sig's design keeps (no user code on paho's network thread), run after each pair.
``--no-extras`` leaves out the latency runs and the requests with Nagle on.

Run: ``python3 bench/mqtt.py [--n 20000] [--requests 1000] [--rounds 5] [--no-extras]`` (3-6 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import _children  # bench/_children.py: child processes that report TAG {json} lines
import _pairs  # bench/_pairs.py: paired rounds, per-pair ratios, goals
from _children import CHILD_TIMEOUT, ROOT, report, wait_for_stdin_line

HOST = "127.0.0.1"
MOSQUITTO = "/usr/sbin/mosquitto"
IDLE = 1.0  # a subscriber that heard nothing for this long after the publisher finished is done
MAX_INFLIGHT = 100  # sig's default (MqttLink.max_inflight); raw paho gets the same
TOPIC = "sig/event/bench/tick"
REQUEST_TOPIC = "sig/request/bench/echo"


# -- child side --------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (in ms)."""
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    values = sorted(values)
    return {
        "p50": values[len(values) // 2],
        "p99": values[min(len(values) - 1, int(len(values) * 0.99))],
        "max": values[-1],
    }


class Tally:
    """What a subscriber counts: events, their order, first / last arrival, latencies."""

    def __init__(self, n: int, latency: bool) -> None:
        self.n = n
        self.latency = latency
        self.count = 0
        self.disorder = 0
        self.highest = -1
        self.first = self.last = 0.0
        self.delays: list[float] = []
        self.done = threading.Event()
        self.cpu = time.process_time()  # from READY: CPU seconds of the whole process (every thread)

    def add(self, data: Any) -> None:
        now = time.perf_counter()
        if self.latency:
            seq, sent = data
            self.delays.append((time.monotonic_ns() - sent) / 1e6)
        else:
            seq = data
        if self.count == 0:
            self.first = now
        self.last = now
        if seq <= self.highest:
            self.disorder += 1
        else:
            self.highest = seq
        self.count += 1
        if self.count >= self.n:
            self.done.set()

    def finish(self) -> None:
        """After the parent's go (the publisher is done): wait for the rest, or for IDLE s of silence."""
        wait_for_stdin_line(CHILD_TIMEOUT)
        quiet_since = time.perf_counter()
        seen = self.count
        while not self.done.wait(0.05):
            if self.count != seen:
                seen, quiet_since = self.count, time.perf_counter()
            elif time.perf_counter() - quiet_since > IDLE:
                break
        fields: dict[str, Any] = {"count": self.count, "disorder": self.disorder, "seconds": self.last - self.first,
                                  "cpu": time.process_time() - self.cpu}
        if self.latency:
            fields.update(percentiles(self.delays))
        report("RESULT", **fields)


def paced(n: int, rate: float, latency: bool) -> Any:
    """The data to publish: ``i`` as fast as possible, or ``[i, monotonic_ns]`` at ``rate`` per second."""
    if not latency:
        yield from range(n)
        return
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield [i, time.monotonic_ns()]


# -- raw paho ------------------------------------------------------------------------------


def _nodelay(client: Any, userdata: Any, sock: Any) -> None:
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _paho(port: int, name: str, nodelay: bool = True) -> Any:
    """A connected paho MQTT 5 client with its network thread running (``loop_start``)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-%s-%d" % (name, os.getpid()),
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    if nodelay:
        client.on_socket_open = _nodelay
    connected = threading.Event()
    client.on_connect = lambda c, u, flags, reason, props: connected.set()
    client.connect(HOST, port, keepalive=60)
    client.loop_start()
    if not connected.wait(10.0):
        report("ERROR", error="paho: no CONNACK from the broker on port %d" % port)
        sys.exit(1)
    return client


def _subscribe(client: Any, topic: str, qos: int) -> None:
    subscribed = threading.Event()
    client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    client.subscribe(topic, qos)
    if not subscribed.wait(10.0):
        report("ERROR", error="paho: no SUBACK for %s" % topic)
        sys.exit(1)


def role_raw_sub(args: argparse.Namespace) -> None:
    tally = Tally(args.n, args.latency)
    client = _paho(args.port, "sub")
    loads = json.loads
    client.on_message = lambda c, u, message: tally.add(loads(message.payload))
    _subscribe(client, TOPIC, args.qos)
    report("READY")
    tally.cpu = time.process_time()
    tally.finish()
    client.disconnect()
    client.loop_stop()


def role_raw_pub(args: argparse.Namespace) -> None:
    client = _paho(args.port, "pub")
    published = threading.Event()
    acked = [0]

    def on_publish(c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        acked[0] += 1  # QoS 0: written to the socket; QoS 1: PUBACK received
        if acked[0] >= args.n:
            published.set()

    client.on_publish = on_publish
    encode = json.JSONEncoder(separators=(",", ":")).encode
    publish, qos = client.publish, args.qos
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT)
    cpu, start = time.process_time(), time.perf_counter()
    for data in paced(args.n, args.rate, args.latency):
        publish(TOPIC, encode(data).encode(), qos)
    queued = time.perf_counter()
    published.wait(CHILD_TIMEOUT)
    report("SENT", seconds=queued - start, flushed=time.perf_counter() - start, acked=acked[0],
           cpu=time.process_time() - cpu)
    client.disconnect()
    client.loop_stop()


def role_raw_responder(args: argparse.Namespace) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = _paho(args.port, "responder", nodelay=args.nodelay)
    loads, dumps = json.loads, json.JSONEncoder(separators=(",", ":")).encode

    def on_message(c: Any, u: Any, message: Any) -> None:
        request = message.properties
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = request.CorrelationData
        reply = dumps({"status": 0, "response": loads(message.payload)})
        c.publish(request.ResponseTopic, reply.encode(), 1, properties=props)

    client.on_message = on_message
    _subscribe(client, REQUEST_TOPIC, 1)
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT * 3)
    client.disconnect()
    client.loop_stop()


def role_hop_responder(args: argparse.Namespace) -> None:
    """The raw responder, but each request runs on a worker thread, as sig's design wants (no user code on
    paho's network thread): the least that hand-off costs, without anything else of sig."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = _paho(args.port, "hop-responder", nodelay=args.nodelay)
    loads, dumps = json.loads, json.JSONEncoder(separators=(",", ":")).encode
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def worker() -> None:
        while True:
            message = requests.get()
            request = message.properties
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = request.CorrelationData
            reply = dumps({"status": 0, "response": loads(message.payload)})
            client.publish(request.ResponseTopic, reply.encode(), 1, properties=props)

    threading.Thread(target=worker, daemon=True).start()
    client.on_message = lambda c, u, message: requests.put(message)
    _subscribe(client, REQUEST_TOPIC, 1)
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT * 3)
    client.disconnect()
    client.loop_stop()


def role_raw_requester(args: argparse.Namespace) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = _paho(args.port, "requester", nodelay=args.nodelay)
    reply_topic = "sig/reply/bench-raw-%d" % os.getpid()
    replies: queue.SimpleQueue[tuple[bytes, Any]] = queue.SimpleQueue()
    loads = json.loads
    client.on_message = lambda c, u, message: replies.put(
        (message.properties.CorrelationData, loads(message.payload)))
    _subscribe(client, reply_topic, 1)
    encode = json.JSONEncoder(separators=(",", ":")).encode

    def request(i: int) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        correlation = b"%d" % i
        props.CorrelationData = correlation
        client.publish(REQUEST_TOPIC, encode(i).encode(), 1, properties=props)
        while True:
            got, body = replies.get(timeout=10.0)
            if got == correlation:
                break
        if body.get("response") != i:
            report("ERROR", error="wrong response %r to %d" % (body, i))
            sys.exit(1)

    timed_requests(request, args.requests, args.warmup)
    client.disconnect()
    client.loop_stop()


def timed_requests(request: Any, count: int, warmup: int) -> None:
    for i in range(warmup):
        request(i)
    times = []
    clock = time.perf_counter
    for i in range(warmup, warmup + count):
        start = clock()
        request(i)
        times.append((clock() - start) * 1e3)
    report("RESULT", **percentiles(times))


# -- sig -----------------------------------------------------------------------------------


def _sig_router(port: int, qos: int = 1) -> tuple[Any, Any]:
    sys.path.insert(0, ROOT)
    import sig
    from sig_mqtt import CarrierMQTTClient

    carrier = CarrierMQTTClient(qos=qos, max_inflight=MAX_INFLIGHT)
    router = sig.ClientRouter(carrier)
    if not carrier.connect(HOST, port, auto_reconnect=False):
        report("ERROR", error="sig: cannot connect to the broker on port %d: %s" % (port, carrier.last_error))
        sys.exit(1)
    return carrier, router


def role_sig_sub(args: argparse.Namespace) -> None:
    tally = Tally(args.n, args.latency)
    carrier, router = _sig_router(args.port, args.qos)
    router.addRemoteListener(lambda info, data: tally.add(data), "bench", "tick")
    time.sleep(0.3)  # the node subscribes without waiting for the SUBACK: give it time
    report("READY")
    tally.cpu = time.process_time()
    tally.finish()
    carrier.disconnect()


def role_sig_pub(args: argparse.Namespace) -> None:
    carrier, router = _sig_router(args.port, args.qos)
    trigger = router.addRemoteSender("bench", ["tick"]).getSignal("tick").trigger
    link = carrier.node.link
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT)
    cpu, start = time.process_time(), time.perf_counter()
    for data in paced(args.n, args.rate, args.latency):
        trigger(data)
    queued = time.perf_counter()
    deadline = time.monotonic() + CHILD_TIMEOUT
    while link.outstanding() and time.monotonic() < deadline:  # written (QoS 0) / acknowledged (QoS 1)
        time.sleep(0.001)
    report("SENT", seconds=queued - start, flushed=time.perf_counter() - start, acked=args.n - link.outstanding(),
           cpu=time.process_time() - cpu)
    carrier.disconnect()


def role_sig_responder(args: argparse.Namespace) -> None:
    carrier, router = _sig_router(args.port)
    router.addRemoteSender("bench", ["tick"], requests={"echo": lambda params: params})
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT * 3)
    carrier.disconnect()


def role_sig_requester(args: argparse.Namespace) -> None:
    carrier, router = _sig_router(args.port)
    # A node subscribes to other nodes' births only for its listeners' sake: without one it never
    # learns that "bench" exists and remoteRequest raises NameError. Listen to its #connect (births only).
    router.addRemoteListener(lambda info, data: None, "bench", "#connect")
    deadline = time.monotonic() + 10.0
    while not carrier.isSenderConnected("bench"):
        if time.monotonic() > deadline:
            report("ERROR", error="sig: the responder's sender never showed up")
            sys.exit(1)
        time.sleep(0.01)

    def request(i: int) -> None:
        if router.remoteRequest("bench", "echo", i) != i:
            report("ERROR", error="sig: wrong response to %d" % i)
            sys.exit(1)

    timed_requests(request, args.requests, args.warmup)
    carrier.disconnect()


ROLES = {
    "raw-sub": role_raw_sub,
    "raw-pub": role_raw_pub,
    "raw-responder": role_raw_responder,
    "raw-requester": role_raw_requester,
    "hop-responder": role_hop_responder,
    "hop-requester": role_raw_requester,
    "sig-sub": role_sig_sub,
    "sig-pub": role_sig_pub,
    "sig-responder": role_sig_responder,
    "sig-requester": role_sig_requester,
}


# -- parent side ------------------------------------------------------------------------


class Child(_children.Child):
    """A party of this benchmark: ``python3 bench/mqtt.py --role ROLE``."""

    script = os.path.abspath(__file__)


class Mosquitto:
    """A private Mosquitto on a free loopback port, with a temporary config; ``stop()`` terminates its PID."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.dir = tempfile.mkdtemp(prefix="sig-bench-mosquitto-")
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Mosquitto:
        for _ in range(5):  # the free port may be taken between our probe and mosquitto's bind
            with socket.socket() as probe:
                probe.bind((HOST, 0))
                self.port = probe.getsockname()[1]
            conf = os.path.join(self.dir, "mosquitto.conf")
            with open(conf, "w") as out:
                out.write("listener %d %s\nallow_anonymous true\npersistence false\n" % (self.port, HOST))
                out.write("log_dest file %s\n" % self.log)
                for key, value in self.options.items():
                    out.write("%s %s\n" % (key, value))
            self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection((HOST, self.port), timeout=0.5).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            self.stop(keep_dir=True)
        raise RuntimeError("mosquitto did not start; its log: %s" % self.tail())

    def dropped(self) -> int:
        """Lines where Mosquitto said it dropped outgoing messages."""
        try:
            with open(self.log, errors="replace") as lines:
                return sum(1 for line in lines if "dropped" in line.lower())
        except OSError:
            return 0

    def tail(self) -> str:
        try:
            with open(self.log, errors="replace") as lines:
                return "".join(lines.readlines()[-5:])
        except OSError:
            return "(none)"

    def stop(self, keep_dir: bool = False) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        self.proc = None
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_events(kind: str, port: int, qos: int, n: int, latency: bool = False, rate: float = 0.0) -> dict[str, Any]:
    """One publisher -> broker -> subscriber run; the subscriber's result plus the publisher's times."""
    children: list[Child] = []
    try:
        extra = {"latency": 1} if latency else {}
        sub = Child("%s-sub" % kind, port=port, qos=qos, n=n, **extra)
        children.append(sub)
        sub.expect("READY")
        pub = Child("%s-pub" % kind, port=port, qos=qos, n=n, rate=rate, **extra)
        children.append(pub)
        pub.expect("READY")
        pub.go()
        sent = pub.expect("SENT")
        sub.go()
        result = sub.expect("RESULT", CHILD_TIMEOUT + IDLE + 5)
        result["send_seconds"] = sent["seconds"]
        result["flush_seconds"] = sent["flushed"]
        result["pub_cpu"] = sent["cpu"]
        return result
    finally:
        for child in children:
            child.kill()


def run_requests(kind: str, port: int, requests: int, warmup: int, nodelay: bool = True) -> dict[str, Any]:
    children: list[Child] = []
    try:
        extra = {"nodelay": 1} if nodelay else {}
        responder = Child("%s-responder" % kind, port=port, **extra)
        children.append(responder)
        responder.expect("READY")
        requester = Child("%s-requester" % kind, port=port, requests=requests, warmup=warmup, **extra)
        children.append(requester)
        return requester.expect("RESULT", CHILD_TIMEOUT * 3)
    finally:
        for child in children:
            child.kill()


def rate_of(result: dict[str, Any]) -> float:
    return result["count"] / result["seconds"] if result["seconds"] > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=sorted(ROLES))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--latency", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--nodelay", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=20_000, help="events per throughput run")
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per run (with TCP_NODELAY)")
    parser.add_argument("--slow-requests", type=int, default=20,
                        help="timed requests with Nagle on somewhere (tens of ms each)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests first")
    parser.add_argument("--latency-events", type=int, default=2000, help="events per latency run")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the latency runs")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds of each measurement")
    parser.add_argument("--no-extras", dest="extras", action="store_false",
                        help="only issue 13's rows: no latency runs, no requests with Nagle on")
    args = parser.parse_args()
    if args.role:
        ROLES[args.role](args)
        return 0

    sys.path.insert(0, ROOT)
    import paho.mqtt

    import sig

    version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    print("sig %s, paho-mqtt %s, %s, Python %s, %d CPUs; every party its own process, MQTT 5, loopback" % (
        sig.VERSION, paho.mqtt.__version__, version.strip() or "mosquitto", sys.version.split()[0],
        os.cpu_count() or 0))
    started = time.monotonic()
    brokers: list[Mosquitto] = []
    try:
        broker = Mosquitto().start()
        brokers.append(broker)
        fast = Mosquitto(set_tcp_nodelay="true").start()
        brokers.append(fast)
        print("private brokers (%s -c <temp conf>, listener on %s, allow_anonymous, no persistence):" % (
            MOSQUITTO, HOST))
        print("  port %d: Mosquitto's defaults (events, latency; requests with Nagle on in the broker)" % broker.port)
        print("  port %d: set_tcp_nodelay true (requests: TCP_NODELAY in clients and broker)" % fast.port)
        qos1 = broker
        qos1_note = ""
        default_qos1: dict[str, dict[str, Any]] = {}
        results: dict[str, list[dict[str, Any]]] = {}

        def sig_lost_qos1() -> str:
            return "sig lost %d at QoS 1 in all rounds" % sum(args.n - r["count"] for r in results["events1-sig"])

        rows = [
            _pairs.Row("events/s QoS 0, publisher -> broker -> listener", ">= 1.0x", lambda r, s: r >= 1.0),
            _pairs.Row("events/s QoS 1", ">= 1.0x and 0 lost", lambda r, s: r >= 1.0 and all(
                args.n == x["count"] for x in results["events1-sig"]), extra=sig_lost_qos1),
            _pairs.Row("request round trip p50 ms, QoS 1, TCP_NODELAY", "<= 1.05x", lambda r, s: r <= 1.05,
                       fmt="%.3f"),
        ]
        cpu_rows = [_pairs.Row("CPU us per event, %s, QoS %d" % (side, qos), "", lambda r, s: True, fmt="%.1f")
                    for qos in (0, 1) for side in ("publisher", "listener")]
        # The least a hand-off of each request to a worker thread (no user code on paho's thread) costs:
        # raw paho whose responder does only that, in the "sig" column (run after each pair).
        hop_row = _pairs.Row("request round trip p50 ms: raw paho responder handing each request to a worker thread",
                             "", lambda r, s: True, fmt="%.3f")

        def keep(key: str, value: dict[str, Any]) -> dict[str, Any]:
            results.setdefault(key, []).append(value)
            return value

        def events_line(qos: int, pair: dict[str, dict[str, Any]], note: str = "") -> None:
            print("  events QoS %d  raw %6.0f/s (pub %6.0f/s) lost %5d disorder %d | sig %6.0f/s (pub %6.0f/s) "
                  "lost %5d disorder %d%s" % (
                      qos, rate_of(pair["raw"]), args.n / pair["raw"]["flush_seconds"], args.n - pair["raw"]["count"],
                      pair["raw"]["disorder"], rate_of(pair["sig"]), args.n / pair["sig"]["flush_seconds"],
                      args.n - pair["sig"]["count"], pair["sig"]["disorder"], note))

        for round_ in range(1, args.rounds + 1):
            print()
            print("round %d" % round_)
            for qos in (0, 1):
                target = qos1 if qos else broker
                pair = {kind: run_events(kind, target.port, qos, args.n) for kind in _pairs.order(round_)}
                if qos == 1 and not qos1_note and any(r["count"] < args.n for r in pair.values()):
                    default_qos1 = pair
                    events_line(qos, pair, "  <- Mosquitto's default queue")
                    qos1 = Mosquitto(max_queued_messages=args.n).start()
                    brokers.append(qos1)
                    qos1_note = "max_queued_messages %d (Mosquitto's default: 1000)" % args.n
                    print("  Mosquitto dropped QoS 1 events (a subscriber's queue holds 1000): QoS 1 now runs on a")
                    print("  third private broker (port %d) with %s, for raw and sig alike" % (qos1.port, qos1_note))
                    pair = {kind: run_events(kind, qos1.port, qos, args.n) for kind in _pairs.order(round_)}
                for kind in ("raw", "sig"):
                    keep("events%d-%s" % (qos, kind), pair[kind])
                events_line(qos, pair)
                rows[qos].add(rate_of(pair["raw"]), rate_of(pair["sig"]))
                cpu_rows[2 * qos].add(*(pair[k]["pub_cpu"] / args.n * 1e6 for k in ("raw", "sig")))
                cpu_rows[2 * qos + 1].add(*(pair[k]["cpu"] / max(1, pair[k]["count"]) * 1e6 for k in ("raw", "sig")))
            rtt = {kind: keep("rtt-%s" % kind, run_requests(kind, fast.port, args.requests, args.warmup))
                   for kind in _pairs.order(round_)}
            raw, sig_rtt = rtt["raw"], rtt["sig"]
            rows[2].add(raw["p50"], sig_rtt["p50"])
            hop = keep("rtt-hop", run_requests("hop", fast.port, args.requests, args.warmup))
            hop_row.add(raw["p50"], hop["p50"])
            print("  request RTT p50/p99 ms (TCP_NODELAY everywhere)  raw %.3f / %.3f | sig %.3f / %.3f | "
                  "raw with a worker hand-off %.3f / %.3f" % (raw["p50"], raw["p99"], sig_rtt["p50"], sig_rtt["p99"],
                                                               hop["p50"], hop["p99"]))
            if not args.extras:
                continue
            for qos in (0, 1):
                target = qos1 if qos else broker
                pair = {kind: keep("latency%d-%s" % (qos, kind), run_events(
                    kind, target.port, qos, args.latency_events, latency=True, rate=args.rate))
                    for kind in ("raw", "sig")}
                print("  latency QoS %d p50/p99 ms  raw %.3f / %.3f (lost %d) | sig %.3f / %.3f (lost %d)" % (
                    qos, pair["raw"]["p50"], pair["raw"]["p99"], args.latency_events - pair["raw"]["count"],
                    pair["sig"]["p50"], pair["sig"]["p99"], args.latency_events - pair["sig"]["count"]))
            raw_nagle = keep("rtt-raw-broker-nagle", run_requests("raw", broker.port, args.slow_requests, 3))
            sig_nagle = keep("rtt-sig-broker-nagle", run_requests("sig", broker.port, args.slow_requests, 3))
            slow = keep("rtt-raw-nagle", run_requests("raw", broker.port, args.slow_requests, 3, nodelay=False))
            print("  request RTT p50 ms, Mosquitto's default (Nagle)  raw %.1f | sig %.1f | "
                  "raw without TCP_NODELAY %.1f" % (raw_nagle["p50"], sig_nagle["p50"], slow["p50"]))

        def median(key: str, field: str, per: str = "") -> float:
            values = [r[field] / (args.n if per == "n" else max(1, r["count"])) * 1e6 if per else r[field]
                      for r in results.get(key, [])]
            return statistics.median(values) if values else 0.0

        print()
        print("medians of %d rounds; %d events per throughput run, %d requests" % (
            args.rounds, args.n, args.requests))
        row = "%-50s %19s %19s"
        print(row % ("", "raw paho-mqtt", "sig"))
        for qos in (0, 1):
            print("%-50s %8.1f / %-8.1f %8.1f / %-8.1f" % (
                "CPU us per event QoS %d, publisher / subscriber" % qos,
                median("events%d-raw" % qos, "pub_cpu", "n"), median("events%d-raw" % qos, "cpu", "count"),
                median("events%d-sig" % qos, "pub_cpu", "n"), median("events%d-sig" % qos, "cpu", "count")))
        if default_qos1:
            print("%-50s %10.0f (%6d) %10.0f (%6d)" % (
                "QoS 1, Mosquitto's default queue (round 1), lost", rate_of(default_qos1["raw"]),
                args.n - default_qos1["raw"]["count"], rate_of(default_qos1["sig"]),
                args.n - default_qos1["sig"]["count"]))
        if args.extras:
            for qos in (0, 1):
                print("%-50s %8.3f / %-8.3f %8.3f / %-8.3f" % (
                    "latency QoS %d p50 / p99 ms" % qos, median("latency%d-raw" % qos, "p50"),
                    median("latency%d-raw" % qos, "p99"), median("latency%d-sig" % qos, "p50"),
                    median("latency%d-sig" % qos, "p99")))
            print("%-50s %8.1f %19.1f" % ("request RTT p50 ms, TCP_NODELAY in clients only",
                                         median("rtt-raw-broker-nagle", "p50"), median("rtt-sig-broker-nagle", "p50")))
            print("%-50s %8.1f %19s" % ("  no TCP_NODELAY anywhere (paho, Mosquitto default)",
                                       median("rtt-raw-nagle", "p50"), "(sig always sets it)"))
        disorder = sum(r["disorder"] for key in ("events0-sig", "events1-sig") for r in results[key])
        print("sig events out of order: %d%s" % (disorder, "; QoS 1 on %s" % qos1_note if qos1_note else ""))
        _pairs.table(rows + [hop_row] + cpu_rows, " (bench/mqtt.py)")
        print("(%.1f s in all)" % (time.monotonic() - started))
    finally:
        for each in brokers:
            each.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
