"""``sig conformance``: check that a device or program on a broker follows docs/convention.md.

    sig conformance --mqtt mqtt://broker:1883/sig --node NID [--profile minimal|full] [--json] [--timeout S]
    sig conformance --mqtt mqtt://broker:1883/sig --sender S ...

The rules are judged by pure functions on the messages seen (:func:`evaluate`, testable
without a broker); :func:`probe` is the thin paho shell that collects them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from sig_mqtt import CONVENTION, parse_url

from ._checks import evaluate
from ._evidence import Evidence, Message, Sent
from ._probe import NOTICE, probe
from ._report import as_json, as_text, passed
from ._rules import FAIL, PASS, PROFILES, RULES, SKIP, Result, Rule

__all__ = ["FAIL", "PASS", "PROFILES", "RULES", "SKIP", "Evidence", "Message", "Result", "Rule", "Sent",
           "as_json", "as_text", "build_parser", "evaluate", "main", "passed", "probe", "run"]

logger = logging.getLogger("sig.conformance")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sig conformance``."""
    parser = argparse.ArgumentParser(prog="sig conformance", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--mqtt", required=True, metavar="URL",
                        help="the broker: mqtt[s]://[user[:pass]@]host[:port][/prefix] (default prefix sig)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--node", metavar="NID", help="the node (MQTT client id) to check, all its senders")
    target.add_argument("--sender", metavar="S", help="the sender to check (and the node that hosts it)")
    parser.add_argument("--profile", choices=PROFILES, default="minimal",
                        help="minimal: one sender, QoS 0, no requests; full: also rebirth and requests "
                             "(default: minimal)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long each answer may take (default: 5); the heartbeat wait is 1.5 heartbeats")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                        help="print log lines on stderr from this level up (default: warning)")
    parser.add_argument("--version", action="version", version="sig conformance %s" % CONVENTION)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``sig conformance``; 0 when the profile passes, 1 when not (or no broker), 2 on misuse."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run a check from parsed options; print the report; 0 when the profile passes, 1 when not, 2 on misuse."""
    if not args.timeout > 0:
        sys.stderr.write("sig conformance: error: --timeout must be more than 0 seconds\n")
        return 2
    try:
        url = parse_url(args.mqtt)
    except ValueError as exc:
        sys.stderr.write("sig conformance: error: bad --mqtt: %s\n" % exc)
        return 2
    prefix = url.prefix or "sig"
    sys.stderr.write("sig conformance %s\n" % (NOTICE % prefix))
    try:
        evidence = probe(url, prefix, args.node, args.sender, args.profile == "full", args.timeout)
    except ConnectionError as exc:
        sys.stderr.write("sig conformance: error: %s\n" % exc)
        return 1
    results = evaluate(evidence, args.profile)
    header: dict[str, Any] = {
        "convention": CONVENTION, "broker": str(url), "prefix": prefix, "profile": args.profile,
        "target": "node %s" % args.node if args.node is not None else "sender %s" % args.sender,
    }
    sys.stdout.write((as_json(results, header) if args.json else as_text(results, header)) + "\n")
    sys.stdout.flush()
    return 0 if passed(results) else 1
