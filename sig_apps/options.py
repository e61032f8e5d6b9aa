"""Helpers of the ``sig`` command line: argument parsing, logging, clean stops.

Kept apart from :mod:`sig_apps.cli` so the subcommands stay short. The one
place that reaches a server is :func:`connect_client`: every client
subcommand (``send``, ``listen``, ``request``, ``web``, ``alert``) gets its
ClientRouter from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import Any, NoReturn
from urllib.parse import urlsplit

from sig import (
    BUILTIN_EVENTS,
    EVENT_CONNECT,
    EVENT_DISCONNECT,
    LOG_LEVELS,
    Carrier,
    ClientRouter,
    Ident,
    SigError,
    SimpleLogger,
    setup_logger,
)
from sig.carrier.tcpclient import CarrierTCPClient

__all__ = [
    "CliError",
    "UsageError",
    "connect_client",
    "close_client",
    "ArgumentParser",
    "LEVELS",
    "format_address",
    "parse_address",
    "parse_data",
    "parse_ident",
    "parse_listen",
    "parse_params",
    "with_builtins",
    "setup_logging",
    "Stopper",
]

logger = logging.getLogger("sig.cli")

#: ``--log-level`` names and their levels (pysig's, plus ``none``): :attr:`sig.LOG_LEVELS.BY_NAME`.
LEVELS: dict[str, int] = LOG_LEVELS.BY_NAME

#: The word that stands for "any" (``None``) where the documented prompts accept it.
ANY = "None"


class CliError(SigError):
    """A failure the command reports as one line (exit status 1)."""

    exit_code = 1


class UsageError(CliError):
    """A bad option value (exit status 2, as argparse uses)."""

    exit_code = 2


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with status 2."""
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def parse_address(text: str, default_host: str = "127.0.0.1", default_port: int = 3000,
                  what: str = "address") -> tuple[str, int]:
    """Parse ``HOST:PORT``, ``HOST``, ``:PORT`` or ``[IPv6]:PORT``.

    Raises:
        UsageError: the port is not a number from 0 to 65535, or the host is empty.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):  # [::1]:3000
        end = text.find("]")
        if end < 0:
            raise UsageError("bad %s %r: missing ']'" % (what, text))
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise UsageError("bad %s %r: expected [HOST]:PORT" % (what, text))
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    host = host or default_host
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError("bad %s %r: the port must be a number" % (what, text)) from None
    if not 0 <= port <= 65535:
        raise UsageError("bad %s %r: the port must be from 0 to 65535" % (what, text))
    return host, port


def format_address(host: str, port: int) -> str:
    """Return ``HOST:PORT`` (``[HOST]:PORT`` for an IPv6 address)."""
    return "[%s]:%s" % (host, port) if ":" in host else "%s:%s" % (host, port)


def parse_data(text: str | None) -> Any:
    """Return ``--data``: JSON when it parses, else the text as is; ``None`` when not given."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(text: str | None) -> Any:
    """Return ``--params`` decoded from JSON (``None`` when not given).

    Raises:
        UsageError: it is not valid JSON.
    """
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError("--params is not valid JSON (%s): %s" % (exc, text)) from None


def parse_ident(text: str, option: str) -> Ident:
    """Return a name given on the command line (a string) where "any" is not allowed.

    Raises:
        UsageError: it is empty, or ``None``.
    """
    if text == ANY:
        raise UsageError("%s needs a name here, not None" % option)
    if not text:
        raise UsageError("%s must not be empty" % option)
    return text


def parse_listen(text: str) -> tuple[Ident | None, Ident | None]:
    """Parse one ``--listen SENDER:EVENT`` (``None`` = any, ``\\:`` is a colon, ``\\\\`` a backslash).

    Raises:
        UsageError: not exactly one unescaped colon, or an empty part.
    """
    parts: list[str] = [""]
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped not in (":", "\\"):
                raise UsageError("bad --listen %r: only \\: and \\\\ may be escaped" % text)
            parts[-1] += escaped
        elif char == ":":
            parts.append("")
        else:
            parts[-1] += char
    if len(parts) != 2:
        raise UsageError("bad --listen %r: expected SENDER:EVENT (None = any, \\: for a colon in a name)" % text)
    sender, event = parts
    if not sender or not event:
        raise UsageError("bad --listen %r: empty %s (use None for any)" % (text, "sender" if not sender else "event"))
    return (None if sender == ANY else sender), (None if event == ANY else event)


def with_builtins(subscriptions: list[tuple[Ident | None, Ident | None]]) -> list[tuple[Ident | None, Ident | None]]:
    """Add ``(S, #connect)`` and ``(S, #disconnect)`` for each ``(S, E)``, as the documented listener does.

    A built-in event already heard through another subscription (``(S, None)``,
    ``(None, None)``, ``(None, #connect)`` or itself) is not added twice.
    Duplicates the user gave are kept once.
    """
    result: list[tuple[Ident | None, Ident | None]] = []
    for sub in subscriptions:
        if sub not in result:
            result.append(sub)
    given = set(result)
    for sender, event in list(result):
        if event is None or event in BUILTIN_EVENTS:
            continue
        for builtin in (EVENT_CONNECT, EVENT_DISCONNECT):
            covers = {(sender, builtin), (sender, None), (None, None), (None, builtin)}
            if not covers & given:
                result.append((sender, builtin))
                given.add((sender, builtin))
    return result


def connect_client(args: argparse.Namespace, keep_reconnecting: bool = False) -> tuple[ClientRouter, Carrier]:
    """Connect a ClientRouter to ``args.server``; fail at once (one line) when it cannot be reached.

    The one function that makes the client side of every client subcommand.
    With ``keep_reconnecting`` the carrier reconnects by itself after a later
    outage (and the ClientRouter registers everything again).

    Raises:
        UsageError: a bad ``--server`` address.
        CliError: the server cannot be reached.
    """
    from ._access_options import client_credentials  # it imports this module

    if getattr(args, "mqtt", None):
        return _connect_mqtt(args, keep_reconnecting)
    host, port = parse_address(args.server, what="--server")
    carrier = CarrierTCPClient(**client_credentials(args))
    router = ClientRouter(carrier, request_timeout=getattr(args, "timeout", 10.0))
    if not carrier.connect(host, port, auto_reconnect=keep_reconnecting):
        carrier.disconnect()  # stops the background retries
        error = carrier.last_error
        reason = (error.strerror or str(error)) if error else "no answer to the handshake (is it a pysig server?)"
        raise CliError("cannot connect to %s: %s" % (format_address(host, port), reason))
    if keep_reconnecting:
        address = format_address(host, port)
        carrier.on_disconnected = lambda: logger.warning("Disconnected from %s, reconnecting...", address)
        carrier.on_connected = lambda: logger.info("Connected to %s again", address)
    return router, carrier


def _connect_mqtt(args: argparse.Namespace, keep_reconnecting: bool) -> tuple[ClientRouter, Carrier]:
    """``--mqtt URL``: a ClientRouter over a broker (sig_mqtt), no pysig server."""
    try:
        from sig_mqtt import CarrierMQTTClient, parse_url, read_password_file
    except ImportError as exc:  # sig.MissingExtraError: it names the extra
        raise CliError("--mqtt: %s" % exc) from None
    try:
        url = parse_url(args.mqtt)
    except ValueError as exc:
        raise UsageError("bad --mqtt: %s" % exc) from None
    settings: dict[str, Any] = {}
    written = urlsplit(args.mqtt).password  # parse_url already took $SIG_MQTT_PASSWORD: the file wins over it
    password_file = getattr(args, "password_file", None)
    if password_file is not None and written is None:
        try:
            settings["password"] = read_password_file(password_file)
        except OSError as exc:
            raise UsageError("cannot read %s: %s" % (password_file, exc.strerror)) from None
    if getattr(args, "user", None) and url.username is None:
        settings["username"] = args.user
        if "password" not in settings and written is None and os.environ.get("SIG_MQTT_PASSWORD"):
            settings["password"] = os.environ["SIG_MQTT_PASSWORD"]
    timeout = getattr(args, "timeout", 10.0)
    carrier = CarrierMQTTClient.from_url(args.mqtt, request_timeout=timeout, **settings)
    router = ClientRouter(carrier, request_timeout=timeout)
    if not carrier.connect(auto_reconnect=keep_reconnecting):
        carrier.disconnect()
        raise CliError("cannot connect to %s: %s" % (url, carrier.last_error or "no answer from the broker"))
    if keep_reconnecting:
        carrier.on_disconnected = lambda: logger.warning("Disconnected from %s, reconnecting...", url)
        carrier.on_connected = lambda: logger.info("Connected to %s again", url)
    return router, carrier


def close_client(carrier: Carrier) -> None:
    """Disconnect on purpose: send what is queued, and do not log it as an outage."""
    carrier.on_disconnected = None  # type: ignore[attr-defined]
    carrier.disconnect()  # type: ignore[attr-defined]


def setup_logging(level_name: str) -> SimpleLogger:
    """Route sig's log records (the CLI's included) to a pysig :class:`SimpleLogger` on stderr."""
    objlogger = SimpleLogger(level=LEVELS[level_name], stream=sys.stderr)
    setup_logger(objlogger)
    return objlogger


class Stopper:
    """Turns SIGINT and SIGTERM into a flag that the main loop polls.

    The handlers only set a flag (no locks: a signal may arrive while the main
    thread holds one); a second signal while stopping exits at once.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.signum: int | None = None

    def install(self) -> Stopper:
        """Install the handlers (main thread only); return ``self``."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise SystemExit(128 + signum)
        self.stopping = True
        self.signum = signum

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return False as soon as a stop was asked."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    def wait(self) -> None:
        """Sleep until a stop is asked."""
        while not self.stopping:
            time.sleep(0.05)
