"""The ``sig-bridge`` command (also ``python -m bridge``).

    sig-bridge [--mqtt URL | --embedded] [--broker-listen HOST:PORT] [--listen HOST:PORT]
               [--prefix P] [--node-id ID] [--config FILE] [--password-file FILE] [--log-level L]
    sig-bridge acl --config FILE [--prefix P]     # Mosquitto ACL blocks for the nodes in FILE

With no options it joins the broker answering on 127.0.0.1:1883, or starts an
embedded one there, and serves pysig TCP clients on 127.0.0.1:3000. Command-line
options win over the ``[bridge]`` table of the config file. A busy port, a bad
config line or a bad option is one line on stderr and exit status 2; an
unreachable broker is retried (one log line per attempt). SIGTERM and SIGINT
stop it cleanly with status 0.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from sig import MissingExtraError

if TYPE_CHECKING:
    from sig_apps.options import ArgumentParser

__all__ = ["main", "build_parser"]


def build_parser() -> ArgumentParser:
    """The ``sig-bridge`` argument parser."""
    from ._command import build_parser as parser

    return parser()


def main(argv: list[str] | None = None) -> int:
    """Run ``sig-bridge``; return the exit status.

    The bridge is sig over MQTT: without the ``sig[mqtt]`` extra (paho) it says so in one
    line (exit status 2) before anything else is imported.
    """
    try:
        import sig_mqtt  # noqa: F401
    except MissingExtraError as exc:
        print("sig-bridge: %s" % exc, file=sys.stderr)
        return 2
    from ._command import main as run

    return run(argv)
