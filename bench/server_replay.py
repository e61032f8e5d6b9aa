"""The server's work per signal, without threads or sockets: frames decoded, dispatched and forwarded.

A ServerRouter on a stream carrier with two connections whose streams go nowhere: client ``a``
registered sender ``bench``, client ``b`` listens to ``("bench", "tick")``. N signal frames of ``a``
(as bench/tcp.py's sender sends them, in 64 KiB reads) go through what the reader and the dispatcher
do (``FrameDecoder.feed``, ``Peer.receive_frames``, ``Connection._run``: ``handleRX`` ... ``Signal.trigger``
... ``Connection.post`` to ``b``, which encodes the frame); the frames queued for ``b`` are dropped.

Run: ``python3 bench/server_replay.py [N [REPLAYS]]`` prints CPU µs per signal (the best of REPLAYS,
default 3). For counts that do not depend on the machine's load, run it under callgrind with 1 and 4
replays of the same N and divide the difference (which leaves out making the frames)::

    valgrind --tool=callgrind --callgrind-out-file=one.out python3 bench/server_replay.py 20000 1
    valgrind --tool=callgrind --callgrind-out-file=four.out python3 bench/server_replay.py 20000 4
    # (total Ir of four.out - total Ir of one.out) / (3 * 20000) = instructions per signal
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sig
from sig.carrier._stream import StreamServerCarrier


class _Nowhere:
    def recv(self, size: int) -> bytes:
        return b""

    def sendall(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    replays = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    carrier = StreamServerCarrier(max_queue=10**9)
    sig.ServerRouter(carrier)
    conns: dict[str, Any] = {}
    for clientid in ("a", "b"):
        conn = carrier._new_connection(clientid, _Nowhere(), clientid, lambda c: None, client=False)
        conn.peer.set_capabilities(frozenset({"ndjson", "pipeline"}), 0.0)
        carrier._connections[clientid] = conn
        carrier.handle_client_connected(clientid)
        conns[clientid] = conn
    carrier.handleRX("b", {"method": "add_listener", "params": {"sender": "bench", "event": "tick"}})
    carrier.handleRX("a", {"method": "add_sender", "params": {"sender": "bench", "events": ["tick"]}})
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    data = b"".join((dumps({"method": "signal", "params": {"info": {"sender": "bench", "event": "tick"},
                                                             "data": i}}) + "\n").encode() for i in range(n))
    reads = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    sender, listener = conns["a"], conns["b"]
    best = float("inf")
    for _ in range(replays):
        cpu = time.process_time()
        for chunk in reads:
            for event in sender.peer.receive_frames(sender.peer.decoder.feed(chunk)):
                sender._run(event.frame)
        best = min(best, time.process_time() - cpu)
        listener.peer.messages.clear()
    if n:
        print("%.2f µs CPU per signal (best of %d replays of %d)" % (best / n * 1e6, replays, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
