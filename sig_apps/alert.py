"""Desktop alerts of ``sig alert`` (pysig's documented alert_listener.py): one notification per event.

By default each event runs ``notify-send TITLE BODY`` (libnotify); any other
command can stand in. Commands run one at a time on a worker thread, never on
the carrier's thread, so a slow notifier does not hold up the events.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from sig import EVENT_CONNECT, EVENT_DISCONNECT, SigError

__all__ = ["Alerter", "AlertError", "NOTIFY_SEND"]

logger = logging.getLogger("sig.alert")

#: The default notifier (Debian / Ubuntu package ``libnotify-bin``).
NOTIFY_SEND = "notify-send"

_FIELD = re.compile(r"\{(sender|event|data|title|body)\}")


class AlertError(SigError):
    """The alert command cannot be run (e.g. ``notify-send`` is not installed)."""


def _text(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)


class Alerter:
    """Run a command once per event; its :meth:`listener` is what to register.

    Args:
        command: the command and its arguments; ``None`` is ``notify-send``. Arguments may
            hold ``{sender}``, ``{event}``, ``{data}``, ``{title}`` and ``{body}``; with none
            of them, the title and the body are added as the last two arguments.
        timeout: seconds one command may take before it is killed.
        queue_size: most alerts waiting for the command; beyond it they are dropped (logged).

    Raises:
        AlertError: the command (or ``notify-send``) is not found.
    """

    def __init__(self, command: Sequence[str] | None = None, timeout: float = 10.0, queue_size: int = 100) -> None:
        if command is None:
            path = shutil.which(NOTIFY_SEND)
            if path is None:
                raise AlertError("notify-send not found: install libnotify "
                                 "(Debian/Ubuntu: apt install libnotify-bin), or give --command CMD")
            command = [path, "--app-name=sig", "{title}", "{body}"]
        command = list(command)
        if not command or not command[0]:
            raise AlertError("the alert command is empty")
        if shutil.which(command[0]) is None:
            raise AlertError("alert command not found: %s" % command[0])
        if not any(_FIELD.search(arg) for arg in command):
            command += ["{title}", "{body}"]
        self.command = command
        self.timeout = timeout
        self.dropped = 0
        self._queue: queue.Queue[list[str] | None] = queue.Queue(queue_size)
        self._worker = threading.Thread(target=self._run, name="sig-alert", daemon=True)
        self._worker.start()

    @classmethod
    def from_command_line(cls, text: str | None, **settings: Any) -> Alerter:
        """Make one from ``--command`` text (split as a shell would, run without a shell).

        Raises:
            AlertError: the command does not parse or is not found.
        """
        if text is None:
            return cls(None, **settings)
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise AlertError("bad --command %r: %s" % (text, exc)) from None
        return cls(words, **settings)

    def arguments(self, info: dict[str, Any], data: Any) -> list[str]:
        """Return the command line for one event."""
        sender, event = info.get("sender"), info.get("event")
        if event in (EVENT_CONNECT, EVENT_DISCONNECT):
            title = "%s %s" % (sender, "connected" if event == EVENT_CONNECT else "disconnected")
        else:
            title = "[%s] %s" % (sender, event)
        fields = {"sender": str(sender), "event": str(event), "data": _text(data), "title": title, "body": _text(data)}
        return [_FIELD.sub(lambda match: fields[match.group(1)], arg) for arg in self.command]

    def listener(self, info: dict[str, Any], data: Any) -> None:
        """The listener to register: queues one alert for the event."""
        try:
            self._queue.put_nowait(self.arguments(info, data))
        except queue.Full:
            self.dropped += 1
            logger.warning("Too many alerts waiting; dropped the one for %s:%s (%d dropped)",
                           info.get("sender"), info.get("event"), self.dropped)

    def _run(self) -> None:
        while True:
            argv = self._queue.get()
            if argv is None:
                return
            logger.info("Alert: %s", " ".join(shlex.quote(arg) for arg in argv))
            try:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, timeout=self.timeout, check=False)
            except subprocess.TimeoutExpired:
                logger.warning("The alert command took more than %g s; killed", self.timeout)
            except OSError as exc:
                logger.error("Cannot run the alert command %s: %s", argv[0], exc)
            else:
                if done.returncode != 0:
                    logger.warning("The alert command failed (status %d): %s", done.returncode,
                                   done.stderr.decode("utf-8", "replace").strip())

    def close(self, timeout: float = 5.0) -> None:
        """Run the alerts already queued (within ``timeout`` seconds), then stop the worker."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._worker.join(timeout)
