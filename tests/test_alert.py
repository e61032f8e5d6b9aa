"""``sig alert`` and alert_listener.py: one command per event, checked with a stand-in that records its arguments.

Real parts: ``sig server`` and ``sig send`` in subprocesses on 127.0.0.1
(free ports), the stand-in is a small Python script written into tmp_path.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from netutil import wait_until
from test_cli import ROOT, Proc, _env, assert_one_error_line, cli, free_port, run, start

import sig
from sig_apps.alert import Alerter, AlertError

TIMEOUT = 10.0


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in notifier: appends its arguments as one JSON line to calls.jsonl; returns (script, calls)."""
    calls = tmp_path / "calls.jsonl"
    script = tmp_path / "record-args"
    script.write_text(
        "#!%s\nimport json, sys\nwith open(%r, 'a', encoding='utf-8') as out:\n"
        "    out.write(json.dumps(sys.argv[1:]) + '\\n')\n" % (sys.executable, str(calls)),
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script, calls


def recorded(calls: Path, count: int) -> list[list[str]]:
    def lines() -> list[str]:
        return calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []

    assert wait_until(lambda: len(lines()) >= count, TIMEOUT), lines()
    return [json.loads(line) for line in lines()]


def sig_server(procs: list[Proc]) -> str:
    proc = start(procs, *cli("server", "--bind", "127.0.0.1:0"))
    return proc.wait_for(r"Listening on (127\.0\.0\.1:\d+)$", "stderr").group(1)


def send(address: str, sender: str, event: str, data: str) -> None:
    result = run("send", "--server", address, "--sender", sender, "--event", event, "--data", data)
    assert result.returncode == 0, result


# -- the Alerter -------------------------------------------------------------------------------------


def test_alerter_runs_the_command_per_event(recorder: tuple[Path, Path]) -> None:
    script, calls = recorder
    alerter = Alerter([str(script)])
    try:
        alerter.listener({"sender": "lamp", "event": "on"}, {"level": 3})
        alerter.listener({"sender": "lamp", "event": "#connect"}, {"events": ["on"], "requests": None})
        alerter.listener({"sender": "door", "event": "open"}, "front <door>")
    finally:
        alerter.close()
    assert recorded(calls, 3) == [
        ["[lamp] on", '{"level": 3}'],
        ["lamp connected", '{"events": ["on"], "requests": null}'],
        ["[door] open", "front <door>"],
    ]


def test_alerter_fills_in_fields(recorder: tuple[Path, Path]) -> None:
    script, calls = recorder
    alerter = Alerter.from_command_line("'%s' --who={sender} '{event} happened' {data}" % script)
    try:
        alerter.listener({"sender": "a b", "event": "x"}, 5)
        alerter.listener({"sender": "s", "event": "{data}"}, "{sender}")  # filled in once, not again
    finally:
        alerter.close()
    assert recorded(calls, 2) == [["--who=a b", "x happened", "5"], ["--who=s", "{data} happened", "{sender}"]]


def test_alerter_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AlertError, match="alert command not found: no-such-notifier"):
        Alerter.from_command_line("no-such-notifier --now")
    with pytest.raises(AlertError, match="bad --command"):
        Alerter.from_command_line("'unclosed")
    with pytest.raises(AlertError, match="empty"):
        Alerter([])
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no notify-send
    with pytest.raises(AlertError, match=r"notify-send not found: install libnotify .*--command CMD"):
        Alerter()
    assert isinstance(AlertError("x"), sig.SigError)


def test_failing_command_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = tmp_path / "fail"
    script.write_text("#!/bin/sh\necho broken >&2\nexit 3\n", encoding="utf-8")
    script.chmod(0o755)
    alerter = Alerter([str(script)])
    alerter.listener({"sender": "s", "event": "e"}, None)
    alerter.close()
    assert "The alert command failed (status 3): broken" in caplog.text


# -- sig alert ---------------------------------------------------------------------------------------


def test_cli_alert(procs: list[Proc], recorder: tuple[Path, Path]) -> None:
    script, calls = recorder
    address = sig_server(procs)
    alert = start(procs, *cli("alert", "--server", address, "--listen", "lamp:on", "--listen", "None:#notify",
                              "--command", str(script), "--log-level", "info"))
    alert.wait_for(r"Alerting on None:#notify", "stderr")
    send(address, "lamp", "on", "<b>bright</b>")
    send(address, "lamp", "off", "not listened")
    send(address, "door", "#notify", '{"open": true}')
    assert recorded(calls, 2) == [["[lamp] on", "<b>bright</b>"], ["[door] #notify", '{"open": true}']]
    assert alert.stop(signal.SIGTERM) == 0
    assert "Traceback" not in alert.text("stderr")
    assert len(recorded(calls, 2)) == 2


def test_cli_alert_without_notify_send(tmp_path: Path) -> None:
    env = _env()
    env["PATH"] = str(tmp_path)  # no notify-send there; the server is not even asked
    result = subprocess.run(cli("alert", "--server", "127.0.0.1:%d" % free_port()), cwd=str(ROOT), env=env,
                            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    line = assert_one_error_line(result, "alert")
    assert "notify-send not found: install libnotify (Debian/Ubuntu: apt install libnotify-bin)" in line
    assert "--command CMD" in line


def test_cli_alert_errors(procs: list[Proc], recorder: tuple[Path, Path]) -> None:
    result = run("alert", "--command", "no-such-notifier", timeout=TIMEOUT)
    assert "alert command not found: no-such-notifier" in assert_one_error_line(result, "alert")
    result = run("alert", "--listen", "a:b:c", timeout=TIMEOUT)
    assert "bad --listen 'a:b:c'" in assert_one_error_line(result, "alert", code=2)
    unreachable = "127.0.0.1:%d" % free_port()
    result = run("alert", "--server", unreachable, "--command", str(recorder[0]), timeout=TIMEOUT)
    assert "cannot connect to %s" % unreachable in assert_one_error_line(result, "alert")


# -- alert_listener.py -------------------------------------------------------------------------------


def test_example_alert_listener(procs: list[Proc], recorder: tuple[Path, Path]) -> None:
    script, calls = recorder
    address = sig_server(procs)
    port = address.rsplit(":", 1)[1]
    answers = ["", port, str(script), "timer", "tick", "", "None", "#notify", "", ""]
    example = start(procs, sys.executable, str(ROOT / "examples" / "alert_listener.py"),
                    stdin="".join(a + "\n" for a in answers))
    example.wait_for(r"\]-Registering to None:#notify$")
    for prompt in ("Server IP   (default: 127.0.0.1):", "Server port (default: 3000):",
                   "Command     (default: notify-send):", "Sender 1:", "Event  1:", "Sender 3:"):
        assert prompt in example.text()
    send(address, "timer", "tick", "test")
    send(address, "x", "#notify", "7")
    assert recorded(calls, 2) == [["[timer] tick", "test"], ["[x] #notify", "7"]]
    assert example.stop(signal.SIGINT) == 0
    assert "Traceback" not in example.text() + example.text("stderr")


def test_example_alert_listener_without_notify_send(tmp_path: Path) -> None:
    env = _env()
    env["PATH"] = str(tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "alert_listener.py")], input="\n\n\n\n",
                            cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: notify-send not found"), result.stderr
    assert "Traceback" not in result.stderr
