"""Helpers for network tests: a recorder of listener calls with bounded waits."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any


class Recorder:
    """A listener that records ``(tag, sender, event, data)`` and lets tests wait for calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()

    def listener(self, tag: str = "") -> Callable[[dict[str, Any], Any], None]:
        def listen(info: dict[str, Any], data: Any) -> None:
            with self._cond:
                self.calls.append((tag, info.get("sender"), info.get("event"), data))
                self._cond.notify_all()

        listen.__name__ = "listen_%s" % tag
        return listen

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        """Wait until at least ``count`` calls arrived; return them (fails the test on timeout)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.calls) >= count, timeout)
            assert ok, "only %d of %d calls arrived: %r" % (len(self.calls), count, self.calls[-5:])
            return list(self.calls)

    def settle(self, quiet: float = 0.2) -> list[tuple[Any, ...]]:
        """Wait until no call arrived for ``quiet`` seconds; return the calls."""
        deadline = time.monotonic() + 5.0
        with self._cond:
            seen = -1
            while seen != len(self.calls) and time.monotonic() < deadline:
                seen = len(self.calls)
                self._cond.wait(quiet)
            return list(self.calls)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def own_tcp_ports() -> set[int] | None:
    """The local ports of this process's TCP sockets (Linux ``/proc``; None elsewhere).

    A server that a test started on port 0 may get a port that a client of another process
    (a suite running beside this one) keeps reconnecting to: counting only the peers whose
    port is one of ours keeps such strangers out of the test's counts.
    """
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[9] in inodes:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports
    except OSError:
        return None
