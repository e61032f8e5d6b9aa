"""generic_client_sender.py: a client that registers a sender and triggers its event periodically.

The server address, the sender, the event, its data and the delay are read
from stdin, as documented (a blank answer takes the default):

    Server IP   (default: 127.0.0.1):
    Server port (default: 3000):
    Sender      (default: timer_client):
    Event       (default: tick):
    Event data  (default: None):client data
    Timer delay (default: 5):
    [sig][  57][             connect][    info]-[TCP_CL] Connecting to 127.0.0.1:3000
    [sig][  60][            <module>][    info]-[timer_client] Triggering event tick with data 'client data'

The sender is registered in ``on_connected``, so it is registered again after
the server restarts (the client reconnects by itself). Stop with Ctrl-C.
"""

import time

from _prompt import ask, ask_data, ask_float, ask_int, ask_name

import sig
from sig.carrier.tcpclient import CarrierTCPClient

senderobj = None
signal = None


def register_on_connect():
    """Register the sender on the server (again after a reconnection)."""
    global senderobj, signal
    logger.info("Connecting %s sender" % sender)
    try:
        senderobj = client.addRemoteSender(sender, [event])
    except sig.SigError as exc:
        logger.error("Cannot register sender %s: %s" % (sender, exc))
        return
    signal = senderobj.getSignal(event)


def cleanup_on_disconnect():
    """The server removes our sender by itself; just say so."""
    logger.info("Disconnected!")


if __name__ == "__main__":
    host = ask("Server IP", "127.0.0.1")
    port = ask_int("Server port", 3000)
    sender = ask_name("Sender", "timer_client")
    event = ask_name("Event", "tick")
    data = ask_data("Event data", None)
    delay = ask_float("Timer delay", 5)

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
            if tcpclient.isConnected() and signal is not None:
                logger.info("[%s] Triggering event %s with data '%s'" % (sender, event, data))
                signal.trigger(data)
            time.sleep(delay)
    except KeyboardInterrupt:
        logger.info("Disconnecting client..")
    finally:
        tcpclient.disconnect()
