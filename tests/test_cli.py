"""The ``sig`` command line and the documented examples/ scripts, run in subprocesses.

Every process is started here, killed by its PID in ``finally``, and every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
WAIT = 15.0  # seconds: the most any single expected output may take


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a process that does not end is made to show its threads' stacks (SIGABRT)
    env.pop("PYTHONWARNINGS", None)
    return env


class Proc:
    """A subprocess whose stdout and stderr lines are collected by threads."""

    def __init__(self, args: list[str], stdin: str | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=str(ROOT),
            env=_env(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True) for name in ("stdout", "stderr")
        ]
        for reader in self._readers:
            reader.start()
        if stdin is not None:
            assert self.popen.stdin is not None
            self.popen.stdin.write(stdin)
            self.popen.stdin.close()

    def _read(self, name: str) -> None:
        stream = getattr(self.popen, name)
        for line in stream:
            with self._cond:
                self.lines[name].append(line.rstrip("\n"))
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    def text(self, name: str = "stdout") -> str:
        with self._cond:
            return "\n".join(self.lines[name])

    def wait_for(self, pattern: str, name: str = "stdout", timeout: float = WAIT, count: int = 1) -> re.Match[str]:
        """Wait until ``pattern`` matched ``count`` lines of ``name``; return the last match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for m in map(regex.search, self.lines[name]) if m]
                if len(matches) >= count:
                    return matches[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(
                        "%r not seen %d time(s) in %s of %s\nstdout:\n%s\nstderr:\n%s"
                        % (pattern, count, name, self.args, "\n".join(self.lines["stdout"]),
                           "\n".join(self.lines["stderr"]))
                    )
                self._cond.wait(min(left, 0.1))

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the process to end (bounded) and for its output to be read."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack on stderr
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5.0)
            for reader in self._readers:
                reader.join(5.0)
            raise AssertionError("%s did not end within %.0f s\nstdout:\n%s\nstderr:\n%s" % (
                self.args, timeout, self.text()[-3000:], self.text("stderr")[-6000:])) from None
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Send ``signum`` and wait (bounded) for the exit status."""
        self.popen.send_signal(signum)
        return self.wait(timeout)

    def kill(self) -> None:
        """Kill the process by its PID if it still runs."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(WAIT)
        for reader in self._readers:
            reader.join(WAIT)


def start(procs: list[Proc], *args: str, stdin: str | None = None) -> Proc:
    proc = Proc(list(args), stdin)
    procs.append(proc)
    return proc


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sig", *args]


def run(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """Run a CLI command to its end (bounded)."""
    return subprocess.run(cli(*args), cwd=str(ROOT), env=_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(procs: list[Proc], *extra: str) -> tuple[Proc, str]:
    """Start ``sig server`` on a free port (port 0); return it and its HOST:PORT."""
    proc = start(procs, *cli("server", "--bind", "127.0.0.1:0", *extra))
    match = proc.wait_for(r"Listening on (127\.0\.0\.1:\d+)$", "stderr")
    return proc, match.group(1)


def start_listen(procs: list[Proc], address: str, *subscriptions: str, extra: tuple[str, ...] = ()) -> Proc:
    """Start ``sig listen`` and wait until its subscriptions are registered."""
    args = ["listen", "--server", address, "--log-level", "info", *extra]
    for sub in subscriptions:
        args += ["--listen", sub]
    proc = start(procs, *cli(*args))
    proc.wait_for(r"connected \(server", "stderr")
    proc.wait_for(r"Listening to ", "stderr", count=max(1, len(subscriptions)))
    return proc


def assert_one_error_line(result: subprocess.CompletedProcess[str], command: str, code: int = 1) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sig %s: error: " % command), lines[0]
    return lines[0]


# -- the command line ----------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["server"], ["send"], ["listen"], ["request"]])
def test_version(command: list[str]) -> None:
    result = run(*command, "--version")
    assert result.returncode == 0, result
    assert result.stdout.strip() == "sig %s" % sig.VERSION


def test_server_listen_send(procs: list[Proc]) -> None:
    server, address = start_server(procs, "--sender", "timer", "--delay", "0.2", "--data", "server data")
    listen = start_listen(procs, address, "lamp:on", "timer:tick")
    result = run("send", "--server", address, "--sender", "lamp", "--event", "on", "--data", '{"level": 3}')
    assert result.returncode == 0, result
    assert result.stderr == ""  # quiet by default
    listen.wait_for(r"^\[lamp\] Event #disconnect received")
    lamp = [line for line in listen.text().splitlines() if line.startswith("[lamp]")]
    assert lamp == [
        """[lamp] Event #connect received with data '{"events": ["on"], "requests": null}'""",
        """[lamp] Event on received with data '{"level": 3}'""",
        """[lamp] Event #disconnect received with data '{"events": ["on"], "requests": null}'""",
    ]
    listen.wait_for(r"""^\[timer\] Event tick received with data '"server data"'$""")
    server.wait_for(r"\[timer\] Triggering event tick with data 'server data'$", "stderr")
    assert listen.stop(signal.SIGTERM) == 0
    assert "Traceback" not in listen.text("stderr")
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.text("stderr")


def test_send_repeats_json_lines_and_escaped_colon(procs: list[Proc]) -> None:
    _, address = start_server(procs)
    listen = start_listen(procs, address, r"a\:b:x", extra=("--json",))
    result = run("send", "--server", address, "--sender", "a:b", "--event", "x", "--data", "plain text",
                 "--count", "3", "--log-level", "info")
    assert result.returncode == 0, result
    assert result.stderr.count("[a:b] Triggering event x with data 'plain text'") == 3
    listen.wait_for(r'"event": "#disconnect"')
    events = [json.loads(line) for line in listen.text().splitlines()]
    assert [e["event"] for e in events] == ["#connect", "x", "x", "x", "#disconnect"]
    assert all(e["sender"] == "a:b" for e in events)
    assert events[1]["data"] == "plain text"

    # every --delay seconds until stopped; SIGTERM ends it cleanly
    sender = start(procs, *cli("send", "--server", address, "--sender", "a:b", "--event", "x", "--data", "7",
                               "--delay", "0.05"))
    listen.wait_for(r'"event": "x", "data": 7\}', count=3)
    assert sender.stop(signal.SIGTERM) == 0
    listen.wait_for(r'"event": "#disconnect"', count=2)
    assert listen.stop(signal.SIGINT) == 0


def test_request_get_ticks(procs: list[Proc]) -> None:
    server, address = start_server(procs, "--sender", "timer", "--delay", "0.1")
    server.wait_for(r"\[timer\] Triggering event tick", "stderr", count=2)
    result = run("request", "--server", address, "--sender", "timer", "--method", "get_ticks")
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert json.loads(result.stdout) >= 2


def test_request_errors_are_one_line(procs: list[Proc]) -> None:
    _, address = start_server(procs, "--sender", "timer")
    result = run("request", "--server", address, "--sender", "timer", "--method", "nope", "--params", '{"a": 1}')
    assert "no handler for method 'nope'" in assert_one_error_line(result, "request")
    result = run("request", "--server", address, "--sender", "nobody", "--method", "get_ticks")
    assert "'nobody' is not connected" in assert_one_error_line(result, "request")
    assert result.stdout == ""


def test_unreachable_server_fails_fast() -> None:
    address = "127.0.0.1:%d" % free_port()
    for command in (["request", "--sender", "timer", "--method", "get_ticks"],
                    ["send", "--sender", "s", "--event", "e"],
                    ["send", "--sender", "s", "--event", "e", "--delay", "1"],
                    ["listen", "--listen", "timer:tick"]):
        began = time.monotonic()
        result = run(command[0], "--server", address, *command[1:], timeout=10.0)
        assert time.monotonic() - began < 8.0
        line = assert_one_error_line(result, command[0])
        assert "cannot connect to %s" % address in line


@pytest.mark.parametrize(
    ("args", "command", "needle"),
    [
        (["request", "--sender", "t", "--method", "m", "--params", "{bad"], "request", "--params is not valid JSON"),
        (["listen", "--listen", "a:b:c"], "listen", "bad --listen 'a:b:c'"),
        (["listen", "--listen", "timer"], "listen", "bad --listen 'timer'"),
        (["listen", "--listen", ":tick"], "listen", "empty sender"),
        (["send", "--sender", "None", "--event", "e"], "send", "--sender needs a name"),
        (["send", "--sender", "s", "--event", "e", "--server", "host:port"], "send", "the port must be a number"),
        (["server", "--bind", "127.0.0.1:99999"], "server", "from 0 to 65535"),
        (["request", "--sender", "t"], "request", "required: --method"),
    ],
)
def test_bad_options_are_one_line(args: list[str], command: str, needle: str) -> None:
    result = run(*args, timeout=10.0)
    assert needle in assert_one_error_line(result, command, code=2)


def test_busy_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        address = "127.0.0.1:%d" % busy.getsockname()[1]
        result = run("server", "--bind", address, "--log-level", "warning", timeout=10.0)
        assert "cannot listen on %s" % address in assert_one_error_line(result, "server")
        result = run("server", "--bind", address, timeout=10.0)  # info: the log line, then the error
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1].startswith("sig server: error: cannot listen on")


def test_listen_survives_server_restart(procs: list[Proc]) -> None:
    port = free_port()
    address = "127.0.0.1:%d" % port
    server = start(procs, *cli("server", "--bind", address, "--sender", "timer", "--delay", "0.1"))
    server.wait_for(r"Listening on ", "stderr")
    listen = start_listen(procs, address, "timer:tick")
    listen.wait_for(r"^\[timer\] Event tick received")
    assert server.stop(signal.SIGTERM) == 0
    listen.wait_for(r"Disconnected from .*reconnecting", "stderr")
    server = start(procs, *cli("server", "--bind", address, "--sender", "timer", "--delay", "0.1"))
    server.wait_for(r"Listening on ", "stderr")
    listen.wait_for(r"Connected to %s again" % re.escape(address), "stderr")
    listen.wait_for(r"registered again 0 sender\(s\) and 3 listener\(s\)", "stderr")
    seen = listen.text().count("Event tick received")
    listen.wait_for(r"^\[timer\] Event tick received", count=seen + 1)
    assert listen.stop(signal.SIGTERM) == 0


# -- the examples ------------------------------------------------------------------------


def example(procs: list[Proc], name: str, answers: list[str]) -> Proc:
    return start(procs, sys.executable, str(EXAMPLES / name), stdin="".join(a + "\n" for a in answers))


def test_examples_prompt_and_run(procs: list[Proc]) -> None:
    # generic_server.py: blank answers take the documented defaults, except bind, port (0: free) and delay
    server = example(procs, "generic_server.py", ["", "127.0.0.1", "0", "", "", "server data", "0.2"])
    port = server.wait_for(r"Listening on port (\d+)").group(1)
    prompts = server.text()
    for prompt in ("Log level   (default: info):", "Server bind (default: 0.0.0.0):", "Server port (default: 3000):",
                   "Sender      (default: timer):", "Event       (default: tick):",
                   "Event data  (default: None):", "Timer delay (default: 5):"):
        assert prompt in prompts
    server.wait_for(r"\[TCP_SRV\] Starting to listen on 127\.0\.0\.1:0$")
    server.wait_for(r"\[    info\]-\[timer\] Triggering event tick with data 'server data'$")

    # generic_client_listener.py on timer:tick
    timer = example(procs, "generic_client_listener.py", ["", port, "timer", "tick"])
    timer.wait_for(r"\[            listener\]\[    info\]-\[timer\] Event tick received with data '\"server data\"'$")
    prompts = timer.text()
    for prompt in ("Server IP   (default: 127.0.0.1):", "Server port (default: 3000):",
                   "Sender      (default: None):", "Event       (default: None):"):
        assert prompt in prompts

    # generic_client_listener.py on timer_client:tick, then generic_client_sender.py (started, then stopped)
    listener = example(procs, "generic_client_listener.py", ["127.0.0.1", port, "timer_client", "tick"])
    listener.wait_for(r"connected \(server")
    time.sleep(0.3)  # its registrations run in on_connected, right after that line
    sender = example(procs, "generic_client_sender.py", ["", port, "", "", "client data", "0.2"])
    for prompt in ("Sender      (default: timer_client):", "Event data  (default: None):", "Timer delay (default: 5):"):
        sender.wait_for(re.escape(prompt))
    sender.wait_for(r"\[timer_client\] Triggering event tick with data 'client data'$")
    listener.wait_for(r"\[    listener_connect\]\[    info\]-Sender timer_client is now connected$")
    listener.wait_for(r"\[timer_client\] Event tick received with data '\"client data\"'$")
    assert sender.stop(signal.SIGINT) == 0
    listener.wait_for(r"-Sender timer_client is now disconnected$")

    # generic_client_request.py: the timer's get_ticks
    request = example(procs, "generic_client_request.py", ["", port, "", "", ""])
    assert request.wait() == 0
    assert "Method      (default: get_ticks):" in request.text()
    ticks = int(request.wait_for(r"\[timer\] Response to get_ticks: (\d+)$").group(1))
    assert ticks >= 1
    request = example(procs, "generic_client_request.py", ["", port, "timer", "nope", ""])
    assert request.wait() == 1
    request.wait_for(r"\[timer\] Request nope failed: .*no handler for method 'nope'")

    for proc in (timer, listener, server):
        assert proc.stop(signal.SIGINT) == 0
        assert "Traceback" not in proc.text() + proc.text("stderr")
