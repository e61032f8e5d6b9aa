"""TCP throughput and request latency of sig, against a raw NDJSON socket ceiling, in one run.

Every party is its own process, on loopback:

1. raw ceiling: a sender writes N lines ``{"sender":"s","event":"e","data":i}`` to a
   minimal relay (it reads lines and writes them on, as the server hop does), which
   writes them to a listener that ``json.loads`` each line;
2. sig: a ServerRouter on CarrierTCPServer, a ClientRouter listening to
   ``("bench", "tick")``, and a ClientRouter that registers ``bench`` and triggers N
   signals (data = sequence number) then disconnects (which flushes); the listener
   checks that none is lost and the order is kept;
3. request round trip: a ClientRouter requesting a sender registered by another client
   process (through the server), and a sender registered on the server itself.

Throughput is (N - 1) / (time from first to last message received by the listener).
Each measurement runs ROUNDS times as a pair, raw and sig in turn (raw first in odd rounds, sig
first in even ones; fresh processes each time); every round is printed. Then issue 13's rows
(bench/_pairs.py: medians, ranges, each pair's sig/raw ratio, the goal marked met or MISSED):

- sig signals/s / raw signals/s: >= 0.4 (median of the pairs), 0 lost and order kept in every round
- request round trip p50 through the server to another client's sender: <= 0.25 ms in every round
- the least a hop costs on this machine at that moment: the p50 round trip between two processes over
  loopback TCP and between two threads (a Future another thread resolves), and the wake-ups a request
  via another client cannot do without (requester -> server -> responder and back: two process round
  trips; the responder's hand-off to a request thread and the reply's to the waiting caller: one thread
  round trip). On a quiet VM each of those costs tens of µs more than on a busy one (idle CPUs wake slowly)
- CPU µs per signal of each party (sender, server or relay, listener; ``time.process_time`` in the
  sender and the listener, ``/proc/PID/stat`` for the server): no goal, but less noisy than signals/s;
  and CPU µs per request via another client (requester, server, responder; kernel time included)

Run: ``python3 bench/tcp.py [--n 100000] [--requests 2000] [--rounds 5]`` (about 30 s).
Children are started as ``python3 bench/tcp.py --role ROLE ...`` and killed by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

import _children  # bench/_children.py: child processes that report TAG {json} lines
import _pairs  # bench/_pairs.py: paired rounds, per-pair ratios, goals
from _children import CHILD_TIMEOUT, ROOT, report, wait_for_stdin_line

HOST = "127.0.0.1"


# -- child side --------------------------------------------------------------------------


def _listen() -> socket.socket:
    sock = socket.create_server((HOST, 0))
    sock.settimeout(CHILD_TIMEOUT)
    return sock


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(CHILD_TIMEOUT)
    return sock


def role_raw_listener(n: int) -> None:
    server = _listen()
    report("READY", port=server.getsockname()[1])
    conn, _ = server.accept()
    _nodelay(conn)
    cpu = time.process_time()
    count = lost_order = 0
    first = last = 0.0
    expected = 0
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            message = json.loads(line)
            now = time.perf_counter()
            if count == 0:
                first = now
            last = now
            if message["data"] != expected:
                lost_order += 1
            expected = message["data"] + 1
            count += 1
            if count == n:
                break
    report("RESULT", count=count, disorder=lost_order, seconds=last - first, cpu=time.process_time() - cpu)


def role_raw_relay(listener_port: int) -> None:
    server = _listen()
    out = _nodelay(socket.create_connection((HOST, listener_port), timeout=CHILD_TIMEOUT))
    report("READY", port=server.getsockname()[1])
    conn, _ = server.accept()
    _nodelay(conn)
    pending = b""
    with conn, out:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            pending += data
            cut = pending.rfind(b"\n") + 1
            if cut:  # forward whole lines only, as a line-framed server hop would
                out.sendall(pending[:cut])
                pending = pending[cut:]
        if pending:
            out.sendall(pending)


def role_raw_sender(relay_port: int, n: int) -> None:
    sock = _nodelay(socket.create_connection((HOST, relay_port), timeout=CHILD_TIMEOUT))
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT)
    cpu, start = time.process_time(), time.perf_counter()
    encode = json.JSONEncoder(separators=(",", ":")).encode
    with sock, sock.makefile("wb", buffering=65536) as out:
        for i in range(n):
            out.write((encode({"sender": "s", "event": "e", "data": i}) + "\n").encode())
        out.flush()
    report("SENT", seconds=time.perf_counter() - start, cpu=time.process_time() - cpu)


def _sig() -> Any:
    sys.path.insert(0, ROOT)
    import sig

    return sig


def role_sig_server() -> None:
    sig = _sig()
    from sig.carrier.tcpserver import CarrierTCPServer

    carrier = CarrierTCPServer()
    server = sig.ServerRouter(carrier)
    server.addSender("srv", ["x"], requests={"echo": lambda params: params})
    carrier.start(HOST, 0)
    report("READY", port=carrier.port)
    wait_for_stdin_line(CHILD_TIMEOUT * 2)  # until the parent is done
    carrier.stop()


def _client(port: int) -> tuple[Any, Any]:
    sig = _sig()
    from sig.carrier.tcpclient import CarrierTCPClient

    carrier = CarrierTCPClient()
    client = sig.ClientRouter(carrier)
    if not carrier.connect(HOST, port, auto_reconnect=False):
        report("ERROR", error="cannot connect to the server on port %d" % port)
        sys.exit(1)
    return carrier, client


def role_sig_listener(port: int, n: int) -> None:
    carrier, client = _client(port)
    state = {"count": 0, "disorder": 0, "expected": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()

    def on_tick(info: dict[str, Any], data: Any) -> None:
        now = time.perf_counter()
        if state["count"] == 0:
            state["first"] = now
        state["last"] = now
        if data != state["expected"]:
            state["disorder"] += 1
        state["expected"] = data + 1
        state["count"] += 1
        if state["count"] == n:
            done.set()

    client.addRemoteListener(on_tick, "bench", "tick")
    cpu = time.process_time()
    report("READY")
    done.wait(CHILD_TIMEOUT)
    report("RESULT", count=state["count"], disorder=state["disorder"], seconds=state["last"] - state["first"],
           cpu=time.process_time() - cpu)
    carrier.disconnect()


def role_sig_sender(port: int, n: int) -> None:
    carrier, client = _client(port)
    sender = client.addRemoteSender("bench", ["tick"])
    trigger = sender.getSignal("tick").trigger
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT)
    cpu, start = time.process_time(), time.perf_counter()
    for i in range(n):
        trigger(i)
    triggered = time.perf_counter()
    carrier.disconnect()  # sends what is queued first
    report("SENT", seconds=triggered - start, flushed=time.perf_counter() - start, cpu=time.process_time() - cpu)


def role_sig_responder(port: int) -> None:
    carrier, client = _client(port)
    client.addRemoteSender("rpc", ["x"], requests={"echo": lambda params: params})
    report("READY")
    wait_for_stdin_line(CHILD_TIMEOUT * 2)
    carrier.disconnect()


def role_sig_requester(port: int, count: int, warmup: int) -> None:
    carrier, client = _client(port)
    results = {}
    for name, sender in (("client", "rpc"), ("server", "srv")):
        for i in range(warmup):
            client.remoteRequest(sender, "echo", i)
        times = []
        clock = time.perf_counter
        if name == "client":  # the parent reads the server's and the responder's CPU around the timed part
            report("TIMING")
            wait_for_stdin_line(CHILD_TIMEOUT)
        cpu = time.process_time()
        for i in range(count):
            start = clock()
            if client.remoteRequest(sender, "echo", i) != i:
                report("ERROR", error="wrong response from %s" % sender)
                sys.exit(1)
            times.append(clock() - start)
        cpu = time.process_time() - cpu
        if name == "client":
            report("TIMED", cpu=cpu)
            wait_for_stdin_line(CHILD_TIMEOUT)
        times.sort()
        results[name] = {
            "p50": times[len(times) // 2] * 1e3,
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3,
            "max": times[-1] * 1e3,
            "cpu": cpu,
        }
    report("RESULT", **results)
    carrier.disconnect()


def role_echo() -> None:
    """Echo what arrives on one TCP connection (the least a hop between processes costs)."""
    server = _listen()
    report("READY", port=server.getsockname()[1])
    conn, _ = server.accept()
    _nodelay(conn)
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(data)


def _p50(times: list[float]) -> float:
    times.sort()
    return times[len(times) // 2] * 1e6


def floor_round_trips(children: list[Child], count: int = 2000) -> tuple[float, float]:
    """p50 µs of a round trip between two processes over loopback TCP, and between two threads
    (a Future resolved by another thread, as a reply wakes a waiting caller): what each hop costs
    on this machine now, before any of sig's own work."""
    echo = Child("echo")
    children.append(echo)
    sock = _nodelay(socket.create_connection((HOST, echo.expect("READY")["port"]), timeout=CHILD_TIMEOUT))
    clock = time.perf_counter
    times = []
    with sock:
        for _ in range(count):
            start = clock()
            sock.sendall(b"x" * 60)
            sock.recv(4096)
            times.append(clock() - start)
    process = _p50(times)
    requests: queue.SimpleQueue[Future[int] | None] = queue.SimpleQueue()

    def serve() -> None:
        while (future := requests.get()) is not None:
            future.set_result(1)

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    times = []
    for _ in range(count):
        future: Future[int] = Future()
        start = clock()
        requests.put(future)
        future.result(CHILD_TIMEOUT)
        times.append(clock() - start)
    requests.put(None)
    worker.join(CHILD_TIMEOUT)
    return process, _p50(times)


ROLES = {
    "raw-listener": lambda a: role_raw_listener(a.n),
    "raw-relay": lambda a: role_raw_relay(a.port),
    "raw-sender": lambda a: role_raw_sender(a.port, a.n),
    "sig-server": lambda a: role_sig_server(),
    "sig-listener": lambda a: role_sig_listener(a.port, a.n),
    "sig-sender": lambda a: role_sig_sender(a.port, a.n),
    "sig-responder": lambda a: role_sig_responder(a.port),
    "sig-requester": lambda a: role_sig_requester(a.port, a.requests, a.warmup),
    "echo": lambda a: role_echo(),
}


# -- parent side ------------------------------------------------------------------------


class Child(_children.Child):
    """A party of this benchmark: ``python3 bench/tcp.py --role ROLE``."""

    script = os.path.abspath(__file__)


def run_raw(n: int, children: list[Child]) -> dict[str, Any]:
    listener = Child("raw-listener", n=n)
    children.append(listener)
    port = listener.expect("READY")["port"]
    relay = Child("raw-relay", port=port)
    children.append(relay)
    port = relay.expect("READY")["port"]
    sender = Child("raw-sender", port=port, n=n)
    children.append(sender)
    sender.expect("READY")
    relay_cpu = relay.cpu()
    sender.go()
    sent = sender.expect("SENT")
    result = listener.expect("RESULT")
    result["send_seconds"] = sent["seconds"]
    result["cpus"] = (sent["cpu"], relay.cpu() - relay_cpu, result["cpu"])
    return result


def run_sig(n: int, requests: int, warmup: int, children: list[Child]) -> tuple[dict[str, Any], dict[str, Any]]:
    server = Child("sig-server")
    children.append(server)
    port = server.expect("READY")["port"]
    listener = Child("sig-listener", port=port, n=n)
    children.append(listener)
    listener.expect("READY")
    sender = Child("sig-sender", port=port, n=n)
    children.append(sender)
    sender.expect("READY")
    server_cpu = server.cpu()
    sender.go()
    sent = sender.expect("SENT")
    result = listener.expect("RESULT")
    result["send_seconds"] = sent["seconds"]
    result["flush_seconds"] = sent["flushed"]
    result["cpus"] = (sent["cpu"], server.cpu() - server_cpu, result["cpu"])

    responder = Child("sig-responder", port=port)
    children.append(responder)
    responder.expect("READY")
    requester = Child("sig-requester", port=port, requests=requests, warmup=warmup)
    children.append(requester)
    requester.expect("TIMING")
    before = (server.cpu(), responder.cpu())
    requester.go()
    timed = requester.expect("TIMED")
    rtt_cpus = (timed["cpu"], server.cpu() - before[0], responder.cpu() - before[1])
    requester.go()
    rtt = requester.expect("RESULT")
    rtt["cpus"] = rtt_cpus
    responder.go()
    server.go()
    return result, rtt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=sorted(ROLES))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--n", type=int, default=100_000, help="signals per throughput run")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per target")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds")
    args = parser.parse_args()
    if args.role:
        ROLES[args.role](args)
        return 0

    sig = _sig()
    print("sig %s, Python %s, %d CPUs, loopback TCP, every party its own process" % (
        sig.VERSION, sys.version.split()[0], os.cpu_count() or 0))
    started = time.monotonic()

    def rate(result: dict[str, Any]) -> float:
        return (result["count"] - 1) / result["seconds"] if result["seconds"] > 0 else 0.0

    raws: list[dict[str, Any]] = []
    sigs: list[dict[str, Any]] = []
    rtts: list[dict[str, Any]] = []
    print()
    print("round  raw msg/s  sig msg/s  sig lost  sig disorder  rtt via client p50/p99 ms  rtt to server p50/p99 ms")
    rows = [
        _pairs.Row("TCP signals/s, ClientRouter -> ServerRouter -> ClientRouter (raw: NDJSON relay)",
                   ">= 0.4x, 0 lost, order kept", lambda r, s: r >= 0.4 and all(
                       x["count"] == args.n and not x["disorder"] for x in sigs)),
        _pairs.Row("TCP request p50 ms, client -> server -> other client's sender", "<= 0.25 ms on every round",
                   lambda r, s: max(s) <= 0.25, fmt="%.3f"),
    ]
    floor_rows = [
        _pairs.Row("round trip p50 us between two processes, loopback TCP (no goal)", "", lambda r, s: True,
                   fmt="%.1f"),
        _pairs.Row("round trip p50 us between two threads, Future (no goal)", "", lambda r, s: True, fmt="%.1f"),
        _pairs.Row("least wake-ups of a request via another client, ms: 2 process + 1 thread round trips "
                   "(no goal)", "", lambda r, s: True, fmt="%.3f"),
    ]
    cpu_rows = [_pairs.Row("CPU us per signal, %s (no goal)" % side, "", lambda r, s: True, fmt="%.2f")
                for side in ("sender (raw: NDJSON writer)", "server (raw: relay)", "listener (raw: json.loads)")]
    cpu_rows += [_pairs.Row("CPU us per request via another client, %s (no goal)" % side, "", lambda r, s: True,
                            fmt="%.1f") for side in ("requester", "server", "responder")]
    for round_ in range(1, args.rounds + 1):
        for kind in _pairs.order(round_):
            children: list[Child] = []
            try:
                if kind == "raw":
                    raws.append(run_raw(args.n, children))
                else:
                    sig_result, rtt = run_sig(args.n, args.requests, args.warmup, children)
            finally:
                for child in children:
                    child.kill()
        rows[0].add(rate(raws[-1]), rate(sig_result))
        rows[1].add(None, rtt["client"]["p50"])
        children = []
        try:
            process_rtt, thread_rtt = floor_round_trips(children)
        finally:
            for child in children:
                child.kill()
        floor_rows[0].add(None, process_rtt)
        floor_rows[1].add(None, thread_rtt)
        floor_rows[2].add(None, (2 * process_rtt + thread_rtt) / 1e3)
        for index, row in enumerate(cpu_rows[:3]):
            row.add(raws[-1]["cpus"][index] / args.n * 1e6, sig_result["cpus"][index] / args.n * 1e6)
        for index, row in enumerate(cpu_rows[3:]):
            row.add(None, rtt["cpus"][index] / args.requests * 1e6)
        sigs.append(sig_result)
        rtts.append(rtt)
        print("%5d %10.0f %10.0f %9d %13d %13.3f / %.3f %15.3f / %.3f" % (
            round_, rate(raws[-1]), rate(sig_result), args.n - sig_result["count"], sig_result["disorder"],
            rtt["client"]["p50"], rtt["client"]["p99"], rtt["server"]["p50"], rtt["server"]["p99"]))

    print()
    print("request round trip (%d after %d warm-up), medians of %d rounds: p50 / p99 / max ms" % (
        args.requests, args.warmup, args.rounds))
    for name, label in (("client", "to a sender of another client process"), ("server", "to a sender on the server")):
        print("  %-44s %s / %s / %s" % (label, *(
            "%.3f" % statistics.median(r[name][field] for r in rtts) for field in ("p50", "p99", "max"))))
    _pairs.table(rows + floor_rows + cpu_rows, " (bench/tcp.py)")
    print("(%.1f s in all)" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
