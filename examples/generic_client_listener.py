"""generic_client_listener.py: a client that listens to an event, a broadcast event or a channel.

The server address, the sender and the event are read from stdin, as
documented (a blank answer takes the default; ``None`` means any):

    Server IP   (default: 127.0.0.1):
    Server port (default: 3000):
    Sender      (default: None):timer
    Event       (default: None):tick
    [sig][  57][             connect][    info]-[TCP_CL] Connecting to 127.0.0.1:3000
    [sig][  41][            listener][    info]-[timer] Event tick received with data '"test"'

It also listens to ``#connect`` / ``#disconnect`` of the sender, so a restart
of that sender shows:

    [sig][  34][    listener_connect][    info]-Sender timer_client is now disconnected
    [sig][  34][    listener_connect][    info]-Sender timer_client is now connected

Listeners are registered in ``on_connected``, so they are registered again
after the server restarts. Stop with Ctrl-C.
"""

import json
import time

from _prompt import ask, ask_int, ask_name

import sig
from sig.carrier.tcpclient import CarrierTCPClient


def listener(info, data):
    """Log each event received."""
    logger.info("[%s] Event %s received with data '%s'" % (info.get("sender"), info.get("event"), json.dumps(data)))


def listener_connect(info, data):
    """Log when the sender connects or disconnects."""
    state = "connected" if info.get("event") == sig.EVENT_CONNECT else "disconnected"
    logger.info("Sender %s is now %s" % (info.get("sender"), state))


def register_on_connect():
    """Register the listeners on the server (again after a reconnection)."""
    try:
        client.addRemoteListener(listener_connect, sender, sig.EVENT_CONNECT)
        client.addRemoteListener(listener_connect, sender, sig.EVENT_DISCONNECT)
        client.addRemoteListener(listener, sender, event)
    except sig.SigError as exc:
        logger.error("Cannot register the listeners: %s" % exc)


def cleanup_on_disconnect():
    """The server drops our listeners by itself; just say so."""
    logger.info("Disconnected!")


if __name__ == "__main__":
    host = ask("Server IP", "127.0.0.1")
    port = ask_int("Server port", 3000)
    sender = ask_name("Sender", None, allow_none=True)
    event = ask_name("Event", None, allow_none=True)

    # setup logging
    logger = sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_INFO)
    sig.setup_logger(logger)

    # create the tcp carrier and the client router
    tcpclient = CarrierTCPClient()
    client = sig.ClientRouter(tcpclient)

    # connect (it keeps trying in the background if the server is not up yet)
    tcpclient.on_connected = register_on_connect
    tcpclient.on_disconnected = cleanup_on_disconnect
    tcpclient.connect(host, port)

    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        logger.info("Disconnecting client..")
    finally:
        tcpclient.disconnect()
