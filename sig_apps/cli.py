"""The ``sig`` command: the documented pysig generic_* examples as one tool.

    sig server  [--bind HOST:PORT] [--access FILE] [--sender S [--event E] [--data D] [--delay SECONDS]]
    sig send    [--server HOST:PORT] --sender S --event E [--data D] [--count N] [--delay SECONDS]
    sig listen  [--server HOST:PORT] [--listen S:E ...] [--json]
    sig request [--server HOST:PORT] --sender S --method M [--params JSON] [--timeout SECONDS]
    sig web     [--server HOST:PORT] [--http HOST:PORT] [--limit N] [--listen S:E ...] [--allow-host NAME ...]
    sig alert   [--server HOST:PORT] [--listen S:E ...] [--command CMD]
    sig conformance --mqtt URL (--node NID | --sender S) [--profile minimal|full] [--json] [--timeout S]

Every subcommand takes ``--log-level`` and ``--version``; client subcommands take
``--user NAME`` (password from ``--password-file FILE`` or ``$SIG_PASSWORD``) or
``--token-file FILE`` (or ``$SIG_TOKEN``) for a server started with ``--access``. Log lines (pysig's
``SimpleLogger`` shape) go to stderr, from ``info`` up for ``server`` and from
``warning`` up for the client subcommands (``--log-level info`` shows e.g.
``[lamp] Triggering event on with data '...'``); what ``listen`` hears and
what ``request`` gets go to stdout. An error is one line on stderr and a
non-zero exit status (2 for a bad option, 1 otherwise); Ctrl-C and SIGTERM
stop ``server``, ``listen`` and a repeating ``send`` cleanly, with status 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from sig import VERSION, CarrierError, RemoteError, RequestTimeout, ServerRouter, SigError
from sig.carrier.tcpserver import CarrierTCPServer

from ._access_options import add_credential_options, load_access
from .alert import Alerter
from .options import (
    LEVELS,
    ArgumentParser,
    CliError,
    Stopper,
    UsageError,
    close_client,
    connect_client,
    format_address,
    parse_address,
    parse_data,
    parse_ident,
    parse_listen,
    parse_params,
    setup_logging,
    with_builtins,
)

__all__ = ["main", "build_parser"]

logger = logging.getLogger("sig.cli")

DEFAULT_SERVER = "127.0.0.1:3000"


# -- helpers -----------------------------------------------------------------------


def _show(data: Any) -> str:
    """Show event data in a log line: text as is, anything else as JSON."""
    return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)


# -- subcommands -------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> int:
    """``sig server``: serve pysig clients on TCP; with ``--sender``, trigger an event every ``--delay`` s.

    The periodic sender answers the request ``get_ticks`` with how many times it fired.
    """
    host, port = parse_address(args.bind, what="--bind")
    sender = None if args.sender is None else parse_ident(args.sender, "--sender")
    event = parse_ident(args.event, "--event")
    data = parse_data(args.data)
    if args.delay <= 0:
        raise UsageError("--delay must be more than 0 seconds")
    stopper = Stopper().install()
    access = load_access(args.access) if args.access else None
    carrier = CarrierTCPServer()
    router = ServerRouter(carrier, access=access)
    try:
        carrier.start(host, port)
    except CarrierError as exc:
        raise CliError(str(exc)) from None
    logger.info("Listening on %s", format_address(str(carrier.host), int(carrier.port or 0)))
    try:
        if sender is None:
            stopper.wait()
        else:
            ticks = [0]
            objsender = router.addSender(sender, [event], requests={"get_ticks": lambda params: ticks[0]})
            signal = objsender.getSignal(event)
            while stopper.sleep(args.delay):
                ticks[0] += 1
                logger.info("[%s] Triggering event %s with data '%s'", sender, event, _show(data))
                signal.trigger(data)
            router.removeSender(objsender)
    finally:
        logger.info("Stopping server")
        carrier.stop()
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """``sig send``: register a remote sender and trigger one event once, ``--count`` times or every ``--delay`` s."""
    sender = parse_ident(args.sender, "--sender")
    event = parse_ident(args.event, "--event")
    data = parse_data(args.data)
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be 1 or more")
    if args.delay is not None and args.delay < 0:
        raise UsageError("--delay must not be negative")
    count = args.count if args.count is not None else (1 if args.delay is None else None)  # None: forever
    stopper = Stopper().install()
    router, carrier = connect_client(args, keep_reconnecting=count != 1)
    try:
        signal = router.addRemoteSender(sender, [event]).getSignal(event)
        sent = 0
        while not stopper.stopping:
            logger.info("[%s] Triggering event %s with data '%s'", sender, event, _show(data))
            signal.trigger(data)
            sent += 1
            if (count is not None and sent >= count) or not stopper.sleep(args.delay or 0.0):
                break
    finally:
        close_client(carrier)  # sends what is queued first
    return 0


def _printer(as_json: bool, stopper: Stopper) -> Callable[[dict[str, Any], Any], None]:
    """Return the listener of ``sig listen``: one flushed line per event on stdout."""

    def listener(info: dict[str, Any], data: Any) -> None:
        sender, event = info.get("sender"), info.get("event")
        if as_json:
            line = json.dumps({"sender": sender, "event": event, "data": data}, ensure_ascii=False)
        else:
            line = "[%s] Event %s received with data '%s'" % (sender, event, json.dumps(data, ensure_ascii=False))
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # stdout closed (e.g. piped into head): stop
            stopper.stopping = True

    return listener


def cmd_listen(args: argparse.Namespace) -> int:
    """``sig listen``: print the events of every ``--listen S:E`` (and the senders' #connect / #disconnect)."""
    subscriptions = [parse_listen(text) for text in (args.listen or ["None:None"])]
    if not args.no_connect:
        subscriptions = with_builtins(subscriptions)
    stopper = Stopper().install()
    router, carrier = connect_client(args, keep_reconnecting=True)
    listener = _printer(args.json, stopper)
    try:
        for sender, event in subscriptions:
            router.addRemoteListener(listener, sender, event)
            logger.info("Listening to %s:%s", sender, event)
        stopper.wait()
    finally:
        close_client(carrier)
    return 0


def cmd_request(args: argparse.Namespace) -> int:
    """``sig request``: send one request to a sender and print its response as JSON."""
    params = parse_params(args.params)
    sender = parse_ident(args.sender, "--sender")
    method = parse_ident(args.method, "--method")
    if args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    router, carrier = connect_client(args)
    try:
        response = router.remoteRequest(sender, method, params, timeout=args.timeout)
    except RequestTimeout:
        raise CliError("no answer from %s to %s in %g s" % (sender, method, args.timeout)) from None
    except RemoteError as exc:
        raise CliError("request failed: %s (status %s)" % (exc.exception or exc, exc.status)) from None
    finally:
        close_client(carrier)
    sys.stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """``sig web``: the web event log and its REST API (needs aiohttp: the ``web`` extra)."""
    http_host, http_port = parse_address(args.http, default_port=8080, what="--http")
    subscriptions = [parse_listen(text) for text in (args.listen or ["None:None"])]
    try:
        from .web import WebLogger
        from .web._eventlog import check_limit
    except ImportError as exc:
        raise CliError("sig web needs aiohttp (pip install 'sig[web]'): %s" % exc) from None
    try:
        check_limit(args.limit)
    except ValueError as exc:
        raise UsageError("bad --limit: %s" % exc) from None
    router, carrier = connect_client(args, keep_reconnecting=True)
    try:
        try:
            weblog = WebLogger(router, limit=args.limit, server=args.server, allow_hosts=args.allow_host or ())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.mqtt:  # the retained Home Assistant discovery configs say which senders are announced
            from sig_mqtt import AnnouncedSenders

            tracker = AnnouncedSenders(carrier.node.topics.prefix, args.ha_prefix)  # type: ignore[attr-defined]
            for topic_filter in tracker.filters:
                carrier.subscribe_raw(  # type: ignore[attr-defined]
                    topic_filter, lambda topic, payload, retained: tracker.config(topic, payload))
            weblog.state.announced = tracker.senders
        for sender, event in subscriptions:
            weblog.subscribe(sender, event)

        def ready(url: str) -> None:
            sys.stdout.write(url + "\n")
            sys.stdout.flush()

        weblog.run(http_host, http_port, ready)
    finally:
        close_client(carrier)
    return 0


def cmd_alert(args: argparse.Namespace) -> int:
    """``sig alert``: one desktop notification (or ``--command`` run) per matching event."""
    subscriptions = [parse_listen(text) for text in (args.listen or ["None:None"])]
    alerter = Alerter.from_command_line(args.alert_command)
    stopper = Stopper().install()
    try:
        router, carrier = connect_client(args, keep_reconnecting=True)
        try:
            for sender, event in subscriptions:
                router.addRemoteListener(alerter.listener, sender, event)
                logger.info("Alerting on %s:%s", sender, event)
            stopper.wait()
        finally:
            close_client(carrier)
    finally:
        alerter.close()
    return 0


# -- parser ----------------------------------------------------------------------------


def _common_options(log_level: str) -> ArgumentParser:
    """Options every subcommand has: ``--log-level`` (default ``log_level``) and ``--version``."""
    common = ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=list(LEVELS), default=log_level,
                        help="print log lines on stderr from this level up (default: %s)" % log_level)
    common.add_argument("--version", action="version", version="sig %s" % VERSION)
    return common


def build_parser() -> ArgumentParser:
    """Build the ``sig`` argument parser (subcommands server, send, listen, request, web, alert)."""
    common = _common_options("info")
    client = _common_options("warning")
    client.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                        help="the pysig server (default: %s)" % DEFAULT_SERVER)
    client.add_argument("--mqtt", metavar="URL",
                        help="an MQTT broker instead of a pysig server: mqtt[s]://[user[:pass]@]host[:port][/prefix]"
                             " (password also from --password-file or $SIG_MQTT_PASSWORD)")
    add_credential_options(client)

    parser = ArgumentParser(prog="sig", description="pysig event routing from the command line.",
                            epilog="Identifiers are strings; None means any. Run 'sig COMMAND --help' for more.")
    parser.add_argument("--version", action="version", version="sig %s" % VERSION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    commands.required = True

    server = commands.add_parser("server", parents=[common], help="run a pysig server (optionally with a timer sender)",
                                 description="Run a ServerRouter on TCP. With --sender it also hosts a sender that "
                                             "triggers --event every --delay seconds and answers 'get_ticks'.")
    server.add_argument("--bind", default=DEFAULT_SERVER, metavar="HOST:PORT",
                        help="address to listen on; port 0 picks a free one (default: %s)" % DEFAULT_SERVER)
    server.add_argument("--sender", help="name of a periodic sender to host (e.g. timer; default: none)")
    server.add_argument("--event", default="tick", help="event the periodic sender triggers (default: tick)")
    server.add_argument("--data", help="event data: JSON if it parses, else the text (default: null)")
    server.add_argument("--delay", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between two events (default: 5)")
    server.add_argument("--access", metavar="FILE",
                        help="TOML file with [auth] (anonymous, users) and [[acl]] tables: clients must "
                             "authenticate and may only use what the ACL grants (default: open to all)")
    server.set_defaults(func=cmd_server)

    send = commands.add_parser("send", parents=[client], help="register a sender and trigger an event",
                               description="Register a remote sender and trigger its event: once, --count N "
                                           "times, or every --delay seconds until stopped.")
    send.add_argument("--sender", required=True, help="sender name")
    send.add_argument("--event", required=True, help="event name")
    send.add_argument("--data", help="event data: JSON if it parses, else the text (default: null)")
    send.add_argument("--count", type=int, help="trigger N times (default: once, or forever with --delay)")
    send.add_argument("--delay", type=float, metavar="SECONDS", help="seconds between two triggers (default: 0)")
    send.set_defaults(func=cmd_send)

    listen = commands.add_parser("listen", parents=[client], help="print events as they come",
                                 description="Print one line per event received, #connect and #disconnect "
                                             "of the senders listened to included, until stopped.")
    listen.add_argument("--listen", action="append", metavar="SENDER:EVENT",
                        help="a subscription, repeatable; None = any, \\: = a colon in a name (default: None:None)")
    listen.add_argument("--json", action="store_true",
                        help='print {"sender", "event", "data"} JSON lines instead of log-style lines')
    listen.add_argument("--no-connect", action="store_true",
                        help="do not add the senders' #connect / #disconnect subscriptions")
    listen.set_defaults(func=cmd_listen)

    request = commands.add_parser("request", parents=[client], help="send a request and print the response",
                                  description="Send a request to a sender and print its response as JSON.")
    request.add_argument("--sender", required=True, help="sender name")
    request.add_argument("--method", required=True, help="request method")
    request.add_argument("--params", metavar="JSON", help="request parameters as JSON (default: null)")
    request.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                         help="seconds to wait for the response (default: 10)")
    request.set_defaults(func=cmd_request)

    listen_help = "a subscription, repeatable; None = any, \\: = a colon in a name (default: None:None)"
    web = commands.add_parser("web", parents=[client], help="serve the web event log and its REST API",
                              description="Keep the last --limit events of the subscriptions and serve them on a "
                                          "live web page and the documented REST API (/, /regs, /clear, /config, "
                                          "/add, /remove, /announced; fmt=html|plain|json). Prints the page's URL.")
    web.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="address of the web server; port 0 picks a free one (default: 127.0.0.1:8080)")
    web.add_argument("--limit", type=int, default=20, metavar="N",
                     help="events kept; the oldest is dropped (default: 20)")
    web.add_argument("--listen", action="append", metavar="SENDER:EVENT", help=listen_help)
    web.add_argument("--allow-host", action="append", metavar="NAME[:PORT]",
                     help="another Host name to answer for (e.g. behind a reverse proxy), repeatable")
    web.add_argument("--ha-prefix", default="homeassistant", metavar="PREFIX",
                     help="Home Assistant's discovery prefix: with --mqtt, /announced lists the senders announced "
                          "there (default: homeassistant)")
    web.set_defaults(func=cmd_web)

    alert = commands.add_parser("alert", parents=[client], help="a desktop notification per event",
                                description="Run notify-send (or --command) once per event received.")
    alert.add_argument("--listen", action="append", metavar="SENDER:EVENT", help=listen_help)
    alert.add_argument("--command", metavar="CMD", dest="alert_command",
                       help="command to run instead of notify-send; {sender} {event} {data} {title} {body} are "
                            "filled in, else the title and body are added as its last two arguments")
    alert.set_defaults(func=cmd_alert)
    commands.add_parser("conformance", help="check an MQTT device against docs/convention.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sig`` command line; return its exit status."""
    if (sys.argv[1:] if argv is None else argv)[:1] == ["conformance"]:  # its own parser, loaded only when used
        from .conformance import main as conformance

        return conformance((sys.argv[1:] if argv is None else argv)[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = "sig %s" % args.command
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except CliError as exc:
        sys.stderr.write("%s: error: %s\n" % (prog, exc))
        return exc.exit_code
    except SigError as exc:
        sys.stderr.write("%s: error: %s\n" % (prog, exc))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % prog)
        return 130
    except Exception as exc:  # never a traceback at the terminal; --log-level debug shows it
        logger.debug("unexpected failure", exc_info=True)
        sys.stderr.write("%s: error: %s: %s\n" % (prog, type(exc).__name__, exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
