"""alert_listener.py: a desktop notification whenever one of the events listened to is triggered.

A listener connected remotely to a pysig server, to a list of events from
several senders, configured from stdin like web_events_logger.py (``None``
means any; a blank event ends the sender, a blank sender ends the list),
plus the command that shows the alert:

    Server IP   (default: 127.0.0.1):
    Server port (default: 3000):
    Command     (default: notify-send):
    Sender 1:timer
    Event  1:tick
    Event  2:
    Sender 2:

Each event runs ``notify-send "[timer] tick" "<data>"`` (libnotify; Debian /
Ubuntu package ``libnotify-bin``). Another command gets the same two
arguments, or fills in ``{sender}``, ``{event}``, ``{data}``, ``{title}``,
``{body}`` where its arguments name them. Stop with Ctrl-C.
"""

import sys
import time

from _prompt import ask, ask_int, ask_subscriptions

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig_apps.alert import Alerter


def register_on_connect():
    """Register the listeners on the server (again after a reconnection)."""
    for sender, event in subscriptions:
        logger.info("Registering to %s:%s" % (sender, event))
        try:
            client.addRemoteListener(alerter.listener, sender, event)
        except sig.SigError as exc:
            logger.error("Cannot register to %s:%s: %s" % (sender, event, exc))


if __name__ == "__main__":
    host = ask("Server IP", "127.0.0.1")
    port = ask_int("Server port", 3000)
    command = ask("Command", "notify-send")
    subscriptions = ask_subscriptions()

    # setup logging
    logger = sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_INFO)
    sig.setup_logger(logger)

    try:
        alerter = Alerter.from_command_line(None if command == "notify-send" else command)
    except sig.SigError as exc:
        sys.stderr.write("error: %s\n" % exc)
        sys.exit(1)

    # create the tcp carrier and the client router
    tcpclient = CarrierTCPClient()
    client = sig.ClientRouter(tcpclient)

    # connect (it keeps trying in the background if the server is not up yet)
    tcpclient.on_connected = register_on_connect
    tcpclient.connect(host, port)

    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        logger.info("Disconnecting client..")
    finally:
        tcpclient.disconnect()
        alerter.close()
