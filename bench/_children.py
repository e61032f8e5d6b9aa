"""What the benchmarks share: parties as child processes that report ``TAG {json}`` lines.

A child runs ``python3 bench/X.py --role ROLE ...``, says ``report("READY")``, waits
for the parent's go (``wait_for_stdin_line``) and reports its figures; the parent
awaits each tag with a timeout (:meth:`Child.expect`) and kills children by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_TIMEOUT = 60.0  # the longest any party waits for anything


# -- child side: one line per report on stdout ----------------------------------------


def report(tag: str, **fields: Any) -> None:
    sys.stdout.write("%s %s\n" % (tag, json.dumps(fields)))
    sys.stdout.flush()


def wait_for_stdin_line(timeout: float) -> None:
    """Block until the parent says go (one line on stdin), or give up after ``timeout``."""
    done = threading.Event()

    def read() -> None:
        sys.stdin.readline()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- parent side ------------------------------------------------------------------------


class Child:
    """A child process whose stdout lines ``TAG {json}`` can be awaited with a timeout.

    Subclasses name the script the child runs (``script = os.path.abspath(__file__)``).
    """

    script: str

    def __init__(self, role: str, **args: Any) -> None:
        argv = [sys.executable, self.script, "--role", role]
        for key, value in args.items():
            argv += ["--%s" % key, str(value)]
        self.role = role
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):  # closed by kill()
            for line in self.proc.stdout:
                self.lines.put(line)
        self.lines.put(None)

    def expect(self, tag: str, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("%s: no %s in %.0f s" % (self.role, tag, timeout)) from None
            if line is None:
                raise RuntimeError("%s exited (code %s) before %s" % (self.role, self.proc.poll(), tag))
            word, _, rest = line.partition(" ")
            if word == tag:
                return json.loads(rest) if rest.strip() else {}
            if word == "ERROR":
                raise RuntimeError("%s: %s" % (self.role, rest.strip()))

    def cpu(self) -> float:
        """CPU seconds (user + system, every thread) the child used so far, from /proc/PID/stat."""
        with open("/proc/%d/stat" % self.proc.pid) as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15 of stat

    def go(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except OSError:
            pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
